"""Calibration for the `taocache` strategy: measure, over a few full-step runs, the statistics of
consecutive output deltas at every step (cosine, norm ratio, relative change and the expected
relative error of forecasting one step), and derive the error threshold from them.

    cal = diffaccel.taocache.calibrate(pipe, runs=[dict(num_inference_steps=50, generator=g) for g in gens])
    print(cal.table())
    pipe = diffaccel.wrap(pipe, cal.config(start_frac=0.5, skip_share=0.5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .api import engines, unwrap, wrap
from .strategies.taocache import TaoCache, TaoCacheConfig

__all__ = ["TaoCacheCalibration", "TaoCacheConfig", "calibrate"]


@dataclass
class TaoCacheCalibration:
    """Per-step delta statistics of full-step runs: step → list of (cos, ratio, change, error) over runs."""

    checks: dict[int, list[tuple[float, float, float, float]]]
    num_steps: int

    def table(self) -> str:
        lines = ["step   cos (median)  ratio (median)  change (median)  error (median / max)"]
        for n in sorted(self.checks):
            cos, rho, change, err = (np.array(col) for col in zip(*self.checks[n]))
            lines.append(f"{n:>4}   {np.median(cos):>12.4f}  {np.median(rho):>14.4f}  {np.median(change):>15.5f}  "
                         f"{np.median(err):.5f} / {err.max():.5f}")
        return "\n".join(lines)

    def config(self, start_frac: float = 0.5, skip_share: float = 0.5, max_skips: int = 2) -> TaoCacheConfig:
        """A config whose `error_threshold` is the `skip_share` quantile of the expected one-step errors
        measured from step ceil(start_frac · T) on [ours]: about that share of late checks then allow
        at least one forecast step."""
        start = math.ceil(start_frac * self.num_steps)
        late = [e for n in sorted(self.checks) if n >= start for *_, e in self.checks[n]]
        if not late:
            raise ValueError(f"no statistics from step {start} on; calibrate with more steps or a smaller start_frac")
        return TaoCacheConfig(start_frac=start_frac, error_threshold=float(np.quantile(late, skip_share)),
                              max_skips=max_skips)


def calibrate(obj, runs: Sequence[dict | Callable[[], Any]], num_steps: int | None = None) -> TaoCacheCalibration:
    """Run `obj` once per entry of `runs` (keyword arguments of a pipeline call, or callables for
    hand-written loops) with every step computed, and collect the delta statistics."""
    probe = TaoCacheConfig(start_step=1, error_threshold=-1.0)  # records every check, never forecasts
    wrap(obj, probe)
    checks: dict[int, list[tuple[float, float, float, float]]] = {}
    steps = 0
    try:
        for run in runs:
            run() if callable(run) else obj(**run)
            for engine in engines(obj).values():
                steps = max(steps, engine.stats.steps)
                for strategy in engine.strategies:
                    if isinstance(strategy, TaoCache):
                        for n, *values in strategy.checks_log:
                            checks.setdefault(n, []).append(tuple(values))
                        strategy.checks_log.clear()
    finally:
        unwrap(obj)
    if not checks:
        raise ValueError("calibration saw no consecutive deltas: give runs with at least 3 steps")
    return TaoCacheCalibration(checks, num_steps or steps)
