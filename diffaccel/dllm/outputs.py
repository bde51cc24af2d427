"""Output container shared by the dLLM model ports."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DiffusionLMOutput:
    """``logits`` ``[B, L, V]`` for the tokens that were run (no shift applied; Dream's raw logits
    predict the next token, the sampler re-aligns them, as Dream's `generation_utils.py`)."""

    logits: torch.Tensor
    computed_tokens: int | None = None
    """How many (row, position) query tokens the transformer actually ran; ``None`` means all of
    ``logits``. Subset forwards (KV caches) report fewer."""
