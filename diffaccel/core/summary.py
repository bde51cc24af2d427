"""`diffaccel.summary(obj)`: what the most recent run computed and what it forecast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .engine import Engine
from .stats import UnitCounts, cacheable_flops


def configs_tag(configs) -> str:
    """The text of the strategies on one component: each config's non-default options, joined by "+"."""
    return "+".join(c.strify() for c in configs)


def components_tag(tags: dict[str, str]) -> str:
    """One text for the strategies of every wrapped component (the component's own text when only one)."""
    if len(tags) == 1:
        return next(iter(tags.values()))
    return " | ".join(f"{component}={tag}" for component, tag in tags.items())


@dataclass
class Summary:
    """Statistics of the most recent run of one wrapped denoiser (or several, combined).

    Attributes:
        strategy: the strategy tag(s), e.g. "taylorseer:interval=4".
        steps: denoising steps seen.
        full_steps: steps at which every cache unit computed.
        computed_fraction: FLOP-weighted share of the cacheable work computed (1.0 without caching).
        cache_bytes: bytes held in strategy caches now (0 after a pipeline call: its end frees them).
        peak_cache_bytes: the most bytes the strategies' caches held at once during the run;
            `extra["peak_cache_bytes_by_strategy"]` splits it per strategy tag.
        contexts: guidance contexts seen ("default" for a doubled batch).
        units: per-unit counts (computed / forecast calls, summed over contexts).
        aborted: the run raised before finishing, so its state was discarded.
        components: per-component summaries when a pipeline has several wrapped denoisers.
        extra: strategy-specific figures (run counters and each strategy's `report`).
    """

    strategy: str
    steps: int
    full_steps: int
    computed_fraction: float
    cache_bytes: int
    contexts: list[str]
    units: dict[str, UnitCounts]
    aborted: bool = False
    peak_cache_bytes: int = 0
    components: dict[str, Summary] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_engine(cls, engine: Engine) -> Summary:
        stats = engine.stats
        extra: dict[str, Any] = dict(stats.counters)
        for strategy in engine.strategies:
            extra.update(strategy.report(engine))
        if stats.peak_cache_bytes:
            extra["peak_cache_bytes_by_strategy"] = dict(stats.peak_cache_bytes)
        core = {
            "steps": stats.steps,
            "full_steps": stats.full_steps,
            "computed_fraction": stats.computed_fraction,
            "cache_bytes": engine.cache_bytes(),
        }
        core.update({k: extra.pop(k) for k in list(core) if k in extra})
        return cls(
            strategy=configs_tag(s.config for s in engine.strategies),
            contexts=sorted(stats.contexts),
            units=dict(stats.units),
            aborted=engine.last_run_aborted,
            peak_cache_bytes=sum(stats.peak_cache_bytes.values()),
            extra=extra,
            **core,
        )

    @classmethod
    def combine(cls, parts: dict[str, Summary]) -> Summary:
        if len(parts) == 1:
            return next(iter(parts.values()))
        units = {f"{comp}.{name}": counts for comp, s in parts.items() for name, counts in s.units.items()}
        fractions = [(s.computed_fraction, cacheable_flops(s.units.values())) for s in parts.values()]
        weight = sum(w for _, w in fractions)
        return cls(
            strategy=components_tag({c: s.strategy for c, s in parts.items()}),
            steps=max(s.steps for s in parts.values()),
            full_steps=min(s.full_steps for s in parts.values()),
            computed_fraction=1.0 if weight == 0 else sum(f * w for f, w in fractions) / weight,
            cache_bytes=sum(s.cache_bytes for s in parts.values()),
            contexts=sorted({c for s in parts.values() for c in s.contexts}),
            units=units,
            aborted=any(s.aborted for s in parts.values()),
            peak_cache_bytes=sum(s.peak_cache_bytes for s in parts.values()),
            components=parts,
        )

    def by_kind(self) -> dict[str, dict[str, int]]:
        """Computed / forecast calls grouped by unit kind (attn, mlp, ...)."""
        kinds: dict[str, dict[str, int]] = {}
        for counts in self.units.values():
            k = kinds.setdefault(counts.kind, {"units": 0, "computed": 0, "forecast": 0})
            k["units"] += 1
            k["computed"] += counts.computed
            k["forecast"] += counts.forecast
        return kinds

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "steps": self.steps,
            "full_steps": self.full_steps,
            "computed_fraction": self.computed_fraction,
            "cache_bytes": self.cache_bytes,
            "peak_cache_bytes": self.peak_cache_bytes,
            "contexts": list(self.contexts),
            "aborted": self.aborted,
            "units": {
                n: {"kind": u.kind, "computed": u.computed, "forecast": u.forecast} for n, u in self.units.items()
            },
            "components": {c: s.as_dict() for c, s in self.components.items()},
            **self.extra,
        }

    def __str__(self) -> str:
        lines = [
            f"diffaccel summary: {self.strategy}" + ("  (last run raised; state discarded)" if self.aborted else ""),
            f"  steps {self.steps}, full steps {self.full_steps}, computed fraction {self.computed_fraction:.3f}, "
            f"cache {self.cache_bytes / 2**20:.2f} MiB (peak {self.peak_cache_bytes / 2**20:.2f}), contexts {', '.join(self.contexts) or '-'}",
        ]
        if self.units:
            lines.append(f"  {'unit kind':<14}{'units':>7}{'computed':>10}{'forecast':>10}")
        for kind, k in sorted(self.by_kind().items()):
            lines.append(f"  {kind:<14}{k['units']:>7}{k['computed']:>10}{k['forecast']:>10}")
        lines += [
            f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}"
            for key, value in self.extra.items()
        ]
        return "\n".join(lines)
