"""Random call sequences through real (tiny) diffusers pipelines, each run checked against a fresh wrap.

The property is the one of `diffaccel.testing.sequences`, on the path users take: `FluxPipeline` (guidance
distilled, or true CFG as two calls per step under `cache_context`), `StableDiffusionPipeline` (a UNet, CFG as
one doubled batch, or no CFG) and `WanPipeline` (CFG as two calls, or none). Each family is two pipelines
sharing one denoiser, VAE and text encoders, each with its own scheduler (as `Pipeline.from_pipe` users
have); either may be the wrapped one, and runs go through either, so a run can reach the wrapped denoiser
through a pipeline whose scheduler diffaccel never saw. Between runs: other image counts and resolutions,
CFG on or off, runs that raise at a random denoiser call or from the step callback, unwrap and re-wrap with
another strategy, and (rarely; slow on CPU) `torch.compile` of the wrapped denoiser in place.

A run that ends is compared, bit for bit, with the same call on a deep copy of the family made at the start,
wrapped the same way just for that call (wrap, call, unwrap: a freshly wrapped object). A run whose call
raised something other than the injected exception must raise the same error on the fresh wrap.

Strategies that keep state across runs (HyCa's probe) get a profile made once on a copy, so one run is the
unit of comparison; their commit rules are tested separately.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

import diffaccel

from ..core.errors import RunStateError
from .sequences import SequenceRunner
from .tiny_pipelines import tiny_flux_pipeline, tiny_sd_pipeline, tiny_wan_pipeline

#: strategies a sequence switches between ("none": unwrapped; "hyca-profiled": HyCa with a profile)
STRATEGIES: list[Any] = [
    "none",
    "taylorseer:interval=2,warmup=1,order=1",
    "taylorseer:interval=3,warmup=1,granularity=stack",
    "taylorseer:interval=2,warmup=1,schedule=adaptive,threshold=0.3",
    "taylorseer:interval=2,warmup=1,guidance_reuse=true",
    "taocache:start_step=2,error_threshold=0.5,max_skips=2",
    ["taylorseer:interval=2,warmup=1", "taocache:start_step=3,error_threshold=0.5"],
    "bac:mode=uniform,interval=2",
    "hyca-profiled",
]
HYCA_OPTIONS = dict(interval=3, warmup=1, num_clusters=2)


class Boom(RuntimeError):
    """The exception a sequence injects."""


@dataclass(frozen=True)
class Family:
    """How to build and call one pipeline kind: `sizes` are (height, width) choices; `cfg` maps "on"/"off" to
    call options; `first_module` is a sub-module every denoiser forward runs (where an exception is injected)."""

    build: Callable[[], Any]
    denoiser: str
    sizes: tuple[tuple[int, int], ...]
    fixed: dict
    cfg: dict
    images_arg: str
    first_module: str


FAMILIES = {
    "flux": Family(
        tiny_flux_pipeline,
        "transformer",
        ((16, 16), (32, 16), (16, 32)),
        dict(max_sequence_length=16, guidance_scale=3.5),
        {"off": {}, "on": dict(true_cfg_scale=2.0, negative_prompt="a dark sky")},
        "num_images_per_prompt",
        "x_embedder",
    ),
    "sd": Family(
        tiny_sd_pipeline,
        "unet",
        ((16, 16), (32, 16), (24, 24)),
        {},
        {"off": dict(guidance_scale=1.0), "on": dict(guidance_scale=7.5, negative_prompt="a dark sky")},
        "num_images_per_prompt",
        "conv_in",
    ),
    "wan": Family(
        tiny_wan_pipeline,
        "transformer",
        ((16, 16), (16, 32)),
        dict(num_frames=5, max_sequence_length=16),
        {"off": dict(guidance_scale=1.0), "on": dict(guidance_scale=4.0, negative_prompt="a dark sky")},
        "num_videos_per_prompt",
        "patch_embedding",
    ),
}


@dataclass(frozen=True)
class PipeRun:
    """One pipeline call through pipeline `pipe` (0 or 1) of the family. `fail_call`: the denoiser call that
    raises (inside the denoiser, after the engine started the step), or `fail_step`: the step whose callback
    raises (outside the denoiser)."""

    pipe: int
    steps: int
    images: int
    size: int
    cfg: str
    seed: int
    fail_call: int | None = None
    fail_step: int | None = None


@dataclass(frozen=True)
class PipeRewrap:
    """Unwrap whatever is wrapped, then wrap pipeline `pipe` with `STRATEGIES[index]`."""

    index: int
    pipe: int = 0


@dataclass(frozen=True)
class Compile:
    """`torch.compile` the shared denoiser in place (`module.compile(backend=...)`), after wrap."""

    backend: str = "eager"


def build_family(kind: str) -> list:
    """Two pipelines sharing every model, each with its own scheduler."""
    first = FAMILIES[kind].build()
    second = type(first)(**{**first.components, "scheduler": copy.deepcopy(first.scheduler)})
    second.set_progress_bar_config(disable=True)
    return [first, second]


def call_kwargs(kind: str, run: PipeRun) -> dict:
    """The keyword arguments of `run`'s pipeline call (latent output)."""
    family = FAMILIES[kind]
    height, width = family.sizes[run.size % len(family.sizes)]
    return dict(
        prompt="a red house",
        num_inference_steps=run.steps,
        height=height,
        width=width,
        generator=torch.Generator().manual_seed(run.seed),
        output_type="latent",
        **{family.images_arg: run.images},
        **family.fixed,
        **family.cfg[run.cfg],
    )


