"""Which denoising steps a forecasting strategy computes in full: the `schedule=` option, calibrated
schedule files and their calibration, error-controlled (adaptive) decisions and guidance reuse.

    schedule = diffaccel.schedules.calibrate(pipe, num_inference_steps=50)   # full-step runs, BAC's DP
    schedule.save("model-50.json")
    diffaccel.wrap(pipe, "taylorseer", schedule="model-50.json")
"""

from .calibrate import calibrate, calibrate_orders, pipeline_generator
from .calibrated import CalibratedSchedule
from .options import ScheduleOptions, parse_schedule

__all__ = [
    "CalibratedSchedule",
    "ScheduleOptions",
    "calibrate",
    "calibrate_orders",
    "parse_schedule",
    "pipeline_generator",
]
