"""The engine: one per wrapped denoiser module, owning its hooks, step clock, strategies and stats.

Hooks (`diffaccel.core.hooks`) are diffusers `ModelHook`s registered in the module's `HookRegistry`, so they
chain with diffusers' offloading, layerwise casting and context-parallel hooks, receive
`model.cache_context(name)` like diffusers' own caches, and are removed cleanly.

Attaching is three phases: plan (which module is a unit of which strategy; nothing touched yet), register
(the hooks), commit (each strategy's own `attach`). A failure in the second or third phase removes every hook
and strategy attachment made so far, so the model is left exactly as it was.

Run boundaries: a wrapped pipeline's `scheduler.set_timesteps`, `diffaccel.new_run`, a timestep that
rises, or `reset_state` (diffusers' `reset_stateful_hooks`, which pipelines call after a run; a
pipeline without a scheduler, such as a diffusion-LM pipeline, calls it before each run) — the
next call then starts a new run.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from diffusers.hooks import HookRegistry
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..adapters.registry import Adapter, UnitSpec
from ..strategies.base import Strategy
from .clock import StepClock, StepInfo
from .errors import AlreadyWrappedError, RunStateError
from .hooks import ENGINE_HOOK, FEEDER_HOOK, UNIT_HOOK, EngineHook, FeederHook, UnitHook, remove_hooks
from .run_owner import RunOwner
from .stats import RunStats

logger = logging.getLogger(__name__)


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
        #: objects with `answer(step, args, kwargs)` (an output, or None to run the model) and
        #: `after(step, output)`: strategies that may answer a whole denoiser call without running it
        #: (guidance reuse). Asked after the clock ticked, so the call still counts as its branch's step.
        self.call_answerers: list = []
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
        """Plan, register, commit; on any failure after the first hook, undo everything (the model is left
        bit-identical and hook-free)."""
        registry = HookRegistry.check_if_exists_or_initialize(self.root)
        if ENGINE_HOOK in registry.hooks:
            raise AlreadyWrappedError(
                f"{type(self.root).__name__} is already wrapped by diffaccel; call diffaccel.unwrap(obj) first, or "
                "pass several strategies to one wrap call: diffaccel.wrap(obj, [a, b])."
            )
        plan = self._plan_units()
        attached: list[Strategy] = []
        try:
            self._register_hooks(registry, plan)
            for strategy in self.strategies:
                strategy.attach(self, self.owner)
                attached.append(strategy)
        except BaseException:
            for strategy in reversed(attached):
                strategy.detach(self, self.owner)
            remove_hooks(registry)
            registry.invalidate_child_registries_cache()
            self.unit_hooks.clear()
            self.feeder_hooks.clear()
            raise
        registry.invalidate_child_registries_cache()

    def _plan_units(self) -> list[tuple[str, nn.Module, UnitSpec, Strategy]]:
        """(name, module, spec, strategy) of every cache unit, checked before anything is registered."""
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
        return plan

    def _register_hooks(self, registry: HookRegistry, plan: list[tuple[str, nn.Module, UnitSpec, Strategy]]) -> None:
        """A hook registered later wraps the earlier ones, so a whole-model unit goes in first and the
        engine hook last: the clock must tick before any unit decides."""
        for _name, module, spec, strategy in plan:
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
        remove_hooks(registry)
        registry.invalidate_child_registries_cache()
        self.release()

    # ---------------------------------------------------------------------------------------- runs
    def new_run(self, num_inference_steps: int | None = None, timesteps=None) -> None:
        """Forget all per-run state; the next call is step 0 of a new generation."""
        self.claim_run()
        self.clock.reset(num_inference_steps, timesteps)
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

    def begin_call(
        self,
        context: str,
        args: tuple,
        kwargs: dict,
        step_index: int | None = None,
        num_inference_steps: int | None = None,
    ) -> StepInfo:
        """Tick the clock for one denoiser call: the pipeline's `step_index` when its cache context carries one,
        else the context's next count (`core/clock.py`)."""
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
        step = self.clock.advance(context, timestep, step_index, num_inference_steps)
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


def _describe(signature: tuple) -> str:
    return ", ".join(f"{key}{list(shape)}" for key, shape, _ in signature)
