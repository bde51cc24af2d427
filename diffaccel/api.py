"""The public entry points: wrap, unwrap, summary, new_run, cache_context."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .adapters.registry import DENOISER_COMPONENTS, find_adapter, generic_adapter, get_adapter, supported_classes
from .core.engine import Engine
from .core.errors import AlreadyWrappedError, NotWrappedError, UnknownStrategyError, UnsupportedModelError
from .core.summary import Summary, configs_tag
from .model_kind import check_not_compiled, check_strategy_kinds
from .strategies.base import GRANULARITY_LEVELS, StrategyConfig
from .strategies.registry import StrategyRequest, build_strategy, get_entry, parse_requests, resolve_config

logger = logging.getLogger(__name__)

_BINDING_ATTR = "_diffaccel"


@dataclass
class Binding:
    """What `wrap` attached to an object, so that `unwrap` can take exactly that away."""

    engines: dict[str, Engine]
    scheduler: Any = None
    patched_set_timesteps: bool = False
    options: dict = field(default_factory=dict)


def wrap(obj, strategy: str | StrategyConfig | Sequence[str | StrategyConfig], **options):
    """Attach an acceleration strategy to a diffusers pipeline, a bare model, or a module with an adapter.

    Args:
        obj: a `DiffusionPipeline` (every component with a registered adapter is wrapped: `transformer`,
            `transformer_2`, `unet`), or an `nn.Module` whose class has an adapter.
        strategy: a strategy name (see `diffaccel.strategies()`), a spec with options
            (`"taylorseer:interval=4"`), a config object such as `diffaccel.TaylorSeerConfig(interval=6)`,
            a `diffaccel.StrategyRequest`, or several of these to compose strategies: a list
            (`["taylorseer:interval=4", "taocache"]`) or one text joined by `+` (`"taylorseer:interval=4+taocache"`).
        **options: override the model family's preset (for a single strategy).

    Returns the same object. Runs start automatically when a wrapped pipeline's scheduler sets its
    timesteps; hand-written loops over a bare model call `diffaccel.new_run(model)` per generation.
    """
    if getattr(obj, _BINDING_ATTR, None) is not None:
        raise AlreadyWrappedError(
            f"{type(obj).__name__} is already wrapped by diffaccel; call diffaccel.unwrap(obj) first, or pass "
            "several strategies in one call: diffaccel.wrap(obj, [a, b])."
        )
    plan = _plan(obj, strategy, options)
    engines: dict[str, Engine] = {}
    try:
        for name, (module, adapter, configs) in plan.items():
            strategies = [build_strategy(config) for config in configs]
            for strategy in strategies:
                strategy.check_composition([s for s in strategies if s is not strategy])
            engine = Engine(module, adapter, strategies, owner=obj)
            engine.attach()
            engines[name] = engine
    except BaseException:
        for engine in engines.values():
            engine.detach()
        raise
    targets = {name: module for name, (module, _, _) in plan.items()}
    binding = Binding(engines)
    scheduler = _owned_scheduler(obj, targets)
    if scheduler is not None and hasattr(scheduler, "set_timesteps"):
        _hook_set_timesteps(scheduler, binding)
    setattr(obj, _BINDING_ATTR, binding)
    for name, engine in engines.items():
        logger.info(
            "diffaccel: %s on %s (%s)",
            configs_tag(s.config for s in engine.strategies),
            name or type(obj).__name__,
            engine.adapter.family,
        )
    return obj


def resolved_configs(obj, strategy: str | StrategyConfig | Sequence[str | StrategyConfig], **options):
    """What `wrap(obj, strategy, **options)` would attach, without attaching anything: component name ->
    the fully resolved config of each strategy (class defaults, the family's preset, a tuned preset,
    then the options). Tools that record what ran (`diffaccel compare`) identify a run by it, since
    presets are code whose meaning can change between versions."""
    return {name: configs for name, (_, _, configs) in _plan(obj, strategy, options).items()}


def _plan(obj, strategy, options: dict) -> dict[str, tuple[nn.Module, Any, list[StrategyConfig]]]:
    """The modules `wrap` attaches to, each with its adapter and the resolved configs (in order)."""
    specs = [
        parsed
        for spec in (strategy if isinstance(strategy, (list, tuple)) else [strategy])
        for parsed in _requests(spec)
    ]
    if not specs:
        raise UnknownStrategyError("wrap needs at least one strategy")
    if len(specs) > 1 and options:
        raise UnknownStrategyError(
            "options apply to a single strategy; to compose strategies give each its options, e.g. "
            "['taylorseer:interval=4', 'taocache'] or config objects"
        )
    entries = [get_entry(_spec_name(spec)) for spec in specs]
    check_not_compiled(obj)
    check_strategy_kinds(obj, entries)
    needs_no_units = all(_unit_level(e, spec, options) in ("model", "custom") for e, spec in zip(entries, specs))
    targets = _denoisers(obj, needs_no_units)
    plan = {}
    for name, module in targets.items():
        adapter = find_adapter(module) or generic_adapter(module)
        configs = []
        for spec in specs:
            if isinstance(spec, StrategyRequest):
                tuned = {**spec.options_dict, **options}.get("preset")
                configs.append(spec.config(adapter.preset(spec.name, tuned), **options))
            else:
                tuned = options.get("preset", getattr(spec, "preset", None))
                configs.append(resolve_config(spec, adapter.preset(spec.strategy_name, tuned), options))
        plan[name] = (module, adapter, configs)
    return plan


def unwrap(obj):
    """Remove everything `wrap` attached; outputs are then bit-identical to a never-wrapped object."""
    binding = _binding(obj)
    for engine in binding.engines.values():
        engine.detach()
    if binding.patched_set_timesteps:
        vars(binding.scheduler).pop("set_timesteps", None)
    delattr(obj, _BINDING_ATTR)
    return obj


def summary(obj) -> Summary:
    """Statistics of the most recent run (see `Summary`)."""
    binding = _binding(obj)
    return Summary.combine({name or "model": Summary.of_engine(e) for name, e in binding.engines.items()})


def new_run(obj, num_inference_steps: int | None = None, timesteps=None) -> None:
    """Start a new generation: forget all cached state. Wrapped pipelines do this by themselves;
    call it in hand-written denoising loops, optionally with the run's step count and its timesteps
    (needed only by schedules carried over from another step count)."""
    if timesteps is not None and num_inference_steps is None:
        num_inference_steps = len(timesteps)
    for engine in _binding(obj).engines.values():
        engine.new_run(num_inference_steps, timesteps)


@contextlib.contextmanager
def cache_context(obj, name: str) -> Iterator[None]:
    """Name the guidance branch of the calls inside the block (like diffusers' `model.cache_context`),
    for models that lack that method (UNets, SD3, PixArt, DiT, Sana)."""
    if not isinstance(name, str) or not name:
        raise TypeError("a cache context name must be a non-empty string")
    engines = list(_binding(obj).engines.values())
    for engine in engines:
        engine.engine_hook.context_tracker.forced.append(name)
    try:
        yield
    finally:
        for engine in engines:
            engine.engine_hook.context_tracker.forced.pop()


def engines(obj) -> dict[str, Engine]:
    """The engines `wrap` attached (component name → engine); for tools built on diffaccel."""
    return dict(_binding(obj).engines)


# ------------------------------------------------------------------------------------------ helpers
def _requests(spec) -> list[StrategyRequest | StrategyConfig]:
    """Text (`"taylorseer:interval=4"`, `"a+b"`) → requests; requests and config objects pass through."""
    if isinstance(spec, str):
        return parse_requests(spec)
    if isinstance(spec, (StrategyRequest, StrategyConfig)):
        return [spec]
    raise TypeError(f"a strategy is a name (str), a StrategyRequest or a config object, got {type(spec).__name__}")


def _unit_level(entry, spec, options: dict) -> str:
    """Where a strategy attaches, before any adapter is looked up: its class's level, unless a
    `granularity` option moves a block-level strategy to the whole model (which needs no adapter)."""
    if isinstance(spec, StrategyConfig):
        granularity = getattr(spec, "granularity", None)
    else:
        granularity = {**spec.options_dict, **options}.get("granularity")
    if isinstance(granularity, str) and granularity in GRANULARITY_LEVELS:
        return GRANULARITY_LEVELS[granularity]
    return entry.strategy_cls.unit_level


def _spec_name(spec: StrategyRequest | StrategyConfig) -> str:
    return spec.strategy_name if isinstance(spec, StrategyConfig) else spec.name


def _binding(obj) -> Binding:
    binding = getattr(obj, _BINDING_ATTR, None)
    if binding is None:
        raise NotWrappedError(f"{type(obj).__name__} is not wrapped by diffaccel (call diffaccel.wrap first)")
    return binding


def _denoisers(obj, needs_no_units: bool) -> dict[str, nn.Module]:
    """The modules of `obj` that diffaccel attaches to. Whole-model strategies (TaoCache) need no
    adapter: they also take any module, and a pipeline's usual denoiser components."""
    if isinstance(obj, nn.Module):
        if find_adapter(obj) is None:
            inner = _adapted_submodules(obj)
            if inner:  # a policy holding its noise predictor (`policy.model`, `policy.diffusion.unet`)
                return inner
            if not needs_no_units:
                get_adapter(obj)  # raises with the list of supported classes
        return {"": obj}
    components = getattr(obj, "components", None)
    if not isinstance(components, dict) and isinstance(getattr(obj, "model", None), nn.Module):
        components = {"model": obj.model}  # pipelines that hold a single `model` (diffusion LMs)
    if not isinstance(components, dict):
        raise TypeError(f"diffaccel.wrap expects a diffusers pipeline or an nn.Module, got {type(obj).__name__}")
    found = {
        name: m
        for name, m in components.items()
        if isinstance(m, nn.Module)
        and (find_adapter(m) is not None or (needs_no_units and name in DENOISER_COMPONENTS))
    }
    if not found:
        classes = sorted({type(m).__name__ for m in components.values() if isinstance(m, nn.Module)})
        raise UnsupportedModelError(
            f"No component of {type(obj).__name__} has a diffaccel adapter (components: {', '.join(classes)}). "
            f"Supported classes: {', '.join(supported_classes())}. Describe a new family with "
            "diffaccel.register_adapter(...)."
        )
    return found


def _adapted_submodules(obj: nn.Module) -> dict[str, nn.Module]:
    """The outermost sub-modules of `obj` that have an adapter (a policy's noise predictor)."""
    found: dict[str, nn.Module] = {}
    for name, module in obj.named_modules():
        if name and not any(name.startswith(f"{outer}.") for outer in found) and find_adapter(module) is not None:
            found[name] = module
    return found


#: where a pipeline, or a policy wrapping its noise predictor, keeps the scheduler whose
#: `set_timesteps` starts each generation
SCHEDULER_ATTRIBUTES = ("scheduler", "noise_scheduler", "diffusion.noise_scheduler")


def _owned_scheduler(obj, targets: dict[str, nn.Module]):
    if isinstance(obj, nn.Module) and "" in targets:
        return None
    for path in SCHEDULER_ATTRIBUTES:
        scheduler = obj
        for part in path.split("."):
            scheduler = getattr(scheduler, part, None)
        if scheduler is not None and not isinstance(scheduler, nn.Module):
            return scheduler
    return None


def _hook_set_timesteps(scheduler, binding: Binding) -> None:
    """Start a new run whenever the pipeline's scheduler sets its timesteps (once per pipeline call,
    before the denoising loop, in every diffusers pipeline). Instance-level: other pipelines sharing
    the scheduler class are untouched; `functools.wraps` keeps the signature that
    `retrieve_timesteps` inspects."""
    original = scheduler.set_timesteps

    @functools.wraps(original)
    def set_timesteps(*args, **kwargs):
        for engine in binding.engines.values():  # refuse a second thread before the shared scheduler changes
            engine.claim_run()
        result = original(*args, **kwargs)
        timesteps = getattr(scheduler, "timesteps", None)
        total = len(timesteps) if timesteps is not None else None
        values = None if timesteps is None else [float(t) for t in timesteps]
        for engine in binding.engines.values():
            engine.new_run(total, values)
        return result

    scheduler.set_timesteps = set_timesteps
    binding.scheduler = scheduler
    binding.patched_set_timesteps = True
