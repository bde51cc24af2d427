"""Models `diffaccel compare` can run, and how to call each one the same way for every strategy.

`--model` is resolved in this order:

1. a name from the reference zoo (`diffaccel.zoo.names()`), loaded from its committed safetensors; zoo
   entries of kind `"dllm"` go to the dLLM evaluation instead (see `diffaccel.compare.dllm`);
2. `testing:tiny-flux`, `testing:tiny-sd`, `testing:tiny-wan`: randomly initialised tiny diffusers pipelines
   from `diffaccel.testing.tiny_pipelines`, to exercise the plumbing in seconds (their images are noise, so
   quality numbers mean nothing);
3. anything else is a Hugging Face hub id or a local folder, loaded with
   `DiffusionPipeline.from_pretrained(model, torch_dtype=dtype)` and moved to `--device`. That is the GPU path
   (`--device cuda --dtype bfloat16`); it is written for real; the project's tests and measurements run offline on
   CPU, so it has not been exercised against the hub.

Conditioning: zoo pipelines draw one sample per class in one call (`class_labels=None`), which is one run;
text-to-image/video pipelines get one prompt per run (`--prompts FILE`, else a small built-in list).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..adapters.registry import DENOISER_COMPONENTS
from .prompts import BUILTIN_PROMPTS

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

# Module lists that hold a denoiser's blocks (diffusers' `_ALL_TRANSFORMER_BLOCK_IDENTIFIERS` plus UNet stages).
BLOCK_LIST_NAMES = (
    "transformer_blocks",
    "single_transformer_blocks",
    "blocks",
    "layers",
    "visual_transformer_blocks",
    "temporal_transformer_blocks",
    "down_blocks",
    "up_blocks",
)


@dataclass(frozen=True)
class Condition:
    """What one run is conditioned on: a prompt, a class label, or all classes of a zoo model at once."""

    id: str  # stable, file-name-safe: "all", "p0", "c3"
    kind: str  # "prompt" | "class" | "all-classes"
    value: Any = None
    label: str = ""

    def record_fields(self) -> dict[str, Any]:
        return {
            "condition": self.id,
            "prompt": self.value if self.kind == "prompt" else None,
            "class": (self.label or "all") if self.kind in ("class", "all-classes") else None,
        }


@dataclass
class LoadedModel:
    """A ready pipeline plus everything needed to call it identically for every strategy."""

    name: str
    pipe: Any
    source: str  # "zoo" | "testing" | "hub"
    conditions: list[Condition]
    device: str = "cpu"
    fixed_kwargs: dict[str, Any] = field(default_factory=dict)
    default_steps: int = 20
    class_names: tuple[str, ...] = ()
    #: scheduler config values set with `--scheduler KEY=VALUE` (part of every record's identity)
    scheduler_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def scheduler_tag(self) -> str | None:
        """`"shift=0.3"`-style text of the scheduler overrides, or None without any."""
        if not self.scheduler_overrides:
            return None
        return ",".join(f"{k}={v}" for k, v in sorted(self.scheduler_overrides.items()))

    @property
    def denoisers(self) -> dict[str, torch.nn.Module]:
        """The pipeline's denoiser components (what caching strategies attach to)."""
        components = getattr(self.pipe, "components", {}) or {}
        return {n: m for n, m in components.items() if n in DENOISER_COMPONENTS and isinstance(m, torch.nn.Module)}

    def call_kwargs(self, condition: Condition, steps: int, seed: int, guidance_scale: float | None) -> dict[str, Any]:
        """Keyword arguments of one pipeline call. The generator lives on the CPU so that a seed gives the
        same initial noise on every device (diffusers' `randn_tensor` moves it)."""
        kwargs = dict(self.fixed_kwargs)
        kwargs.update(num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed), output_type="np")
        if guidance_scale is not None:
            kwargs["guidance_scale"] = guidance_scale
        if condition.kind == "prompt":
            kwargs["prompt"] = condition.value
        elif condition.kind == "class":
            kwargs["class_labels"] = [condition.value]
        return kwargs


TestingFactory = Callable[[], tuple[Any, dict[str, Any]]]


def _tiny(factory_name: str, fixed: dict[str, Any]) -> TestingFactory:
    def build():
        from ..testing import tiny_pipelines

        return getattr(tiny_pipelines, factory_name)(), dict(fixed)

    return build


TESTING_MODELS: dict[str, TestingFactory] = {
    "testing:tiny-flux": _tiny("tiny_flux_pipeline", dict(height=16, width=16, max_sequence_length=16)),
    "testing:tiny-sd": _tiny("tiny_sd_pipeline", dict(height=32, width=32)),
    "testing:tiny-wan": _tiny("tiny_wan_pipeline", dict(height=16, width=16, num_frames=5, max_sequence_length=16)),
}


