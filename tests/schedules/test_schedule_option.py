"""The `schedule=` option of forecasting strategies, against independent references: the unwrapped
model (bit for bit), counted executions of a module inside a cache unit, hand-computed step maps, and
FBCache's first-block test recomputed by hand on the unwrapped model."""

import pytest
import torch

import diffaccel
from diffaccel.forecast.schedules import growing_gap_full_steps
from diffaccel.schedules.calibrated import CalibratedSchedule
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs

FLUX = "FluxTransformer2DModel"
COUNTED = "transformer_blocks.1.attn.to_q"  # runs only when block 1's attention unit computes


def _split(inputs, half):
    return {
        k: (v[half : half + 1] if isinstance(v, torch.Tensor) and k not in ("img_ids", "txt_ids") else v)
        for k, v in inputs.items()
    }


def _counting(model):
    """Per (context, step) executions of the counted module, filled in by a forward hook."""
    calls = []
    model.get_submodule(COUNTED).register_forward_hook(lambda *a: calls.append(model._current_key))
    return calls


def _two_call_run(model, inputs, steps, wrapped=True, timesteps=None):
    """Guidance as two calls per step; returns {context: [outputs]}."""
    if wrapped:
        diffaccel.new_run(model, steps, timesteps=timesteps)
    outs = {"cond": [], "uncond": []}
    with torch.no_grad():
        for n in range(steps):
            for half, name in enumerate(("cond", "uncond")):
                model._current_key = (name, n)
                with model.cache_context(name):
                    outs[name].append(model(**at_step(FLUX, _split(inputs, half), n, steps))[0])
    return outs


def _timesteps(steps):
    return [1000.0 * (1.0 - n / steps) for n in range(steps)]


def _computed_steps(calls, context="cond"):
    return sorted(n for ctx, n in calls if ctx == context)


@pytest.mark.parametrize(
    "strategy,granularity", [("taylorseer", "modules"), ("taylorseer", "stack"), ("taylorseer", "model")]
)
def test_a_schedule_of_every_step_is_bit_identical_to_the_unwrapped_model(strategy, granularity):
    steps, inputs = 6, tiny_inputs(FLUX, batch=2)
    reference = _two_call_run(build_tiny(FLUX), inputs, steps, wrapped=False)
    model = diffaccel.wrap(build_tiny(FLUX), strategy, schedule=list(range(steps)), granularity=granularity)
    got = _two_call_run(model, inputs, steps)
    for name in reference:
        assert all(torch.equal(a, b) for a, b in zip(got[name], reference[name])), name
    assert diffaccel.summary(model).full_steps == steps


@pytest.mark.parametrize("schedule", [[0, 3, 4, 8], "0|3|4|8"])
def test_an_explicit_list_computes_exactly_those_steps(schedule):
    steps = 10
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule=schedule)
    calls = _counting(model)
    _two_call_run(model, tiny_inputs(FLUX, batch=2), steps)
    assert _computed_steps(calls, "cond") == _computed_steps(calls, "uncond") == [0, 3, 4, 8]
    assert diffaccel.summary(model).full_steps == 4


def test_hyca_takes_the_same_schedule_after_its_probe():
    steps = 10
    model = diffaccel.wrap(build_tiny(FLUX), "hyca", schedule="0|2|5|9", probe_steps=4)
    _two_call_run(model, tiny_inputs(FLUX, batch=2), steps)  # the probe run: every step computed
    calls = _counting(model)
    _two_call_run(model, tiny_inputs(FLUX, batch=2), steps)
    assert _computed_steps(calls) == [0, 2, 5, 9]


def test_growing_gaps_match_the_hand_written_family():
    assert growing_gap_full_steps(50, 3) == [0, 1, 2, 4, 7, 11, 16, 22, 29, 37, 46]
    assert growing_gap_full_steps(20, 2, first_gap=3) == [0, 1, 4, 8, 13, 19]
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule="growing-3", warmup=2)
    calls = _counting(model)
    _two_call_run(model, tiny_inputs(FLUX, batch=2), 20)
    assert _computed_steps(calls) == [0, 1, 4, 8, 13, 19]


def test_a_list_carried_to_another_step_count_lands_on_the_hand_computed_steps():
    # written for 10 steps; a 20-step run on the same (linear) noise schedule has step i of 10 at step 2i
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule="0|1|2|5|8", schedule_steps=10)
    calls = _counting(model)
    _two_call_run(model, tiny_inputs(FLUX, batch=2), 20, timesteps=_timesteps(20))
    assert _computed_steps(calls) == [0, 2, 4, 10, 16]


def test_a_calibrated_schedule_carries_over_by_timestep(tmp_path):
    # calibrated at 10 steps (t = 1000, 900, ...), full at 0, 1, 3, 6 -> t = 1000, 900, 700, 400; a 7-step run
    # has t = 1000, 857.1, 714.3, 571.4, 428.6, 285.7, 142.9: nearest steps 0, 1, 2, 4 (by hand)
    path = tmp_path / "flux.json"
    CalibratedSchedule(
        model_class="FluxTransformer2DModel",
        num_steps=10,
        guidance_scale=2.0,
        timesteps=_timesteps(10),
        full_steps=[0, 1, 3, 6],
        errors=[[0.0] * 10] * 10,
        forecaster={"strategy": "taylorseer", "order": 1, "granularity": "modules", "warmup": 2},
    ).save(path)
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule=str(path))
    calls = _counting(model)
    _two_call_run(model, tiny_inputs(FLUX, batch=2), 7, timesteps=_timesteps(7))
    assert _computed_steps(calls) == [0, 1, 2, 4]
    calls.clear()
    _two_call_run(model, tiny_inputs(FLUX, batch=2), 10, timesteps=_timesteps(10))  # its own step count
    assert _computed_steps(calls) == [0, 1, 3, 6]


def test_carrying_without_the_runs_timesteps_says_what_to_pass():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule="0|1|5", schedule_steps=10)
    with pytest.raises(RuntimeError, match="timesteps"):
        _two_call_run(model, tiny_inputs(FLUX, batch=2), 6)


@pytest.mark.parametrize("bad", ["calibrated", "sometimes", "growing-0", [0, -1], 2.5])
def test_bad_schedules_name_the_valid_forms(bad):
    with pytest.raises((ValueError, TypeError), match="uniform"):
        diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule=bad)
