"""Statistics of the most recent run: what was computed, what was forecast, at what cost.

`computed_fraction` weights every cache-unit call by the FLOPs the unit costs at that input size
(measured once per unit and input shape with `torch.utils.flop_counter.FlopCounterMode`, which
counts matrix multiplications, convolutions and attention), so a skipped attention counts for
more than a skipped layer norm and the figure is comparable to the FLOP speed-ups papers report.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UnitCounts:
    """Calls of one cache unit in one run, summed over guidance contexts."""

    kind: str
    computed: int = 0
    forecast: int = 0
    computed_flops: float = 0.0
    forecast_flops: float = 0.0

    @property
    def calls(self) -> int:
        return self.computed + self.forecast


@dataclass
class RunStats:
    """Counters the engine updates on every unit call of one run."""

    units: dict[str, UnitCounts] = field(default_factory=dict)
    steps_with_forecast: set[int] = field(default_factory=set)
    steps_seen: set[int] = field(default_factory=set)
    contexts: set[str] = field(default_factory=set)
    root_calls: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    #: most bytes each strategy (by tag) held in its caches at the end of any denoiser call of the run
    peak_cache_bytes: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, amount: float = 1) -> None:
        """Bump a named counter of this run (strategies' own figures: tokens, accepted drafts, ...)."""
        self.counters[name] = self.counters.get(name, 0) + amount

    def reset(self) -> None:
        self.units.clear()
        self.counters.clear()
        self.peak_cache_bytes.clear()
        self.steps_with_forecast.clear()
        self.steps_seen.clear()
        self.contexts.clear()
        self.root_calls = 0

    def record_root_call(self, step: int, context: str) -> None:
        self.root_calls += 1
        self.steps_seen.add(step)
        self.contexts.add(context)

    def record_unit(self, name: str, kind: str, step: int, computed: bool, flops: float) -> None:
        counts = self.units.get(name)
        if counts is None:
            counts = self.units[name] = UnitCounts(kind)
        if computed:
            counts.computed += 1
            counts.computed_flops += flops
        else:
            counts.forecast += 1
            counts.forecast_flops += flops
            self.steps_with_forecast.add(step)

    @property
    def steps(self) -> int:
        return len(self.steps_seen)

    @property
    def full_steps(self) -> int:
        """Steps at which every cache unit computed (in every context)."""
        return len(self.steps_seen - self.steps_with_forecast)

    @property
    def computed_fraction(self) -> float:
        """FLOP-weighted share of the cacheable work actually computed (1.0 without caching)."""
        return computed_fraction(self.units.values())


def cacheable_flops(units) -> float:
    """The cacheable work of a run: the whole model's when a whole-model unit exists, else the blocks'."""
    units = list(units)
    model = [u for u in units if u.kind == "model"]
    return sum(u.computed_flops + u.forecast_flops for u in (model or units))


def computed_fraction(units) -> float:
    """FLOP-weighted share of the cacheable work computed.

    Block units are summed. A whole-model unit (kind "model", e.g. TaoCache) contains every block
    unit, so when one exists the cacheable work is the whole model's, and block forecasts inside
    computed model calls are subtracted from it rather than counted twice.
    """
    units = list(units)
    model = [u for u in units if u.kind == "model"]
    blocks = [u for u in units if u.kind != "model"]
    if model:
        total = sum(u.computed_flops + u.forecast_flops for u in model)
        done = sum(u.computed_flops for u in model) - sum(u.forecast_flops for u in blocks)
    else:
        done = sum(u.computed_flops for u in blocks)
        total = done + sum(u.forecast_flops for u in blocks)
    return 1.0 if total == 0 else done / total
