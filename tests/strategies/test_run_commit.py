"""State that outlives a run (HyCa's probe, BAC's first-run calibration) is committed only by a run that finished
all its steps: a short first call, or one that raises at any step, leaves the strategy exactly as freshly wrapped
(the next call probes or calibrates again and equals a fresh wrap's first call, bit for bit). Strategies whose
state is per run (TaoCache, the adaptive schedule) are held to the same property."""

from __future__ import annotations

import logging
import random

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

FLUX = "FluxTransformer2DModel"
OPTIONS = dict(interval=3, warmup=2, probe_steps=6)
STEPS = 10
#: strategy -> (options, a first run too short to commit anything, the message that says so or None)
CASES = {
    "hyca": (OPTIONS, 2, "a HyCa probe needs at least 4"),
    "bac": (dict(num_updates=3, top_blocks=2), 3, "a BAC schedule needs a run of at least 4 steps"),
    "taocache": (dict(start_step=2, error_threshold=0.5, max_skips=2), 2, None),
    "taylorseer": (dict(interval=2, warmup=1, schedule="adaptive", threshold=0.3), 2, None),
}
#: the step of the first (probing / calibrating) run that raises: first, last, and one drawn at random
FAIL_AT = sorted({0, random.Random(13).randrange(1, STEPS - 1), STEPS - 1})


class Boom(RuntimeError):
    pass


def _loop(model, inputs, steps, fail_at=None, where="transformer_blocks"):
    """A hand-written denoising loop of `steps` steps; the denoiser raises inside its forward at `fail_at`,
    before its first block ("transformer_blocks") or after its last unit ("proj_out")."""
    diffaccel.new_run(model, num_inference_steps=steps)
    outputs = []
    with torch.no_grad():
        for n in range(steps):
            handle = None
            if n == fail_at:  # raises inside the wrapped forward, after the engine started the step

                def explode(*_, n=n):
                    raise Boom(f"step {n}")

                target = model.transformer_blocks[0] if where == "transformer_blocks" else model.proj_out
                handle = target.register_forward_pre_hook(explode)
            try:
                outputs.append(model(**at_step(FLUX, inputs, n, steps))[0])
            finally:
                if handle is not None:
                    handle.remove()
    return outputs


def _wrapped(name):
    return diffaccel.wrap(build_tiny(FLUX), name, **CASES[name][0])


def _fresh_runs(name, inputs, runs=2):
    model = _wrapped(name)
    return [_loop(model, inputs, STEPS) for _ in range(runs)]


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", list(CASES))
def test_a_short_first_run_does_not_poison_later_runs(name, caplog):
    inputs = tiny_inputs(FLUX)
    model = _wrapped(name)
    with caplog.at_level(logging.WARNING, logger="diffaccel"):
        _loop(model, inputs, CASES[name][1])
        later = [_loop(model, inputs, STEPS) for _ in range(2)]
    if CASES[name][2] is not None:
        assert CASES[name][2] in caplog.text
    expected = _fresh_runs(name, inputs)
    assert _equal(later[0], expected[0]) and _equal(later[1], expected[1])
    assert diffaccel.summary(model).computed_fraction < 1, "the second long run cached"


@pytest.mark.parametrize("where", ["transformer_blocks", "proj_out"])
@pytest.mark.parametrize("fail_at", FAIL_AT)
@pytest.mark.parametrize("name", list(CASES))
def test_a_first_run_that_raises_leaves_the_strategy_as_fresh(name, fail_at, where):
    inputs = tiny_inputs(FLUX)
    model = _wrapped(name)
    with pytest.raises(Boom):
        _loop(model, inputs, STEPS, fail_at=fail_at, where=where)
    later = [_loop(model, inputs, STEPS) for _ in range(2)]
    expected = _fresh_runs(name, inputs)
    assert _equal(later[0], expected[0]) and _equal(later[1], expected[1])


@pytest.mark.parametrize("name", ["hyca", "bac"])
def test_a_pipeline_first_run_stopped_by_its_callback_is_dropped(name):
    """An exception outside the denoiser (here the step callback at step 3 of 6) never reaches the engine;
    the probe or calibration run is still dropped because it did not reach its planned step count."""
    options = {**CASES[name][0], "num_updates": 2} if name == "bac" else CASES[name][0]

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

    pipe = diffaccel.wrap(tiny_flux_pipeline(), name, **options)
    with pytest.raises(Boom):
        call(pipe, stop)
    later = [call(pipe) for _ in range(2)]
    fresh = diffaccel.wrap(tiny_flux_pipeline(), name, **options)
    expected = [call(fresh) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(later, expected))
    assert diffaccel.summary(pipe).computed_fraction < 1


def test_profile_from_too_short_a_run_says_how_many_steps_it_needs():
    inputs = tiny_inputs(FLUX)
    model = build_tiny(FLUX)
    with pytest.raises(RuntimeError, match="needs at least 4"):
        diffaccel.hyca.profile(model, run=lambda: _loop(model, inputs, 3), options=OPTIONS)


def test_explicit_calibration_of_a_stopped_run_says_so():
    inputs = tiny_inputs(FLUX)
    model = build_tiny(FLUX)

    def stopped():
        diffaccel.new_run(model, num_inference_steps=STEPS)
        with torch.no_grad():
            for n in range(4):
                model(**at_step(FLUX, inputs, n, STEPS))

    with pytest.raises(RuntimeError, match="stopped after 4 of its 10 steps"):
        diffaccel.bac.calibrate(model, run=stopped, options=CASES["bac"][0])
    assert getattr(model, "_diffaccel", None) is None, "calibrate unwraps even when it fails"
