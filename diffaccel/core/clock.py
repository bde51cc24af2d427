"""The step clock: numbers denoising steps, not forward calls.

Classifier-free guidance reaches a denoiser in two shapes: one doubled batch per step (one call),
or two calls per step under `model.cache_context("cond")` / `cache_context("uncond")`. Step `n` of
the "uncond" branch is the same step as step `n` of the "cond" branch, and a schedule decision made
for step `n` is shared by both (ours; docs/methods.md).

Where the step number comes from:

* The pipeline's own step index, when it passes one through the cache context
  (`model.cache_context("cond", step_index=i, num_inference_steps=n)`, as diffusers' `WanPipeline`
  does): preferred, because it is the loop's own count. It stays right when a denoiser sees only part
  of the run: in Wan 2.2 (`boundary_ratio`) `transformer_2` takes over the low-noise steps, so its
  first call is step `k > 0`, and its schedule continues from there. The index must rise within a
  run, per context; a repeated or backward index is a `RunStateError` (the loop and the clock would
  disagree on which step a cached value belongs to).
* Otherwise, counting: each call in a context is that context's next step.

A timestep, when the denoiser receives one, guards the count where the pipeline passes no step index:
two calls at the same timestep in the same context mean the caller runs several branches without naming them, which would silently
double the step count, so that is an error; a timestep that rises means a new trajectory began
(checked by the engine before the step index, so a restarted hand-written loop starts a new run).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from .errors import RunStateError

DEFAULT_CONTEXT = "default"


@dataclass(frozen=True)
class StepInfo:
    """Where the current call sits in the run."""

    index: int  # denoising step, counted from 0 within the run
    context: str  # CFG branch name ("default" for calls outside any cache context)
    num_inference_steps: int | None  # total steps of the run when known (from the scheduler)


@dataclass
class StepClock:
    """Per-context step counters for one run, plus the decisions made for each step."""

    num_inference_steps: int | None = None
    #: the scheduler's timesteps of the run, when known (a wrapped pipeline's `scheduler.set_timesteps`,
    #: or `diffaccel.new_run(obj, timesteps=...)`): schedules carry over between step counts through them
    timesteps: tuple[float, ...] | None = None
    _steps_seen: dict[str, int] = field(default_factory=dict)
    _last_timestep: dict[str, float] = field(default_factory=dict)
    decisions: dict[object, object] = field(default_factory=dict)

    def reset(self, num_inference_steps: int | None = None, timesteps=None) -> None:
        self.num_inference_steps = num_inference_steps
        self.timesteps = None if timesteps is None else tuple(float(t) for t in timesteps)
        if (
            self.timesteps is not None
            and num_inference_steps is not None
            and len(self.timesteps) != num_inference_steps
        ):
            raise ValueError(f"{len(self.timesteps)} timesteps given for a run of {num_inference_steps} steps")
        self._steps_seen.clear()
        self._last_timestep.clear()
        self.decisions.clear()

    @property
    def steps(self) -> int:
        """How far the run got: one past the highest step seen in any context (the number of steps seen when
        every call counted; more when a denoiser joined the run at a later step)."""
        return max(self._steps_seen.values(), default=0)

    def timestep_starts_new_run(self, context: str, timestep: float | None) -> bool:
        """True when `timestep` rises above the lowest timestep any context reached: a new trajectory began.
        Every context, not only this call's: a run whose guidance style changed (one doubled batch, then
        named branches) starts in a context the previous run never used."""
        lowest = min(self._last_timestep.values(), default=None)
        return timestep is not None and lowest is not None and timestep > lowest

    def advance(
        self,
        context: str,
        timestep: float | None,
        step_index: int | None = None,
        num_inference_steps: int | None = None,
    ) -> StepInfo:
        """Register one denoiser call in `context` and return its step: `step_index` when the pipeline passed
        one through its cache context (with its `num_inference_steps`), else the context's next count."""
        if step_index is not None:
            # the index itself shows a repeated step, so a repeated timestep is allowed (second-order schedulers
            # such as Heun's evaluate the model twice at one timestep, in two steps)
            step_index = self._check_step_index(context, step_index, num_inference_steps)
        elif timestep is not None and self._last_timestep.get(context) == timestep:
            raise RunStateError(
                f"The denoiser was called twice at timestep {timestep} in cache context '{context}'. "
                "If the calls are separate guidance branches, run each under its own context "
                "(`with model.cache_context('cond'):` / `'uncond'`, or `diffaccel.cache_context(model, name)` for "
                "models without one); if a new generation started, call `diffaccel.new_run(obj)` first."
            )
        if self.num_inference_steps is None and num_inference_steps is not None:
            self.num_inference_steps = int(num_inference_steps)
        index = self._steps_seen.get(context, 0) if step_index is None else step_index
        self._steps_seen[context] = index + 1
        if timestep is not None:
            self._last_timestep[context] = timestep
        return StepInfo(index, context, self.num_inference_steps)

    def _check_step_index(self, context: str, step_index, num_inference_steps) -> int:
        """A pipeline's step index, as an int, once it is known to be a step of this run past the last one this
        context saw."""
        try:
            index = operator.index(step_index)  # ints, NumPy and 0-d torch integers
        except TypeError:
            index = -1
        if isinstance(step_index, bool) or index < 0:
            raise RunStateError(
                f"cache context '{context}' carries step_index={step_index!r}; it must be an int >= 0 "
                "(the denoising loop's step, as in `model.cache_context('cond', step_index=i)`)"
            )
        step_index = index
        total = self.num_inference_steps if self.num_inference_steps is not None else num_inference_steps
        if total is not None and step_index >= total:
            raise RunStateError(
                f"cache context '{context}' carries step_index={step_index} in a run of {total} steps "
                f"(valid: 0..{total - 1})"
            )
        seen = self._steps_seen.get(context, 0)
        if step_index < seen:
            what = "repeated" if step_index == seen - 1 else "went backwards"
            raise RunStateError(
                f"The pipeline's step index {what} within one run: cache context '{context}' got step_index="
                f"{step_index} after step {seen - 1}. Each step's calls must carry a larger index than the last; "
                "if a new generation started, call `diffaccel.new_run(obj)` first (a wrapped pipeline does this "
                "when its scheduler sets the timesteps)."
            )
        return step_index

    def decide(self, key, make):
        """Return the decision stored under `key`, making it once.

        Strategies key decisions by (strategy, step index), so the first guidance context to reach a
        step makes the decision and every other context of that step reuses it.
        """
        if key not in self.decisions:
            self.decisions[key] = make()
        return self.decisions[key]
