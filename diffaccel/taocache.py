"""Calibration for the `taocache` strategy: measure, over a few full-step runs, the cosine and norm
ratio of consecutive output deltas at every step, and derive thresholds from them.

    cal = diffaccel.taocache.calibrate(pipe, runs=[dict(prompt=p, num_inference_steps=50) for p in prompts])
    print(cal.table())
    pipe = diffaccel.wrap(pipe, cal.config())
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
    """Per-step delta statistics of full-step runs: step → list of (cos, ratio) over runs and contexts."""

    checks: dict[int, list[tuple[float, float]]]
    num_steps: int

    def table(self) -> str:
        lines = ["step  cos(min/median)      ratio(median/max)"]
        for n in sorted(self.checks):
            cos = np.array([c for c, _ in self.checks[n]])
            rho = np.array([r for _, r in self.checks[n]])
            lines.append(f"{n:>4}  {cos.min():.4f} / {np.median(cos):.4f}   {np.median(rho):.4f} / {rho.max():.4f}")
        return "\n".join(lines)

    def config(self, cos_floor: float = 0.9, quantile: float = 0.05, max_skips: int = 2) -> TaoCacheConfig:
        """Thresholds from the statistics [ours]: skipping starts at the first step from which the
        median delta cosine stays ≥ `cos_floor`; `cos_threshold` is the `quantile` of the cosines from
        there on, `max_ratio` the (1 − quantile) quantile of the ratios (at most 1), and
        `ratio_tolerance` the (1 − quantile) quantile of the change of the ratio between steps."""
        steps = sorted(self.checks)
        medians = {n: float(np.median([c for c, _ in self.checks[n]])) for n in steps}
        start = next((n for i, n in enumerate(steps) if all(medians[m] >= cos_floor for m in steps[i:])), None)
        if start is None:
            raise ValueError(f"no late phase with median delta cosine >= {cos_floor}: this model's outputs do not "
                             "settle towards a fixed point; taocache would only hurt it")
        late = [n for n in steps if n >= start]
        cos = np.array([c for n in late for c, _ in self.checks[n]])
        rho = np.array([r for n in late for _, r in self.checks[n]])
        by_step = [np.median([r for _, r in self.checks[n]]) for n in late]
        changes = np.abs(np.diff(by_step)) if len(by_step) > 1 else np.array([0.0])
        return TaoCacheConfig(start_frac=round(start / self.num_steps, 4),
                              cos_threshold=float(np.quantile(cos, quantile)),
                              max_ratio=float(min(1.0, np.quantile(rho, 1 - quantile))),
                              ratio_tolerance=float(np.quantile(changes, 1 - quantile)), max_skips=max_skips)


def calibrate(obj, runs: Sequence[dict | Callable[[], Any]], num_steps: int | None = None) -> TaoCacheCalibration:
    """Run `obj` once per entry of `runs` (keyword arguments of a pipeline call, or callables for
    hand-written loops) with every step computed, and collect the delta statistics."""
    probe = TaoCacheConfig(start_step=1, cos_threshold=math.inf, max_skips=1)  # records checks, never skips
    wrap(obj, probe)
    checks: dict[int, list[tuple[float, float]]] = {}
    steps = 0
    try:
        for run in runs:
            run() if callable(run) else obj(**run)
            for engine in engines(obj).values():
                steps = max(steps, engine.stats.steps)
                for strategy in engine.strategies:
                    if isinstance(strategy, TaoCache):
                        for n, cos, rho in strategy.checks_log:
                            checks.setdefault(n, []).append((cos, rho))
                        strategy.checks_log.clear()
    finally:
        unwrap(obj)
    if not checks:
        raise ValueError("calibration saw no consecutive deltas: give runs with at least 3 steps")
    return TaoCacheCalibration(checks, num_steps or steps)
