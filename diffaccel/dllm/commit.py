"""The one commit rule every sampler and acceleration shares (LLaDA's `generate.py`; one shared rule is ours, docs/methods.md).

``torch.topk`` leaves tie-breaking unspecified, so equality tests between a reference and an
accelerated decoder would be meaningless with it. Here ties are broken deterministically:
highest confidence first, then lowest position index (a stable descending sort).
"""

from __future__ import annotations

import torch


def top_confidence_positions(confidence: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool ``[B, L]``: per row the ``counts[b]`` positions with the highest confidence.

    Ties go to the lowest index. Positions with confidence ``-inf`` are never selected (they are
    not candidates), even if a row asks for more positions than it has candidates.
    """
    order = torch.sort(confidence, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(confidence.shape[1], device=confidence.device).expand_as(order).contiguous())
    return (rank < counts.to(rank.device)[:, None]) & (confidence > float("-inf"))


def best_position(confidence: torch.Tensor) -> torch.Tensor:
    """``[B]`` index of the highest confidence per row, lowest index on ties (same rule as above)."""
    return torch.sort(confidence, dim=1, descending=True, stable=True).indices[:, 0]


def commit(x: torch.Tensor, proposals: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """Write the proposed tokens at the ``transfer`` positions; everything else stays."""
    return torch.where(transfer, proposals, x)
