"""Random call sequences through a wrapped tiny model, each run checked against a freshly wrapped copy.

The property (what "a run that raises is discarded" and "between runs, shapes are simply a new run"
promise): whatever happened before on a wrapped object — runs of other batch sizes and resolutions,
both guidance styles, runs that raised at any step inside or outside the model, runs started with or
without `diffaccel.new_run`, unwrap and re-wrap with another strategy — every finished run equals, bit for
bit, the same run on a freshly wrapped copy of the model. Used by the hypothesis tests (a few dozen
sequences) and by `eval/fuzz.py` (thousands).

Strategies that keep state across runs (HyCa's probe) are given a profile here, so that one run is the
unit of comparison; their probe rules are tested separately.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

import diffaccel

from ..core.errors import RunStateError
from .tiny_models import build_tiny

FLUX = "FluxTransformer2DModel"
TIMESTEP_SCALE = 1000.0

#: the strategies a sequence switches between ("none": unwrapped)
STRATEGIES: list[Any] = [
    "none",
    "taylorseer:interval=2,warmup=1,order=1",
    "taylorseer:interval=3,warmup=2,order=2,granularity=stack",
    "taylorseer:interval=2,warmup=1,granularity=model",
    "taocache:start_step=2,error_threshold=0.5,max_skips=2",
    ["taylorseer:interval=2,warmup=1", "taocache:start_step=3,error_threshold=0.5"],
    "hyca-profiled",
]


class Boom(RuntimeError):
    """The exception a sequence injects."""


@dataclass(frozen=True)
class Run:
    """One generation: `steps` Euler steps at `side`×`side` latent tokens with `batch` samples; guidance as
    one doubled batch ("batch") or two calls per step under named contexts ("contexts"). `fail_at`: the
    step at which an exception is raised, inside the denoiser (`fail_inside`) or between steps."""

    steps: int
    batch: int
    side: int
    guidance: str
    seed: int
    announce: bool = True
    fail_at: int | None = None
    fail_inside: bool = True


@dataclass(frozen=True)
class Rewrap:
    """Unwrap (if wrapped) and wrap with `STRATEGIES[index]`."""

    index: int


def _inputs(run: Run) -> dict:
    gen = torch.Generator().manual_seed(run.seed)
    ids = torch.zeros(run.side, run.side, 3)
    ids[..., 1] = torch.arange(run.side)[:, None]
    ids[..., 2] = torch.arange(run.side)[None, :]
    return dict(
        latents=torch.randn(run.batch, run.side * run.side, 8, generator=gen),
        text=torch.randn(run.batch, 6, 32, generator=gen),
        pooled=torch.randn(run.batch, 32, generator=gen),
        img_ids=ids.reshape(-1, 3),
        txt_ids=torch.zeros(6, 3),
    )


def denoise(model, run: Run, wrapped: bool) -> list[torch.Tensor]:
    """A hand-written flow-matching loop with classifier-free guidance (scale 2); returns every step's
    guided prediction. Raises `Boom` at `run.fail_at`."""
    x = _inputs(run)
    latents = x["latents"]
    if wrapped and run.announce:
        diffaccel.new_run(model, num_inference_steps=run.steps)
    handle = None
    outputs = []

    def call(hidden, text, pooled, t, context=None):
        scope = diffaccel.cache_context(model, context) if (wrapped and context) else contextlib.nullcontext()
        with scope:
            return model(
                hidden_states=hidden,
                encoder_hidden_states=text,
                pooled_projections=pooled,
                timestep=torch.full((hidden.shape[0],), t),
                img_ids=x["img_ids"],
                txt_ids=x["txt_ids"],
                return_dict=False,
            )[0]

    try:
        with torch.no_grad():
            for n in range(run.steps):
                t = 1.0 - n / run.steps
                if n == run.fail_at:
                    if not run.fail_inside:
                        raise Boom(f"between steps, at step {n}")

                    def explode(*_, n=n):
                        raise Boom(f"inside the denoiser, at step {n}")

                    handle = model.x_embedder.register_forward_pre_hook(explode)
                uncond_text, uncond_pooled = torch.zeros_like(x["text"]), torch.zeros_like(x["pooled"])
                if run.guidance == "batch":
                    both = call(
                        torch.cat([latents, latents]),
                        torch.cat([x["text"], uncond_text]),
                        torch.cat([x["pooled"], uncond_pooled]),
                        t,
                    )
                    cond, uncond = both.chunk(2)
                else:
                    cond = call(latents, x["text"], x["pooled"], t, "cond")
                    uncond = call(latents, uncond_text, uncond_pooled, t, "uncond")
                guided = uncond + 2.0 * (cond - uncond)
                outputs.append(guided)
                latents = latents - guided / run.steps
    finally:
        if handle is not None:
            handle.remove()
    return outputs


class SequenceRunner:
    """What every checker shares: a sequence starts and ends from a clean state, and yields its mismatches."""

    def reset(self) -> None:
        raise NotImplementedError

    def apply(self, op) -> str | None:
        raise NotImplementedError

    def run_sequence(self, ops) -> list[str]:
        self.reset()
        try:
            return [m for m in (self.apply(op) for op in ops) if m is not None]
        finally:
            self.reset()


class SequenceChecker(SequenceRunner):
    """Runs sequences on one wrapped model and compares each finished run with a fresh wrap of a copy."""

    def __init__(self, seed: int = 0):
        self.base = build_tiny(FLUX, seed=seed)
        self.model = copy.deepcopy(self.base)
        self.reference = copy.deepcopy(self.base)
        self.hyca_options = dict(interval=3, warmup=1, num_clusters=2)
        probe = copy.deepcopy(self.base)
        self.hyca_profile = diffaccel.hyca.profile(
            probe,
            run=lambda: denoise(probe, Run(8, 1, 3, "contexts", seed=12345), wrapped=True),
            options=self.hyca_options,
        )
        self.current: int = 0
        self.runs_compared = 0
        self.runs_failed_on_purpose = 0
        self.runs_refused_as_ambiguous = 0
        self._failed_outside = False

    def _wrap(self, module, index: int) -> None:
        spec = STRATEGIES[index]
        if spec == "none":
            return
        if spec == "hyca-profiled":
            diffaccel.wrap(module, "hyca", profile=self.hyca_profile, **self.hyca_options)
        else:
            diffaccel.wrap(module, spec)

    def reset(self) -> None:
        self._failed_outside = False
        if getattr(self.model, "_diffaccel", None) is not None:
            diffaccel.unwrap(self.model)
        self.current = 0

    def apply(self, op) -> str | None:
        """Perform one operation; return a description of a mismatch, or None."""
        if isinstance(op, Rewrap):
            if self.current != 0:
                diffaccel.unwrap(self.model)
            self._wrap(self.model, op.index)
            self.current = op.index
            self._failed_outside = False
            return None
        wrapped = self.current != 0
        after_outside_failure, self._failed_outside = self._failed_outside, False
        try:
            got = denoise(self.model, op, wrapped)
        except Boom:
            self.runs_failed_on_purpose += 1
            self._failed_outside = not op.fail_inside
            return None
        except RunStateError:
            # Documented ambiguity: a hand-written loop abandoned outside the model (the engine never saw an
            # exception) and restarted at a timestep no higher than where it stopped, without new_run, looks
            # like a second call at one step or a shape change within a run; the engine refuses it clearly.
            if after_outside_failure and not op.announce:
                self.runs_refused_as_ambiguous += 1
                return None
            raise
        # (an exception injected inside the denoiser does not fire when the strategy skips the whole model)
        self._wrap(self.reference, self.current)
        try:
            expected = denoise(self.reference, dataclasses.replace(op, fail_at=None), self.current != 0)
        finally:
            if self.current != 0:
                diffaccel.unwrap(self.reference)
        self.runs_compared += 1
        bad = [n for n, (a, b) in enumerate(zip(got, expected)) if not torch.equal(a, b)]
        if bad:
            return f"{op} under {STRATEGIES[self.current]}: steps {bad} differ from a fresh wrap"
        return None
