"""BAC calibration: `diffaccel.bac.calibrate(...)` runs one generation with every step computed and
returns the per-unit update schedule, to save and pass to `wrap(obj, "bac", schedule=...)`.

    schedule = diffaccel.bac.calibrate(policy, obs_dict={"obs": obs}, generator=g, path="dp-bac.json")
    diffaccel.wrap(policy, "bac", schedule="dp-bac.json")

    schedule = diffaccel.bac.calibrate(pipe, prompt="a lighthouse", num_inference_steps=50)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from .api import engines, unwrap, wrap
from .strategies.bac import FFN_KINDS, Bac, BacConfig
from .strategies.bac_schedule import BacSchedule

logger = logging.getLogger(__name__)

__all__ = ["FFN_KINDS", "BacConfig", "BacSchedule", "calibrate"]


def calibrate(
    obj,
    run: Callable[[], Any] | None = None,
    *,
    path: str | os.PathLike | None = None,
    options: dict | None = None,
    **call_kwargs,
) -> BacSchedule:
    """Calibrate BAC on `obj` (a pipeline, a policy with `predict_action`, or a model with an adapter).

    Args:
        obj: what you will later wrap with BAC; must not be wrapped now.
        run: a callable performing one generation; by default `obj.predict_action(**call_kwargs)` for
            policies and `obj(**call_kwargs)` otherwise.
        path: if given, the schedule is also saved there (JSON, written atomically).
        options: BAC options (`num_updates`, `top_blocks`, `metric`, `force_last`).
    """
    options = dict(options or {})
    if "schedule" in options or options.get("mode", "optimal") != "optimal":
        raise ValueError("calibrate builds a schedule: do not pass 'schedule' or mode='uniform'")
    wrap(obj, "bac", **options)
    for engine in engines(obj).values():
        for strategy in engine.strategies:
            strategy.explicit_calibration = True
    logger.info("BAC: calibrating on one run with every step computed")
    try:
        if run is not None:
            run()
        elif hasattr(obj, "predict_action"):
            obj.predict_action(**call_kwargs)
        else:
            obj(**call_kwargs)
        strategies = [s for e in engines(obj).values() for s in e.strategies if isinstance(s, Bac)]
        schedules = [s.calibration_result() for s in strategies]
    finally:
        unwrap(obj)
    if len(schedules) != 1:
        raise NotImplementedError("calibrating a pipeline with several wrapped denoisers: calibrate each model alone")
    if path is not None:
        schedules[0].save(path)
    return schedules[0]
