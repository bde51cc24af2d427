"""Our TaoCache design: never skips before its start, bit-identical when thresholds forbid skipping,
exact on a geometric (fixed-point) trajectory, whole-model so it needs no adapter, composes with
TaylorSeer, and calibrates from measured delta statistics."""

import math

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from tests.synthetic import Trajectory, run

DIT = "DiTTransformer2DModel"
STEPS = 20
PERMISSIVE = dict(error_threshold=math.inf, max_ratio=math.inf)


def _loop(model, name=DIT, steps=STEPS, probe=None, extra_probe=None):
    """Outputs of a denoising loop, and the steps at which `probe` (and `extra_probe`) ran."""
    inputs = tiny_inputs(name)
    ran, extra, step = [], [], {"n": -1}
    if probe is not None:
        probe.register_forward_hook(lambda *_: ran.append(step["n"]))
    if extra_probe is not None:
        extra_probe.register_forward_hook(lambda *_: extra.append(step["n"]))
    outs = []
    with torch.no_grad():
        for n in range(steps):
            step["n"] = n
            outs.append(model(**at_step(name, inputs, n, steps))[0])
    return (outs, ran, extra) if extra_probe is not None else (outs, ran)


def test_never_skips_before_start_and_skips_after():
    model = diffaccel.wrap(build_tiny(DIT), "taocache", start_step=12, max_skips=3, **PERMISSIVE)
    _, ran = _loop(model, probe=model.transformer_blocks[0].attn1.to_q)
    assert all(n in ran for n in range(12))
    skipped = [n for n in range(STEPS) if n not in ran]
    assert skipped and min(skipped) >= 12
    stats = diffaccel.summary(model)
    assert stats.full_steps == len(ran) and stats.units["model"].forecast == len(skipped)


def test_start_frac_uses_the_run_length():
    model = diffaccel.wrap(build_tiny(DIT), "taocache", start_frac=0.5, max_skips=1, **PERMISSIVE)
    diffaccel.new_run(model, num_inference_steps=STEPS)
    _, ran = _loop(model, probe=model.transformer_blocks[0].attn1.to_q)
    assert min(n for n in range(STEPS) if n not in ran) >= 10


def test_forbidding_thresholds_are_bit_identical_to_unwrapped():
    model = build_tiny(DIT)
    reference, _ = _loop(model)
    diffaccel.wrap(model, "taocache", start_step=1, error_threshold=-1.0)
    wrapped, _ = _loop(model)
    assert all(torch.equal(a, b) for a, b in zip(reference, wrapped))
    assert diffaccel.summary(model).full_steps == STEPS


def test_geometric_trajectory_is_forecast_exactly():
    fixed, start, rho = 3.0, -2.0, 0.8
    model = diffaccel.wrap(
        Trajectory(lambda n: fixed + start * rho**n),
        "taocache",
        start_step=5,
        max_skips=3,
        error_threshold=1e-9,
        max_ratio=0.95,
    )
    outs = run(model, 30)
    for n, out in enumerate(outs):
        assert out[0, 0].item() == pytest.approx(fixed + start * rho**n, abs=1e-6), n
    assert model.unit.calls < 30


def test_applies_to_models_without_an_adapter():
    class Unknown(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x, timestep):
            return self.lin(x) * timestep

    with pytest.raises(diffaccel.UnsupportedModelError):
        diffaccel.wrap(Unknown(), "taylorseer")
    model = diffaccel.wrap(Unknown(), "taocache", start_step=3, **PERMISSIVE)
    x = torch.ones(1, 3)
    with torch.no_grad():
        outs = [model(x, torch.tensor(1.0 - n / 10)) for n in range(10)]
    assert diffaccel.summary(model).full_steps < 10 and all(torch.isfinite(o).all() for o in outs)


