"""How each kind of row is attached to a pipeline, reset between runs, read out, and removed.

Every row of the table, ours or a peer's, goes through the same four calls, so that the harness times
and scores them identically:

* `setup(ctx)`: attach (raises `Unsupported` with a reason a user can act on);
* `before_call()`: make the next call a fresh generation;
* `after_call()`: the run's own statistics (`RunStats`), or None for what must be counted;
* `teardown()`: remove everything, leaving the pipeline as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .identity import canonical_digest, config_payload
from .peer_table import make_peer_runner
from .specs import StrategySpec

if TYPE_CHECKING:
    from .counting import CallCounts
    from .models import LoadedModel

logger = logging.getLogger(__name__)


class Unsupported(Exception):
    """This row cannot run on this model; the message is shown in the table."""


@dataclass
class RunStats:
    """A run's step statistics and where `computed_fraction` comes from."""

    steps: int | None
    full_steps: int | None
    computed_fraction: float | None
    source: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HarnessContext:
    """What a runner may need to know about the comparison it is part of."""

    model: LoadedModel
    steps: int
    guidance_scale: float | None
    warmup_seed: int
    out_dir: Path
    baseline_counts: CallCounts | None = None
    #: the baseline's denoiser batch was twice its image count: guidance as one doubled batch
    batched_cfg: bool = False

    def baseline_calls_per_step(self) -> int | None:
        from .counting import calls_per_step

        return None if self.baseline_counts is None else calls_per_step(self.baseline_counts, self.steps)

    def call(self, seed: int, condition=None) -> Any:
        """One untimed pipeline call (for calibrations), with the comparison's settings."""
        condition = condition or self.model.conditions[0]
        return self.model.pipe(**self.model.call_kwargs(condition, self.steps, seed, self.guidance_scale))


class StrategyRunner:
    """Base runner: the full-step baseline (nothing attached)."""

    #: peers report no statistics; the harness counts their work in a separate pass
    needs_counting = False

    def __init__(self, spec: StrategySpec):
        self.spec = spec
        self.ctx: HarnessContext | None = None

    def setup(self, ctx: HarnessContext) -> None:
        self.ctx = ctx

    def before_call(self) -> None:
        pass

    def after_call(self) -> RunStats | None:
        return RunStats(self.ctx.steps, self.ctx.steps, 1.0, "baseline (nothing skipped)")

    def teardown(self) -> None:
        pass


class DiffaccelRunner(StrategyRunner):
    """Our strategies: `diffaccel.wrap(pipe, name, **options)`, statistics from `diffaccel.summary`."""

    def setup(self, ctx: HarnessContext) -> None:
        from .. import api
        from ..core.errors import UnsupportedModelError

        super().setup(ctx)
        strategy, options = wrap_arguments(self.spec)
        try:
            api.wrap(ctx.model.pipe, strategy, **options)
        except UnsupportedModelError as error:
            raise Unsupported(str(error)) from error
        attached = {name: [s.config for s in e.strategies] for name, e in api.engines(ctx.model.pipe).items()}
        self.digest = config_digest(attached)

    def after_call(self) -> RunStats:
        from .. import api

        summary = api.summary(self.ctx.model.pipe)
        return RunStats(
            summary.steps,
            summary.full_steps,
            summary.computed_fraction,
            "diffaccel.summary",
            {
                "config": summary.strategy,
                "config_digest": self.digest,
                "peak_cache_bytes": summary.peak_cache_bytes,
            },
        )

    def teardown(self) -> None:
        from .. import api

        if self.ctx is not None and getattr(self.ctx.model.pipe, "_diffaccel", None) is not None:
            api.unwrap(self.ctx.model.pipe)


def wrap_arguments(spec: StrategySpec) -> tuple[Any, dict[str, Any]]:
    """What `DiffaccelRunner` passes to `diffaccel.wrap` for a spec: one name and its options, or the parts
    of a composition."""
    parts = spec.parts
    return (spec.name, spec.options_dict) if len(parts) == 1 else (parts, {})


def config_digest(configs: dict[str, list]) -> str:
    """A short digest of fully resolved strategy configs (component -> configs in order): every option's
    value, defaults included, serialised canonically. Two runs with the same digest ran the same thing."""
    return canonical_digest({name: [config_payload(c) for c in items] for name, items in configs.items()})


def config_text(configs: dict[str, list]) -> str:
    """The `config` field a run of these configs records (`diffaccel.summary(...).strategy`); records written
    before `config_digest` existed are compared by it."""
    from ..core.summary import components_tag, configs_tag

    return components_tag({name: configs_tag(items) for name, items in configs.items()})


def resolve_spec(spec: StrategySpec, pipe) -> tuple[str, str]:
    """The digest and `config` text of what a diffaccel spec would attach to `pipe` (nothing is attached)."""
    from .. import api

    strategy, options = wrap_arguments(spec)
    configs = api.resolved_configs(pipe, strategy, **options)
    return config_digest(configs), config_text(configs)


def make_runner(spec: StrategySpec) -> StrategyRunner:
    if spec.is_baseline:
        return StrategyRunner(spec)
    if spec.family == "diffaccel":
        return DiffaccelRunner(spec)
    return make_peer_runner(spec)
