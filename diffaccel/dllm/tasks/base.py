"""What the synthetic dLLM tasks share: fixed-length prompts and answers, a seeded held-out set, exact match."""

from __future__ import annotations

import torch


class FixedLengthTask:
    """Mixin for a task whose ``batch(count, generator)`` returns ``(prompts [count, P], answers [count, G])``
    of fixed lengths (so no padding masks are needed)."""

    gen_length: int

    def batch(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def held_out(self, count: int, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
        """A reproducible evaluation set (its own seed, independent of the training stream)."""
        return self.batch(count, torch.Generator().manual_seed(seed))

    def exact_match(self, generated: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Per-row bool: the whole generated answer is correct."""
        return (generated == answers).all(dim=1)
