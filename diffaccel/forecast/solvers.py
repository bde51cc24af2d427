"""HyCa's solver pool: ways to forecast a cached feature from the full steps computed so far.

HyCa (arXiv 2510.04188) names a pool of ODE solvers (Runge–Kutta, Adams–Bashforth, Taylor,
BDF, Adams–Moulton) but its formulas are NOT PUBLIC (HyCa, arXiv 2510.04188, publishes no code). On cached data no
solver can evaluate the vector field, so every solver here works from finite-difference
surrogates of the derivative over the history of full steps. The pool and formulas are OURS
(docs/methods.md), except `tf1`/`tf2`, which are TaylorSeer's official recursion:

* `reuse`: the last full output (FORA).
* `tf1`, `tf2`: TaylorSeer of order 1 / 2 (official factors, `taylor_utils` in Shenyi-Z/TaylorSeer).
* `ab2`: Newton backward extrapolation through the last three full steps with true divided
  differences at their real step positions (equal to AB2 with midpoint-placed derivative
  surrogates; ours).
* `damped`: the last full output plus half of the first-order Taylor term, a conservative step for
  oscillating channels.

Every solver maps `(history, offset)` to a forecast; `history` keeps the TaylorSeer factors and the
last three full outputs with their step indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .taylor import taylor_forecast, taylor_update

#: highest Taylor order any solver needs
MAX_TAYLOR_ORDER = 2


@dataclass
class History:
    """What the solvers forecast from: official TaylorSeer factors and the last full outputs."""

    factors: list[torch.Tensor] | None = None
    outputs: list[torch.Tensor] = field(default_factory=list)  # newest first
    steps: list[int] = field(default_factory=list)  # newest first

    def update(self, fresh: torch.Tensor, step: int, derivatives_enabled: bool, depth: int = 3) -> None:
        gap = step - self.steps[0] if self.steps else 0
        self.factors = taylor_update(self.factors, fresh, gap, MAX_TAYLOR_ORDER, derivatives_enabled)
        self.outputs = [fresh] + self.outputs[: depth - 1]
        self.steps = [step] + self.steps[: depth - 1]

    def nbytes(self) -> int:
        tensors = (self.factors or []) + self.outputs
        return sum(t.numel() * t.element_size() for t in tensors)


def reuse(h: History, offset: int) -> torch.Tensor:
    return h.outputs[0]


def tf1(h: History, offset: int) -> torch.Tensor:
    return taylor_forecast(h.factors[:2], offset)


def tf2(h: History, offset: int) -> torch.Tensor:
    return taylor_forecast(h.factors[:3], offset)


def ab2(h: History, offset: int) -> torch.Tensor:
    """Newton backward quadratic through the last three full steps (fewer when fewer exist)."""
    if len(h.outputs) < 2:
        return h.outputs[0]
    t = h.steps[0] + offset
    (f0, f1), (x0, x1) = h.outputs[:2], h.steps[:2]
    d01 = (f0 - f1) / (x0 - x1)
    out = f0 + d01 * (t - x0)
    if len(h.outputs) >= 3:
        f2, x2 = h.outputs[2], h.steps[2]
        d12 = (f1 - f2) / (x1 - x2)
        out = out + (d01 - d12) / (x0 - x2) * ((t - x0) * (t - x1))
    return out


def damped(h: History, offset: int) -> torch.Tensor:
    if h.factors is None or len(h.factors) < 2:
        return h.outputs[0]
    return h.outputs[0] + 0.5 * offset * h.factors[1]


SOLVERS: dict[str, Callable[[History, int], torch.Tensor]] = {
    "reuse": reuse,
    "tf1": tf1,
    "tf2": tf2,
    "ab2": ab2,
    "damped": damped,
}


def solver(name: str) -> Callable[[History, int], torch.Tensor]:
    if name not in SOLVERS:
        raise ValueError(f"unknown HyCa solver '{name}'; the pool is {sorted(SOLVERS)}")
    return SOLVERS[name]
