"""TaylorSeer: forecast skipped features with a Taylor series (arXiv 2503.06923, ICCV 2025).

Faithful to the official code (Shenyi-Z/TaylorSeer; paper arXiv 2503.06923):

* cache units are the heavy sub-module outputs before adaLN gating (the adapters name them);
* full steps follow the official schedule `n < warmup or (n - warmup + 1) % interval == 0`, with
  one decision per denoising step shared by every unit and guidance context;
* at a full step derivatives are finite differences divided by the latest gap, updated only when
  `n > warmup - 2` (otherwise the factors restart from the fresh output);
* at a skipped step the unit is not executed and returns `Σ_i D^i k^i / i!`.

Options beyond the official code are ours and say so: `force_last_full` (compute the last steps
in full) and `factor_dtype` (the official code keeps factors in the model dtype; we default to
float32 because bf16 finite differences lose precision; ours).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.clock import StepInfo
from ..forecast.schedules import taylorseer_derivatives_enabled, taylorseer_is_full
from ..forecast.taylor import taylor_forecast, taylor_update
from ..schedules.options import ScheduleOptions
from ..schedules.runtime import ScheduledStrategy
from .base import StrategyConfig, UnitState, UnitStrategy, check_granularity
from .registry import register_strategy

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "model": None,
}


@dataclass
class TaylorSeerConfig(StrategyConfig, ScheduleOptions):
    """Options of TaylorSeer. Defaults are FLUX's official ones; `wrap` applies a family preset.

    Attributes:
        interval: N, steps between full computations (official `fresh_threshold`); 1 = every step full.
        order: m, the highest Taylor order (official `max_order`); 0 = plain reuse (FORA).
        warmup: steps computed in full at the start (official `first_enhance`).
        force_last_full: [ours] compute the last this-many steps in full (needs the run's step count,
            known when a pipeline's scheduler is wrapped or `new_run(num_inference_steps=...)` is used).
        factor_dtype: [ours] dtype of the stored factors: "float32" (default), "float64", "bfloat16",
            "float16", or "model" (the output's own dtype, as the official code does).
        factor_device: [ours] where the factors live: "model" (the output's device, default) or "cpu"
            (frees accelerator memory: (order + 1) copies of every cached output; each forecast is then
            computed on the CPU and copied back, which costs time on a GPU).
        granularity: what a cache unit is: "modules" (official: attention and feed-forward outputs),
            "stack" [ours: the block stack's residual, so skipped steps cost only embeddings and the
            output layer] or "model" [ours: the denoiser's whole output].
        schedule, schedule_steps, full_budget, threshold, guidance_reuse: which steps compute in full
            ("uniform" is the official rule above; see `diffaccel.schedules.ScheduleOptions`).
    """

    strategy_name = "taylorseer"
    tag_fields = ("interval", "order", "warmup")

    interval: int = 6
    order: int = 1
    warmup: int = 3
    force_last_full: int = 0
    factor_dtype: str = "float32"
    factor_device: str = "model"
    granularity: str = "modules"

    def validate(self) -> None:
        for name in ("interval", "order", "warmup", "force_last_full"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"taylorseer option '{name}' must be an int, got {type(value).__name__}")
        if self.interval < 1:
            raise ValueError(f"taylorseer interval must be >= 1, got {self.interval}")
        if self.order < 0:
            raise ValueError(f"taylorseer order must be >= 0, got {self.order}")
        if self.warmup < 1:
            raise ValueError(f"taylorseer warmup must be >= 1 (step 0 always computes), got {self.warmup}")
        if self.force_last_full < 0:
            raise ValueError(f"taylorseer force_last_full must be >= 0, got {self.force_last_full}")
        if self.factor_dtype not in _DTYPES:
            raise ValueError(f"taylorseer factor_dtype must be one of {sorted(_DTYPES)}, got {self.factor_dtype!r}")
        if self.factor_device not in ("model", "cpu"):
            raise ValueError(f"taylorseer factor_device must be 'model' or 'cpu', got {self.factor_device!r}")
        check_granularity("taylorseer", self.granularity)
        self.validate_schedule("taylorseer")


@dataclass
class TaylorState(UnitState):
    """Factors per output element and the step of the last full computation."""

    factors: list[list[torch.Tensor] | None] | None = None
    last_full: int = -1
    pinned: bool = False  # computes at every step (the first block under an adaptive schedule)
    devices: list[torch.device | None] | None = None  # of the unit's outputs, when factors live elsewhere

    def nbytes(self) -> int:
        if self.factors is None:
            return 0
        return sum(t.numel() * t.element_size() for fs in self.factors if fs for t in fs)


class TaylorSeer(ScheduledStrategy, UnitStrategy):
    """Official TaylorSeer semantics on the engine's cache units."""

    config: TaylorSeerConfig

    def __init__(self, config: TaylorSeerConfig):
        super().__init__(config)
        self.init_schedule(config, "taylorseer", lambda n: taylorseer_is_full(n, config.interval, config.warmup))

    def is_full_step(self, step: StepInfo) -> bool:
        cfg = self.config
        if self.schedule.is_full(step, self.clock):
            return True
        total = step.num_inference_steps
        if cfg.force_last_full and total is None:
            raise RuntimeError(
                "taylorseer force_last_full needs the run's step count: call the wrapped pipeline, or "
                "`diffaccel.new_run(obj, num_inference_steps=...)` before a hand-written loop."
            )
        return bool(cfg.force_last_full) and step.index >= total - cfg.force_last_full

    def new_state(self, unit) -> TaylorState:
        return TaylorState(pinned=self.schedule.pins(unit.name))

    def must_compute(self, step: StepInfo, state: TaylorState) -> bool:
        return self.scheduled_must_compute(step, state.pinned, state.factors is not None, self.is_full_step)

    def observe(self, state: TaylorState, leaves, step: StepInfo) -> None:
        cfg = self.config
        dtype = _DTYPES[cfg.factor_dtype]
        enabled = taylorseer_derivatives_enabled(step.index, cfg.warmup)
        gap = step.index - state.last_full
        old = state.factors
        new = []
        for i, leaf in enumerate(leaves):
            if leaf is None:
                new.append(None)
                continue
            fresh = leaf.detach() if dtype is None else leaf.detach().to(dtype)
            if cfg.factor_device == "cpu":
                fresh = fresh.to("cpu")
            new.append(taylor_update(old[i] if old else None, fresh, gap, cfg.order, enabled))
        state.factors = new
        state.last_full = step.index
        if cfg.factor_device != "model":
            state.devices = [None if leaf is None else leaf.device for leaf in leaves]

    def forecast(self, state: TaylorState, step: StepInfo):
        offset = step.index - state.last_full
        out = [None if fs is None else taylor_forecast(fs, offset) for fs in state.factors]
        if state.devices is not None:
            out = [t if t is None else t.to(d) for t, d in zip(out, state.devices)]
        return out


register_strategy(TaylorSeerConfig, TaylorSeer, "Taylor-series forecasting of cached sub-module outputs")
