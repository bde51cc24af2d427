"""The step clock: counts denoising steps, not forward calls.

Classifier-free guidance reaches a denoiser in two shapes: one doubled batch per step (one call),
or two calls per step under `model.cache_context("cond")` / `cache_context("uncond")`. The clock
counts calls per context name, so step `n` of the "uncond" branch is the same step as step `n` of
the "cond" branch, and a schedule decision made for step `n` is shared by both (ours; docs/methods.md).

A timestep, when the denoiser receives one, guards the count: two calls at the same timestep in
the same context mean the caller runs several branches without naming them, which would silently
double the step count, so that is an error; a timestep that rises means a new trajectory began.
"""

from __future__ import annotations

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
        """Number of distinct denoising steps seen in this run (over all contexts)."""
        return max(self._steps_seen.values(), default=0)

    def timestep_starts_new_run(self, context: str, timestep: float | None) -> bool:
        """True when `timestep` rises above the lowest timestep any context reached: a new trajectory began.
        Every context, not only this call's: a run whose guidance style changed (one doubled batch, then
        named branches) starts in a context the previous run never used."""
        lowest = min(self._last_timestep.values(), default=None)
        return timestep is not None and lowest is not None and timestep > lowest

    def advance(self, context: str, timestep: float | None) -> StepInfo:
        """Register one denoiser call in `context` and return its step."""
        last = self._last_timestep.get(context)
        if timestep is not None and last is not None and timestep == last:
            raise RunStateError(
                f"The denoiser was called twice at timestep {timestep} in cache context '{context}'. "
                "If the calls are separate guidance branches, run each under its own context "
                "(`with model.cache_context('cond'):` / `'uncond'`, or `diffaccel.cache_context(model, name)` for "
                "models without one); if a new generation started, call `diffaccel.new_run(obj)` first."
            )
        index = self._steps_seen.get(context, 0)
        self._steps_seen[context] = index + 1
        if timestep is not None:
            self._last_timestep[context] = timestep
        return StepInfo(index, context, self.num_inference_steps)

    def decide(self, key, make):
        """Return the decision stored under `key`, making it once.

        Strategies key decisions by (strategy, step index), so the first guidance context to reach a
        step makes the decision and every other context of that step reuses it.
        """
        if key not in self.decisions:
            self.decisions[key] = make()
        return self.decisions[key]
