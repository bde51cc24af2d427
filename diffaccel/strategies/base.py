"""What a strategy is, seen from the engine.

Every strategy (`Strategy`) is a config (a dataclass of documented options) that the engine attaches,
detaches and asks for a report; a strategy with `unit_level = "custom"` registers its own hooks in `attach`
(the diffusion-LM strategies do). A unit-level cache (`UnitStrategy`) adds the per-unit behaviour the
engine calls at every cache-unit call:

* `must_compute(step, state)`: compute this unit now, or forecast it? Must depend only on the step
  and the unit's state, because feeder modules ask the same question before the unit runs.
* `observe(state, leaves, step)`: a computed output, to update the state with.
* `forecast(state, step)`: the synthesized output of a skipped call.

The engine owns everything else (hooks, clock, contexts, stats, resets), so a strategy file reads
top to bottom as its paper's algorithm.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from ..core.clock import StepClock, StepInfo
from ..core.errors import UnknownStrategyError
from .option_types import check_option_types, none_from_text


@dataclasses.dataclass
class StrategyConfig:
    """Base of every strategy config: dataclass fields are the options."""

    strategy_name: ClassVar[str] = ""
    #: options always shown in the tag, even at their default value
    tag_fields: ClassVar[tuple[str, ...]] = ()

    def validate(self) -> None:
        """Raise ValueError for option values that make no sense."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def strify(self) -> str:
        """A short tag naming the strategy and its options, for file names and table rows."""
        parts = [self.strategy_name]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default or f.name in self.tag_fields:
                parts.append(f"{f.name}={value}")
        return ":".join(parts) if len(parts) > 1 else parts[0]

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **options) -> StrategyConfig:
        unknown = sorted(set(options) - set(self.option_names()))
        if unknown:
            raise UnknownStrategyError(
                f"Unknown option(s) {unknown} for strategy '{self.strategy_name}'; "
                f"its options are {self.option_names()}."
            )
        options = none_from_text(type(self), options)
        check_option_types(type(self), options)
        new = dataclasses.replace(self, **options)
        new.validate()
        return new


#: The `granularity` option of block-level forecasting strategies → the engine's unit level.
#: "modules" is TaylorSeer's official choice (attention / feed-forward outputs before gating).
#: "stack" [ours]: the whole block stack is one unit whose residual is forecast while the embedded
#: input flows through, so a skipped step runs only embeddings and the output layer (adapters with a
#: `StackSpec`). "model" [ours]: the denoiser's output itself is forecast.
GRANULARITY_LEVELS = {"modules": "blocks", "stack": "stack", "model": "model"}


def check_granularity(strategy_name: str, granularity: Any) -> None:
    if granularity not in GRANULARITY_LEVELS:
        raise ValueError(
            f"{strategy_name} granularity must be one of {sorted(GRANULARITY_LEVELS)}, got {granularity!r}"
        )


class UnitState:
    """Per (cache unit, guidance context) state of a strategy for one run."""

    def nbytes(self) -> int:
        return 0


class Strategy:
    """One acceleration method attached to one engine: what every strategy has (attach, detach, report)."""

    config: StrategyConfig
    #: What the engine attaches for this strategy: "blocks" (unit hooks on the adapter's sub-module
    #: units), "model" (one unit hook on the whole denoiser), or "custom" (no unit hooks: the strategy
    #: attaches its own hooks in `attach`, e.g. attention-level K/V caches of diffusion LMs). Strategies
    #: with unit hooks are `UnitStrategy`s.
    unit_level: ClassVar[str] = "custom"
    #: True for `UnitStrategy` and its subclasses: the engine may call the per-unit callbacks
    has_unit_callbacks: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        per_unit = {"new_state", "must_compute", "observe", "forecast"} & set(vars(cls))
        if per_unit and not cls.has_unit_callbacks and cls.unit_level != "custom":
            raise TypeError(
                f"{cls.__name__} defines per-unit callbacks ({', '.join(sorted(per_unit))}): derive it from "
                "diffaccel.strategies.base.UnitStrategy"
            )

    #: True for strategies whose forwards legitimately change shape within a run (speculative
    #: verification batches, growing decode windows). The engine then skips its fixed-shape check,
    #: which exists to protect cached feature states; such strategies keep no per-shape state.
    variable_input_shapes: ClassVar[bool] = False

    def __init__(self, config: StrategyConfig):
        check_option_types(type(config), config.as_dict())
        config.validate()
        self.config = config
        self.clock: StepClock | None = None
        granularity = getattr(config, "granularity", None)
        if granularity is not None:
            self.unit_level = GRANULARITY_LEVELS[granularity]

    def bind(self, clock: StepClock) -> None:
        """Called once by the engine: the clock whose decisions this strategy shares."""
        self.clock = clock

    def on_new_run(self) -> None:
        """Called at the start of every run, after the clock was reset."""

    def check_composition(self, others: list[Strategy]) -> None:
        """Raise when this strategy cannot run beside `others` (the other strategies of one wrap)."""

    def on_run_aborted(self) -> None:
        """Called when a call of the run raised. State that outlives a run (a probe, a calibration) must be
        left exactly as it was before the run began: only a run that finished may commit it."""

    def attach(self, engine, owner) -> None:
        """Called once after the engine registered its hooks; `owner` is the object passed to `wrap`
        (a pipeline, or the model itself). Custom strategies register their hooks here, through
        `diffusers.hooks.HookRegistry`, so that `detach` can remove exactly them."""

    def detach(self, engine, owner) -> None:
        """Undo `attach`; called by `unwrap` before the engine removes its own hooks."""

    def report(self, engine) -> dict:
        """Extra figures for `diffaccel.summary` (e.g. forwards, tokens per round). Keys `steps`,
        `full_steps` and `computed_fraction` replace the engine's own figures, for strategies whose
        work is not made of cache-unit calls."""
        return {}

    def claims(self, step: StepInfo) -> bool:
        """Whole-model strategies: True for the steps they own when composed with block-level ones."""
        return False


class UnitStrategy(Strategy, ABC):
    """A cache over units (sub-modules, the block stack, or the whole denoiser): the engine puts a unit hook
    on each and asks the strategy, per call, to compute or forecast."""

    unit_level: ClassVar[str] = "blocks"
    has_unit_callbacks: ClassVar[bool] = True

    @abstractmethod
    def new_state(self, unit) -> UnitState:
        """A fresh state for `unit` (the engine's unit hook: `.name`, `.kind`, `.spec`)."""

    @abstractmethod
    def must_compute(self, step: StepInfo, state: UnitState) -> bool: ...

    @abstractmethod
    def observe(self, state: UnitState, leaves: list[torch.Tensor | None], step: StepInfo) -> None: ...

    @abstractmethod
    def forecast(self, state: UnitState, step: StepInfo) -> list[torch.Tensor | None]: ...
