"""A BAC schedule: each cache unit's update steps for runs of a fixed number of steps, plus what they
were computed from (the per-unit Adaptive Caching Scheduler result before the Bubbling Union, the
reuse-error proxy, layer indices). Saved as JSON, written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from ..core.atomic import atomic_write_text

FORMAT = "diffaccel.bac-schedule/1"


@dataclass
class BacSchedule:
    model_class: str
    num_steps: int
    updates: dict[str, list[int]]  # unit -> update steps (what runs use)
    acs: dict[str, list[int]] = field(default_factory=dict)  # unit -> DP result before the union
    errors: dict[str, float] = field(default_factory=dict)  # unit -> reuse-error proxy
    layers: dict[str, int] = field(default_factory=dict)
    union_units: list[str] = field(default_factory=list)  # units that took the union
    config: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps({"format": FORMAT, **asdict(self)}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> BacSchedule:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"{path} is not a BAC schedule ({FORMAT})")
        return cls(**data)

    def computed_fraction(self) -> float:
        """Share of unit calls that compute (unweighted by FLOPs)."""
        if not self.updates:
            return 1.0
        return sum(len(s) for s in self.updates.values()) / (len(self.updates) * self.num_steps)
