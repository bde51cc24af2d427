"""Late-stage fixed-point forecasting of the denoiser output (our design for TaoCache's slot).

In late denoising steps the model output ε_n settles towards a fixed point. Model the deltas
d_n = ε_n − ε_{n−1} as d_n ≈ κ d_{n−1} + (unpredictable part), with κ = cos(d_n, d_{n−1}) · ρ and
ρ = ‖d_n‖/‖d_{n−1}‖: then ε_{a+j} ≈ ε_a + d_a (κ + κ² + … + κ^j), a geometric series whose limit
ε_a + d_a κ/(1 − κ) is the fixed point. Deltas that keep their direction give κ = ρ; deltas of
unrelated direction give κ = 0, i.e. reuse of the last output. These pure functions are OURS
(docs/methods.md); TaoCache's own formula is not public.
"""

from __future__ import annotations

import math

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


def delta_sums(d_new: torch.Tensor, d_old: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """[d_new·d_old, ‖d_new‖², ‖d_old‖², ‖base‖²] in float64: the sums `cosine_and_ratios` needs. Sums of
    shards (context-parallel ranks) are the sums of the whole tensor, so ranks can add theirs."""
    a, b, u = (t.reshape(-1).double() for t in (d_new, d_old, base))
    return torch.stack([a @ b, a @ a, b @ b, u @ u])


def cosine_and_ratios(sums) -> tuple[float, float, float]:
    """(cos(d_new, d_old), ‖d_new‖/‖d_old‖, ‖d_new‖/‖base‖) from `delta_sums` (possibly summed over ranks),
    with the zero-norm conventions of `delta_cosine` and `delta_ratio`."""
    dot, new, old, base = (float(v) for v in sums)
    denom = math.sqrt(new) * math.sqrt(old)

    def ratio(num: float, den: float) -> float:
        if den == 0.0:
            return 0.0 if num == 0.0 else float("inf")
        return math.sqrt(num) / math.sqrt(den)

    return (0.0 if denom == 0.0 else dot / denom), ratio(new, old), ratio(new, base)


def projection_rate(cos: float, ratio: float) -> float:
    """κ = cos · ρ: the least-squares coefficient of the newest delta on the previous one. It is ρ when
    the deltas keep their direction, and 0 (plain reuse) when their directions are unrelated."""
    return cos * ratio


def skip_error(relative_change: float, cos: float, ratio: float) -> float:
    """Expected relative error of forecasting one more step: ‖d_next − κ d‖ / ‖u‖ ≈ r · ρ · √(1 − cos²),
    with r = ‖d‖/‖u‖ the relative size of the freshest delta. Zero on an exact geometric trajectory."""
    return relative_change * ratio * math.sqrt(max(0.0, 1.0 - cos * cos))


def geometric_sum(rho: float, steps: int) -> float:
    """ρ + ρ² + … + ρ^steps."""
    return sum(rho**i for i in range(1, steps + 1))


def fixed_point_forecast(anchor: torch.Tensor, delta: torch.Tensor, rho: float, steps: int) -> torch.Tensor:
    """ε_a + d_a (ρ + … + ρ^steps): the output `steps` steps after the anchor."""
    return anchor + delta * geometric_sum(rho, steps)
