"""The engine's hooks, diffusers `ModelHook`s registered in a module's `HookRegistry`. Three kinds:

* `EngineHook` on the denoiser itself: advances the step clock once per call and context, checks
  that input shapes stay fixed within a run, resets everything when a run raises halfway.
* `UnitHook` on each cache unit: computes (and lets the strategy observe) or returns the
  strategy's forecast without running the module.
* `FeederHook` on modules that only feed a unit: skipped whenever their unit is forecast.

The guidance branch of a call comes from diffusers' `model.cache_context(name)`, which calls
`StateManager.set_context` on every stateful hook (public since diffusers 0.42; `ContextTracker` records it).
The recorded `CacheContext` also carries the pipeline's `step_index` and `num_inference_steps` when the pipeline
passes them (diffusers' `WanPipeline` does); the step clock then takes the step from the pipeline and counts calls
only where it is absent (`core/clock.py`).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import StateManager
from torch import nn

from ..adapters.registry import UnitSpec
from ..strategies.base import Strategy, UnitState
from .clock import DEFAULT_CONTEXT, StepInfo
from .tree import OutputStructure, flatten_output

if TYPE_CHECKING:
    from .engine import Engine

if not hasattr(StateManager, "set_context"):
    import diffusers

    raise ImportError(
        f"diffaccel needs diffusers >= 0.42 (StateManager.set_context, through which cache_context reaches hooks); "
        f"found diffusers {diffusers.__version__}. Upgrade with: pip install 'diffusers>=0.42'"
    )

ENGINE_HOOK = "diffaccel.engine"
UNIT_HOOK = "diffaccel.unit"
FEEDER_HOOK = "diffaccel.feeder"


class ContextTracker(StateManager):
    """Receives `model.cache_context(name)` from diffusers (which calls `set_context` on every StateManager of
    a stateful hook) and remembers the current context; `forced` holds names set by `diffaccel.cache_context`."""

    def __init__(self):
        super().__init__(UnitState)
        self.forced: list[str] = []
        self.current = None  # diffusers' CacheContext of the call in progress, or None

    def set_context(self, context) -> None:
        super().set_context(context)
        self.current = context

    @property
    def name(self) -> str:
        if self.forced:
            return self.forced[-1]
        return DEFAULT_CONTEXT if self.current is None else self.current.name

    @property
    def pipeline_step(self) -> tuple[int | None, int | None]:
        """`(step_index, num_inference_steps)` the pipeline passed to `cache_context`, each None when absent (and
        both under a name forced by `diffaccel.cache_context`, which carries no step)."""
        if self.forced or self.current is None:
            return None, None
        return getattr(self.current, "step_index", None), getattr(self.current, "num_inference_steps", None)


def remove_hooks(registry: HookRegistry) -> None:
    """Remove diffaccel's hooks newest first. diffusers' `remove_hook` restores a module's forward
    correctly only for the most recently registered hook; removing an older one first (the root's
    whole-model unit hook sits under the engine hook) would leave a stale wrapper as `forward`."""
    for hook_name in (ENGINE_HOOK, UNIT_HOOK, FEEDER_HOOK):
        registry.remove_hook(hook_name, recurse=True)


class EngineHook(ModelHook):
    """On the denoiser: one clock tick per call; a run that raises is discarded."""

    _is_stateful = True

    def __init__(self, engine: Engine):
        super().__init__()
        self.engine = engine
        self.context_tracker = ContextTracker()

    def new_forward(self, module: nn.Module, *args, **kwargs):
        engine = self.engine
        engine.claim_run()  # a second thread is refused here, before it touches the owner's run
        try:
            tracker = self.context_tracker
            step = engine.begin_call(tracker.name, args, kwargs, *tracker.pipeline_step)
            for answerer in engine.call_answerers:
                output = answerer.answer(step, args, kwargs)
                if output is not None:
                    return output
            output = self.fn_ref.original_forward(*args, **kwargs)
            for answerer in engine.call_answerers:
                answerer.after(step, output)
            engine.note_cache_bytes()
        except BaseException:
            engine.abort_run()
            raise
        finally:
            engine.current = None
        return output

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.engine.release()
        return module


class CarriesInput:
    """For the first block of a stack unit: records, at every call, the arguments the stack carries, so
    that the unit can hand its strategy the stack's residual and add the fresh input back to forecasts."""

    carries: tuple[str, ...] = ()

    def record_carried(self, module: nn.Module, context: str, args: tuple, kwargs: dict) -> None:
        if not self.carries:
            return
        if not hasattr(self, "_carry_signature"):
            self._carry_signature = inspect.signature(module.forward)
        bound = self._carry_signature.bind(*args, **kwargs).arguments
        self.carried[context] = [bound.get(name) for name in self.carries]


