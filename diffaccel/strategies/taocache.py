"""TaoCache slot: late-stage fixed-point prediction of the whole denoiser output.

What is public of TaoCache (arXiv 2508.08978, its abstract and introduction): a training-free cache that
predicts the model's noise output from a fixed-point perspective, is effective in *late* steps,
and decides by calibrating cosine similarities and norm ratios of consecutive noise deltas. The
paper's prediction formula, decision rule, thresholds and step range are NOT PUBLIC, so
everything below is OUR design (docs/methods.md), and named `taocache`
only because it fills that method's slot:

* unit: the whole denoiser output (any model, even one no block adapter knows), per guidance
  context; the decision for a step is made once, by the first context to reach it;
* the sequence used by the sampler, u_n (computed, or forecast), and its deltas d_n = u_n − u_{n−1};
* at step n ≥ start, after a computed step, the freshest two deltas give cos, ρ and the relative
  change r = ‖d‖/‖u‖; the expected relative error of forecasting one step is
  e = r · ρ · √(1 − cos²) (`forecast/fixed_point.py`); up to min(`max_skips`, ⌊`error_threshold`/e⌋)
  following steps are forecast as u + d(κ + … + κʲ), κ = cos · ρ clamped to [0, `max_ratio`];
* a computed step after a forecast streak measures its delta against the forecast the sampler
  used, so the next decision checks that the real output still follows the model.

Defaults were calibrated on the `flux-photos` zoo model with `diffaccel.taocache.calibrate` (README).

Calibration (`calibrate`, public as `diffaccel.taocache.calibrate`) measures, over a few full-step runs, the
statistics of consecutive output deltas at every step (cosine, norm ratio, relative change and the expected
relative error of forecasting one step), and derives the error threshold from them:

    cal = diffaccel.taocache.calibrate(pipe, runs=[dict(num_inference_steps=50, generator=g) for g in gens])
    print(cal.table())
    pipe = diffaccel.wrap(pipe, cal.config(start_frac=0.5, skip_share=0.5))

The records live in the calibration: a production run keeps none (`TaoCache.on_check` is unset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.clock import StepInfo
from ..core.ranks import agreed_sum, distributed
from ..forecast.fixed_point import (
    cosine_and_ratios,
    delta_cosine,
    delta_ratio,
    delta_sums,
    fixed_point_forecast,
    projection_rate,
    skip_error,
)
from .base import StrategyConfig, UnitState, UnitStrategy
from .registry import register_strategy


@dataclass
class TaoCacheConfig(StrategyConfig):
    """Options of our TaoCache design (all ours; see the module docstring).

    Attributes:
        start_frac: forecasting is allowed from step ceil(start_frac · T) on (T = the run's steps).
        start_step: an absolute first forecastable step instead (overrides start_frac).
        error_threshold: largest accepted accumulated relative error of a forecast streak
            (the expected error per step is r · ρ · √(1 − cos²)); negative forbids forecasting.
        max_ratio: upper clamp of the geometric rate κ (below 1: contracting to a fixed point).
        max_skips: maximum consecutive forecast steps.
    """

    strategy_name = "taocache"
    tag_fields = ("start_frac", "error_threshold", "max_skips")

    start_frac: float = 0.5
    start_step: int | None = None
    error_threshold: float = 0.025
    max_ratio: float = 0.95
    max_skips: int = 2

    def validate(self) -> None:
        if not isinstance(self.max_skips, int) or isinstance(self.max_skips, bool) or self.max_skips < 0:
            raise ValueError(f"taocache max_skips must be an int >= 0, got {self.max_skips!r}")
        if self.start_step is not None and (not isinstance(self.start_step, int) or self.start_step < 1):
            raise ValueError(f"taocache start_step must be an int >= 1, got {self.start_step!r}")
        for name in ("start_frac", "error_threshold", "max_ratio"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
                raise TypeError(f"taocache option '{name}' must be a number, got {value!r}")
        if not 0.0 <= self.start_frac <= 1.0:
            raise ValueError(f"taocache start_frac must be in [0, 1], got {self.start_frac}")
        if self.max_ratio < 0:
            raise ValueError(f"taocache max_ratio must be >= 0, got {self.max_ratio}")


def _allowed_streak(threshold: float, error: float, max_skips: int) -> int:
    """How many steps may be forecast when each adds `error` and the streak may add `threshold`."""
    if threshold < 0 or not math.isfinite(error):  # a zero previous delta gives no usable rate
        return 0
    if error == 0 or threshold / error >= max_skips:
        return max_skips
    return int(threshold / error)


def _delta_statistics(state: TaoState) -> tuple[float, float, float]:
    """cos and ρ of the freshest two deltas, and the relative change r = ‖d‖/‖u‖. Under torch.distributed
    they come from sums over all ranks, so every rank takes the same decision and the same κ, equal to those
    of one process holding the whole output (core/ranks.py); alone, the single-process arithmetic."""
    if distributed():
        return cosine_and_ratios(agreed_sum(delta_sums(state.delta, state.prev_delta, state.last)))
    return (
        delta_cosine(state.delta, state.prev_delta),
        delta_ratio(state.delta, state.prev_delta),
        delta_ratio(state.delta, state.last),
    )


@dataclass
class TaoState(UnitState):
    last: torch.Tensor | None = None  # u_{n-1}: the output the sampler used at the previous step
    delta: torch.Tensor | None = None  # d_{n-1}
    prev_delta: torch.Tensor | None = None  # d_{n-2}
    last_step: int = -1
    last_computed: bool = False
    streak: int = 0  # forecast steps allowed by the last decision
    anchor: torch.Tensor | None = None  # forecast streak: u_a, d_a, ρ, a
    anchor_delta: torch.Tensor | None = None
    anchor_rho: float = 0.0
    anchor_step: int = -1

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size()
            for t in (self.last, self.delta, self.prev_delta, self.anchor, self.anchor_delta)
            if t is not None
        )


class TaoCache(UnitStrategy):
    config: TaoCacheConfig
    unit_level = "model"

    def __init__(self, config: TaoCacheConfig):
        super().__init__(config)
        #: called as on_check(step, cos, ratio, relative change, error) at every check; set by `calibrate`
        self.on_check: Callable[..., None] | None = None

    def start(self, step: StepInfo) -> int:
        cfg = self.config
        if cfg.start_step is not None:
            return cfg.start_step
        if step.num_inference_steps is None:
            raise RuntimeError(
                "taocache start_frac needs the run's step count: call the wrapped pipeline, use "
                "`diffaccel.new_run(obj, num_inference_steps=...)`, or set start_step."
            )
        return max(1, math.ceil(cfg.start_frac * step.num_inference_steps))

    def claims(self, step: StepInfo) -> bool:
        return step.index >= self.start(step)

    def new_state(self, unit) -> TaoState:
        return TaoState()

    def must_compute(self, step: StepInfo, state: TaoState) -> bool:
        return not self.clock.decide((id(self), step.index), lambda: self._may_skip(step, state))

    def _may_skip(self, step: StepInfo, state: TaoState) -> bool:
        """The step's decision, made from the state of the first guidance context to reach it."""
        cfg = self.config
        if state.last is None or step.index < self.start(step) or state.last_step != step.index - 1:
            return False
        if not state.last_computed:  # inside a forecast streak
            return step.index - state.anchor_step <= state.streak
        if cfg.max_skips == 0 or state.delta is None or state.prev_delta is None:
            return False
        cos, rho, change = _delta_statistics(state)
        error = skip_error(change, cos, rho)
        if self.on_check is not None:
            self.on_check(step.index, cos, rho, change, error)
        state.streak = _allowed_streak(cfg.error_threshold, error, cfg.max_skips)
        return state.streak >= 1

    def _push(self, state: TaoState, output: torch.Tensor, step: StepInfo, computed: bool) -> None:
        if state.last is not None and state.last_step == step.index - 1:
            state.prev_delta, state.delta = state.delta, output - state.last
        else:
            state.prev_delta, state.delta = None, None
        state.last, state.last_step, state.last_computed = output, step.index, computed

    def observe(self, state: TaoState, leaves, step: StepInfo) -> None:
        tensors = [t for t in leaves if t is not None]
        if len(tensors) != 1:
            raise TypeError(f"taocache forecasts a denoiser with one output tensor; this one returns {len(tensors)}")
        out = tensors[0].detach()
        self._push(state, out if out.dtype == torch.float64 else out.float(), step, computed=True)

    def forecast(self, state: TaoState, step: StepInfo):
        if state.last_computed:  # a streak starts: anchor on this context's own last output and delta
            if state.delta is None or state.prev_delta is None:
                raise RuntimeError(
                    f"taocache: context '{step.context}' has no delta history at step {step.index}; "
                    "all guidance contexts must call the denoiser at every step"
                )
            state.anchor, state.anchor_delta = state.last, state.delta
            cos, rho, _ = _delta_statistics(state)
            kappa = projection_rate(cos, rho)
            state.anchor_rho = min(max(kappa, 0.0), self.config.max_ratio)
            state.anchor_step = step.index - 1
        out = fixed_point_forecast(state.anchor, state.anchor_delta, state.anchor_rho, step.index - state.anchor_step)
        self._push(state, out, step, computed=False)
        return [out]


# ----------------------------------------------------------------------------------------- calibration
@dataclass
class TaoCacheCalibration:
    """Per-step delta statistics of full-step runs: step → list of (cos, ratio, change, error) over runs."""

    checks: dict[int, list[tuple[float, float, float, float]]]
    num_steps: int

    def table(self) -> str:
        lines = ["step   cos (median)  ratio (median)  change (median)  error (median / max)"]
        for n in sorted(self.checks):
            cos, rho, change, err = (np.array(col) for col in zip(*self.checks[n]))
            lines.append(
                f"{n:>4}   {np.median(cos):>12.4f}  {np.median(rho):>14.4f}  {np.median(change):>15.5f}  "
                f"{np.median(err):.5f} / {err.max():.5f}"
            )
        return "\n".join(lines)

    def config(self, start_frac: float = 0.5, skip_share: float = 0.5, max_skips: int = 2) -> TaoCacheConfig:
        """A config whose `error_threshold` is the `skip_share` quantile of the expected one-step errors
        measured from step ceil(start_frac · T) on [ours]: about that share of late checks then allow
        at least one forecast step."""
        start = math.ceil(start_frac * self.num_steps)
        late = [e for n in sorted(self.checks) if n >= start for *_, e in self.checks[n]]
        if not late:
            raise ValueError(f"no statistics from step {start} on; calibrate with more steps or a smaller start_frac")
        return TaoCacheConfig(
            start_frac=start_frac, error_threshold=float(np.quantile(late, skip_share)), max_skips=max_skips
        )


def calibrate(obj, runs: Sequence[dict | Callable[[], Any]], num_steps: int | None = None) -> TaoCacheCalibration:
    """Run `obj` once per entry of `runs` (keyword arguments of a pipeline call, or callables for
    hand-written loops) with every step computed, and collect the delta statistics."""
    from ..api import engines, unwrap, wrap

    probe = TaoCacheConfig(start_step=1, error_threshold=-1.0)  # records every check, never forecasts
    wrap(obj, probe)
    checks: dict[int, list[tuple[float, float, float, float]]] = {}

    def record(n: int, *values: float) -> None:
        checks.setdefault(n, []).append(values)

    steps = 0
    try:
        for strategy in (s for e in engines(obj).values() for s in e.strategies if isinstance(s, TaoCache)):
            strategy.on_check = record
        for run in runs:
            run() if callable(run) else obj(**run)
            steps = max([steps] + [engine.stats.steps for engine in engines(obj).values()])
    finally:
        unwrap(obj)
    if not checks:
        raise ValueError("calibration saw no consecutive deltas: give runs with at least 3 steps")
    return TaoCacheCalibration(checks, num_steps or steps)


register_strategy(TaoCacheConfig, TaoCache, "late-stage fixed-point forecast of the whole denoiser output (ours)")
