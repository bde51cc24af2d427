"""What the LLaDA and Dream ports share as models: the properties the sampler, loaders and hooks read."""

from __future__ import annotations

import torch
from torch import nn


class DiffusionLM(nn.Module):
    """Base of the dLLM ports. A subclass sets ``config`` and keeps the whole computation (embedding
    to logits) in ``self.model``: that inner module is the ``body`` on which K/V-cache subset forwards
    hook, so they sit inside the diffaccel engine's hook on the outer model."""

    config: object
    model: nn.Module

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def body(self) -> nn.Module:
        """The inner module that computes logits from tokens (hook point for subset forwards)."""
        return self.model
