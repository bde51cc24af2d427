"""The `schedule=` option shared by every forecasting strategy, and how its value is read.

| value | full steps | source |
|---|---|---|
| `"uniform"` | the strategy's official interval rule | TaylorSeer's `cal_type` (official code) |
| a list of ints, or `"0|1|2|4|7"` | exactly those steps | ours |
| `"growing"`, `"growing-G"` | all of the first `warmup`, then gaps G, G+1, G+2, ... (G = 2 by default) | ours |
| a path to a `.json` file | a calibrated schedule (`diffaccel.schedules.calibrate`) | ours, chosen with BAC's dynamic programme |
| `"adaptive"` | decided at each step by FBCache's first-block residual test with `threshold` | FBCache / DBCache |

A list, a growing family or a calibrated file given for one step count carries over to another
by where its full steps fall on the noise schedule (see `diffaccel.forecast.schedules.carry_full_steps`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .calibrated import CalibratedSchedule

SCHEDULE_KINDS = ("uniform", "list", "growing", "calibrated", "adaptive")


@dataclass
class ScheduleOptions:
    """Options of a forecasting strategy's step schedule (a mixin of its config).

    Attributes:
        schedule: which steps compute in full: "uniform" (the strategy's official rule, default), a
            list of step indices (in text specs separated by "|"), "growing" / "growing-G" [ours], the
            path of a calibrated schedule file [ours], or "adaptive" (FBCache's first-block test).
        schedule_steps: the step count an explicit list was written for; a run with another count maps
            it by position on the noise schedule (None: the list applies to the run as it is).
        full_budget: with a calibrated file, choose this many full steps again from its measured errors
            (None: the file's own choice).
        threshold: with "adaptive", the largest relative L1 change of the first block's residual since the
            last full step at which a step is still forecast (FBCache's `residual_diff_threshold`); <= 0
            never forecasts.
        guidance_reuse: [FasterCache's CFG cache, simplified] on forecast steps, the second guidance branch
            is not run: it returns the first branch's output plus their difference at the last full step.
    """

    schedule: Any = "uniform"
    schedule_steps: int | None = None
    full_budget: int | None = None
    threshold: float = 0.1
    guidance_reuse: bool = False
    preset: str | None = None

    def validate_schedule(self, strategy_name: str) -> None:
        parse_schedule(self.schedule)
        if self.preset is not None:
            from .presets import check_preset

            check_preset(strategy_name, self.preset)
        if self.schedule_steps is not None and (not isinstance(self.schedule_steps, int) or self.schedule_steps < 1):
            raise ValueError(f"{strategy_name} schedule_steps must be an int >= 1, got {self.schedule_steps!r}")
        if self.full_budget is not None and (not isinstance(self.full_budget, int) or self.full_budget < 1):
            raise ValueError(f"{strategy_name} full_budget must be an int >= 1, got {self.full_budget!r}")
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool):
            raise TypeError(f"{strategy_name} threshold must be a number, got {self.threshold!r}")
        if not isinstance(self.guidance_reuse, bool):
            raise TypeError(f"{strategy_name} guidance_reuse must be true or false, got {self.guidance_reuse!r}")

    @classmethod
    def schedule_option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(ScheduleOptions)]


@dataclass(frozen=True)
class ParsedSchedule:
    kind: str
    steps: tuple[int, ...] = ()
    first_gap: int = 2
    calibrated: CalibratedSchedule | None = None


def parse_schedule(value: Any) -> ParsedSchedule:
    """Read a `schedule=` value; bad values raise with the valid forms."""
    if isinstance(value, CalibratedSchedule):
        return ParsedSchedule("calibrated", calibrated=value)
    if isinstance(value, (list, tuple)):
        return _explicit(value, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _explicit([value], value)
    if isinstance(value, os.PathLike):
        return _calibrated_file(value)
    if not isinstance(value, str):
        raise TypeError(_usage(f"got {type(value).__name__}"))
    text = value.strip()
    if text in ("uniform", "adaptive"):
        return ParsedSchedule(text)
    if text == "growing" or text.startswith("growing-"):
        gap = text.partition("-")[2] or "2"
        if not gap.isdigit() or int(gap) < 1:
            raise ValueError(_usage(f"got {value!r}: the first gap after 'growing-' must be an int >= 1"))
        return ParsedSchedule("growing", first_gap=int(gap))
    if text == "calibrated":
        raise ValueError(
            _usage(
                "'calibrated' needs the file: schedule='path/to/schedule.json', made with "
                "diffaccel.schedules.calibrate(...).save(path)"
            )
        )
    if text.endswith(".json") or os.path.isfile(text):
        return _calibrated_file(text)
    parts = [p for p in text.replace("|", " ").replace(",", " ").split() if p]
    if parts and all(p.isdigit() for p in parts):
        return _explicit([int(p) for p in parts], value)
    raise ValueError(_usage(f"got {value!r}"))


def _calibrated_file(path) -> ParsedSchedule:
    """A calibrated schedule's file; a missing one is a bad option value (found at wrap, like a bad name)."""
    if not os.path.isfile(path):
        raise ValueError(
            f"calibrated schedule file {os.fspath(path)!r} does not exist; make one with "
            "diffaccel.schedules.calibrate(...).save(path)"
        )
    return ParsedSchedule("calibrated", calibrated=CalibratedSchedule.load(path))


def _explicit(steps, value) -> ParsedSchedule:
    if not steps or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in steps):
        raise ValueError(_usage(f"got {value!r}: a list of full steps holds ints >= 0"))
    return ParsedSchedule("list", steps=tuple(sorted(set(steps) | {0})))


def _usage(problem: str) -> str:
    return (
        "schedule must be 'uniform', a list of full steps (text: '0|1|2|4|7'), 'growing' or 'growing-G', "
        f"the path of a calibrated schedule (.json), or 'adaptive'; {problem}"
    )
