"""TaylorSeer's finite-difference factors and Taylor forecast (`derivative_approximation` / `taylor_formula` in Shenyi-Z/TaylorSeer).

Factors are `[F, D¹, …, D^m_eff]`. At a full step the fresh output replaces `F` and each
derivative is the difference of the new and old lower-order factor divided by the *latest* gap
between full steps (the official rule, which is not a true divided difference when gaps vary).
At a skipped step `k` steps after the last full one the forecast is `Σ_i D^i k^i / i!`.
"""

from __future__ import annotations

import math

import torch


def taylor_update(
    old: list[torch.Tensor] | None,
    fresh: torch.Tensor,
    gap: int,
    max_order: int,
    derivatives_enabled: bool,
) -> list[torch.Tensor]:
    """Return the new factor list after a full step that produced `fresh`.

    `old` is the factor list from the previous full step (None at the first), `gap` the number of
    steps since that full step. The effective order grows by one per full step up to `max_order`.
    """
    new = [fresh]
    if old is None or not derivatives_enabled:
        return new
    if gap <= 0:
        raise ValueError(f"gap between full steps must be positive, got {gap}")
    for i in range(min(max_order, len(old))):
        difference = torch.sub(new[i], old[i])
        new.append(difference if gap == 1 else difference.div_(gap))
    return new


def taylor_forecast(factors: list[torch.Tensor], offset: int) -> torch.Tensor:
    """Truncated Taylor series `Σ_i factors[i] · offset^i / i!` (offset in steps, ≥ 1)."""
    if len(factors) == 1:
        return factors[0]
    # one fused multiply-add pass per order: on skipped steps this is all the unit costs
    out = torch.add(factors[0], factors[1], alpha=offset)
    for i in range(2, len(factors)):
        out.add_(factors[i], alpha=offset**i / math.factorial(i))
    return out
