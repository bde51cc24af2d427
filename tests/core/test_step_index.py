"""The step clock takes the step from the pipeline when its cache context carries one (diffusers' `WanPipeline`
passes `step_index` and `num_inference_steps` to `cache_context`), and counts calls only where it does not.

References: the step index the pipeline itself passed (recorded from `cache_context`), the official TaylorSeer
schedule on those indices, and the unwrapped pipeline.
"""

from __future__ import annotations

import copy

import pytest
import torch

import diffaccel
from diffaccel.core.errors import RunStateError
from diffaccel.forecast.schedules import taylorseer_is_full
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from diffaccel.testing.tiny_pipelines import tiny_wan_pipeline

FLUX = "FluxTransformer2DModel"
STEPS = 6
WAN_CALL = dict(prompt="a cat", num_frames=5, height=16, width=16, max_sequence_length=16, guidance_scale=4.0)


class StepRecorder:
    """Seen by the engine at every call after its clock ticked (an engine call answerer that never answers)."""

    def __init__(self):
        self.steps = []

    def answer(self, step, args, kwargs):
        self.steps.append((step.context, step.index, step.num_inference_steps))

    def after(self, step, output):
        pass


def record_engine_steps(obj, component: str = "") -> StepRecorder:
    recorder = StepRecorder()
    diffaccel.engines(obj)[component].call_answerers.append(recorder)
    return recorder


def record_pipeline_steps(monkeypatch, model) -> list:
    """The `(context, step_index, num_inference_steps)` the pipeline passes to `model.cache_context`."""
    passed, original = [], model.cache_context

    def recording(name, **step):
        passed.append((name, step.get("step_index"), step.get("num_inference_steps")))
        return original(name, **step)

    monkeypatch.setattr(model, "cache_context", recording)
    return passed


def _generator():
    return torch.Generator("cpu").manual_seed(0)


def test_wan_pipeline_steps_and_step_count_come_from_the_pipeline(monkeypatch):
    """A transformer wrapped on its own (no scheduler hook tells it the step count) still learns the run's length
    and each call's step from the pipeline; TaylorSeer's last-step rule then works inside `WanPipeline`."""
    pipe = tiny_wan_pipeline()
    passed = record_pipeline_steps(monkeypatch, pipe.transformer)
    diffaccel.wrap(pipe.transformer, "taylorseer", interval=2, warmup=1, force_last_full=1)
    seen = record_engine_steps(pipe.transformer)
    pipe(num_inference_steps=STEPS, generator=_generator(), output_type="pt", **WAN_CALL)
    assert passed == [(name, i, STEPS) for i in range(STEPS) for name in ("cond", "uncond")]
    assert seen.steps == passed


def tiny_wan22_pipeline():
    """The tiny `WanPipeline` as Wan 2.2 A14B: a second transformer for the low-noise steps (`boundary_ratio`)."""
    pipe = tiny_wan_pipeline()
    torch.manual_seed(1)
    transformer_2 = copy.deepcopy(pipe.transformer)
    with torch.no_grad():
        for parameter in transformer_2.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pipe.register_modules(transformer_2=transformer_2)
    pipe.register_to_config(boundary_ratio=0.9)
    return pipe


