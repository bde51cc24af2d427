"""The engine: one per wrapped denoiser module, owning its hooks, step clock, strategies and stats.

Hooks are diffusers `ModelHook`s registered in the module's `HookRegistry`, so they chain with
diffusers' offloading, layerwise casting and context-parallel hooks, receive
`model.cache_context(name)` like diffusers' own caches, and are removed cleanly. Three kinds:

* `EngineHook` on the denoiser itself: advances the step clock once per call and context, checks
  that input shapes stay fixed within a run, resets everything when a run raises halfway.

Run boundaries: a wrapped pipeline's `scheduler.set_timesteps`, `diffaccel.new_run`, a timestep that
rises, or `reset_state` (diffusers' `reset_stateful_hooks`, which pipelines call after a run; a
pipeline without a scheduler, such as a diffusion-LM pipeline, calls it before each run) — the
next call then starts a new run.
* `UnitHook` on each cache unit: computes (and lets the strategy observe) or returns the
  strategy's forecast without running the module.
* `FeederHook` on modules that only feed a unit: skipped whenever their unit is forecast.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.hooks.hooks import StateManager
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..adapters.registry import Adapter, UnitSpec
from ..strategies.base import Strategy, UnitState
from .clock import DEFAULT_CONTEXT, StepClock, StepInfo
from .errors import AlreadyWrappedError, RunStateError
from .run_owner import RunOwner
from .stats import RunStats
from .tree import OutputStructure, flatten_output

logger = logging.getLogger(__name__)

ENGINE_HOOK = "diffaccel.engine"
UNIT_HOOK = "diffaccel.unit"
FEEDER_HOOK = "diffaccel.feeder"


class _ContextTracker(StateManager):
    """Receives `model.cache_context(name)` from diffusers (which sets it on every StateManager of a
    stateful hook) and remembers the current context name."""

    def __init__(self):
        super().__init__(UnitState)
        self.forced: list[str] = []

    @property
    def name(self) -> str:
        if self.forced:
            return self.forced[-1]
        return DEFAULT_CONTEXT if self._context is None else self._context.name


def _signature(args: tuple, kwargs: dict) -> tuple:
    """Shapes and dtypes of the tensor arguments of a call: fixed within a run and context."""
    sig = [(i, tuple(a.shape), a.dtype) for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    sig += [(k, tuple(v.shape), v.dtype) for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    return tuple(sig)


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() else None
    return float(value)


class Engine:
    """All diffaccel state attached to one denoiser module."""

    def __init__(self, root: nn.Module, adapter: Adapter, strategies: list[Strategy], owner: Any = None):
        self.root = root
        self.owner = root if owner is None else owner
        self.adapter = adapter
        self.strategies = strategies
        self.clock = StepClock()
        self.stats = RunStats()
        self.current: StepInfo | None = None
        self.unit_hooks: list[UnitHook] = []
        self.feeder_hooks: list[FeederHook] = []
        self.flops: dict[tuple, float] = {}
        self.runs_started = 0
        self.last_run_aborted = False
        self._signatures: dict[str, tuple] = {}
        self._needs_reset = True
        self.run_owner = RunOwner(f"wrapped {type(root).__name__}")
        self._timestep_index = self._find_timestep_index()
        # Composition: a whole-model strategy (TaoCache) owns the steps it claims; there, block-level
        # strategies compute in full (and keep observing), elsewhere they forecast as usual.
        self.model_level = [s for s in strategies if s.unit_level == "model"]
        self.fixed_shapes = not any(s.variable_input_shapes for s in strategies)
        for strategy in strategies:
            strategy.bind(self.clock)

    def claimed_by_model_level(self, step: StepInfo, strategy: Strategy) -> bool:
        return strategy.unit_level != "model" and any(s.claims(step) for s in self.model_level)

    # ----------------------------------------------------------------------------------- attaching
    def attach(self) -> None:
        registry = HookRegistry.check_if_exists_or_initialize(self.root)
        if ENGINE_HOOK in registry.hooks:
            raise AlreadyWrappedError(
                f"{type(self.root).__name__} is already wrapped by diffaccel; call diffaccel.unwrap(obj) first, or "
                "pass several strategies to one wrap call: diffaccel.wrap(obj, [a, b])."
            )
        claimed: dict[int, str] = {}
        plan = []
        for strategy in self.strategies:
            if strategy.unit_level == "custom":
                continue
            for name, module, spec in self.adapter.resolve_units(self.root, strategy.unit_level):
                if id(module) in claimed:
                    raise ValueError(
                        f"module '{name}' is a cache unit of both {claimed[id(module)]} and "
                        f"{strategy.config.strategy_name}; strategies in one wrap must cache different units."
                    )
                claimed[id(module)] = strategy.config.strategy_name
                plan.append((name, module, spec, strategy))
        # A hook registered later wraps the earlier ones, so a whole-model unit goes in first and the
        # engine hook last: the clock must tick before any unit decides.
        for name, module, spec, strategy in plan:
            if module is self.root:
                hook = UnitHook(self, "model", spec, strategy)
                registry.register_hook(hook, UNIT_HOOK)
                self.unit_hooks.append(hook)
        self.engine_hook = EngineHook(self)
        registry.register_hook(self.engine_hook, ENGINE_HOOK)
        for name, module, spec, strategy in plan:
            if module is self.root:
                continue
            hook = UnitHook(self, name, spec, strategy)
            HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, UNIT_HOOK)
            self.unit_hooks.append(hook)
            for feeder_name, feeder in self._feeders(name, spec):
                fhook = FeederHook(self, feeder_name, hook)
                HookRegistry.check_if_exists_or_initialize(feeder).register_hook(fhook, FEEDER_HOOK)
                self.feeder_hooks.append(fhook)
                hook.feeders.append(fhook)
            if spec.carries:
                # the stack's first block (a feeder, or the unit itself for a one-block stack) reports its input
                source = hook.feeders[0] if hook.feeders else hook
                source.carries = spec.carries
                hook.carried_from = source
        attached = []
        try:
            for strategy in self.strategies:
                strategy.attach(self, self.owner)
                attached.append(strategy)
        except BaseException:
            for strategy in reversed(attached):
                strategy.detach(self, self.owner)
            _remove_hooks(registry)
            raise
        registry.invalidate_child_registries_cache()

    def _feeders(self, name: str, spec: UnitSpec) -> list[tuple[str, nn.Module]]:
        """(qualified name, module) of a unit's feeders: siblings of the unit, or for a stack unit names
        from the model root."""
        prefix = "" if spec.level == "stack" else (name.rpartition(".")[0] + "." if "." in name else "")
        found = []
        for feeder_name in spec.feeders:
            try:
                found.append((prefix + feeder_name, self.root.get_submodule(prefix + feeder_name)))
            except AttributeError:
                raise ValueError(f"feeder '{feeder_name}' of unit '{name}' does not exist") from None
        return found

    def detach(self) -> None:
        for strategy in reversed(self.strategies):
            strategy.detach(self, self.owner)
        registry = HookRegistry.check_if_exists_or_initialize(self.root)
        _remove_hooks(registry)
        registry.invalidate_child_registries_cache()
        self.release()

    # ---------------------------------------------------------------------------------------- runs
    def new_run(self, num_inference_steps: int | None = None) -> None:
        """Forget all per-run state; the next call is step 0 of a new generation."""
        self.claim_run()
        self.clock.reset(num_inference_steps)
        self.stats.reset()
        self._signatures.clear()
        self.current = None
        for hook in self.unit_hooks:
            hook.states.clear()
            hook.structures.clear()
        for hook in self.unit_hooks + self.feeder_hooks:
            hook.carried.clear()
        for fhook in self.feeder_hooks:
            fhook.placeholders.clear()
        for strategy in self.strategies:
            strategy.on_new_run()
        self.runs_started += 1
        self.last_run_aborted = False
        self._needs_reset = False

    def release(self) -> None:
        """Free cached tensors but keep the statistics of the finished run (diffusers calls this, through
        `reset_state`, at the end of every pipeline call). The next call starts a new run."""
        self.run_owner.release(self.run_finished)
        for hook in self.unit_hooks + self.feeder_hooks:
            hook.carried.clear()
        for hook in self.unit_hooks:
            hook.states.clear()
        self.current = None
        self._needs_reset = True

    def abort_run(self) -> None:
        """A call raised: nothing of this run may be reused, nor committed by a strategy."""
        self.release()
        self.last_run_aborted = True
        for strategy in self.strategies:
            strategy.on_run_aborted()

    def claim_run(self) -> None:
        """Raise `ConcurrentUseError` if another thread's run is in progress; else this thread owns the run."""
        self.run_owner.claim(self.run_finished)

    def run_finished(self) -> bool:
        """No run in progress: released, or all its planned steps done (a hand-written loop that told
        `new_run` its step count may be followed by a loop in another thread)."""
        planned = self.clock.num_inference_steps
        return self._needs_reset or (planned is not None and self.clock.steps >= planned)

    def begin_call(self, context: str, args: tuple, kwargs: dict) -> StepInfo:
        timestep = self._read_timestep(args, kwargs)
        if self._needs_reset:
            self.new_run(None)
        elif self.clock.timestep_starts_new_run(context, timestep):
            logger.info("timestep rose from the previous call: starting a new run")
            self.new_run(None)
        signature = _signature(args, kwargs)
        known = self._signatures.setdefault(context, signature)
        if not self.fixed_shapes:
            self._signatures[context] = signature
        elif known != signature:
            raise RunStateError(
                f"Input shapes of {type(self.root).__name__} changed within a run (context '{context}', step "
                f"{self.clock.steps}): {_describe(known)} -> {_describe(signature)}. Batch size and resolution "
                "must stay fixed during a generation; if this is a new generation call diffaccel.new_run(obj) first."
            )
        step = self.clock.advance(context, timestep)
        self.stats.record_root_call(step.index, context)
        self.current = step
        return step

    # --------------------------------------------------------------------------------- inspection
    def cache_bytes(self) -> int:
        return sum(state.nbytes() for hook in self.unit_hooks for state in hook.states.values())

    def cache_bytes_by_strategy(self) -> dict[str, int]:
        """Bytes each strategy (by tag) holds in its unit states now."""
        tags = self.__dict__.setdefault("_strategy_tags", {id(s): s.config.strify() for s in self.strategies})
        held = {tags[id(s)]: 0 for s in self.strategies if s.unit_level != "custom"}
        for hook in self.unit_hooks:
            tag = tags[id(hook.strategy)]
            held[tag] = held.get(tag, 0) + sum(state.nbytes() for state in hook.states.values())
        return held

    def note_cache_bytes(self) -> None:
        """Record the run's peak per strategy (states are freed when a pipeline call ends, so the summary
        of a finished run reports the peak, the figure that decides whether a model fits in memory)."""
        peak = self.stats.peak_cache_bytes
        for tag, held in self.cache_bytes_by_strategy().items():
            peak[tag] = max(peak.get(tag, 0), held)

    def unit_flops(self, name: str, context: str) -> float | None:
        return self.flops.get((name, self._signatures.get(context)))

    def measure(self, name: str, context: str, forward, args, kwargs):
        """Run `forward`, measuring its FLOPs the first time this unit meets this input signature."""
        key = (name, self._signatures.get(context))
        if key in self.flops:
            return forward(*args, **kwargs)
        with FlopCounterMode(display=False) as counter:
            out = forward(*args, **kwargs)
        self.flops[key] = float(counter.get_total_flops())
        return out

    # ------------------------------------------------------------------------------------ helpers
    def _find_timestep_index(self) -> int | None:
        name = self.adapter.timestep_arg
        if name is None:
            return None
        try:
            params = list(inspect.signature(self.root.forward).parameters)
        except (TypeError, ValueError):
            return None
        return params.index(name) if name in params else None

    def _read_timestep(self, args: tuple, kwargs: dict) -> float | None:
        name = self.adapter.timestep_arg
        if name is None:
            return None
        if name in kwargs:
            return _as_float(kwargs[name])
        if self._timestep_index is not None and self._timestep_index < len(args):
            return _as_float(args[self._timestep_index])
        return None