def zoo_kind(name: str) -> str | None:
    """The zoo entry's kind ("image", "dllm", ...) or None when `name` is not a zoo model."""
    from .. import zoo

    if name not in zoo.names():
        return None
    return zoo.entry(name).kind


def load_model(
    name: str,
    device: str = "cpu",
    dtype: str = "float32",
    prompts: list[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    scheduler_overrides: dict[str, Any] | None = None,
) -> LoadedModel:
    """Resolve `--model` (see the module docstring) into a `LoadedModel`."""
    torch_dtype = parse_dtype(dtype)
    if zoo_kind(name) is not None:
        from .. import zoo

        pipe = zoo.load(name, device=device, dtype=torch_dtype)
        source, fixed = "zoo", {}
    elif name in TESTING_MODELS:
        pipe, fixed = TESTING_MODELS[name]()  # built in float32
        pipe = pipe.to(device) if torch_dtype == torch.float32 else pipe.to(device=device, dtype=torch_dtype)
        source = "testing"
    else:
        pipe, fixed, source = _load_hub(name, device, torch_dtype), {}, "hub"
    if height is not None:
        fixed["height"] = height
    if width is not None:
        fixed["width"] = width
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    if scheduler_overrides:
        override_scheduler(pipe, scheduler_overrides)
    conditions, class_names = _conditions(pipe, source, prompts)
    return LoadedModel(
        name=name,
        pipe=pipe,
        source=source,
        conditions=conditions,
        device=str(device),
        fixed_kwargs=fixed,
        default_steps=_default_steps(source),
        class_names=class_names,
        scheduler_overrides=dict(scheduler_overrides or {}),
    )


def override_scheduler(pipe, overrides: dict[str, Any]) -> None:
    """Replace `pipe.scheduler` by the same class with some config values changed (e.g. a flow-matching
    `shift` below 1, which spends more of the steps at low noise). Only keys the scheduler's config
    already has are accepted, so a typo cannot silently leave the schedule unchanged."""
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None:
        raise ValueError("--scheduler: this pipeline has no scheduler")
    unknown = sorted(set(overrides) - set(scheduler.config))
    if unknown:
        raise ValueError(
            f"--scheduler: {type(scheduler).__name__} has no config key(s) {unknown}; its keys are "
            f"{sorted(k for k in scheduler.config if not k.startswith('_'))}"
        )
    pipe.scheduler = type(scheduler).from_config(scheduler.config, **overrides)


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; choose from {', '.join(sorted(DTYPES))}")
    return DTYPES[dtype]


def _load_hub(name: str, device: str, dtype: torch.dtype):
    """The real-checkpoint path: `DiffusionPipeline.from_pretrained` (needs the hub or a local folder)."""
    from diffusers import DiffusionPipeline

    logger.info("loading %s with DiffusionPipeline.from_pretrained(torch_dtype=%s) onto %s", name, dtype, device)
    try:
        pipe = DiffusionPipeline.from_pretrained(name, torch_dtype=dtype)
    except Exception as error:  # noqa: BLE001 - re-raised with the options a user has
        from .. import zoo

        raise ValueError(
            f"could not load --model {name!r}: {error}\nIt is not a zoo model ({', '.join(zoo.names())}), "
            f"not a testing model ({', '.join(TESTING_MODELS)}), and DiffusionPipeline.from_pretrained failed "
            "(a hub id needs network access to the hub, or pass a local folder)."
        ) from error
    return pipe.to(device)


def _default_steps(source: str) -> int:
    return {"zoo": 20, "testing": 6}.get(source, 28)


def _call_parameters(pipe) -> set[str]:
    try:
        return set(inspect.signature(pipe.__call__).parameters)
    except (TypeError, ValueError):
        return set()


def _conditions(pipe, source: str, prompts: list[str] | None) -> tuple[list[Condition], tuple[str, ...]]:
    params = _call_parameters(pipe)
    class_names = tuple(getattr(pipe, "class_names", ()) or ())
    if "prompt" in params:
        chosen = list(prompts) if prompts else (BUILTIN_PROMPTS[:1] if source == "testing" else list(BUILTIN_PROMPTS))
        return [Condition(f"p{i}", "prompt", p, p) for i, p in enumerate(chosen)], class_names
    if "class_labels" in params:
        if prompts:  # for class-conditional models the prompts file lists class names or ids
            return [Condition(f"c{i}", "class", _class_value(v), str(v)) for i, v in enumerate(prompts)], class_names
        if source == "zoo":
            return [Condition("all", "all-classes", None, "all")], class_names
        return [Condition("c0", "class", 0, "0")], class_names
    if prompts:
        raise ValueError(f"{type(pipe).__name__} takes neither `prompt` nor `class_labels`; --prompts does not apply")
    return [Condition("u", "unconditional", None, "")], class_names


def _class_value(text: str) -> int | str:
    text = str(text).strip()
    return int(text) if text.lstrip("-").isdigit() else text
