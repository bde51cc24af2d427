"""Error-controlled schedules (FBCache's first-block residual test) and guidance reuse (FasterCache's CFG
cache idea), against the unwrapped model and decisions / outputs computed by hand from it."""

import pytest
import torch

import diffaccel
from diffaccel.forecast.schedules import relative_l1_change
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from tests.schedules.test_schedule_option import (
    FLUX,
    _computed_steps,
    _counting,
    _split,
    _two_call_run,
)


def _differing_branches():
    """Two guidance branches whose inputs differ, so their first-block residuals differ too."""
    inputs = tiny_inputs(FLUX, batch=2)
    inputs["hidden_states"][1] = torch.randn_like(inputs["hidden_states"][1]) * 3
    return inputs


@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_a_threshold_that_forbids_skipping_is_bit_identical(threshold):
    steps, inputs = 8, _differing_branches()
    reference = _two_call_run(build_tiny(FLUX), inputs, steps, wrapped=False)
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule="adaptive", threshold=threshold, warmup=1)
    got = _two_call_run(model, inputs, steps)
    for name in reference:
        assert all(torch.equal(a, b) for a, b in zip(got[name], reference[name])), name
    assert diffaccel.summary(model).full_steps == steps


def _first_block_residuals(inputs, steps, half):
    """The first block's `output - hidden_states` at each step, on the unwrapped model (the tiny test loop
    keeps the latents fixed, so these do not depend on what was forecast)."""
    model, seen = build_tiny(FLUX), []
    block = model.transformer_blocks[0]

    def record(module, args, kwargs, output):
        seen.append((output[1] - kwargs["hidden_states"]).float())

    block.register_forward_hook(record, with_kwargs=True)
    with torch.no_grad():
        for n in range(steps):
            model(**at_step(FLUX, _split(inputs, half), n, steps))
    return seen


def test_the_decision_is_the_first_branchs_fbcache_test_and_both_branches_follow_it():
    steps, warmup, inputs = 12, 2, _differing_branches()
    cond = _first_block_residuals(inputs, steps, 0)
    changes = [relative_l1_change(cond[n], cond[n - 1]) for n in range(1, steps)]
    threshold = sorted(changes)[len(changes) // 2]  # forecast some steps, compute others
    expected, reference = [], None  # FBCache by hand: compare with the residual of the last full step
    for n in range(steps):
        full = n < warmup or relative_l1_change(cond[n], reference) >= threshold
        if full:
            expected.append(n)
            reference = cond[n]
    assert 0 < len(expected) < steps
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule="adaptive", threshold=threshold, warmup=warmup)
    calls = _counting(model)
    _two_call_run(model, inputs, steps)
    assert _computed_steps(calls, "cond") == expected
    assert _computed_steps(calls, "uncond") == expected  # one decision per step, shared by both branches
    # the first block itself computes at every step in both branches
    engine = diffaccel.engines(model)[""]
    assert engine.stats.units["transformer_blocks.0.attn"].computed == 2 * steps


def test_adaptive_needs_the_modules_granularity():
    with pytest.raises(ValueError, match="granularity='modules'"):
        diffaccel.wrap(build_tiny(FLUX), "taylorseer", schedule="adaptive", granularity="stack")


@pytest.mark.parametrize("name", ["UNet2DConditionModel", "UNet2DModel"])
def test_adaptive_on_a_unet_is_refused_at_wrap(name):
    """Found by the pipeline fuzz: a UNet's first block changes resolution, so FBCache's residual test has
    nothing to compare; wrap used to accept it and every call then raised."""
    model = build_tiny(name)
    with pytest.raises(ValueError, match="is a UNet"):
        diffaccel.wrap(model, "taylorseer", schedule="adaptive")
    assert getattr(model, "_diffaccel", None) is None
    diffaccel.wrap(model, "taylorseer", schedule="uniform")  # nothing was left attached
    diffaccel.unwrap(model)


def test_guidance_reuse_matches_the_hand_computed_reference():
    # whole-output first-order TaylorSeer, warm-up 2, interval 2 over 6 steps: full at 0, 1, 3, 5
    steps, inputs = 6, _differing_branches()
    plain = _two_call_run(build_tiny(FLUX), inputs, steps, wrapped=False)
    model = diffaccel.wrap(
        build_tiny(FLUX), "taylorseer", granularity="model", order=1, interval=2, warmup=2, guidance_reuse=True
    )
    calls = _counting(model)
    got = _two_call_run(model, inputs, steps)
    c, u = plain["cond"], plain["uncond"]
    expected_cond = {2: c[1] + (c[1] - c[0]), 4: c[3] + (c[3] - c[1]) / 2}
    expected_uncond = {2: expected_cond[2] + (u[1] - c[1]), 4: expected_cond[4] + (u[3] - c[3])}
    for n in range(steps):
        if n in expected_cond:
            torch.testing.assert_close(got["cond"][n], expected_cond[n], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(got["uncond"][n], expected_uncond[n], rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(got["cond"][n], c[n]) and torch.equal(got["uncond"][n], u[n]), n
    assert _computed_steps(calls, "cond") == _computed_steps(calls, "uncond") == [0, 1, 3, 5]
    stats = diffaccel.summary(model)
    assert stats.full_steps == 4


def test_guidance_reuse_with_one_doubled_batch_changes_nothing():
    steps, inputs = 6, tiny_inputs(FLUX, batch=2)
    runs = []
    for reuse in (False, True):
        model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2, warmup=2, guidance_reuse=reuse)
        with torch.no_grad():
            runs.append([model(**at_step(FLUX, inputs, n, steps))[0] for n in range(steps)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
