"""Calibrated schedules [ours]: measure, on full-step runs, how well each step can be forecast from each
earlier one, and choose the full steps that minimise the summed predicted error exactly.

    schedule = diffaccel.schedules.calibrate(pipe, num_inference_steps=50, seeds=(0,), granularity="stack")
    schedule.save("flux-50.json")
    pipe = diffaccel.wrap(pipe, "taylorseer", granularity="stack", order=2, schedule="flux-50.json")

The measurement wraps the object with TaylorSeer computing every step at the chosen granularity, so the
recorded rows are exactly what the forecasting strategy would see (sub-module outputs, the stack's
residual, or the denoiser output), per guidance branch. `forecast_segment_costs` turns them into
`C[a, b]`, the summed relative squared error of TaylorSeer forecasts of steps a+1 … b from a full step
at a (derivatives from earlier full steps spaced like the segment), each step weighted by the sampler's
squared step size (an error in the model output moves the sample in proportion to the step it is
integrated over); the costs are averaged over seeds and guidance branches, and `select_full_steps`
(BAC's dynamic programme) picks the `num_full` steps. For HyCa the same Taylor
errors stand in for its solver mix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from ..forecast.schedules import (
    forecast_segment_costs,
    select_full_steps,
    taylorseer_full_steps,
)
from .calibrated import CalibratedSchedule

logger = logging.getLogger(__name__)


def pipeline_generator(pipe, num_inference_steps: int, guidance_scale: float | None = None, **call_kwargs):
    """`generate(seed) -> array` for a diffusers-style pipeline (CPU generator, numpy output)."""
    from ..compare.quality import output_array

    def generate(seed: int):
        kwargs = dict(
            call_kwargs,
            num_inference_steps=num_inference_steps,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
        )
        if guidance_scale is not None:
            kwargs["guidance_scale"] = guidance_scale
        return output_array(pipe(**kwargs))

    return generate


class _Recorder:
    """Reads, after every denoiser call, the fresh rows the strategy's units just observed."""

    def __init__(self, engine, prefix: str):
        self.engine = engine
        self.prefix = prefix
        self.rows: dict[tuple[str, str], dict[int, list[torch.Tensor]]] = {}

    def answer(self, step, args, kwargs):
        return None

    def after(self, step, output) -> None:
        for hook in self.engine.unit_hooks:
            state = hook.states.get(step.context)
            if state is None or not state.factors:
                continue
            key = (self.prefix + hook.name, step.context)
            self.rows.setdefault(key, {})[step.index] = [f[0].detach().float().clone() for f in state.factors if f]


def calibrate(
    obj,
    generate: Callable[[int], object] | None = None,
    num_inference_steps: int = 50,
    seeds=(0,),
    granularity: str = "modules",
    order: int | None = None,
    warmup: int | None = None,
    num_full: int | None = None,
    guidance_scale: float | None = None,
) -> CalibratedSchedule:
    """Run `obj` in full on `seeds`, measure per-step forecast errors, and choose the full steps.

    Args:
        obj: an unwrapped pipeline, or a bare model whose `generate(seed)` runs the user's loop (which calls
            `diffaccel.new_run(model, timesteps=...)`).
        generate: `generate(seed)`; default for pipelines: a call with `num_inference_steps` and `guidance_scale`.
        granularity: "modules", "stack" or "model": what the strategy will forecast.
        order, warmup: the forecaster's Taylor order and warm-up (default: the family's TaylorSeer preset).
        num_full: how many full steps (default: as many as the family's uniform TaylorSeer preset computes).
        guidance_scale: recorded in the file (and passed to the default `generate`).
    """
    schedules = calibrate_orders(
        obj, generate, num_inference_steps, seeds, granularity, (order,), warmup, num_full, guidance_scale
    )
    return next(iter(schedules.values()))


