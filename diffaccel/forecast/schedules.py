"""Which denoising steps compute in full.

Besides TaylorSeer's official rule: a growing-gap family, carrying a schedule to another step count
by position on the noise schedule, the predicted-error costs and exact selection behind calibrated
schedules, and FBCache's first-block change test for error-controlled ones.

TaylorSeer's official schedule (`cal_type` / `force_scheduler` in Shenyi-Z/TaylorSeer): a
step is full while `n < warmup` ("first_enhance"), then whenever the skip counter reaches
`interval - 1`, which in closed form is `(n - warmup + 1) % interval == 0`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .step_selection import select_update_steps
from .taylor import taylor_update


def taylorseer_is_full(n: int, interval: int, warmup: int) -> bool:
    """Official TaylorSeer schedule: full iff `n < warmup` or `(n - warmup + 1) % interval == 0`."""
    return n < warmup or (n - warmup + 1) % interval == 0


def taylorseer_full_steps(num_steps: int, interval: int, warmup: int) -> list[int]:
    """All full steps of a run of `num_steps` steps."""
    return [n for n in range(num_steps) if taylorseer_is_full(n, interval, warmup)]


def taylorseer_derivatives_enabled(n: int, warmup: int) -> bool:
    """Official rule for updating finite differences at a full step: only when `n > warmup - 2`.

    With FLUX's warm-up 3 this discards the step-0 → step-1 difference (as the official `derivative_approximation` does).
    """
    return n > warmup - 2


# ------------------------------------------------------------------------------- schedules of ours
def growing_gap_full_steps(num_steps: int, warmup: int, first_gap: int = 2) -> list[int]:
    """[ours] Every one of the first `warmup` steps, then gaps that grow by one: `first_gap`,
    `first_gap + 1`, ... (warm-up 3 at 50 steps: 0, 1, 2, 4, 7, 11, 16, 22, 29, 37, 46).

    Why: the output of a diffusion denoiser changes fastest early in the trajectory and ever more
    slowly later (the observation behind LeMiCa's and EasyCache's non-uniform caching), so a forecast
    can safely run longer the later it starts.
    """
    if num_steps < 1 or warmup < 1 or first_gap < 1:
        raise ValueError(
            f"growing-gap schedule needs num_steps, warmup, first_gap >= 1, got {num_steps}, {warmup}, {first_gap}"
        )
    steps = list(range(min(warmup, num_steps)))
    gap = first_gap
    while steps[-1] + gap < num_steps:
        steps.append(steps[-1] + gap)
        gap += 1
    return steps


def carry_full_steps(source_positions, target_positions) -> list[int]:
    """Map full steps placed at `source_positions` (their timesteps, or any monotone position on the
    noise schedule) onto the run whose steps sit at `target_positions`: each source step lands on the
    target step of nearest position (ties to the earlier step), duplicates merge, and step 0 is
    always full (nothing to forecast from before it).

    This is how a schedule chosen for one step count carries over to another: by where its full steps
    fall on the noise schedule, not by their index.
    """
    target = [float(t) for t in target_positions]
    if not target:
        raise ValueError("the target run has no steps")
    chosen = {0}
    for p in source_positions:
        p = float(p)
        chosen.add(min(range(len(target)), key=lambda j: (abs(target[j] - p), j)))
    return sorted(chosen)


def positions_of_steps(steps, num_steps: int, run_positions) -> list[float]:
    """Positions on the noise schedule of steps given by index for a run of `num_steps` steps, read
    off a run of another length that uses the same scheduler (`run_positions`, one per step).

    Diffusers schedulers place step i of an N-step run at a fixed curve evaluated at i / N (flow
    matching: sigma = shift(1 - i / N); DDIM: t = (N - i) * T / N), so step i of the source run sits
    where the target run's curve is at fraction i / num_steps; we interpolate the target's positions
    linearly in that fraction.
    """
    run = [float(t) for t in run_positions]
    m = len(run)
    out = []
    for s in steps:
        x = float(s) / num_steps * m  # fractional index in the target run
        if x <= 0:
            out.append(run[0])
            continue
        if x >= m - 1:
            # beyond the last step: extrapolate with the last gap (the curve continues to its end)
            last_gap = run[-1] - run[-2] if m > 1 else 0.0
            out.append(run[-1] + (x - (m - 1)) * last_gap)
            continue
        i = int(x)
        out.append(run[i] + (x - i) * (run[i + 1] - run[i]))
    return out


def relative_l1_change(current, reference) -> float:
    """`mean|current - reference| / mean|reference|`: the first-block residual test of FBCache
    (ParaAttention's `apply_cache_on_pipe`, diffusers' `FirstBlockCacheConfig`) and DBCache
    (cache-dit); the step may be forecast when this is below the threshold."""
    ref = reference.abs().mean()
    return float((current - reference).abs().mean() / ref.clamp_min(1e-30))


def l1_change_sums(current, reference):
    """[Σ|current − reference|, Σ|reference|] in float64: `relative_l1_change` is their ratio (both means are
    over the same elements). Sums of shards are the sums of the whole tensor, so ranks can add theirs."""
    return torch.stack([(current - reference).abs().double().sum(), reference.abs().double().sum()])


# -------------------------------------------------------------------------- calibrated (ours)
#: cost of a schedule that forecasts a warm-up step: never chosen
_FORBIDDEN = 1e30


def _earlier_full_steps(a: int, spacing: int, count: int, warmup: int) -> list[int]:
    """The `count` full steps before a, newest first, when full steps are `spacing` apart except in the
    warm-up (where every step is full)."""
    out, n = [], a
    for _ in range(count):
        if n == 0:
            break
        n = n - 1 if n <= warmup - 1 else max(n - spacing, warmup - 1)
        out.append(n)
    return out


def forecast_segment_costs(features, order: int, weights=None, warmup: int = 1) -> np.ndarray:
    """[ours] `C[a, b]`: predicted error of forecasting steps a+1 … b from a full step at a, measured on a
    full-step run. `features` is a list of per-unit tensors of shape [N, ...] (one row per step: what the
    strategy forecasts at its granularity). The forecast is TaylorSeer's of `order`, with its derivatives
    built (as the official code does) from the earlier full steps; those are assumed to be spaced like this
    segment, L = b − a + 1 steps apart (a schedule's gaps change slowly), except inside the warm-up:

        C[a, b] = Σ_{k=a+1..b} w_k · Σ_units ‖F(k) − forecast_a(k − a)‖² / Σ_units ‖F(k)‖²

    `weights` (w_k, default 1) scale each step by how much it moves the sample. A segment that would
    forecast a warm-up step costs `_FORBIDDEN`.
    """
    feats = [f.reshape(f.shape[0], -1).double() for f in features]
    num_steps = feats[0].shape[0]
    if any(f.shape[0] != num_steps for f in feats):
        raise ValueError("every unit needs one feature row per step")
    w = torch.ones(num_steps, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    norms = sum((f**2).sum(1) for f in feats).clamp_min(1e-30)
    costs = np.zeros((num_steps, num_steps))
    for a in range(num_steps):
        for b in range(a + 1, num_steps):
            if a < warmup - 1:
                costs[a, b] = _FORBIDDEN
                continue
            anchors = [a] + _earlier_full_steps(a, b - a + 1, order, warmup)
            offsets = torch.arange(1, b - a + 1, dtype=torch.float64)[:, None]
            total = torch.zeros(b - a, dtype=torch.float64)
            for f in feats:
                factors, last = None, None
                for n in reversed(anchors):  # oldest first, each difference divided by its own gap
                    factors = taylor_update(factors, f[n], 1 if last is None else n - last, order, True)
                    last = n
                pred = sum(d[None, :] * offsets**i / math.factorial(i) for i, d in enumerate(factors))
                total += ((f[a + 1 : b + 1] - pred) ** 2).sum(1)
            costs[a, b] = float((total / norms[a + 1 : b + 1] * w[a + 1 : b + 1]).sum())
    return costs


def select_full_steps(costs, num_full: int) -> list[int]:
    """[ours] The `num_full` full steps minimising the summed segment costs (`forecast_segment_costs`)
    exactly, with BAC's step-selection dynamic programme (`select_update_steps`; Ji et al., arXiv
    2506.13456). Warm-up steps are kept by the costs themselves."""
    costs = np.asarray(costs, dtype=np.float64)
    steps = select_update_steps(np.zeros_like(costs), num_full, maximize=False, segment_cost=costs)
    if predicted_error(costs, steps) >= _FORBIDDEN:
        raise ValueError(f"{num_full} full steps cannot cover the warm-up these costs were measured with")
    return steps


def predicted_error(costs, full_steps) -> float:
    """Σ over the schedule's segments of `C[first step, last step]` (what `select_full_steps` minimises)."""
    costs = np.asarray(costs, dtype=np.float64)
    bounds = sorted(set(full_steps)) + [costs.shape[0]]
    return float(sum(costs[a, b - 1] for a, b in itertools.pairwise(bounds)))
