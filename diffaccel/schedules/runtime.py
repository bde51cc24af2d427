"""A forecasting strategy's step schedule at run time: one decision per denoising step.

`StepSchedule` answers "is step n a full step?" for TaylorSeer and HyCa (and any strategy with a
`ScheduleOptions` config). The answer is asked through the engine's clock (`clock.decide`), so the
first guidance branch to reach a step decides and every other branch reuses the decision. Under
torch.distributed the adaptive test reads sums over all ranks, so every rank decides alike (core/ranks.py).

Error-controlled ("adaptive") schedules follow FBCache (ParaAttention's first-block cache; diffusers'
`FirstBlockCacheConfig`; DBCache with `Fn_compute_blocks=1` in cache-dit): the first transformer
block computes at every step, and the step is forecast while the relative L1 change of that block's
residual (its output minus its `hidden_states` input) since the last full step stays below
`threshold`. Unlike FBCache, which then reuses the other blocks' residual as it is, the strategy's own
forecaster (Taylor series, HyCa's solvers) predicts the skipped units.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import torch
from diffusers.hooks import HookRegistry, ModelHook

from ..core.clock import StepClock, StepInfo
from ..core.ranks import agreed_sum, distributed
from ..core.tree import flatten_output
from ..forecast.schedules import (
    carry_full_steps,
    growing_gap_full_steps,
    l1_change_sums,
    positions_of_steps,
    relative_l1_change,
)
from .options import ParsedSchedule, parse_schedule

logger = logging.getLogger(__name__)

PROBE_HOOK = "diffaccel.schedule_probe"
GUIDANCE_HOOK = "diffaccel.guidance_reuse"


class StepSchedule:
    """The full-step rule of one strategy instance for every run of its engine."""

    def __init__(self, config, uniform_rule: Callable[[int], bool], strategy_name: str, warmup: int):
        self.config = config
        self.parsed: ParsedSchedule = parse_schedule(config.schedule)
        if self.parsed.calibrated is not None and config.full_budget is not None:
            self.parsed = ParsedSchedule(
                "calibrated", calibrated=self.parsed.calibrated.with_budget(config.full_budget)
            )
        self.uniform_rule = uniform_rule
        self.strategy_name = strategy_name
        self.warmup = warmup
        self.probe: FirstBlockProbe | None = None
        self.pinned_prefix: str | None = None
        if self.kind == "adaptive" and getattr(config, "granularity", "modules") != "modules":
            raise ValueError(
                f"{strategy_name} schedule='adaptive' decides from the first block, which must compute "
                "at every step: use granularity='modules' (the default)"
            )

    @property
    def kind(self) -> str:
        return self.parsed.kind

    # ------------------------------------------------------------------------------- the decision
    def is_full(self, step: StepInfo, clock: StepClock) -> bool:
        """Whether step `step.index` computes in full (called once per step, through `clock.decide`)."""
        n = step.index
        if self.kind == "uniform":
            return self.uniform_rule(n)
        if self.kind == "adaptive":
            return n < self.warmup or self.probe.change(step) >= self.config.threshold
        if self.kind == "growing":
            return n in growing_gap_full_steps(n + 1, self.warmup, self.parsed.first_gap)
        return n in clock.decide(("schedule-plan", id(self)), lambda: self._planned_steps(clock))

    def _planned_steps(self, clock: StepClock) -> frozenset[int]:
        """The run's full steps for a list or calibrated schedule, carried to this run's step count."""
        total, timesteps = clock.num_inference_steps, clock.timesteps
        if self.kind == "list":
            steps, written_for = self.parsed.steps, self.config.schedule_steps
            if written_for is None or written_for == total:
                return frozenset(steps)
            run = self._run_timesteps(clock, f"a list written for {written_for} steps")
            return frozenset(carry_full_steps(positions_of_steps(steps, written_for, run), run))
        calibrated = self.parsed.calibrated
        if total == calibrated.num_steps and (timesteps is None or _close(timesteps, calibrated.timesteps)):
            return frozenset(calibrated.full_steps)
        run = self._run_timesteps(clock, f"a schedule calibrated at {calibrated.num_steps} steps")
        return frozenset(carry_full_steps([calibrated.timesteps[i] for i in calibrated.full_steps], run))

    def _run_timesteps(self, clock: StepClock, what: str) -> tuple[float, ...]:
        if clock.timesteps is None:
            raise RuntimeError(
                f"{self.strategy_name}: carrying {what} to a run of {clock.num_inference_steps} steps needs the run's "
                "timesteps: call the wrapped pipeline, or `diffaccel.new_run(obj, timesteps=scheduler.timesteps)` in a "
                "hand-written loop."
            )
        return clock.timesteps

    def note_decision(self, step: StepInfo, full: bool) -> None:
        """After the step's decision, each guidance branch keeps its own reference residual."""
        if self.probe is not None and full:
            self.probe.commit(step)

    def pins(self, unit_name: str) -> bool:
        """Units that compute at every step (the first block, for the adaptive test)."""
        return self.pinned_prefix is not None and (
            unit_name == self.pinned_prefix or unit_name.startswith(self.pinned_prefix + ".")
        )

    # ---------------------------------------------------------------------------------- attaching
    def attach(self, engine, strategy) -> None:
        if self.kind == "adaptive":
            name, block = first_block(engine)
            self.pinned_prefix = name
            self.probe = FirstBlockProbe(engine)
            HookRegistry.check_if_exists_or_initialize(block).register_hook(self.probe, PROBE_HOOK)
            self._probe_block = block
        if self.config.guidance_reuse:
            hook = GuidanceReuse(engine, strategy)
            engine.call_answerers.append(hook)
            self._guidance = hook

    def detach(self, engine, strategy) -> None:
        if self.probe is not None:
            HookRegistry.check_if_exists_or_initialize(self._probe_block).remove_hook(PROBE_HOOK, recurse=False)
            self.probe = None
        if getattr(self, "_guidance", None) is not None:
            engine.call_answerers.remove(self._guidance)
            self._guidance = None


