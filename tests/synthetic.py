"""A synthetic denoiser whose cache unit follows a known trajectory in the step index.

`Trajectory(fn)` is called with `timestep = T - n` at step n; its cache unit returns `fn(n)` (a
float64 tensor), so what a strategy forecasts can be compared with closed forms.
"""

from __future__ import annotations

import torch
from torch import nn

import diffaccel


class TrajectoryUnit(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.calls = 0

    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        self.calls += 1
        return self.fn(n) * torch.ones_like(x)


class Trajectory(nn.Module):
    """Root module: one cache unit `unit`, step index read back from the timestep."""

    total = 1000

    def __init__(self, fn):
        super().__init__()
        self.unit = TrajectoryUnit(fn)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        n = int(round(self.total - float(timestep)))
        return self.unit(x, n)


diffaccel.register_adapter(
    diffaccel.Adapter("trajectory", ("Trajectory",), (diffaccel.UnitSpec(r"unit", "unit"),)), replace=True
)


def run(model: nn.Module, steps: int, batch: int = 1, width: int = 2) -> list[torch.Tensor]:
    """Outputs of `steps` denoising steps (float64, batch × width)."""
    x = torch.zeros(batch, width, dtype=torch.float64)
    return [model(x, torch.tensor(float(Trajectory.total - n))) for n in range(steps)]
