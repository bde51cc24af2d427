"""diffusers' built-in cache hooks as comparison rows: `diffusers:<technique>[:field=value,...]`.

Each technique is applied through diffusers' own code: `model.enable_cache(config)` on models with
`CacheMixin` (which also resets the hooks after every pipeline call), else the `apply_*` function, with the
hooks reset before every call and removed by their registered names afterwards (`src/diffusers/hooks/hooks.py`, diffusers 0.42).
Options are fields of the diffusers config dataclass; what the harness supplies, and why:

* `pab`, `fastercache`: `current_timestep_callback` (not a user option). diffusers' docs use
  `lambda: pipe.current_timestep`; pipelines that do not set it (the zoo's, SD's) get the scheduler's current
  timestep, and schedulers without a step index (DDIM) the `timestep` the denoiser was last called with.
* `pab`: `spatial_attention_block_skip_range=2` when no skip range is given (diffusers' own fallback).
* `fastercache`: `is_guidance_distilled` and `tensor_format` default from what the baseline run showed (a
  denoiser batch twice the image count means classifier-free guidance in one batched call).
* `magcache`: `num_inference_steps` = the run's steps, and `mag_ratios` from diffusers' own calibration mode
  (`calibrate=True`, one run on the held-out warm-up seed, read from the log line diffusers writes; the
  ratios of the first guidance context, `cond`, are used). `mag_ratios=flux` selects diffusers'
  `FLUX_MAG_RATIOS` instead.
* `taylorseer`: `taylor_factors_dtype` may be given as a string (`float32`, `bfloat16`).

Support rules (reasons shown in the table): PAB and FasterCache keep one state per attention module, not per
`cache_context`, so on a pipeline that calls the denoiser twice per step (two-call guidance) they would mix
the cond and uncond branches; they are reported unsupported there unless `force=true`. A technique that
attached to no module of the model is reported unsupported too.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import torch

from ...core.errors import UnknownStrategyError
from ..peer_table import register_peer
from ..runners import HarnessContext, RunStats, StrategyRunner, Unsupported
from ..specs import StrategySpec, make_spec

logger = logging.getLogger(__name__)

COUNTED = "counted"


@dataclass(frozen=True)
class Technique:
    name: str
    config_cls: str
    apply_fn: str
    module: str  # diffusers.hooks.<module>
    hook_names: tuple[str, ...]  # names of the constants holding the hook names
    skipping_hooks: tuple[str, ...]  # hooks that can skip work (to detect "attached to nothing")
    per_context_state: bool
    needs_timestep: bool
    description: str


TECHNIQUES: dict[str, Technique] = {
    "taylorseer": Technique(
        "taylorseer",
        "TaylorSeerCacheConfig",
        "apply_taylorseer_cache",
        "taylorseer_cache",
        ("_TAYLORSEER_CACHE_HOOK",),
        ("_TAYLORSEER_CACHE_HOOK",),
        True,
        False,
        "diffusers' TaylorSeer cache (cache_interval=5, disable_cache_before_step=3, bf16 factors)",
    ),
    "fbc": Technique(
        "fbc",
        "FirstBlockCacheConfig",
        "apply_first_block_cache",
        "first_block_cache",
        ("_FBC_LEADER_BLOCK_HOOK", "_FBC_BLOCK_HOOK"),
        ("_FBC_LEADER_BLOCK_HOOK",),
        True,
        False,
        "First Block Cache (threshold=0.05 on the first block's relative residual change)",
    ),
    "magcache": Technique(
        "magcache",
        "MagCacheConfig",
        "apply_mag_cache",
        "mag_cache",
        ("_MAG_CACHE_LEADER_BLOCK_HOOK", "_MAG_CACHE_BLOCK_HOOK"),
        ("_MAG_CACHE_LEADER_BLOCK_HOOK",),
        True,
        False,
        "MagCache (magnitude ratios calibrated by diffusers' calibrate mode)",
    ),
    "pab": Technique(
        "pab",
        "PyramidAttentionBroadcastConfig",
        "apply_pyramid_attention_broadcast",
        "pyramid_attention_broadcast",
        ("_PYRAMID_ATTENTION_BROADCAST_HOOK",),
        ("_PYRAMID_ATTENTION_BROADCAST_HOOK",),
        False,
        True,
        "Pyramid Attention Broadcast (spatial attention every 2nd call within timesteps 100..800)",
    ),
    "fastercache": Technique(
        "fastercache",
        "FasterCacheConfig",
        "apply_faster_cache",
        "faster_cache",
        ("_FASTER_CACHE_DENOISER_HOOK", "_FASTER_CACHE_BLOCK_HOOK"),
        ("_FASTER_CACHE_BLOCK_HOOK",),
        False,
        True,
        "FasterCache (attention reuse + unconditional-branch approximation)",
    ),
}
ALIASES = {
    "first-block-cache": "fbc",
    "firstblockcache": "fbc",
    "first_block_cache": "fbc",
    "mag": "magcache",
    "mag-cache": "magcache",
    "pyramid-attention-broadcast": "pab",
    "faster-cache": "fastercache",
    "taylorseer-cache": "taylorseer",
}
#: harness options (not config fields)
HARNESS_OPTIONS = {"force"}
#: config fields the harness owns
RESERVED = {
    "current_timestep_callback",
    "attention_weight_callback",
    "low_frequency_weight_callback",
    "high_frequency_weight_callback",
    "calibrate",
}


def names() -> list[str]:
    return list(TECHNIQUES)


def describe() -> list[tuple[str, str]]:
    return [(t.name, t.description) for t in TECHNIQUES.values()]


def _config_class(technique: Technique):
    import diffusers.hooks as hooks

    return getattr(hooks, technique.config_cls)


def validate(spec: StrategySpec) -> StrategySpec:
    name = ALIASES.get(spec.name, spec.name)
    if name not in TECHNIQUES:
        raise UnknownStrategyError(
            f"unknown diffusers technique '{spec.name}'; available: {', '.join('diffusers:' + n for n in TECHNIQUES)}"
        )
    fields = {f.name for f in dataclasses.fields(_config_class(TECHNIQUES[name]))}
    for key in spec.options_dict:
        if key in RESERVED:
            raise UnknownStrategyError(f"diffusers:{name} option '{key}' is set by the harness, not by the user")
        if key not in fields and key not in HARNESS_OPTIONS:
            raise UnknownStrategyError(
                f"unknown option '{key}' for diffusers:{name}; its options are "
                f"{sorted((fields - RESERVED - {'_unconditional_conditional_input_kwargs_identifiers'}) | HARNESS_OPTIONS)}"
            )
    return make_spec("diffusers", name, spec.options_dict)


# ------------------------------------------------------------------------------------------ timestep
class TimestepProbe:
    """`current_timestep_callback` for PAB / FasterCache (see the module docstring for the order)."""

    def __init__(self, pipe, denoisers: dict[str, torch.nn.Module]):
        self.pipe = pipe
        self.last_denoiser_timestep: float | None = None
        self._handles = [d.register_forward_pre_hook(self._capture, with_kwargs=True) for d in denoisers.values()]

    def _capture(self, module, args, kwargs):
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        if isinstance(t, torch.Tensor) and t.numel():
            t = t.flatten()[0].item()
        if isinstance(t, (int, float)):
            self.last_denoiser_timestep = float(t)

    def __call__(self) -> float:
        t = getattr(self.pipe, "_current_timestep", None)
        if t is None:
            t = self._scheduler_timestep()
        if t is None:
            t = self.last_denoiser_timestep
        if t is None:
            raise RuntimeError("no current timestep available (pipeline, scheduler and denoiser gave none)")
        return float(t.flatten()[0].item() if isinstance(t, torch.Tensor) else t)

    def _scheduler_timestep(self):
        scheduler = getattr(self.pipe, "scheduler", None)
        timesteps = getattr(scheduler, "timesteps", None)
        if scheduler is None or timesteps is None or not hasattr(scheduler, "step_index"):
            return None
        index = scheduler.step_index
        if index is None:
            index = getattr(scheduler, "begin_index", None) or 0
        return timesteps[min(index, len(timesteps) - 1)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


# ------------------------------------------------------------------------------------------ magcache
def calibrate_mag_ratios(ctx: HarnessContext, denoiser_name: str, base_kwargs: dict[str, Any]) -> list[float]:
    """Run diffusers' MagCache calibration mode once (warm-up seed) and return the logged ratios.

    Cached in `<out>/calibration/` so a resumed comparison does not recalibrate."""
    cache = (
        ctx.out_dir
        / "calibration"
        / f"magcache_{denoiser_name}_steps{ctx.steps}_g{ctx.guidance_scale}_seed{ctx.warmup_seed}.json"
    )
    if cache.is_file():
        return json.loads(cache.read_text())["mag_ratios"]
    from diffusers.hooks import MagCacheConfig, apply_mag_cache
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK

    denoiser = ctx.model.denoisers[denoiser_name]
    captured: list[list[float]] = []

    class _Capture(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("MagCache Calibration Results:"):
                captured.append(ast.literal_eval(message.split(":", 1)[1].strip()))

    hook_logger = logging.getLogger("diffusers.hooks.mag_cache")
    handler, old_level, old_propagate = _Capture(level=logging.INFO), hook_logger.level, hook_logger.propagate
    hook_logger.addHandler(handler)
    hook_logger.setLevel(logging.INFO)
    hook_logger.propagate = False  # captured here, not echoed by diffusers' own handler
    config = MagCacheConfig(**{**base_kwargs, "calibrate": True, "mag_ratios": None})
    _enable(denoiser, config, apply_mag_cache)
    if _count_hooked(denoiser, (_MAG_CACHE_LEADER_BLOCK_HOOK,)) == 0:
        _disable(denoiser, (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK))
        raise Unsupported(
            f"diffusers' apply_mag_cache attached to no block of {type(denoiser).__name__} "
            "(it needs transformer block lists of a class registered in TransformerBlockRegistry)"
        )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # calibration also print()s the ratios
            _reset(denoiser)
            ctx.call(ctx.warmup_seed)
    finally:
        hook_logger.removeHandler(handler)
        hook_logger.setLevel(old_level)
        hook_logger.propagate = old_propagate
        _disable(denoiser, (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK))
    if not captured:
        raise Unsupported("MagCache calibration produced no ratios (the tail block hook never finished a run)")
    ratios = [float(r) for r in captured[0]]
    from ...core.atomic import atomic_write_text

    atomic_write_text(cache, json.dumps({"mag_ratios": ratios, "contexts_logged": len(captured)}))
    return ratios


# ------------------------------------------------------------------------------------------ plumbing
def _enable(denoiser: torch.nn.Module, config, apply_fn) -> None:
    from diffusers.models.cache_utils import CacheMixin

    if isinstance(denoiser, CacheMixin):
        denoiser.enable_cache(config)
    else:
        apply_fn(denoiser, config)


def _disable(denoiser: torch.nn.Module, hook_names: tuple[str, ...]) -> None:
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(denoiser)
    for name in hook_names:
        registry.remove_hook(name, recurse=True)
    registry.invalidate_child_registries_cache()
    if getattr(denoiser, "_cache_config", None) is not None:
        denoiser._cache_config = None


def _reset(denoiser: torch.nn.Module) -> None:
    from diffusers.hooks import HookRegistry

    HookRegistry.check_if_exists_or_initialize(denoiser).reset_stateful_hooks(recurse=True)


def _count_hooked(denoiser: torch.nn.Module, hook_names: tuple[str, ...]) -> int:
    count = 0
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and any(name in registry.hooks for name in hook_names):
            count += 1
    return count


def _convert(value: Any, default: Any) -> Any:
    """CLI strings to what a config field holds: `a/b` tuples, dtype names."""
    if isinstance(default, torch.dtype) or (isinstance(value, str) and value in ("float32", "bfloat16", "float16")):
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(value, value)
    if isinstance(value, str) and "/" in value:
        parts = [p for p in value.split("/") if p]
        converted = []
        for part in parts:
            try:
                converted.append(int(part))
            except ValueError:
                try:
                    converted.append(float(part))
                except ValueError:
                    converted.append(part)
        return tuple(converted) if isinstance(default, tuple) or default is None else list(converted)
    return value


class Runner(StrategyRunner):
    """One diffusers technique on every denoiser of the pipeline."""

    needs_counting = True

    def __init__(self, spec: StrategySpec):
        super().__init__(spec)
        self.technique = TECHNIQUES[spec.name]
        self.probe: TimestepProbe | None = None
        self.hook_names: tuple[str, ...] = ()
        self.attached: list[torch.nn.Module] = []
        self.hooked_modules = 0

    def setup(self, ctx: HarnessContext) -> None:
        import importlib

        import diffusers.hooks as hooks

        super().setup(ctx)
        technique, options = self.technique, self.spec.options_dict
        force = bool(options.pop("force", False))
        denoisers = ctx.model.denoisers
        if not denoisers:
            raise Unsupported(f"{type(ctx.model.pipe).__name__} has no transformer/unet component")
        calls = ctx.baseline_calls_per_step()
        if not technique.per_context_state and calls and calls > 1 and not force:
            raise Unsupported(
                f"diffusers' {technique.config_cls} keeps one state per attention module, not per cache_context; "
                f"this pipeline calls the denoiser {calls}x per step (two-call guidance), so cond and uncond would "
                "share cached attention (pass force=true to run it anyway)"
            )
        module = importlib.import_module(f"diffusers.hooks.{technique.module}")
        self.hook_names = tuple(getattr(module, n) for n in technique.hook_names)
        skipping = tuple(getattr(module, n) for n in technique.skipping_hooks)
        apply_fn = getattr(hooks, technique.apply_fn)
        if technique.needs_timestep:
            self.probe = TimestepProbe(ctx.model.pipe, denoisers)
        try:
            for name, denoiser in denoisers.items():
                config = self._config(name, denoiser, options, ctx)
                self.attached.append(denoiser)
                _enable(denoiser, config, apply_fn)
            self.hooked_modules = sum(_count_hooked(d, skipping) for d in self.attached)
            if self.hooked_modules == 0 and not self._denoiser_level_active():
                raise Unsupported(
                    f"diffusers' {technique.apply_fn} attached to no module of "
                    f"{', '.join(type(d).__name__ for d in denoisers.values())} (its module-name patterns match none)"
                )
        except Unsupported:
            self.teardown()
            raise
        except Exception as error:  # diffusers' own refusal, e.g. "Model class ... not registered."
            self.teardown()
            raise Unsupported(f"diffusers {technique.apply_fn}: {type(error).__name__}: {error}") from error

    def _denoiser_level_active(self) -> bool:
        return self.technique.name == "fastercache" and not self._fastercache_distilled

    _fastercache_distilled = True

    def _config(self, name: str, denoiser, options: dict[str, Any], ctx: HarnessContext):
        cls = _config_class(self.technique)
        defaults = {
            f.name: (f.default if f.default is not dataclasses.MISSING else None) for f in dataclasses.fields(cls)
        }
        kwargs = {key: _convert(value, defaults.get(key)) for key, value in options.items()}
        technique = self.technique.name
        if self.probe is not None:
            kwargs["current_timestep_callback"] = self.probe
        if technique == "pab" and not any(k.endswith("_block_skip_range") for k in kwargs):
            kwargs["spatial_attention_block_skip_range"] = 2
        if technique == "fastercache":
            kwargs.setdefault("is_guidance_distilled", not ctx.batched_cfg)
            kwargs.setdefault("tensor_format", "BCHW")
            self._fastercache_distilled = bool(kwargs["is_guidance_distilled"])
        if technique == "magcache":
            kwargs["num_inference_steps"] = ctx.steps
            if kwargs.get("mag_ratios") == "flux":
                from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

                kwargs["mag_ratios"] = FLUX_MAG_RATIOS
            elif kwargs.get("mag_ratios") is None:
                kwargs["mag_ratios"] = calibrate_mag_ratios(ctx, name, kwargs)
        return cls(**kwargs)

    def before_call(self) -> None:
        for denoiser in self.attached:
            _reset(denoiser)

    def after_call(self) -> RunStats:
        return RunStats(self.ctx.steps, None, None, COUNTED, {"hooked_modules": self.hooked_modules})

    def teardown(self) -> None:
        for denoiser in self.attached:
            _disable(denoiser, self.hook_names)
        self.attached = []
        if self.probe is not None:
            self.probe.remove()
            self.probe = None


register_peer("diffusers", validate=validate, make_runner=Runner, names=names, describe=describe)