def _close(a, b) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(y))) for x, y in zip(a, b))


def first_block(engine):
    """(name, module) of the denoiser's first transformer block: the adapter's first stack block, else
    the indexed block that holds the first cache unit."""
    root, adapter = engine.root, engine.adapter
    if adapter.stack is not None:
        for list_name in adapter.stack.lists:
            blocks = getattr(root, list_name, None)
            if blocks is not None and len(blocks):
                return f"{list_name}.0", blocks[0]
    if any(h.kind == "resnet" for h in engine.unit_hooks):
        raise ValueError(
            f"schedule='adaptive' decides from the residual of the first transformer block (FBCache's test); "
            f"{type(root).__name__} is a UNet, whose first block changes resolution and has no such residual: "
            "use schedule='uniform', 'growing-N', a step list or a calibrated schedule"
        )
    units = [h.name for h in engine.unit_hooks if h.name != "model"]
    if units:
        parts = units[0].split(".")
        for i in range(1, len(parts)):
            if parts[i].isdigit():
                name = ".".join(parts[: i + 1])
                return name, root.get_submodule(name)
    raise ValueError(f"schedule='adaptive' found no transformer block in {type(root).__name__}")


class FirstBlockProbe(ModelHook):
    """On the first block: records, per guidance branch, the residual `output − hidden_states` of the
    current step, and keeps the one of the last full step as the reference (FBCache's test)."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        self.current: dict[str, tuple[int, torch.Tensor]] = {}
        self.reference: dict[str, torch.Tensor] = {}
        self.runs_seen = -1

    def new_forward(self, module, *args, **kwargs):
        output = self.fn_ref.original_forward(*args, **kwargs)
        step = self.engine.current
        if step is None:
            return output
        if self.engine.runs_started != self.runs_seen:  # a new run: forget the last one's residuals
            self.current.clear()
            self.reference.clear()
            self.runs_seen = self.engine.runs_started
        if not hasattr(self, "_signature"):
            self._signature = inspect.signature(module.forward)
        bound = self._signature.bind(*args, **kwargs).arguments
        hidden = bound.get("hidden_states", next((a for a in args if isinstance(a, torch.Tensor)), None))
        leaves, _ = flatten_output(output)
        out = next((t for t in leaves if t is not None and hidden is not None and t.shape == hidden.shape), None)
        if out is None:
            raise RuntimeError(
                f"schedule='adaptive': the first block's output has no tensor shaped like its input "
                f"{tuple(hidden.shape) if hidden is not None else None}"
            )
        self.current[step.context] = (step.index, (out - hidden).detach().float())
        return output

    def change(self, step: StepInfo) -> float:
        """Relative L1 change of this step's first-block residual since the last full step (inf when either
        is missing, so the step computes)."""
        current = self.current.get(step.context)
        reference = self.reference.get(step.context)
        if current is None or current[0] != step.index or reference is None:
            return float("inf")
        if distributed():  # every rank decides alike, as one process holding the whole residual would
            moved, size = agreed_sum(l1_change_sums(current[1], reference)).tolist()
            return moved / max(size, 1e-30)
        return relative_l1_change(current[1], reference)

    def commit(self, step: StepInfo) -> None:
        current = self.current.get(step.context)
        if current is not None and current[0] == step.index:
            self.reference[step.context] = current[1]


class GuidanceReuse:
    """FasterCache's CFG cache idea (Lv et al., arXiv 2410.19355), simplified [ours: no split into low and
    high frequencies]: at full steps both guidance branches run and their output difference is kept; at a
    step the strategy forecasts, the branch that comes second is not run at all and returns the first
    branch's output plus that difference. Works for guidance as two calls under `cache_context` names; with
    one doubled batch there is no second call to save, and nothing changes."""

    def __init__(self, engine, strategy):
        self.engine = engine
        self.strategy = strategy
        self.last_full: dict[str, list] = {}  # context -> output leaves at the last full step
        self.last_full_step: dict[str, int] = {}
        self.first: dict[int, tuple[str, list]] = {}  # step -> (context, leaves) of the first call at that step
        self.runs_seen = -1

    def _sync_run(self) -> None:
        if self.engine.runs_started != self.runs_seen:
            self.last_full.clear()
            self.last_full_step.clear()
            self.first.clear()
            self.runs_seen = self.engine.runs_started

    def answer(self, step: StepInfo, args, kwargs):
        """The output of this call without running the model, or None to run it."""
        self._sync_run()
        first = self.first.get(step.index)
        decision = self.engine.clock.decisions.get((id(self.strategy), step.index))
        if first is None or first[0] == step.context or decision is not False:
            return None
        ctx_first, leaves_first = first
        if (
            self.last_full_step.get(ctx_first) != self.last_full_step.get(step.context)
            or step.context not in self.last_full
        ):
            return None
        structure = self.first_structure
        mine, theirs = self.last_full[step.context], self.last_full[ctx_first]
        leaves = [None if a is None else a + (m - t) for a, m, t in zip(leaves_first, mine, theirs)]
        for hook in self.engine.unit_hooks:  # the skipped branch's units count as forecast
            flops = (self.engine.unit_flops(hook.name, step.context) or 0.0) + hook.feeder_flops(step.context)
            self.engine.stats.record_unit(hook.name, hook.kind, step.index, False, flops)
        return structure.rebuild(leaves)

    def after(self, step: StepInfo, output) -> None:
        self._sync_run()
        leaves, structure = flatten_output(output)
        leaves = [None if t is None else t.detach() for t in leaves]
        self.first.setdefault(step.index, (step.context, leaves))
        self.first.pop(step.index - 2, None)
        self.first_structure = structure
        if self.engine.clock.decisions.get((id(self.strategy), step.index)) is not False:
            self.last_full[step.context] = leaves
            self.last_full_step[step.context] = step.index


class ScheduledStrategy:
    """Mixin of forecasting strategies with a `ScheduleOptions` config (TaylorSeer, HyCa; BAC can take it):
    owns the `StepSchedule`, its hooks, and the one decision per step."""

    schedule: StepSchedule

    def init_schedule(self, config, strategy_name: str, uniform_rule: Callable[[int], bool]) -> None:
        self.schedule = StepSchedule(config, uniform_rule, strategy_name, config.warmup)

    def attach(self, engine, owner) -> None:
        self.schedule.attach(engine, self)

    def detach(self, engine, owner) -> None:
        self.schedule.detach(engine, self)

    def scheduled_must_compute(
        self, step: StepInfo, pinned: bool, has_history: bool, is_full: Callable[[StepInfo], bool]
    ) -> bool:
        """Compute this unit now? Pinned units always; a unit without history must; otherwise the step's one
        decision, made by the first unit and guidance branch to ask (`clock.decide`)."""
        if pinned:
            return True
        full = True if not has_history else self.clock.decide((id(self), step.index), lambda: is_full(step))
        self.schedule.note_decision(step, full)
        return full
