"""A curriculum over several task axes, grown one axis at a time (ours).

Why: the key-value lookup (:mod:`diffaccel.dllm.tasks.kv`) forms only after a plateau whose length grows
with the number of key symbols and with the number of records; at the full task size it did not form in
our CPU budget, while with 2 records over 8-16 key symbols and one answer slot right after its query it forms
within about a thousand steps. So training starts small and, once the lookup is accurate, grows one difficulty
axis at a time (key symbols, records, filler length) from the circuit that has formed.

Each axis ``name:start:end`` runs from ``start`` to ``end``; the axes before the current one stand at their
end, the ones after it at their start. The current axis has a cap: every ``window`` steps whose mean
progress accuracy reached ``advance_at`` multiply the cap by ``growth`` (at least +1, at most ``end``); an
axis at its end hands over to the next. Each batch draws the current axis uniformly from
``[max(start, (1 - spread) cap), cap]``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    name: str
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Axis:
        """``"records:2:32"`` -> ``Axis("records", 2, 32)``."""
        parts = text.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"a curriculum axis is name:start:end (e.g. records:2:32), got {text!r}")
        axis = cls(parts[0], int(parts[1]), int(parts[2]))
        if axis.start > axis.end:
            raise ValueError(f"axis {axis.name}: start {axis.start} above end {axis.end}")
        return axis


class AxisCurriculum:
    """The state of a curriculum over ``axes`` (module docstring): which axis grows, and its cap."""

    def __init__(self, axes: list[Axis], window: int, advance_at: float, growth: float, spread: float = 0.5):
        if not axes or len({a.name for a in axes}) != len(axes):
            raise ValueError(f"need distinct curriculum axes, got {[a.name for a in axes]}")
        self.axes, self.window, self.advance_at, self.growth, self.spread = axes, window, advance_at, growth, spread
        self.index, self.cap = 0, float(axes[0].start)
        self._skip_finished()

    def _skip_finished(self) -> None:
        while self.index < len(self.axes) - 1 and self.cap >= self.axes[self.index].end:
            self.index += 1
            self.cap = float(self.axes[self.index].start)

    @property
    def done(self) -> bool:
        return self.index == len(self.axes) - 1 and self.cap >= self.axes[-1].end

    def sizes(self, rng: random.Random) -> dict[str, int]:
        """This batch's size on every axis."""
        out = {a.name: a.end for a in self.axes[: self.index]}
        out.update({a.name: a.start for a in self.axes[self.index + 1 :]})
        axis = self.axes[self.index]
        top = max(axis.start, int(self.cap))
        out[axis.name] = rng.randint(max(axis.start, int(top * (1 - self.spread))), top)
        return out

    def advance(self, accuracies: list[float]) -> bool:
        """Grow the cap if the last ``window`` accuracies reached ``advance_at`` on average; True if it grew."""
        if self.done or len(accuracies) < self.window:
            return False
        if sum(accuracies[-self.window :]) / self.window < self.advance_at:
            return False
        axis = self.axes[self.index]
        self.cap = float(min(axis.end, max(self.cap + 1, math.floor(self.cap * self.growth))))
        self._skip_finished()
        return True

    def describe(self) -> str:
        axis = self.axes[self.index]
        return f"{axis.name} cap {self.cap:.0f} (axis {self.index + 1}/{len(self.axes)})"

    def state(self) -> dict:
        return {"axis": self.index, "cap": self.cap}

    def restore(self, state: dict) -> None:
        self.index, self.cap = int(state["axis"]), float(state["cap"])
