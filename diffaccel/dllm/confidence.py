"""Candidate tokens and their confidences (LLaDA's `generate.py`, Dream's `generation_utils.py`).

Confidences follow the sampler's ``numerics`` (:mod:`diffaccel.dllm.numerics`): by default the softmax
is taken in the logits' dtype, as LLaDA's ``generate.py`` and Dream's ``sample_tokens`` do; ``"fast-dllm"``
and our ``"stable"`` take it in float64 (as Fast-dLLM v1 and dKV-Cache do). All functions are pure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .numerics import confidence_dtype

LLADA_REMASKING = ("low_confidence", "random", "random_order")
DREAM_ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")


def add_gumbel_noise(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """LLaDA's Gumbel-max trick in float64: ``exp(logits) / (-log u)^T``; logits unchanged at T = 0.

    ``argmax`` of the result is a sample from ``softmax(logits / T)`` (LLaDA's ``add_gumbel_noise``).
    """
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return logits.exp() / (-torch.log(noise)) ** temperature


def llada_propose(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    eot_id: int | None = None,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    order_scores: torch.Tensor | None = None,
    numerics: str = "official",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, confidence)`` per position, ``[B, L]`` each, as LLaDA's ``generate`` computes them.

    * ``low_confidence``: probability of the chosen token under ``softmax(logits)`` (no temperature),
      in the logits' dtype (``numerics="official"``) or float64 (``"fast-dllm"``, ``"stable"``).
    * ``random``: uniform float32 scores drawn after the token (same RNG order as the reference).
    * ``random_order``: scores fixed in advance for the whole block (``order_scores``), so the commit
      order is known before the forward; dKV-Cache-Greedy needs this (dKV-Cache, arXiv 2505.15781).
    * ``confidence_eos_eot_inf``: as the reference computes it: EoT always gets probability 0; EOS too
      at temperature 0 only, because the reference writes EOS's ``-inf`` into the noisy logits, which
      are the logits themselves only at temperature 0 (with ``numerics="stable"``: both, always).
    """
    if remasking not in LLADA_REMASKING:
        raise ValueError(f"remasking must be one of {LLADA_REMASKING}, got {remasking!r}")
    if logits_eos_inf:
        if eos_id is None:
            raise ValueError("logits_eos_inf needs an eos id")
        logits = logits.clone()
        logits[..., eos_id] = float("-inf")
    x0 = torch.argmax(add_gumbel_noise(logits, temperature, generator), dim=-1)
    if remasking == "low_confidence":
        if confidence_eos_eot_inf:
            logits = logits.clone()
            zeroed = (eos_id, eot_id) if temperature == 0 or numerics == "stable" else (eot_id,)
            for token in zeroed:
                if token is not None:
                    logits[..., token] = float("-inf")
        probs = F.softmax(logits.to(confidence_dtype(numerics, logits.dtype)), dim=-1)
        confidence = torch.gather(probs, -1, x0[..., None]).squeeze(-1)
    elif remasking == "random":
        # float32 draws, as the reference (``torch.rand((B, L))``), so seeded runs match it
        confidence = torch.rand(x0.shape, device=x0.device, generator=generator)
        if numerics == "stable":
            confidence = confidence.to(torch.float64)
    else:
        if order_scores is None:
            raise ValueError("remasking='random_order' needs the block's order_scores")
        confidence = order_scores.to(torch.float64)
    return x0, confidence


def top_k_logits(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the ``top_k`` largest logits per row, the rest the dtype's lowest value (as Dream's sampler)."""
    top_k = min(top_k, logits.shape[-1])
    threshold = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, torch.finfo(logits.dtype).min)


def top_p_logits(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: drop tokens outside the smallest set with cumulative probability > top_p."""
    sorted_logits, sorted_index = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    remove_sorted = cumulative > top_p
    remove_sorted[..., 1:] = remove_sorted[..., :-1].clone()
    remove_sorted[..., 0] = False
    remove = torch.zeros_like(remove_sorted).scatter(-1, sorted_index, remove_sorted)
    return logits.masked_fill(remove, torch.finfo(logits.dtype).min)


def dream_sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    alg: str = "maskgit_plus",
    generator: torch.Generator | None = None,
    numerics: str = "official",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dream's ``sample_tokens`` on ``[n, V]`` logits: returns ``(confidence, x0)``.

    ``maskgit_plus``/``origin``: probability of the token; ``topk_margin``: p(top1) - p(top2);
    ``entropy``: sum p log p (negative entropy, larger = more certain). The softmax is in the logits'
    dtype (``numerics="official"``, as Dream) or float64. At temperature > 0 the token is drawn as
    ``torch.distributions.Categorical(probs=probs).sample()`` draws it: from the renormalised
    probabilities, one ``torch.multinomial`` call with replacement.
    """
    if alg not in DREAM_ALGS:
        raise ValueError(f"alg must be one of {DREAM_ALGS}, got {alg!r}")
    logits = logits.to(confidence_dtype(numerics, logits.dtype))
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_logits(logits, top_p)
    if top_k is not None:
        logits = top_k_logits(logits, top_k)
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        normalised = probs / probs.sum(-1, keepdim=True)
        x0 = (
            torch.multinomial(normalised, 1, replacement=True, generator=generator).squeeze(-1)
            if probs.numel()
            else probs.new_zeros(0, dtype=torch.long)
        )
        confidence = torch.gather(probs, -1, x0[:, None]).squeeze(-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if alg == "topk_margin":
        top2 = torch.topk(probs, 2, dim=-1).values
        confidence = top2[:, 0] - top2[:, 1]
    elif alg == "entropy":
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    return confidence, x0


def dream_propose(
    logits: torch.Tensor, masked: torch.Tensor, mask_id: int = -1, **sampling
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, confidence)`` ``[B, L]`` for the masked positions (others: x0 = ``mask_id``, confidence -inf).

    ``sampling``: the keyword options of :func:`dream_sample_tokens` (``temperature``, ``top_p``,
    ``top_k``, ``alg``, ``generator``, ``numerics``). Only masked rows are sampled, in row-major order,
    as Dream's ``_sample`` does (RNG parity).
    """
    confidence_m, x0_m = dream_sample_tokens(logits[masked], **sampling)
    # unmasked positions propose the mask id, as Dream's ``x_`` does: should a selection ever land on
    # one (its count exceeding a row's masks), the original re-masks it, and so do we
    x0 = torch.full(masked.shape, mask_id, dtype=torch.long, device=logits.device)
    confidence = torch.full(masked.shape, float("-inf"), dtype=confidence_m.dtype, device=logits.device)
    x0[masked] = x0_m
    confidence[masked] = confidence_m
    return x0, confidence


def shift_logits(logits: torch.Tensor) -> torch.Tensor:
    """Dream re-alignment: row ``i`` takes the output at ``i - 1`` (row 0 is a dummy copy), as Dream's `generation_utils.py` shifts its logits."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
