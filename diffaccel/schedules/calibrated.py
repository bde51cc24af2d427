"""A calibrated schedule on disk: which steps to compute, and the measurements it was chosen from.

Made by `diffaccel.schedules.calibrate` from full-step runs; loaded by any forecasting strategy with
`schedule="path.json"`. The file is JSON (small: an N×N matrix of predicted errors), written atomically.
It keeps the timesteps of the calibration run so that a run with another step count maps the full
steps by where they fall on the noise schedule (`carry_full_steps`), and the error matrix so that
another budget of full steps can be chosen again without recalibrating.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..core.atomic import atomic_write_bytes
from ..forecast.schedules import predicted_error, select_full_steps

FORMAT = "diffaccel.calibrated-schedule/1"


@dataclass
class CalibratedSchedule:
    """Attributes:
    model_class: the denoiser's class name (a schedule is a property of one model).
    num_steps: the step count of the calibration runs.
    guidance_scale: the guidance scale of the calibration runs (None when unknown).
    timesteps: the scheduler's timesteps of the calibration runs (one per step).
    full_steps: the chosen full steps (indices into the calibration run).
    errors: C[a][b], the predicted error of forecasting steps a+1 … b from a full step at a
        (`forecast_segment_costs`), averaged over the calibration runs and guidance branches.
    forecaster: what the errors were measured for: strategy, order, granularity, warm-up.
    """

    model_class: str
    num_steps: int
    guidance_scale: float | None
    timesteps: list[float]
    full_steps: list[int]
    errors: list[list[float]]
    forecaster: dict = field(default_factory=dict)

    def with_budget(self, num_full: int) -> CalibratedSchedule:
        """The same measurements with another number of full steps, chosen again exactly."""
        steps = select_full_steps(self.errors, num_full)
        return CalibratedSchedule(**{**asdict(self), "full_steps": steps})

    @property
    def predicted_error(self) -> float:
        return predicted_error(self.errors, self.full_steps)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, (json.dumps({"format": FORMAT, **asdict(self)}, indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibratedSchedule:
        try:
            with open(path, encoding="utf-8") as handle:
                payload = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"calibrated schedule file {os.fspath(path)!r} does not exist; make one with "
                "diffaccel.schedules.calibrate(...).save(path)"
            ) from None
        if payload.pop("format", None) != FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a diffaccel calibrated schedule (format {FORMAT})")
        schedule = cls(**payload)
        if len(schedule.timesteps) != schedule.num_steps or len(schedule.errors) != schedule.num_steps:
            raise ValueError(f"{os.fspath(path)!r}: timesteps and errors must have one entry per step")
        return schedule