def _remove_hooks(registry: HookRegistry) -> None:
    """Remove diffaccel's hooks newest first. diffusers' `remove_hook` restores a module's forward
    correctly only for the most recently registered hook; removing an older one first (the root's
    whole-model unit hook sits under the engine hook) would leave a stale wrapper as `forward`."""
    for hook_name in (ENGINE_HOOK, UNIT_HOOK, FEEDER_HOOK):
        registry.remove_hook(hook_name, recurse=True)


def _describe(signature: tuple) -> str:
    return ", ".join(f"{key}{list(shape)}" for key, shape, _ in signature)


class EngineHook(ModelHook):
    """On the denoiser: one clock tick per call; a run that raises is discarded."""

    _is_stateful = True

    def __init__(self, engine: Engine):
        super().__init__()
        self.engine = engine
        self.context_tracker = _ContextTracker()

    def new_forward(self, module: nn.Module, *args, **kwargs):
        engine = self.engine
        engine.claim_run()  # a second thread is refused here, before it touches the owner's run
        try:
            engine.begin_call(self.context_tracker.name, args, kwargs)
            output = self.fn_ref.original_forward(*args, **kwargs)
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


class _CarriesInput:
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


class UnitHook(_CarriesInput, ModelHook):
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
        self.carried_from: _CarriesInput | None = None

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


class FeederHook(_CarriesInput, ModelHook):
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
