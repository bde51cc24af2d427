"""Calibrated schedules: the predicted-error matrix against closed forms, the choice of full steps
against brute force, and a calibration file made on a tiny pipeline driving a wrapped run."""

import itertools

import numpy as np
import pytest
import torch

import diffaccel
from diffaccel.forecast.schedules import (
    forecast_error_matrix,
    predicted_error,
    select_full_steps,
)
from diffaccel.schedules.calibrated import CalibratedSchedule


def test_error_matrix_matches_the_closed_form_of_a_quadratic():
    # F(k) = k² (+1 to avoid zero norms): order 1 from a predicts a² + (2a - 1)(k - a), error (k - a)(k - a + 1)
    steps = 7
    k = torch.arange(steps, dtype=torch.float64)
    feature = (k ** 2 + 1)[:, None].repeat(1, 3)
    weights = np.linspace(0.5, 2.0, steps)
    got = forecast_error_matrix([feature], order=1, weights=weights)
    for a in range(1, steps):
        for kk in range(a + 1, steps):
            expected = weights[kk] * ((kk - a) * (kk - a + 1)) ** 2 / (kk ** 2 + 1) ** 2
            assert got[a, kk] == pytest.approx(expected, rel=1e-12)
    # order 2 (backward differences 2a - 1 and 2, TaylorSeer's factors) predicts (a + o)² + 1 - o: error o = k - a
    second = forecast_error_matrix([feature], order=2)
    for a in range(2, steps):
        for kk in range(a + 1, steps):
            assert second[a, kk] == pytest.approx((kk - a) ** 2 / (kk ** 2 + 1) ** 2, rel=1e-12)
    assert np.all(np.tril(got) == 0)


def _brute_force(errors, num_full, warmup):
    n = errors.shape[0]
    best = None
    for rest in itertools.combinations(range(warmup, n), num_full - warmup):
        steps = list(range(warmup)) + list(rest)
        total, anchor = 0.0, 0
        for kk in range(n):  # independent re-statement of the objective
            if kk in steps:
                anchor = kk
            else:
                total += errors[anchor, kk]
        if best is None or total < best[0] - 1e-12:
            best = (total, steps)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_chosen_full_steps_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 10))
    warmup = int(rng.integers(1, 3))
    num_full = int(rng.integers(warmup, n))
    errors = np.triu(rng.random((n, n)) * rng.random((n, 1)) * 10, 1)
    chosen = select_full_steps(errors, num_full, warmup)
    best_total, _ = _brute_force(errors, num_full, warmup)
    assert len(chosen) == num_full and chosen[:warmup] == list(range(warmup))
    assert predicted_error(errors, chosen) == pytest.approx(best_total, abs=1e-9)


def test_calibrating_a_tiny_pipeline_writes_a_file_that_drives_the_run(tmp_path):
    from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

    pipe = tiny_flux_pipeline()
    kwargs = {"prompt": "a photo", "height": 16, "width": 16, "max_sequence_length": 16}
    generate = diffaccel.schedules.pipeline_generator(pipe, 8, **kwargs)
    schedule = diffaccel.schedules.calibrate(pipe, generate, num_inference_steps=8, seeds=(0,), warmup=2, num_full=4)
    assert len(schedule.full_steps) == 4 and schedule.full_steps[:2] == [0, 1]
    assert schedule.model_class == "FluxTransformer2DModel" and len(schedule.timesteps) == 8
    assert schedule.predicted_error == pytest.approx(predicted_error(schedule.errors, schedule.full_steps))
    path = tmp_path / "tiny.json"
    schedule.save(path)
    assert CalibratedSchedule.load(path) == schedule
    diffaccel.wrap(pipe, "taylorseer", schedule=str(path))
    generate(1)
    stats = diffaccel.summary(pipe)
    assert (stats.steps, stats.full_steps) == (8, 4)
    diffaccel.unwrap(pipe)
    # another budget, chosen again from the stored errors
    diffaccel.wrap(pipe, "taylorseer", schedule=str(path), full_budget=3)
    generate(1)
    assert diffaccel.summary(pipe).full_steps == 3
