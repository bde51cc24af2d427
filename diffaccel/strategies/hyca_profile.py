"""A HyCa profile: per cache unit and output tensor, the cluster of every channel and the solver of
every cluster. Saved as safetensors (labels as tensors, the rest as JSON metadata)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.atomic import atomic_write


@dataclass
class LeafAssignment:
    labels: np.ndarray  # cluster of each channel
    solvers: list[str]  # solver of each cluster

    @property
    def solver_set(self) -> list[str]:
        """Distinct solvers in use, in cluster order."""
        return list(dict.fromkeys(self.solvers))


@dataclass
class HycaProfile:
    model_class: str
    units: dict[str, list[LeafAssignment | None]]
    config: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        tensors, layout = {}, {}
        for unit, leaves in self.units.items():
            layout[unit] = []
            for i, leaf in enumerate(leaves):
                if leaf is None:
                    layout[unit].append(None)
                    continue
                key = f"{unit}|{i}"
                tensors[key] = torch.as_tensor(leaf.labels, dtype=torch.int64)
                layout[unit].append({"key": key, "solvers": leaf.solvers})
        metadata = {"model_class": self.model_class, "layout": json.dumps(layout), "config": json.dumps(self.config)}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: str | os.PathLike) -> HycaProfile:
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata()
            layout = json.loads(metadata["layout"])
            units = {
                unit: [
                    None if e is None else LeafAssignment(f.get_tensor(e["key"]).numpy(), list(e["solvers"]))
                    for e in entries
                ]
                for unit, entries in layout.items()
            }
        return cls(metadata["model_class"], units, json.loads(metadata["config"]))

    def summary(self) -> dict[str, int]:
        """How many channels each solver serves, over all units."""
        counts: dict[str, int] = {}
        for leaves in self.units.values():
            for leaf in leaves:
                if leaf is not None:
                    for c, s in enumerate(leaf.solvers):
                        counts[s] = counts.get(s, 0) + int((leaf.labels == c).sum())
        return counts
