"""How many masked tokens to commit at each denoising step (LLaDA's `get_num_transfer_tokens`, Dream's timesteps, Fast-dLLM's threshold).

Pure functions over tensors, unit-tested against hand-computed schedules.
"""

from __future__ import annotations

import torch


def get_num_transfer_tokens(block_mask: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's linear schedule: ``[B, steps]`` counts that unmask every masked token of a block.

    ``block_mask`` ``[B, block_length]`` marks masked positions. With ``m`` masks, ``base = m // steps``
    and ``r = m % steps``: the first ``r`` steps unmask ``base + 1`` tokens, the rest ``base``.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    masked = block_mask.sum(dim=1, keepdim=True).long()
    base, remainder = masked // steps, masked % steps
    counts = base.expand(-1, steps).clone()
    counts += (torch.arange(steps, device=block_mask.device)[None, :] < remainder).long()
    return counts


def dream_timesteps(steps: int, eps: float, device=None) -> torch.Tensor:
    """Dream's ``linspace(1, eps, steps + 1)`` (float32, as the native sampler)."""
    return torch.linspace(1, eps, steps + 1, device=device)


def dream_transfer_count(num_mask: torch.Tensor, step: int, steps: int, timesteps: torch.Tensor) -> int:
    """Dream's native count ``int(num_mask * (1 - s/t))``, all remaining masks at the last step.

    ``num_mask`` is the batch-averaged number of masks (a float tensor), as in Dream's ``_sample``;
    ``int()`` floors, which is why step 0 commits nothing when ``steps == gen_length`` (Dream's ``_sample``).
    """
    if step == steps - 1:
        return int(num_mask)
    t, s = timesteps[step], timesteps[step + 1]
    return int(num_mask * (1 - s / t))


def dream_transfer_probability(step: int, steps: int, timesteps: torch.Tensor) -> torch.Tensor | float:
    """Per-position unmasking probability ``1 - s/t`` of Dream's ``origin`` order (1 at the last step)."""
    if step == steps - 1:
        return 1.0
    t, s = timesteps[step], timesteps[step + 1]
    return 1 - s / t


def threshold_counts(confidence: torch.Tensor, candidates: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fast-dLLM parallel decoding (NVlabs/Fast-dLLM): top-1 plus every candidate with confidence >= threshold.

    Returns ``[B]`` counts for :func:`diffaccel.dllm.commit.top_confidence_positions`; the set
    {conf >= threshold} is always a top-m set, so "top-1 union threshold set" is top-``max(1, m)``.
    Rows without candidates commit nothing.
    """
    above = ((confidence >= threshold) & candidates).sum(dim=1)
    available = candidates.sum(dim=1)
    return torch.minimum(torch.clamp(above, min=1), available)