def calibrate_orders(
    obj,
    generate: Callable[[int], object] | None = None,
    num_inference_steps: int = 50,
    seeds=(0,),
    granularity: str = "modules",
    orders=(None,),
    warmup: int | None = None,
    num_full: int | None = None,
    guidance_scale: float | None = None,
    outputs: dict | None = None,
) -> dict:
    """`calibrate` for several Taylor orders from ONE set of full-step runs (the recorded outputs do not
    depend on the order; only the segment costs computed from them do): `{order: CalibratedSchedule}`.

    `outputs`, when given, receives `{seed: generate(seed)}`: every step is computed, so these are the
    full-step outputs (bit-identical to an unwrapped run) and can serve as references.
    """
    from .. import api

    if generate is None:
        generate = pipeline_generator(obj, num_inference_steps, guidance_scale)
    options = {"granularity": granularity, "schedule": list(range(num_inference_steps))}
    if warmup is not None:
        options["warmup"] = warmup
    api.wrap(obj, "taylorseer", **options)
    try:
        engines = api.engines(obj)
        recorders = [_Recorder(engine, f"{name}/" if name else "") for name, engine in engines.items()]
        for engine, recorder in zip(engines.values(), recorders):
            engine.call_answerers.append(recorder)
        config = next(iter(engines.values())).strategies[0].config
        orders = tuple(config.order if o is None else o for o in orders)
        matrices = {order: [] for order in orders}
        timesteps, model_class = None, type(next(iter(engines.values())).root).__name__
        with torch.no_grad():
            for seed in seeds:
                for recorder in recorders:
                    recorder.rows.clear()
                out = generate(seed)
                if outputs is not None:
                    outputs[seed] = out
                clock = next(iter(engines.values())).clock
                if clock.timesteps is None:
                    raise RuntimeError(
                        "calibration needs the run's timesteps: call the wrapped pipeline, or "
                        "`diffaccel.new_run(model, timesteps=scheduler.timesteps)` in your loop"
                    )
                timesteps = list(clock.timesteps)
                for order in orders:
                    matrices[order] += _cost_matrices(recorders, num_inference_steps, order, config.warmup, timesteps)
    finally:
        api.unwrap(obj)
    if num_full is None:
        num_full = len(taylorseer_full_steps(num_inference_steps, config.interval, config.warmup))
    result = {}
    for order in orders:
        errors = np.mean(matrices[order], axis=0)
        full_steps = select_full_steps(errors, num_full)
        logger.info(
            "calibrated schedule (order %d): %d full steps of %d: %s",
            order,
            len(full_steps),
            num_inference_steps,
            full_steps,
        )
        result[order] = CalibratedSchedule(
            model_class=model_class,
            num_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            timesteps=timesteps,
            full_steps=full_steps,
            errors=errors.tolist(),
            forecaster={
                "strategy": "taylorseer",
                "order": order,
                "granularity": granularity,
                "warmup": config.warmup,
                "seeds": list(seeds),
            },
        )
    return result


def step_weights(timesteps) -> np.ndarray:
    """[ours] (h_k / mean h)², h_k = t_k − t_{k+1} (t_N = 0): the squared share of the trajectory step k moves."""
    t = np.append(np.asarray(timesteps, dtype=np.float64), 0.0)
    gaps = np.abs(t[:-1] - t[1:])
    return (gaps / max(gaps.mean(), 1e-30)) ** 2


def _cost_matrices(recorders, num_steps: int, order: int, warmup: int, timesteps) -> list[np.ndarray]:
    """One segment-cost matrix per guidance branch of this run (all units of all denoisers together)."""
    by_context: dict[str, list[torch.Tensor]] = {}
    for recorder in recorders:
        for (unit, context), rows in recorder.rows.items():
            if sorted(rows) != list(range(num_steps)):
                raise RuntimeError(
                    f"calibration saw unit '{unit}' at {len(rows)} of {num_steps} steps in branch "
                    f"'{context}'; run with num_inference_steps={num_steps}"
                )
            for i in range(len(rows[0])):
                by_context.setdefault(context, []).append(torch.stack([rows[n][i] for n in range(num_steps)]))
    if not by_context:
        raise RuntimeError("calibration recorded nothing: generate(seed) never called the wrapped denoiser")
    weights = step_weights(timesteps)
    return [forecast_segment_costs(features, order, weights, warmup) for features in by_context.values()]