def call(kind: str, pipes: list, run: PipeRun) -> torch.Tensor:
    """The pipeline call of `run` (latent output); raises `Boom` where `run` says."""
    family = FAMILIES[kind]
    pipe = pipes[run.pipe]
    handle, calls = None, [0]
    if run.fail_call is not None:

        def explode(*_):
            calls[0] += 1
            if calls[0] == run.fail_call + 1:
                raise Boom(f"inside the denoiser, at call {run.fail_call}")

        handle = getattr(pipe, family.denoiser).get_submodule(family.first_module).register_forward_pre_hook(explode)

    def callback(_pipe, i, _t, kwargs):
        if i == run.fail_step:
            raise Boom(f"from the step callback, at step {i}")
        return kwargs

    try:
        with torch.no_grad():
            out = pipe(**call_kwargs(kind, run), callback_on_step_end=callback if run.fail_step is not None else None)
    finally:
        if handle is not None:
            handle.remove()
    return out.frames if hasattr(out, "frames") else out.images


class PipelineSequenceChecker(SequenceRunner):
    """Runs sequences on one family of wrapped pipelines and compares each finished run with a fresh wrap."""

    def __init__(self, kind: str):
        self.kind = kind
        self.base = build_family(kind)
        self.pipes = copy.deepcopy(self.base)
        self.reference = copy.deepcopy(self.base)
        self.hyca_profile = None
        self.current, self.wrapped_pipe = 0, 0
        self.runs_compared = 0
        self.runs_failed_on_purpose = 0
        self.runs_refused_alike = 0  # raised the same clear error as on a fresh wrap
        self.runs_refused_as_ambiguous = 0
        self._failed_outside = False
        self.wraps_refused = 0
        self.compiles = 0
        self._compiled = False

    def _profile(self):
        if self.hyca_profile is None:
            probe = copy.deepcopy(self.base)
            self.hyca_profile = diffaccel.hyca.profile(
                probe[0], options=HYCA_OPTIONS, **call_kwargs(self.kind, PipeRun(0, 6, 1, 0, "on", 12345))
            )
        return self.hyca_profile

    def _wrap(self, pipes: list, index: int, pipe: int) -> None:
        spec = STRATEGIES[index]
        if spec == "none":
            return
        if spec == "hyca-profiled":
            diffaccel.wrap(pipes[pipe], "hyca", profile=self._profile(), **HYCA_OPTIONS)
        else:
            diffaccel.wrap(pipes[pipe], spec)

    def _unwrap(self, pipes: list, pipe: int) -> None:
        if getattr(pipes[pipe], "_diffaccel", None) is not None:
            diffaccel.unwrap(pipes[pipe])

    def reset(self) -> None:
        self._failed_outside = False
        self._unwrap(self.pipes, self.wrapped_pipe)
        if self._compiled:  # a compiled denoiser stays compiled: start the next sequence from a fresh copy
            self.pipes = copy.deepcopy(self.base)
            self._compiled = False
        self.current, self.wrapped_pipe = 0, 0

    def apply(self, op) -> str | None:
        """Perform one operation; return a description of a mismatch, or None."""
        if isinstance(op, PipeRewrap):
            self._unwrap(self.pipes, self.wrapped_pipe)
            self.current, self.wrapped_pipe, self._failed_outside = 0, op.pipe, False
            try:
                self._wrap(self.pipes, op.index, op.pipe)
            except (diffaccel.DiffaccelError, ValueError):  # e.g. granularity=stack on a model without a stack
                self.wraps_refused += 1
                return None
            self.current = op.index
            return None
        if isinstance(op, Compile):
            getattr(self.pipes[0], FAMILIES[self.kind].denoiser).compile(backend=op.backend)
            self._compiled = True
            self.compiles += 1
            return None
        got, error = None, None
        after_outside_failure, self._failed_outside = self._failed_outside, False
        try:
            got = call(self.kind, self.pipes, op)
        except Boom:
            self.runs_failed_on_purpose += 1
            self._failed_outside = op.fail_step is not None
            return None
        except RunStateError:
            # Documented ambiguity: a run abandoned outside the denoiser (the step callback raised, so neither the
            # engine nor diffusers' end-of-call reset saw it end), then a run through the *other* pipeline, whose
            # scheduler diffaccel does not hook, at a timestep no lower than where the first stopped: that looks
            # like a second call at one step, and the engine refuses it with an error naming diffaccel.new_run.
            if after_outside_failure and op.pipe != self.wrapped_pipe and self.current != 0:
                self.runs_refused_as_ambiguous += 1
                return None
            raise
        except Exception as raised:  # noqa: BLE001 - must be what a fresh wrap raises too
            error = raised
        # (an exception injected inside the denoiser does not fire when the strategy skips the whole model)
        self._wrap(self.reference, self.current, self.wrapped_pipe)
        try:
            expected = call(self.kind, self.reference, replace(op, fail_call=None, fail_step=None))
            expected_error = None
        except Exception as raised:  # noqa: BLE001 - compared below
            expected, expected_error = None, raised
        finally:
            self._unwrap(self.reference, self.wrapped_pipe)
        where = f"{self.kind}: {op} under {STRATEGIES[self.current]} on pipe {self.wrapped_pipe}"
        if error is not None or expected_error is not None:
            if type(error) is type(expected_error) and str(error) == str(expected_error):
                self.runs_refused_alike += 1
                return None
            return f"{where}: raised {error!r}, a fresh wrap raised {expected_error!r}"
        self.runs_compared += 1
        if not torch.equal(got, expected):
            return f"{where}: differs from a fresh wrap (max |diff| {float((got - expected).abs().max()):.3g})"
        return None
