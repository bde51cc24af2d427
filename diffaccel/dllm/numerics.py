"""How confidences are computed and which positions win: the official samplers' numerics, or ours.

The published samplers differ in two details that decide which token is committed when confidences
are close or equal, so a faithful port must reproduce them exactly:

* **Confidence dtype.** LLaDA's ``generate.py`` (ML-GSAI/LLaDA) and Dream's ``sample_tokens``
  (``generation_utils.py`` of Dream-org/Dream-v0) take the softmax in the logits' own dtype;
  Fast-dLLM v1 (NVlabs/Fast-dLLM ``llada/generate.py``) and dKV-Cache cast to float64 first.
* **Ties.** All of them select with ``torch.topk``, whose choice among equal values is an
  implementation detail of the kernel: it depends on the row's length and layout. So the official
  choice is reproduced only by calling ``torch.topk`` on exactly the tensor the official code passes:
  LLaDA one 1-D row at a time over the whole sequence, Dream the whole ``[B, L]`` batch at once,
  Fast-dLLM's caches only the positions they run (from the block start, or the block alone).

``NUMERICS``:

* ``"official"`` (default): LLaDA / Dream ``generate`` as published (softmax in the logits' dtype,
  ``torch.topk`` on the full row / batch);
* ``"fast-dllm"``: Fast-dLLM v1's ``get_transfer_index`` (float64 softmax, ``torch.topk`` on the rows
  its cache mode runs, threshold rule "top-1 of a full sort, plus every position >= threshold");
* ``"stable"`` [ours]: float64 softmax and a deterministic rule, highest confidence then lowest
  position, independent of the kernel, the row length and the batch layout.
"""

from __future__ import annotations

import torch

from .commit import top_confidence_positions

NUMERICS = ("official", "fast-dllm", "stable")
SELECTION_WINDOWS = ("sequence", "from-block", "block")


def check_numerics(numerics: str) -> str:
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {NUMERICS}, got {numerics!r}")
    return numerics


def confidence_dtype(numerics: str, logits_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the softmax behind the confidences."""
    return logits_dtype if check_numerics(numerics) == "official" else torch.float64


def window_bounds(window: str, length: int, block_start: int, block_end: int) -> tuple[int, int]:
    """Columns ``[lo, hi)`` that the official code hands to ``torch.topk``."""
    if window == "sequence":
        return 0, length
    if window == "from-block":
        return block_start, length
    if window == "block":
        return block_start, block_end
    raise ValueError(f"selection window must be one of {SELECTION_WINDOWS}, got {window!r}")


def _topk_rows(confidence: torch.Tensor, counts: torch.Tensor, lo: int, hi: int, batched: bool) -> torch.Tensor:
    transfer = torch.zeros_like(confidence, dtype=torch.bool)
    ks = [int(k) for k in counts]
    if batched and len(set(ks)) == 1:  # Dream: one topk over the whole batch
        if ks[0] > 0:
            index = torch.topk(confidence[:, lo:hi], ks[0]).indices + lo
            transfer.scatter_(1, index, True)
        return transfer
    for row, k in enumerate(ks):  # LLaDA: one 1-D topk per row
        index = torch.topk(confidence[row, lo:hi], k=k).indices + lo
        transfer[row, index] = True
    return transfer


def select_top(
    confidence: torch.Tensor,
    counts: torch.Tensor,
    numerics: str,
    *,
    family: str = "llada",
    bounds: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bool ``[B, L]``: per row the ``counts[b]`` positions to commit.

    ``official``/``fast-dllm``: ``torch.topk`` exactly as the official code calls it (per 1-D row for
    LLaDA and Fast-dLLM, batched for Dream) on the columns ``bounds``; like the originals it may pick a
    ``-inf`` position when a row asks for more positions than it has candidates. ``stable``: highest
    confidence, lowest position on ties; never a ``-inf`` position.
    """
    if check_numerics(numerics) == "stable":
        return top_confidence_positions(confidence, counts)
    lo, hi = bounds if bounds is not None else (0, confidence.shape[1])
    return _topk_rows(confidence, counts, lo, hi, batched=family == "dream" and numerics == "official")


def select_threshold(
    confidence: torch.Tensor,
    candidates: torch.Tensor,
    threshold: float,
    numerics: str,
    *,
    bounds: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Fast-dLLM parallel decoding: per row the best candidate plus every candidate with confidence
    ``>= threshold``; rows without candidates commit nothing.

    ``official``/``fast-dllm``: Fast-dLLM v1 sorts all candidates with ``torch.topk`` (k = number of
    candidates) and always keeps the first, so among tied best candidates the kernel's order decides.
    ``stable``: the lowest position among tied best candidates.
    """
    above = (confidence >= threshold) & candidates
    if check_numerics(numerics) == "stable":
        from .schedules import threshold_counts

        return top_confidence_positions(confidence, threshold_counts(confidence, candidates, threshold))
    lo, hi = bounds if bounds is not None else (0, confidence.shape[1])
    transfer = above.clone()
    for row in range(confidence.shape[0]):
        k = int(candidates[row, lo:hi].sum())
        if k == 0:
            continue
        first = int(torch.topk(confidence[row, lo:hi], k=k).indices[0]) + lo
        transfer[row, first] = True
    return transfer
