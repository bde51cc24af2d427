"""HyCa: hybrid per-channel solvers for feature caching (arXiv 2510.04188, ICLR 2026).

What the paper states: feature channels of a cached unit are clustered by
descriptors of their temporal behaviour from a short probe run, each cluster gets the solver of a
pool that predicts it best ("one-time choosing, all-time solving"), and inference follows
TaylorSeer's interval schedule. What it does not publish is OURS and marked so (docs/methods.md): the
solver formulas (`forecast/solvers.py`), the descriptors (`forecast/descriptors.py`), the number
of clusters (default 2, as in every figure of the paper), the probe length (first 8 steps for
descriptors), and the unit granularity: we cluster the same sub-module outputs TaylorSeer caches,
along each unit's channel axis, so that one cluster with the `tf1` solver *is* TaylorSeer.

Solver choice per cluster [ours]: the paper scores prediction error at one step. The probe run
computes every step, so errors are open-loop; in a real run the sampler integrates the forecast
features, so an error that keeps its sign (a lagging solver) accumulates in the latents while a
zero-mean one partly cancels. Over the steps the schedule would forecast in the probe, per channel,
the default `selection="accumulated"` scores a solver by its mean squared error plus the square of
its summed signed (token-averaged) error; `selection="squared"` uses the mean squared error alone
(our first design: on `wan-clips` it chose lagging solvers and lost 1–4 dB to TaylorSeer; README).

A profile (`HycaProfile`) can be made once with `diffaccel.hyca.profile(...)` (`profile` below), saved, and
passed as `profile=`; without one, the first run is the probe (all steps computed) and says so:

    profile = diffaccel.hyca.profile(pipe, prompt="a cat", num_inference_steps=50)
    profile.save("flux-hyca.safetensors")
    pipe = diffaccel.wrap(pipe, "hyca", profile="flux-hyca.safetensors")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.clock import StepInfo
from ..core.ranks import agreed_sum, distributed, from_rank_zero
from ..forecast.descriptors import channel_descriptors, cluster_channels
from ..forecast.schedules import taylorseer_derivatives_enabled, taylorseer_is_full
from ..forecast.solvers import SOLVERS, History, solver
from ..schedules.options import ScheduleOptions
from ..schedules.runtime import ScheduledStrategy
from .base import StrategyConfig, UnitState, UnitStrategy, check_granularity
from .hyca_profile import HycaProfile, LeafAssignment
from .registry import register_strategy

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "model": None}
_SELECTIONS = ("accumulated", "squared")


@dataclass
class HyCaConfig(StrategyConfig, ScheduleOptions):
    """Options of HyCa.

    Attributes:
        interval: steps between full computations (TaylorSeer's schedule, as in the paper).
        warmup: steps computed in full at the start (TaylorSeer's `first_enhance`).
        num_clusters: C, clusters of channels per unit output [ours: the paper does not state C;
            its figures show 2].
        solvers: the solver pool, names separated by "," or "|" (see `diffaccel.forecast.solvers`) [ours];
            "|" fits text specs, where commas separate options: `hyca:solvers=tf1|tf2`.
        probe_steps: steps of the probe run used for the descriptors [ours].
        selection: how the probe scores solvers per cluster [ours]: "accumulated" (mean squared error
            plus the squared sum of signed errors over the forecast steps, the default) or "squared"
            (mean squared error only).
        profile: a `HycaProfile` or the path of a saved one; None = profile on the first run.
        seed: k-means seed.
        factor_dtype: "float32", "float64" or "model" (dtype of the stored history) [ours].
        granularity: "modules" (TaylorSeer's units, the default), "stack" or "model" [ours; see
            `diffaccel.strategies.base.GRANULARITY_LEVELS`]. A profile is tied to its granularity.
        schedule, schedule_steps, full_budget, threshold, guidance_reuse: which steps compute in full
            ("uniform" is TaylorSeer's rule, as in the paper; see `diffaccel.schedules.ScheduleOptions`). The
            probe scores solvers over the steps this schedule forecasts ("adaptive": the uniform ones).
    """

    strategy_name = "hyca"
    tag_fields = ("interval", "warmup", "num_clusters")

    interval: int = 6
    warmup: int = 3
    num_clusters: int = 2
    solvers: str = "reuse,tf1,tf2,ab2,damped"
    probe_steps: int = 8
    selection: str = "accumulated"
    profile: Any = None
    seed: int = 0
    factor_dtype: str = "float32"
    granularity: str = "modules"

    def validate(self) -> None:
        for name in ("interval", "warmup", "num_clusters", "probe_steps", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"hyca option '{name}' must be an int, got {type(value).__name__}")
        if self.interval < 1 or self.warmup < 1 or self.num_clusters < 1:
            raise ValueError("hyca interval, warmup and num_clusters must be >= 1")
        if self.probe_steps < 4:
            raise ValueError("hyca probe_steps must be >= 4 (descriptors use third differences)")
        if self.selection not in _SELECTIONS:
            raise ValueError(f"hyca selection must be one of {list(_SELECTIONS)}, got {self.selection!r}")
        if not self.solver_names:
            raise ValueError(f"hyca solvers is empty; give one or more of {sorted(SOLVERS)}, e.g. solvers=tf1|tf2")
        for name in self.solver_names:
            solver(name)  # raises for unknown names
        if self.factor_dtype not in _DTYPES:
            raise ValueError(f"hyca factor_dtype must be one of {sorted(_DTYPES)}")
        check_granularity("hyca", self.granularity)
        self.validate_schedule("hyca")
        if (
            self.profile is not None
            and not isinstance(self.profile, (str, HycaProfile))
            and not hasattr(self.profile, "__fspath__")
        ):
            raise TypeError("hyca profile must be a HycaProfile or the path of a saved one")
        if (isinstance(self.profile, str) or hasattr(self.profile, "__fspath__")) and not os.path.isfile(self.profile):
            raise ValueError(
                f"hyca profile file {str(self.profile)!r} does not exist; make one with "
                "diffaccel.hyca.profile(...).save(path), or leave profile out to probe on the first run"
            )

    @property
    def solver_names(self) -> list[str]:
        return [s.strip() for s in self.solvers.replace("|", ",").split(",") if s.strip()]

    def strify(self) -> str:
        tag = super().strify()
        return tag.replace(f":profile={self.profile}", ":profile") if self.profile is not None else tag


@dataclass
class _ProbeLeaf:
    """Statistics of one output tensor of one unit during the probe run."""

    trajectory: list[np.ndarray] = field(default_factory=list)
    errors: dict[str, torch.Tensor] = field(default_factory=dict)  # per channel: sum of squared errors
    signed: dict[str, torch.Tensor] = field(default_factory=dict)  # per channel: sum of token-mean errors
    samples: int = 0
    rows: int = 0  # token rows each per-channel mean is taken over (this rank's share under torch.distributed)
    shadow: History = field(default_factory=History)
    last_full: int = -1


@dataclass
class HycaState(UnitState):
    histories: list[History | None] | None = None
    last_full: int = -1
    probe: list[_ProbeLeaf | None] | None = None
    masks: dict = field(default_factory=dict)
    pinned: bool = False  # computes at every step (the first block under an adaptive schedule)

    def nbytes(self) -> int:
        return sum(h.nbytes() for h in self.histories or [] if h is not None)


def _channel_view(t: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """`t` as [rest, channels]."""
    return t.movedim(channel_dim, -1).reshape(-1, t.shape[channel_dim])


class HyCa(ScheduledStrategy, UnitStrategy):
    config: HyCaConfig

    def __init__(self, config: HyCaConfig):
        super().__init__(config)
        profile = config.profile
        self.profile: HycaProfile | None = (
            HycaProfile.load(profile) if isinstance(profile, str) or hasattr(profile, "__fspath__") else profile
        )
        self.probing = self.profile is None
        self._probe_units: dict[str, tuple[Any, HycaState]] = {}
        self._probe_steps = 0  # steps the probe run in progress has seen
        self._probe_planned: int | None = None  # its planned step count, when known
        self._announced = False
        self.init_schedule(config, "hyca", lambda n: taylorseer_is_full(n, config.interval, config.warmup))

    # ------------------------------------------------------------------------------ run lifecycle
    def on_new_run(self) -> None:
        """The previous run is over: a probe run that finished all its steps, and saw enough of them,
        becomes the profile; any other probe run is dropped and the next run probes again (a short first
        call must not decide every later one)."""
        if self.probing and self._probe_units:
            problem = self._probe_problem()
            if problem is None:
                self.profile = from_rank_zero(self.finish_probe())  # one profile on every rank (core/ranks.py)
                self.probing = False
                logger.info("HyCa: profile built from the first run; forecasting from now on")
            elif self.min_probe_steps() is not None:  # (interval 1 forecasts nothing: no profile is needed)
                logger.warning("HyCa: %s; no profile was built from it and the next run probes again.", problem)
        self._discard_probe()

    def on_run_aborted(self) -> None:
        """A probe run that raised is dropped entirely: the strategy is as freshly wrapped."""
        self._discard_probe()

    def _discard_probe(self) -> None:
        self._probe_units.clear()
        self._probe_steps, self._probe_planned = 0, None

    def min_probe_steps(self) -> int | None:
        """Fewest steps a probe run needs: `probe_steps`-long descriptors need 4 steps (third differences),
        and scoring the solvers needs one step the interval rule would forecast. None when nothing is ever
        forecast (interval 1): then no profile is needed."""
        cfg = self.config
        horizon = cfg.warmup + cfg.interval + 1
        first_forecast = next((n for n in range(horizon) if not taylorseer_is_full(n, cfg.interval, cfg.warmup)), None)
        return None if first_forecast is None else max(4, first_forecast + 1)

    def _probe_problem(self) -> str | None:
        """Why the probe data gathered so far cannot make a profile, or None when it can."""
        seen, planned = self._probe_steps, self._probe_planned
        if planned is not None and seen < planned:
            return f"the probe run stopped after {seen} of its {planned} steps"
        needed = self.min_probe_steps()
        short = any(
            len(p.trajectory) < 4 or p.samples == 0
            for _, state in self._probe_units.values()
            for p in state.probe or []
            if p is not None
        )
        if needed is None and short:
            return f"interval {self.config.interval} computes every step, so there is nothing to profile"
        if short:
            return (
                f"the probe run had {seen} steps; a HyCa probe needs at least {needed} (4 for the channel "
                f"descriptors and one step that interval={self.config.interval}, warmup={self.config.warmup} "
                "would forecast)"
            )
        return None

    def _is_full(self, step: StepInfo) -> bool:
        if self.probing and self.schedule.kind == "adaptive":  # the probe computes everything: no signal
            return self.schedule.uniform_rule(step.index)
        return self.schedule.is_full(step, self.clock)

    def new_state(self, unit) -> HycaState:
        state = HycaState()
        if self.probing:
            if not self._announced:
                logger.warning(
                    "HyCa: no profile given; profiling on this first run (every step computed in full). "
                    "Save one with diffaccel.hyca.profile(...) to skip this."
                )
                self._announced = True
            self._probe_units.setdefault(unit.name, (unit, state))
        elif unit.name not in self.profile.units:
            raise ValueError(
                f"HyCa profile has no assignment for cache unit '{unit.name}'; it was made for "
                f"{self.profile.model_class}. Profile this model again."
            )
        state.unit = unit
        state.pinned = not self.probing and self.schedule.pins(unit.name)
        return state

    # ------------------------------------------------------------------------------------ engine
    def must_compute(self, step: StepInfo, state: HycaState) -> bool:
        if self.probing:
            return True
        return self.scheduled_must_compute(step, state.pinned, state.histories is not None, self._is_full)

    def observe(self, state: HycaState, leaves, step: StepInfo) -> None:
        if self.probing:
            self._probe_steps = max(self._probe_steps, step.index + 1)
            self._probe_planned = step.num_inference_steps
            self._observe_probe(state, leaves, step)
            return
        dtype = _DTYPES[self.config.factor_dtype]
        enabled = taylorseer_derivatives_enabled(step.index, self.config.warmup)
        if state.histories is None:
            state.histories = [None if t is None else History() for t in leaves]
        for history, leaf in zip(state.histories, leaves):
            if history is not None:
                history.update(leaf.detach() if dtype is None else leaf.detach().to(dtype), step.index, enabled)
        state.last_full = step.index

    def forecast(self, state: HycaState, step: StepInfo):
        offset = step.index - state.last_full
        assignment = self.profile.units[state.unit.name]
        out = []
        for i, history in enumerate(state.histories):
            if history is None:
                out.append(None)
                continue
            leaf = assignment[i]
            preds = {name: solver(name)(history, offset) for name in leaf.solver_set}
            if len(preds) == 1:
                out.append(next(iter(preds.values())))
                continue
            masks = self._masks(state, i, leaf, history.outputs[0])
            names = list(preds)
            result = preds[names[0]]
            for name in names[1:]:
                result = torch.where(masks[name], preds[name], result)
            out.append(result)
        return out

    def _masks(self, state: HycaState, i: int, leaf: LeafAssignment, like: torch.Tensor) -> dict:
        """Boolean channel masks per solver, shaped to broadcast along the channel axis (cached)."""
        key = (i, like.device)
        if key not in state.masks:
            dim = state.unit.spec.channel_dim % like.dim()
            shape = [1] * like.dim()
            shape[dim] = like.shape[dim]
            labels = torch.as_tensor(leaf.labels, device=like.device)
            state.masks[key] = {
                name: torch.isin(
                    labels, torch.as_tensor([c for c, s in enumerate(leaf.solvers) if s == name], device=like.device)
                ).reshape(shape)
                for name in leaf.solver_set
            }
        return state.masks[key]

    # ------------------------------------------------------------------------------------- probe
    def _observe_probe(self, state: HycaState, leaves, step: StepInfo) -> None:
        cfg = self.config
        dim = state.unit.spec.channel_dim
        if state.probe is None:
            state.probe = [None if t is None else _ProbeLeaf() for t in leaves]
        for leaf, probe in zip(leaves, state.probe):
            if probe is None:
                continue
            actual = leaf.detach().to(torch.float64)
            probe.rows = _channel_view(actual, dim).shape[0]
            if step.index < cfg.probe_steps:
                probe.trajectory.append(_channel_view(actual, dim).mean(0).cpu().numpy())
            if self._is_full(step) or probe.last_full < 0:
                enabled = taylorseer_derivatives_enabled(step.index, cfg.warmup)
                probe.shadow.update(actual, step.index, enabled)
                probe.last_full = step.index
                continue
            offset = step.index - probe.last_full
            for name in cfg.solver_names:
                diff = _channel_view(solver(name)(probe.shadow, offset) - actual, dim)
                probe.errors[name] = probe.errors.get(name, 0) + (diff**2).mean(0)
                probe.signed[name] = probe.signed.get(name, 0) + diff.mean(0)
            probe.samples += 1

    def finish_probe(self) -> HycaProfile:
        """Cluster channels and pick a solver per cluster from the probe run's statistics."""
        cfg = self.config
        problem = self._probe_problem() if self._probe_units else "no probe run was recorded"
        if problem is not None:
            raise RuntimeError(f"HyCa cannot build a profile: {problem}.")
        units: dict[str, list[LeafAssignment | None]] = {}
        for name, (_unit, state) in self._probe_units.items():
            leaves = []
            for probe in state.probe or []:
                if probe is None:
                    leaves.append(None)
                    continue
                trajectory, errors, signed = _probe_statistics(probe)
                labels = cluster_channels(channel_descriptors(trajectory), cfg.num_clusters, cfg.seed)
                if cfg.selection == "accumulated":
                    errors = {s: errors[s] / probe.samples + signed[s] ** 2 for s in errors}
                solvers = [
                    min(errors, key=lambda s: float(errors[s][labels == c].mean()))
                    for c in range(int(labels.max()) + 1)
                ]
                leaves.append(LeafAssignment(labels=labels, solvers=solvers))
            units[name] = leaves
        model_class = type(next(iter(self._probe_units.values()))[0].engine.root).__name__
        self._discard_probe()
        return HycaProfile(
            model_class=model_class,
            units=units,
            config={
                "interval": cfg.interval,
                "warmup": cfg.warmup,
                "num_clusters": cfg.num_clusters,
                "solvers": cfg.solvers,
                "probe_steps": cfg.probe_steps,
                "seed": cfg.seed,
                "selection": cfg.selection,
            },
        )


def _probe_statistics(probe: _ProbeLeaf) -> tuple[np.ndarray, dict, dict]:
    """The probe's per-channel token means: trajectory [steps, channels], and per solver the summed squared and
    signed errors. Under torch.distributed, means over the token rows of all ranks (each rank's mean weighted
    by its rows), so every rank clusters and scores the same numbers, those of one process holding every
    rank's tokens (core/ranks.py); alone, this rank's own."""
    trajectory = np.stack(probe.trajectory)
    errors = {s: e.cpu().numpy() for s, e in probe.errors.items()}
    signed = {s: e.cpu().numpy() for s, e in probe.signed.items()}
    if not distributed():
        return trajectory, errors, signed
    rows = float(agreed_sum(torch.tensor([probe.rows]))[0])

    def pooled(values: np.ndarray) -> np.ndarray:
        return (agreed_sum(torch.from_numpy(np.asarray(values, dtype=np.float64) * probe.rows)) / rows).numpy()

    return pooled(trajectory), {s: pooled(e) for s, e in errors.items()}, {s: pooled(e) for s, e in signed.items()}


# ------------------------------------------------------------------------------------------- profiling
def profile(obj, run: Callable[[], Any] | None = None, *, options: dict | None = None, **call_kwargs) -> HycaProfile:
    """Profile `obj` (a pipeline or a wrapped-able model) on one generation.

    Args:
        obj: what you will later wrap with HyCa; must not be wrapped now.
        run: a callable that performs one generation (for bare models in hand-written loops);
            by default `obj(**call_kwargs)` is called.
        options: HyCa options (interval, warmup, num_clusters, solvers, probe_steps, seed); the
            model family's preset fills the rest.
    """
    from ..api import engines, unwrap, wrap

    wrap(obj, "hyca", **(options or {}))
    try:
        obj(**call_kwargs) if run is None else run()
        strategies = [s for e in engines(obj).values() for s in e.strategies if isinstance(s, HyCa)]
        profiles = [from_rank_zero(s.finish_probe()) for s in strategies]  # one profile on every rank
    finally:
        unwrap(obj)
    if len(profiles) != 1:
        raise NotImplementedError("profiling a pipeline with several wrapped denoisers: profile each model alone")
    return profiles[0]


register_strategy(HyCaConfig, HyCa, "per-channel hybrid solvers chosen from a probe run")
