"""Late-stage fixed-point forecasting of the denoiser output (our design for TaoCache's slot).

In late denoising steps the model output ε_n settles towards a fixed point: consecutive deltas
d_n = ε_n − ε_{n−1} keep their direction (cos(d_n, d_{n−1}) ≈ 1) and shrink by a steady ratio
ρ = ‖d_n‖/‖d_{n−1}‖ < 1. Then ε_{a+j} ≈ ε_a + d_a (ρ + ρ² + … + ρ^j), a geometric series whose
limit ε_a + d_a ρ/(1 − ρ) is the fixed point. These pure functions are OURS (spec dit-caching
§4.3); TaoCache's own formula is not public (§4.2).
"""

from __future__ import annotations

import torch


def delta_cosine(d_new: torch.Tensor, d_old: torch.Tensor) -> float:
    """Cosine similarity of two deltas, flattened (float64 accumulation)."""
    a, b = d_new.reshape(-1).double(), d_old.reshape(-1).double()
    denom = a.norm() * b.norm()
    return 0.0 if float(denom) == 0.0 else float(a @ b / denom)


def delta_ratio(d_new: torch.Tensor, d_old: torch.Tensor) -> float:
    """‖d_new‖ / ‖d_old‖ (infinity when the old delta is zero and the new one is not)."""
    old, new = float(d_old.double().norm()), float(d_new.double().norm())
    if old == 0.0:
        return 0.0 if new == 0.0 else float("inf")
    return new / old


def geometric_sum(rho: float, steps: int) -> float:
    """ρ + ρ² + … + ρ^steps."""
    return sum(rho**i for i in range(1, steps + 1))


def fixed_point_forecast(anchor: torch.Tensor, delta: torch.Tensor, rho: float, steps: int) -> torch.Tensor:
    """ε_a + d_a (ρ + … + ρ^steps): the output `steps` steps after the anchor."""
    return anchor + delta * geometric_sum(rho, steps)
