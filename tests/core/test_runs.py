"""The step clock and run lifecycle: guidance styles, resets, shape changes, exceptions mid-run.

References: the unwrapped model, and a freshly wrapped one (bit-for-bit).
"""

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs

FLUX = "FluxTransformer2DModel"
STEPS = 8


def _split(inputs: dict, half: int) -> dict:
    """Batch row `half` (0 = cond, 1 = uncond) of a batch-2 input dict."""
    return {
        k: (v[half : half + 1] if isinstance(v, torch.Tensor) and k not in ("img_ids", "txt_ids") else v)
        for k, v in inputs.items()
    }


def _two_call_run(model, inputs, steps=STEPS):
    outs = {"cond": [], "uncond": []}
    with torch.no_grad():
        for n in range(steps):
            for half, name in enumerate(("cond", "uncond")):
                with model.cache_context(name):
                    outs[name].append(model(**at_step(FLUX, _split(inputs, half), n, steps))[0])
    return outs


def _single_run(model, inputs, steps=STEPS):
    with torch.no_grad():
        return [model(**at_step(FLUX, inputs, n, steps))[0] for n in range(steps)]


def test_two_call_guidance_keeps_one_state_per_branch_and_one_clock():
    inputs = tiny_inputs(FLUX, batch=2)
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=2)
    both = _two_call_run(model, inputs)
    stats = diffaccel.summary(model)
    assert stats.steps == STEPS and stats.contexts == ["cond", "uncond"]
    # each branch equals that branch run alone in a fresh wrap: states never mix
    for half, name in enumerate(("cond", "uncond")):
        alone = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=2)
        reference = _single_run(alone, _split(inputs, half))
        assert all(torch.equal(a, b) for a, b in zip(both[name], reference)), name
    engine = diffaccel.engines(model)[""]
    assert all(set(h.states) == {"cond", "uncond"} for h in engine.unit_hooks)


def test_doubled_batch_and_two_calls_share_the_schedule():
    inputs = tiny_inputs(FLUX, batch=2)
    doubled = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=2)
    _single_run(doubled, inputs)
    two = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=2)
    _two_call_run(two, inputs)
    a, b = diffaccel.summary(doubled), diffaccel.summary(two)
    assert (a.steps, a.full_steps) == (b.steps, b.full_steps) == (STEPS, 4)  # full at 0, 1, 4, 7
    assert a.contexts == ["default"]
    for name, counts in a.units.items():
        assert (2 * counts.computed, 2 * counts.forecast) == (b.units[name].computed, b.units[name].forecast)


def test_second_run_matches_fresh_wrap_with_and_without_new_run():
    inputs = tiny_inputs(FLUX)
    fresh = _single_run(diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1), inputs)
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1)
    _single_run(model, inputs)
    again = _single_run(model, inputs)  # timestep rises back up: a new run starts by itself
    assert all(torch.equal(a, b) for a, b in zip(fresh, again))
    diffaccel.new_run(model)
    explicit = _single_run(model, inputs)
    assert all(torch.equal(a, b) for a, b in zip(fresh, explicit))


def test_run_that_raised_is_discarded():
    inputs = tiny_inputs(FLUX)
    fresh = _single_run(diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1), inputs)
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1)
    calls = {"n": 0}

    def fail_once(*_):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")

    handle = model.transformer_blocks[0].norm1.register_forward_hook(fail_once)
    with pytest.raises(RuntimeError, match="boom"):
        _single_run(model, inputs)
    assert diffaccel.summary(model).aborted
    handle.remove()
    again = _single_run(model, inputs)
    assert all(torch.equal(a, b) for a, b in zip(fresh, again))
    assert not diffaccel.summary(model).aborted


def test_shape_change_within_a_run_is_an_error_and_between_runs_resets():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1)
    small, large = tiny_inputs(FLUX, batch=1), tiny_inputs(FLUX, batch=2)
    with torch.no_grad():
        model(**at_step(FLUX, small, 0, STEPS))
        with pytest.raises(diffaccel.RunStateError, match="changed within a run"):
            model(**at_step(FLUX, large, 1, STEPS))
    diffaccel.new_run(model)
    fresh = _single_run(diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1), large)
    assert all(torch.equal(a, b) for a, b in zip(fresh, _single_run(model, large)))


def test_unnamed_second_call_at_one_timestep_is_an_error():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer")
    inputs = at_step(FLUX, tiny_inputs(FLUX), 0, STEPS)
    with torch.no_grad():
        model(**inputs)
        with pytest.raises(diffaccel.RunStateError, match="cache_context"):
            model(**inputs)


def test_diffaccel_cache_context_for_models_without_one():
    name = "DiTTransformer2DModel"
    model = diffaccel.wrap(build_tiny(name), "taylorseer", interval=2, warmup=1)
    inputs = tiny_inputs(name)
    with torch.no_grad():
        for n in range(4):
            for branch in ("cond", "uncond"):
                with diffaccel.cache_context(model, branch):
                    model(**at_step(name, inputs, n, 4))
    stats = diffaccel.summary(model)
    assert stats.steps == 4 and stats.contexts == ["cond", "uncond"] and stats.full_steps == 2


def test_force_last_full_computes_the_final_steps():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=6, warmup=3, force_last_full=2)
    diffaccel.new_run(model, num_inference_steps=12)
    _single_run(model, tiny_inputs(FLUX), steps=12)
    assert diffaccel.summary(model).full_steps == 6  # 0, 1, 2, 8 and the last two: 10, 11


def test_summary_reports_cache_bytes_and_prints():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, order=2, warmup=1)
    _single_run(model, tiny_inputs(FLUX))
    stats = diffaccel.summary(model)
    assert stats.cache_bytes > 0
    text = str(stats)
    assert "taylorseer:interval=3:order=2:warmup=1" in text and "full steps 3" in text
    as_dict = stats.as_dict()
    assert as_dict["steps"] == STEPS and set(as_dict["units"]) == {
        h.name for h in diffaccel.engines(model)[""].unit_hooks
    }