def test_wan22_second_transformer_joins_at_the_pipeline_step_and_follows_the_schedule_from_there(monkeypatch):
    reference = tiny_wan22_pipeline()(num_inference_steps=STEPS, generator=_generator(), output_type="pt", **WAN_CALL)
    pipe = tiny_wan22_pipeline()
    passed = record_pipeline_steps(monkeypatch, pipe.transformer_2)
    diffaccel.wrap(pipe, "taylorseer", interval=2, warmup=1)
    seen = record_engine_steps(pipe, "transformer_2")
    out = pipe(num_inference_steps=STEPS, generator=_generator(), output_type="pt", **WAN_CALL)

    first = passed[0][1]
    assert 0 < first < STEPS - 1, "the boundary must hand transformer_2 a mid-run step"
    assert seen.steps == passed == [(n, i, STEPS) for i in range(first, STEPS) for n in ("cond", "uncond")]
    # transformer_2 computes its first step (no history yet), then the official schedule of the pipeline's steps
    engine = diffaccel.engines(pipe)["transformer_2"]
    forecast = {i for i in range(first + 1, STEPS) if not taylorseer_is_full(i, 2, 1)}
    assert forecast and engine.stats.steps_with_forecast == forecast
    assert not torch.equal(out.frames, reference.frames)  # some steps were forecast ...
    diffaccel.unwrap(pipe)
    diffaccel.wrap(pipe, "taylorseer", interval=1)
    again = pipe(num_inference_steps=STEPS, generator=_generator(), output_type="pt", **WAN_CALL)
    assert torch.equal(again.frames, reference.frames)  # ... and every-step TaylorSeer is the pipeline itself


def _call(model, inputs, step, *, step_index, context="cond"):
    with model.cache_context(context, step_index=step_index, num_inference_steps=STEPS):
        return model(**at_step(FLUX, inputs, step, STEPS))[0]


@pytest.mark.parametrize(("indices", "message"), [((0, 1, 1), "repeated"), ((0, 1, 2, 1), "went backwards")])
def test_a_repeated_or_backward_step_index_within_a_run_is_an_error(indices, message):
    """The timesteps keep falling (so no new run begins), while the step index does not rise."""
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2)
    inputs = tiny_inputs(FLUX)
    with torch.no_grad():
        for step, index in enumerate(indices[:-1]):
            _call(model, inputs, step, step_index=index)
        with pytest.raises(RunStateError, match=f"step index {message} within one run.*'cond'.*new_run"):
            _call(model, inputs, len(indices) - 1, step_index=indices[-1])
        # the failed call ended the run; a new one starts cleanly at step 0
        diffaccel.new_run(model)
        _call(model, inputs, 0, step_index=0)


def test_step_index_outside_the_run_is_an_error():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2)
    with torch.no_grad(), pytest.raises(RunStateError, match=r"step_index=6 in a run of 6 steps \(valid: 0..5\)"):
        _call(model, tiny_inputs(FLUX), 0, step_index=STEPS)


def test_a_loop_that_skips_a_step_keeps_the_pipeline_numbering():
    """A loop that does not call the model at some step (it reuses a result itself) still numbers the steps
    by its own index; TaylorSeer then extrapolates over the real distance (counting calls would call step 3
    step 2 and forecast one step short)."""
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2, warmup=1)
    seen = record_engine_steps(model)
    inputs = tiny_inputs(FLUX)
    with torch.no_grad():
        for step in (0, 1, 3, 4):
            _call(model, inputs, step, step_index=step)
    assert [index for _, index, _ in seen.steps] == [0, 1, 3, 4]
    assert diffaccel.summary(model).steps == 4


def test_without_a_step_index_the_clock_counts_calls():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2)
    seen = record_engine_steps(model)
    inputs = tiny_inputs(FLUX)
    with torch.no_grad():
        for step in range(3):
            with model.cache_context("cond"):
                model(**at_step(FLUX, inputs, step, STEPS))
    assert seen.steps == [("cond", 0, None), ("cond", 1, None), ("cond", 2, None)]


@pytest.mark.parametrize("bad", [-1, 1.0, "1", True])
def test_a_step_index_that_is_not_a_step_is_an_error(bad):
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2)
    with torch.no_grad(), pytest.raises(RunStateError, match="must be an int >= 0"):
        _call(model, tiny_inputs(FLUX), 0, step_index=bad)


def test_numpy_and_tensor_step_indices_count_as_ints():
    import numpy as np

    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2)
    seen = record_engine_steps(model)
    inputs = tiny_inputs(FLUX)
    with torch.no_grad():
        _call(model, inputs, 0, step_index=np.int64(0))
        _call(model, inputs, 1, step_index=torch.tensor(2))
    assert [index for _, index, _ in seen.steps] == [0, 2]
