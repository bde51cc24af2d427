"""State that outlives a run (HyCa's probe) is committed only by a run that finished all its steps: a short
first call, or one that raises halfway, leaves the strategy exactly as freshly wrapped."""

from __future__ import annotations

import logging

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

FLUX = "FluxTransformer2DModel"
OPTIONS = dict(interval=3, warmup=2, probe_steps=6)


class Boom(RuntimeError):
    pass


def _loop(model, inputs, steps, fail_at=None):
    """A hand-written denoising loop of `steps` steps; the denoiser raises inside its forward at `fail_at`."""
    diffaccel.new_run(model, num_inference_steps=steps)
    outputs = []
    with torch.no_grad():
        for n in range(steps):
            handle = None
            if n == fail_at:  # raises inside the wrapped forward, after the engine started the step

                def explode(*_, n=n):
                    raise Boom(f"step {n}")

                handle = model.transformer_blocks[0].register_forward_pre_hook(explode)
            try:
                outputs.append(model(**at_step(FLUX, inputs, n, steps))[0])
            finally:
                if handle is not None:
                    handle.remove()
    return outputs


def _fresh_runs(inputs, steps=10, runs=2):
    model = diffaccel.wrap(build_tiny(FLUX), "hyca", **OPTIONS)
    return [_loop(model, inputs, steps) for _ in range(runs)]


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_a_short_first_run_does_not_poison_later_runs(caplog):
    inputs = tiny_inputs(FLUX)
    model = diffaccel.wrap(build_tiny(FLUX), "hyca", **OPTIONS)
    with caplog.at_level(logging.WARNING, logger="diffaccel"):
        _loop(model, inputs, 2)
        later = [_loop(model, inputs, 10) for _ in range(2)]
    assert "a HyCa probe needs at least 4" in caplog.text
    expected = _fresh_runs(inputs)
    assert _equal(later[0], expected[0]) and _equal(later[1], expected[1])
    assert diffaccel.summary(model).full_steps < 10, "the second long run forecast from the profile"


@pytest.mark.parametrize("fail_at", [1, 6])
def test_a_probe_run_that_raises_leaves_the_strategy_as_fresh(fail_at):
    inputs = tiny_inputs(FLUX)
    model = diffaccel.wrap(build_tiny(FLUX), "hyca", **OPTIONS)
    with pytest.raises(Boom):
        _loop(model, inputs, 10, fail_at=fail_at)
    later = [_loop(model, inputs, 10) for _ in range(2)]
    expected = _fresh_runs(inputs)
    assert _equal(later[0], expected[0]) and _equal(later[1], expected[1])


def test_a_pipeline_probe_stopped_by_its_callback_is_dropped():
    """An exception outside the denoiser (here the step callback at step 3 of 6) never reaches the engine;
    the probe run is still dropped because it did not reach its planned step count."""

    def call(pipe, callback=None):
        return pipe(
            "a cat",
            num_inference_steps=6,
            height=16,
            width=16,
            max_sequence_length=16,
            generator=torch.Generator().manual_seed(0),
            output_type="pt",
            callback_on_step_end=callback,
        ).images

    def stop(pipe, i, t, kwargs):
        if i == 3:
            raise Boom("stopped by the user")
        return kwargs

    pipe = diffaccel.wrap(tiny_flux_pipeline(), "hyca", **OPTIONS)
    with pytest.raises(Boom):
        call(pipe, stop)
    later = [call(pipe) for _ in range(2)]
    fresh = diffaccel.wrap(tiny_flux_pipeline(), "hyca", **OPTIONS)
    expected = [call(fresh) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(later, expected))
    assert diffaccel.summary(pipe).full_steps < 6


def test_profile_from_too_short_a_run_says_how_many_steps_it_needs():
    inputs = tiny_inputs(FLUX)
    model = build_tiny(FLUX)
    with pytest.raises(RuntimeError, match="needs at least 4"):
        diffaccel.hyca.profile(model, run=lambda: _loop(model, inputs, 3), options=OPTIONS)
