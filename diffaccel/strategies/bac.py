"""BAC: Block-wise Adaptive Caching (Ji et al., arXiv 2506.13456, ICLR 2026).

Official code: GitHub `ky-ji/HAS`, folder `BACInfer/` (`analysis/` for the calibration, the scheduler and the
block selection; `core/diffusion_cache_wrapper.py` for the run time; `shell/main/run_bac_all.sh` for the defaults).

Faithful to the official code's "optimal" mode:

* offline, one uncached run records every cache unit's output at every step (the official code
  hooks `dropout1/2/3` of each `nn.TransformerDecoderLayer`, i.e. the self-attention,
  cross-attention and feed-forward branches before their residual add);
* per unit, a K×K similarity matrix of the flattened outputs (cosine by default) and the exact
  dynamic programme of the Adaptive Caching Scheduler choose `num_updates` update steps, step 0
  included (`diffaccel.forecast.step_selection.select_update_steps`);
* the Bubbling Union: the `top_blocks` units with the largest reuse error (mean pairwise absolute
  difference of their outputs) also update whenever a feed-forward unit at the same or a deeper
  layer does (`bubbling_union`);
* the last step is added to every schedule (the official code hard-codes it);
* at run time a unit recomputes at its update steps and otherwise returns its last output unchanged.

`mode="uniform"` is the official "threshold" baseline (every unit updates at `k mod interval == 0`).
`forecast="taylor"` [ours] replaces the unchanged reuse between update steps by TaylorSeer's
first-order forecast from the unit's last two updates (same schedule, same computations).
`scope="unified"` [ours] gives every unit one schedule (the DP on the mean of the units' score matrices), so no
recomputed unit reads other units' stale caches (on the dp-reach zoo policy: 0.635 success against 0.465 per unit).
On diffusers DiTs and UNets the units are the adapters' attention / feed-forward (and resnet)
sub-modules, an extension of BAC beyond the Diffusion Policy transformer [ours]; there the
feed-forward kinds that "bubble" are `FFN_KINDS` below [ours for FLUX single blocks and UNet resnets].

Calibration is explicit (`diffaccel.bac.calibrate`, saved with `BacSchedule.save` and passed as
`schedule=`); without a schedule the first run calibrates (every step computed) and logs that it does.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.clock import StepInfo
from ..core.ranks import agreed_sum, distributed, from_rank_zero
from ..forecast.step_selection import (
    bubbling_union,
    cosine_similarity_matrix,
    distance_matrix,
    matrices_from_pair_sums,
    pair_sums,
    reuse_error,
    reuse_error_from_pair_sums,
    select_update_steps,
    uniform_update_steps,
)
from ..forecast.taylor import taylor_forecast, taylor_update
from .bac_schedule import BacSchedule
from .base import StrategyConfig, UnitState, UnitStrategy
from .registry import register_strategy

logger = logging.getLogger(__name__)

_METRICS = ("cosine", "l1", "l2", "mse")  # official list; only cosine is maximised
_MODES = ("optimal", "uniform")
_FORECASTS = ("reuse", "taylor")
_SCOPES = ("block", "unified")
#: unit kinds treated as feed-forward sub-blocks by the Bubbling Union. "mlp" is BAC's FFN; FLUX single
#: blocks (attention and MLP fused into proj_out) and UNet resnet blocks have no normalisation between
#: their input and output projection either [ours].
FFN_KINDS = frozenset({"mlp", "mlp_context", "temporal_mlp", "single", "resnet"})


@dataclass
class BacConfig(StrategyConfig):
    """Options of BAC.

    Attributes:
        num_updates: S (official `num_caches`): update steps chosen per unit by the dynamic programme,
            step 0 included; default 10 (the paper's main simulation tables). >= the run's steps = no caching.
        top_blocks: n (official `NUM_BU_BLOCKS`): units that take the Bubbling Union; default 5 (the
            official simulation script; the paper's real-robot runs use 3). 0 disables the union.
        metric: similarity of the offline statistics: "cosine" (official default, maximised), or the
            distances "l1", "l2", "mse" (minimised).
        force_last: add the last step to every schedule (official "optimal" mode hard-codes it).
        mode: "optimal" (ACS + Bubbling Union) or "uniform" (official "threshold": `k mod interval == 0`).
        interval: the uniform mode's interval.
        schedule: a `BacSchedule` or the path of a saved one; None = calibrate on the first run.
        forecast: what a unit returns between its update steps: "reuse" (official: its last output,
            unchanged) or "taylor" [ours]: TaylorSeer's first-order forecast `F + k·(F − F_prev)/gap`
            from its last two updates (Liu et al., arXiv 2503.06923), `k` steps after the last one.
        scope: "block" (official: each unit gets its own DP schedule, then the Bubbling Union) or "unified"
            [ours]: one schedule for every unit, the DP on the mean of the units' score matrices (the paper's
            "Unified ACS" ablation applies layer 0's self-attention schedule to every block instead). Every
            unit then refreshes at the same steps, so no recomputed unit reads stale upstream caches and the
            union has nothing to add; on dp-reach it cuts the first-plan mode flips from 0.145 (official
            defaults) to 0.085 at 0.150 of unit calls (docs/policy/README.md, "Why BAC loses").
    """

    strategy_name = "bac"
    tag_fields = ("num_updates",)

    num_updates: int = 10
    top_blocks: int = 5
    metric: str = "cosine"
    force_last: bool = True
    mode: str = "optimal"
    interval: int = 5
    schedule: Any = None
    forecast: str = "reuse"
    scope: str = "block"

    def validate(self) -> None:
        for name in ("num_updates", "top_blocks", "interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"bac option '{name}' must be an int, got {type(value).__name__}")
        if self.num_updates < 1 or self.interval < 1 or self.top_blocks < 0:
            raise ValueError("bac num_updates and interval must be >= 1 and top_blocks >= 0")
        if self.metric not in _METRICS:
            raise ValueError(f"bac metric must be one of {list(_METRICS)}, got {self.metric!r}")
        if self.mode not in _MODES:
            raise ValueError(f"bac mode must be one of {list(_MODES)}, got {self.mode!r}")
        if self.forecast not in _FORECASTS:
            raise ValueError(f"bac forecast must be one of {list(_FORECASTS)}, got {self.forecast!r}")
        if self.scope not in _SCOPES:
            raise ValueError(f"bac scope must be one of {list(_SCOPES)}, got {self.scope!r}")
        if not isinstance(self.force_last, bool):
            raise TypeError("bac force_last must be a bool")
        if (
            self.schedule is not None
            and not isinstance(self.schedule, (str, BacSchedule))
            and not hasattr(self.schedule, "__fspath__")
        ):
            raise TypeError("bac schedule must be a BacSchedule or the path of a saved one")
        if (isinstance(self.schedule, str) or hasattr(self.schedule, "__fspath__")) and not os.path.isfile(
            self.schedule
        ):
            raise ValueError(
                f"bac schedule file {os.fspath(self.schedule)!r} does not exist; make one with "
                "diffaccel.bac.calibrate(..., path=...), or leave schedule out to calibrate on the first run"
            )

    def strify(self) -> str:
        if self.mode == "uniform":
            return f"bac:mode=uniform:interval={self.interval}"
        tag = super().strify()
        return tag.replace(f":schedule={self.schedule}", ":schedule") if self.schedule is not None else tag


@dataclass
class BacState(UnitState):
    cached: list[torch.Tensor | None] | None = None
    unit: Any = None
    factors: list[list[torch.Tensor] | None] | None = None  # forecast="taylor": [F, (F − F_prev)/gap]
    last_update: int = -1

    def nbytes(self) -> int:
        total = sum(t.numel() * t.element_size() for t in self.cached or [] if t is not None)
        for fs in self.factors or []:
            total += sum(t.numel() * t.element_size() for t in (fs or [])[1:])  # fs[0] is `cached`
        return total


@dataclass
class _Recording:
    """Every step's output of one unit during calibration: step -> context -> flattened float32 leaves."""

    unit: Any
    steps: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


class Bac(UnitStrategy):
    config: BacConfig

    def __init__(self, config: BacConfig):
        super().__init__(config)
        schedule = config.schedule
        if isinstance(schedule, str) or hasattr(schedule, "__fspath__"):
            schedule = BacSchedule.load(os.fspath(schedule))
        self.schedule: BacSchedule | None = schedule
        self.calibrating = config.mode == "optimal" and schedule is None
        self._recordings: dict[str, _Recording] = {}
        self._seen = 0  # steps the calibration run in progress has seen
        self._planned: int | None = None  # its planned step count, when known
        #: the schedule built at the end of the calibration run, committed when the next run starts
        self._pending: BacSchedule | None = None
        self._update_sets: dict[str, frozenset[int]] = {}
        self._announced = False
        #: set by `diffaccel.bac.calibrate`, which says what it does itself
        self.explicit_calibration = False

    # ------------------------------------------------------------------------------ run lifecycle
    def on_new_run(self) -> None:
        """The previous run is over. A calibration run that finished all its steps, and had enough of them,
        becomes the schedule; any other is dropped and the next run calibrates again, so a short or failed
        first call leaves BAC exactly as freshly wrapped."""
        if self.calibrating:
            if self._pending is None and self._recordings:  # a run of unknown length: judge it now
                self._end_calibration_run()
            if self._pending is not None:
                self.schedule, self.calibrating = self._pending, False
                logger.info(
                    "BAC: schedule built from the calibration run (%.3f of unit calls compute); caching from now on",
                    self.schedule.computed_fraction(),
                )
        self._discard_calibration()
        self._update_sets.clear()

    def on_run_aborted(self) -> None:
        """A calibration run that raised is dropped entirely, with any schedule built at its last step."""
        self._discard_calibration()

    def _discard_calibration(self) -> None:
        self._recordings.clear()
        self._seen, self._planned, self._pending = 0, None, None

    def calibration_problem(self) -> str | None:
        """Why the calibration run recorded so far cannot make a schedule, or None when it can. A first-run
        calibration also needs more steps than `num_updates`: with fewer, every step would update and the
        schedule could never cache anything (an explicit `diffaccel.bac.calibrate` may still ask for that)."""
        if not self._recordings:
            return "no calibration run was recorded: run the model once after wrapping"
        if self._planned is not None and self._seen < self._planned:
            return f"the calibration run stopped after {self._seen} of its {self._planned} steps"
        if not self.explicit_calibration and self._seen <= self.config.num_updates:
            return (
                f"the calibration run had {self._seen} steps; with num_updates={self.config.num_updates} every "
                f"step would update, so a BAC schedule needs a run of at least {self.config.num_updates + 1} "
                "steps (or a smaller num_updates)"
            )
        return None

    def _end_calibration_run(self) -> None:
        """Build the schedule (committed at the next run's start) or say why not and drop the recording."""
        problem = self.calibration_problem()
        if problem is None:
            self._pending = from_rank_zero(self.finish_calibration())  # one schedule on every rank
        else:
            logger.warning("BAC: %s; no schedule was built and the next run calibrates again.", problem)
            self._discard_calibration()

    def new_state(self, unit) -> BacState:
        if self.calibrating:
            if not self._announced and not self.explicit_calibration:
                logger.warning(
                    "BAC: no schedule given; calibrating on this first run (every step computed). "
                    "Save one with diffaccel.bac.calibrate(...) to skip this."
                )
                self._announced = True
            self._recordings.setdefault(unit.name, _Recording(unit))
        elif self.config.mode == "optimal" and unit.name not in self.schedule.updates:
            raise ValueError(
                f"BAC schedule has no update steps for cache unit '{unit.name}'; it was made for "
                f"{self.schedule.model_class}. Calibrate this model again."
            )
        return BacState(unit=unit)

    def _updates(self, name: str, step: StepInfo) -> frozenset[int]:
        updates = self._update_sets.get(name)
        if updates is None:
            total = step.num_inference_steps
            if self.config.mode == "uniform":
                if total is None:
                    raise RuntimeError(
                        "bac mode='uniform' needs the run's step count: call a pipeline or policy "
                        "whose scheduler is wrapped, or diffaccel.new_run(obj, num_inference_steps=...)"
                    )
                updates = frozenset(uniform_update_steps(total, self.config.interval))
            else:
                if total is not None and total != self.schedule.num_steps:
                    raise ValueError(
                        f"the BAC schedule was calibrated for {self.schedule.num_steps} steps but this run "
                        f"has {total}; calibrate for {total} steps"
                    )
                updates = frozenset(self.schedule.updates[name])
            self._update_sets[name] = updates
        return updates

    # ------------------------------------------------------------------------------------ engine
    def must_compute(self, step: StepInfo, state: BacState) -> bool:
        if self.calibrating or state.cached is None:
            return True
        if self.config.mode == "optimal" and step.index >= self.schedule.num_steps:
            raise ValueError(
                f"step {step.index} is past the {self.schedule.num_steps} steps the BAC schedule was calibrated for"
            )
        return step.index in self._updates(state.unit.name, step)

    def observe(self, state: BacState, leaves, step: StepInfo) -> None:
        state.cached = [None if t is None else t.detach() for t in leaves]
        if self.config.forecast == "taylor" and not self.calibrating:
            old, gap = state.factors, step.index - state.last_update
            state.factors = [
                None if t is None else taylor_update(old[i] if old else None, t, gap, 1, state.last_update >= 0)
                for i, t in enumerate(state.cached)
            ]
            state.last_update = step.index
        if self.calibrating and self._pending is None:
            flat = torch.cat([t.detach().reshape(-1).float().cpu() for t in leaves if t is not None])
            self._recordings[state.unit.name].steps.setdefault(step.index, {})[step.context] = flat
            self._seen, self._planned = max(self._seen, step.index + 1), step.num_inference_steps
            if self._calibration_complete(step):  # built now, so the next (timed) run does not pay for it
                self._end_calibration_run()

    def _calibration_complete(self, step: StepInfo) -> bool:
        """True once every unit has recorded the run's last step in every context seen at step 0, so the
        schedule is built at the end of the calibration run rather than inside the next (timed) one."""
        total = step.num_inference_steps
        if total is None or step.index != total - 1:
            return False
        return all(set(r.steps.get(total - 1, {})) == set(r.steps.get(0, {})) for r in self._recordings.values())

    def forecast(self, state: BacState, step: StepInfo):
        if state.factors is not None:
            offset = step.index - state.last_update
            return [None if fs is None else taylor_forecast(fs, offset) for fs in state.factors]
        return list(state.cached)

    # ------------------------------------------------------------------------------- calibration
    def calibration_result(self) -> BacSchedule:
        """The schedule of the calibration run that just ended (what `diffaccel.bac.calibrate` returns)."""
        if self._pending is not None:
            return self._pending
        if not self.calibrating:
            return self.schedule
        return from_rank_zero(self.finish_calibration())

    def finish_calibration(self) -> BacSchedule:
        """Per-unit DP schedules from the recorded run, then the Bubbling Union and the forced last step."""
        cfg = self.config
        problem = self.calibration_problem()
        if problem is not None:
            raise RuntimeError(f"BAC cannot build a schedule: {problem}.")
        names = list(self._recordings)
        num_steps = max(len(r.steps) for r in self._recordings.values())
        acs, errors, scores = {}, {}, {}
        for name, rec in self._recordings.items():
            if sorted(rec.steps) != list(range(num_steps)):
                raise RuntimeError(
                    f"BAC calibration of '{name}' saw steps {sorted(rec.steps)[:5]}..., not 0..{num_steps - 1}"
                )
            features = torch.stack(
                [torch.cat([rec.steps[k][c] for c in sorted(rec.steps[k])]) for k in range(num_steps)]
            )
            scores[name], errors[name] = _unit_statistics(features, cfg.metric)
        if cfg.scope == "unified":
            shared = select_update_steps(
                torch.stack(list(scores.values())).mean(0), cfg.num_updates, maximize=cfg.metric == "cosine"
            )
            acs = {name: list(shared) for name in names}
        else:
            acs = {
                name: select_update_steps(score, cfg.num_updates, maximize=cfg.metric == "cosine")
                for name, score in scores.items()
            }
        layers = _layer_indices(names)
        ffn = [n for n in names if self._recordings[n].unit.kind in FFN_KINDS]
        updates = bubbling_union(acs, errors, layers, ffn, cfg.top_blocks)
        ranked = sorted(names, key=lambda u: (-errors[u], names.index(u)))[: cfg.top_blocks]
        if cfg.force_last:
            updates = {u: sorted(set(s) | {num_steps - 1}) for u, s in updates.items()}
        model_class = type(next(iter(self._recordings.values())).unit.engine.root).__name__
        self._discard_calibration()
        return BacSchedule(
            model_class=model_class,
            num_steps=num_steps,
            updates=updates,
            acs=acs,
            errors=errors,
            layers=layers,
            union_units=ranked,
            config={
                "num_updates": cfg.num_updates,
                "top_blocks": cfg.top_blocks,
                "metric": cfg.metric,
                "force_last": cfg.force_last,
                "scope": cfg.scope,
            },
        )


def _unit_statistics(features: torch.Tensor, metric: str) -> tuple[torch.Tensor, float]:
    """A unit's K×K score matrix (similarity for "cosine", else distance) and its reuse error. Under
    torch.distributed both come from per-step-pair sums over all ranks, so every rank gets the numbers of one
    process holding every rank's features (a context-parallel shard of the tokens, or a data-parallel rank's
    samples; core/ranks.py); alone, the single-process arithmetic."""
    if not distributed():
        score = cosine_similarity_matrix(features) if metric == "cosine" else distance_matrix(features, metric)
        return score, reuse_error(features)
    sums = agreed_sum(pair_sums(features))
    return matrices_from_pair_sums(sums, metric), reuse_error_from_pair_sums(sums)


def _layer_indices(names: list[str]) -> dict[str, int]:
    """Layer of each unit: the order of first execution of its block. A unit named by an index (UNet
    resnets `down_blocks.0.resnets.1`, 1-D UNet blocks `down_modules.0.1`) is a block itself; any other
    unit belongs to its parent (`decoder.layers.2.self_attn` -> `decoder.layers.2`)."""
    blocks: dict[str, int] = {}
    out = {}
    for name in names:
        block = name if re.search(r"\.\d+$", name) else name.rpartition(".")[0]
        out[name] = blocks.setdefault(block, len(blocks))
    return out


register_strategy(BacConfig, Bac, "block-wise adaptive caching: per-unit update steps from an exact dynamic programme")
