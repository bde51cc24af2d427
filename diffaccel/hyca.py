"""`diffaccel.hyca`: HyCa profiling, public under this name (it lives in :mod:`diffaccel.strategies.hyca`,
beside the strategy it profiles for)."""

from .strategies.hyca import HyCaConfig, HycaProfile, LeafAssignment, profile

__all__ = ["HyCaConfig", "HycaProfile", "LeafAssignment", "profile"]