def test_composition_taylorseer_early_taocache_late():
    start = 10
    model = diffaccel.wrap(
        build_tiny(DIT),
        [
            diffaccel.TaylorSeerConfig(interval=3, order=1, warmup=1),
            diffaccel.TaoCacheConfig(start_step=start, max_skips=2, **PERMISSIVE),
        ],
    )
    inner = model.transformer_blocks[0].attn1.to_q  # runs only when the attention unit computes
    _, attn_ran, block_ran = _loop(model, probe=inner, extra_probe=model.transformer_blocks[0])
    assert [n for n in attn_ran if n < start] == [0, 3, 6, 9]  # TaylorSeer's schedule early
    assert [n for n in block_ran if n >= start] == [n for n in attn_ran if n >= start]  # late: no block forecasts
    assert len([n for n in range(start, STEPS) if n not in block_ran]) > 0  # and TaoCache skipped some


def test_calibration_measures_the_geometric_statistics():
    rho = 0.7
    model = Trajectory(lambda n: 1.0 + rho**n)
    calibration = diffaccel.taocache.calibrate(model, runs=[lambda: run(model, 12), lambda: run(model, 12)])
    assert sorted(calibration.checks) == list(range(3, 12))
    for n, values in calibration.checks.items():
        assert len(values) == 2
        for cos, ratio, change, error in values:
            delta, value = rho ** (n - 1) - rho ** (n - 2), 1.0 + rho ** (n - 1)
            assert (cos, ratio, change) == pytest.approx((1.0, rho, abs(delta) / value))
            assert error == pytest.approx(0.0, abs=1e-6)
    config = calibration.config(start_frac=0.25)
    assert config.start_frac == 0.25 and config.error_threshold == pytest.approx(0.0, abs=1e-6)


def test_a_production_run_keeps_no_calibration_records():
    model = Trajectory(lambda n: 1.0 + 0.7**n)
    diffaccel.wrap(model, "taocache", start_step=1, error_threshold=-1.0)  # checks at every step
    try:
        run(model, 12)
        (strategy,) = diffaccel.engines(model)[""].strategies
        assert strategy.on_check is None and not hasattr(strategy, "checks_log")
    finally:
        diffaccel.unwrap(model)


def test_skip_error_closed_form():
    from diffaccel.forecast.fixed_point import projection_rate, skip_error

    assert skip_error(0.1, 0.6, 0.5) == pytest.approx(0.1 * 0.5 * 0.8)
    assert projection_rate(0.6, 0.5) == pytest.approx(0.3)
    assert skip_error(0.3, 1.0, 0.9) == 0.0


def test_unrelated_delta_directions_forecast_plain_reuse():
    """cos = 0 gives κ = 0: the forecast is the last output."""
    outputs = [torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])]
    model = diffaccel.wrap(
        Trajectory(lambda n: outputs[n] if n < 3 else torch.tensor([9.0, 9.0])),
        "taocache",
        start_step=3,
        max_skips=1,
        **PERMISSIVE,
    )
    outs = run(model, 4)
    assert torch.equal(outs[3][0], torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_invalid_options():
    with pytest.raises(ValueError, match="start_frac"):
        diffaccel.wrap(build_tiny(DIT), "taocache", start_frac=1.5)
    with pytest.raises(ValueError, match="max_skips"):
        diffaccel.wrap(build_tiny(DIT), "taocache", max_skips=-1)


def test_computed_fraction_of_a_composition_counts_the_model_once():
    """Whole-model work W per call; block forecasts inside computed calls save their own FLOPs."""
    model = diffaccel.wrap(
        build_tiny(DIT),
        [
            diffaccel.TaylorSeerConfig(interval=3, order=1, warmup=1),
            diffaccel.TaoCacheConfig(start_step=10, max_skips=2, **PERMISSIVE),
        ],
    )
    _loop(model)
    stats = diffaccel.summary(model)
    engine = diffaccel.engines(model)[""]
    whole = next(v for (name, _), v in engine.flops.items() if name == "model")
    blocks = {name: v for (name, _), v in engine.flops.items() if name != "model"}
    assert whole > sum(blocks.values())  # the model contains its blocks, plus embeddings and norms
    model_counts = stats.units["model"]
    saved_inside = sum(stats.units[name].forecast * flops for name, flops in blocks.items())
    expected = (model_counts.computed * whole - saved_inside) / (STEPS * whole)
    assert stats.computed_fraction == pytest.approx(expected, rel=1e-12)
