"""What the synthetic dLLM tasks share: fixed-length prompts and answers, a seeded held-out set, exact match."""

from __future__ import annotations

from dataclasses import asdict

import torch


def masked_accuracy(predicted: torch.Tensor, answers: torch.Tensor, counted: torch.Tensor) -> float:
    """Share of the ``counted`` answer tokens that ``predicted`` gets right (0 counted: 0.0)."""
    return ((predicted == answers) & counted).sum().item() / max(1, counted.sum().item())


class FixedLengthTask:
    """Mixin for a task whose ``batch(count, generator)`` returns ``(prompts [count, P], answers [count, G])``
    of fixed lengths (so no padding masks are needed)."""

    gen_length: int
    name: str  # the ``diffaccel_task`` name of the task (class attribute)

    def batch(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def held_out(self, count: int, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
        """A reproducible evaluation set (its own seed, independent of the training stream)."""
        return self.batch(count, torch.Generator().manual_seed(seed))

    def exact_match(self, generated: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Per-row bool: the whole generated answer is correct."""
        return (generated == answers).all(dim=1)

    def describe(self) -> dict:
        """The ``diffaccel_task`` entry of a zoo folder: the task's name, fields and prompt length."""
        return {"name": self.name, **asdict(self), "prompt_length": self.prompt_length}