class UnitHook(CarriesInput, ModelHook):
    """On a cache unit: compute and let the strategy observe, or return the strategy's forecast."""

    def __init__(self, engine: Engine, name: str, spec: UnitSpec, strategy: Strategy):
        super().__init__()
        self.engine = engine
        self.name = name
        self.spec = spec
        self.kind = spec.kind
        self.strategy = strategy
        self.states: dict[str, UnitState] = {}
        self.structures: dict[str, tuple[OutputStructure, list]] = {}
        self.feeders: list[FeederHook] = []
        self.carried: dict[str, list] = {}
        self.carried_from: CarriesInput | None = None

    def state(self, context: str) -> UnitState:
        state = self.states.get(context)
        if state is None:
            state = self.states[context] = self.strategy.new_state(self)
        return state

    def will_compute(self, step: StepInfo) -> bool:
        state = self.state(step.context)
        return self.engine.claimed_by_model_level(step, self.strategy) or self.strategy.must_compute(step, state)

    def feeder_flops(self, context: str) -> float:
        return sum(self.engine.unit_flops(f.name, context) or 0.0 for f in self.feeders)

    def new_forward(self, module: nn.Module, *args, **kwargs):
        engine = self.engine
        step = engine.current
        if step is None:  # called outside the wrapped denoiser's forward: not part of a run
            return self.fn_ref.original_forward(*args, **kwargs)
        state = self.state(step.context)
        self.record_carried(module, step.context, args, kwargs)
        if self.will_compute(step):
            output = engine.measure(self.name, step.context, self.fn_ref.original_forward, args, kwargs)
            leaves, structure = flatten_output(output)
            self.structures[step.context] = (structure, [None if t is None else t.dtype for t in leaves])
            self.strategy.observe(state, self._residuals(leaves, step.context), step)
            computed = True
        else:
            structure, dtypes = self.structures[step.context]
            leaves = self._add_carried(self.strategy.forecast(state, step), step.context)
            output = structure.rebuild([None if t is None else t.to(d) for t, d in zip(leaves, dtypes)])
            computed = False
        flops = (engine.unit_flops(self.name, step.context) or 0.0) + self.feeder_flops(step.context)
        engine.stats.record_unit(self.name, self.kind, step.index, computed, flops)
        return output

    def _inputs(self, context: str) -> list | None:
        return None if self.carried_from is None else self.carried_from.carried[context]

    def _residuals(self, leaves: list, context: str) -> list:
        """A stack unit's strategy sees output minus the stack's input (its residual)."""
        inputs = self._inputs(context)
        if inputs is None:
            return leaves
        if len(inputs) != len(leaves):
            raise RuntimeError(
                f"stack unit '{self.name}' returns {len(leaves)} tensors but the adapter's StackSpec carries "
                f"{len(inputs)} ({list(self.spec.carries)})"
            )
        out = []
        for leaf, fresh in zip(leaves, inputs):
            if leaf is None:
                out.append(None)
            elif not isinstance(fresh, torch.Tensor) or fresh.shape != leaf.shape:
                raise RuntimeError(
                    f"stack unit '{self.name}': output of shape {tuple(leaf.shape)} does not match the carried "
                    f"input {tuple(fresh.shape) if isinstance(fresh, torch.Tensor) else type(fresh).__name__}; "
                    "the adapter's StackSpec names the wrong arguments"
                )
            else:
                out.append(leaf - fresh)
        return out

    def _add_carried(self, forecasts: list, context: str) -> list:
        inputs = self._inputs(context)
        if inputs is None:
            return forecasts
        return [None if f is None else f + fresh.to(f.dtype) for f, fresh in zip(forecasts, inputs)]


class FeederHook(CarriesInput, ModelHook):
    """On a module that only feeds a cache unit: skipped (empty placeholder) when the unit is forecast."""

    def __init__(self, engine: Engine, name: str, unit: UnitHook):
        super().__init__()
        self.engine = engine
        self.name = name
        self.unit = unit
        self.placeholders: dict[str, Any] = {}
        self.carried: dict[str, list] = {}

    def new_forward(self, module: nn.Module, *args, **kwargs):
        step = self.engine.current
        if step is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        self.record_carried(module, step.context, args, kwargs)
        if self.unit.will_compute(step):
            output = self.engine.measure(self.name, step.context, self.fn_ref.original_forward, args, kwargs)
            leaves, structure = flatten_output(output)
            empties = [None if t is None else t.new_empty(*t.shape[:-1], 0) for t in leaves]
            self.placeholders[step.context] = structure.rebuild(empties)
            return output
        return self.placeholders[step.context]
