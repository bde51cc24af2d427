"""`diffaccel.taocache`: TaoCache's calibration helper, public under this name (it lives in
:mod:`diffaccel.strategies.taocache`, beside the strategy it calibrates)."""

from .strategies.taocache import TaoCacheCalibration, TaoCacheConfig, calibrate

__all__ = ["TaoCacheCalibration", "TaoCacheConfig", "calibrate"]
