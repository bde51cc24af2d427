"""Calibrated schedules: the predicted-error matrix against closed forms, the choice of full steps
against brute force, and a calibration file made on a tiny pipeline driving a wrapped run."""

import itertools

import numpy as np
import pytest
import torch

import diffaccel
from diffaccel.forecast.schedules import (
    forecast_segment_costs,
    predicted_error,
    select_full_steps,
)
from diffaccel.schedules.calibrated import CalibratedSchedule


def test_segment_costs_match_the_closed_form_of_a_quadratic():
    # F(k) = k² + 1. From a full step at a with the previous one at p, order 1 predicts F(a) + (a + p)·o, so
    # the error at offset o is o(o + a − p); p = a − L for a segment of L steps (L = b − a + 1), never
    # before the warm-up's last step, and p = a − 1 inside the warm-up; step 0 has no derivative (reuse: o²).
    steps, warmup = 8, 3
    k = torch.arange(steps, dtype=torch.float64)
    feature = (k**2 + 1)[:, None].repeat(1, 3)
    weights = np.linspace(0.5, 2.0, steps)
    got = forecast_segment_costs([feature], order=1, weights=weights, warmup=warmup)
    for a in range(warmup - 1, steps):
        for b in range(a + 1, steps):
            p = a - 1 if a <= warmup - 1 else max(a - (b - a + 1), warmup - 1)
            expected = sum(
                weights[a + o] * (o * (o + a - p)) ** 2 / ((a + o) ** 2 + 1) ** 2 for o in range(1, b - a + 1)
            )
            assert got[a, b] == pytest.approx(expected, rel=1e-12), (a, b)
    assert got[0, 1] >= 1e30 and got[1, 5] >= 1e30  # segments that would forecast a warm-up step
    assert np.all(np.diag(got) == 0)
    reuse = forecast_segment_costs([feature], order=1)  # warm-up 1: step 0 reuses its output
    assert reuse[0, 2] == pytest.approx(sum(o**4 / (o**2 + 1) ** 2 for o in (1, 2)), rel=1e-12)


def _brute_force(costs, num_full, warmup):
    n = costs.shape[0]
    best = None
    for rest in itertools.combinations(range(warmup, n), num_full - warmup):
        steps = list(range(warmup)) + list(rest)
        ends = steps[1:] + [n]  # independent re-statement of the objective: each segment's own cost
        total = sum(costs[a, b - 1] for a, b in zip(steps, ends))
        if best is None or total < best[0] - 1e-12:
            best = (total, steps)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_chosen_full_steps_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 10))
    warmup = int(rng.integers(1, 3))
    num_full = int(rng.integers(warmup, n))
    costs = np.triu(rng.random((n, n)) * rng.random((n, 1)) * 10, 1)
    costs[: warmup - 1, :] = np.triu(np.full((max(warmup - 1, 0), n), 1e30), 1)  # warm-up steps are full
    chosen = select_full_steps(costs, num_full)
    best_total, _ = _brute_force(costs, num_full, warmup)
    assert len(chosen) == num_full and chosen[:warmup] == list(range(warmup))
    assert predicted_error(costs, chosen) == pytest.approx(best_total, abs=1e-9)


def test_too_few_full_steps_for_the_warmup_is_an_error():
    costs = np.triu(np.ones((6, 6)), 1)
    costs[:2] = np.triu(np.full((2, 6), 1e30), 1)
    with pytest.raises(ValueError, match="warm-up"):
        select_full_steps(costs, 2)


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
