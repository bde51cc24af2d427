"""The step-selection dynamic programme against brute force, a hand-computed example, and the
Bubbling Union on a hand-built case."""

import itertools

import numpy as np
import pytest
import torch

from diffaccel.forecast.step_selection import (
    bubbling_union,
    cosine_similarity_matrix,
    reuse_error,
    schedule_objective,
    select_update_steps,
    uniform_update_steps,
)


def _brute_force(score, m, maximize):
    k = score.shape[0]
    best, best_steps = None, None
    for rest in itertools.combinations(range(1, k), m - 1):
        steps = [0, *rest]
        value = schedule_objective(score, steps)
        if best is None or (value > best + 1e-12 if maximize else value < best - 1e-12):
            best, best_steps = value, steps
    return best, best_steps


@pytest.mark.parametrize("maximize", [True, False])
def test_dp_equals_brute_force_on_random_matrices(maximize):
    rng = np.random.default_rng(0)
    for _ in range(60):
        k = int(rng.integers(2, 9))
        score = rng.normal(size=(k, k))
        for m in range(1, k + 1):
            steps = select_update_steps(score, m, maximize=maximize)
            assert steps[0] == 0 and len(steps) == m and steps == sorted(set(steps))
            best, _ = _brute_force(score, m, maximize)
            assert schedule_objective(score, steps) == pytest.approx(best, abs=1e-10)


def test_dp_on_cosine_of_random_features_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        feats = torch.randn(9, 3, 4, generator=gen).cumsum(0)
        sim = cosine_similarity_matrix(feats).numpy()
        for m in (2, 3, 5):
            best, _ = _brute_force(sim, m, True)
            assert schedule_objective(sim, select_update_steps(sim, m)) == pytest.approx(best, abs=1e-10)


def test_golden_rotating_vectors():
    rows = np.array([(1, 0), (0.99, 0.14), (0.95, 0.31), (0.8, 0.6), (0.6, 0.8), (0.3, 0.95), (0.1, 0.99), (0, 1)])
    sim = cosine_similarity_matrix(torch.tensor(rows)).numpy()
    for m, steps, value in [(2, [0, 4], 7.3406), (3, [0, 3, 5], 7.8334), (4, [0, 3, 5, 6], 7.8958)]:
        assert select_update_steps(sim, m) == steps
        assert schedule_objective(sim, steps) == pytest.approx(value, abs=1e-4)


def test_edge_cases():
    score = np.eye(4)
    assert select_update_steps(score, 10) == [0, 1, 2, 3]
    assert select_update_steps(score, 1) == [0]
    assert uniform_update_steps(10, 3) == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="num_updates"):
        select_update_steps(score, 0)
    with pytest.raises(ValueError, match="square"):
        select_update_steps(np.ones((2, 3)), 1)


def test_bubbling_union_hand_built():
    # layers 0 and 1, each with sa / ca / ffn units
    schedules = {"sa0": [0, 5], "ca0": [0, 7], "ff0": [0, 2], "sa1": [0, 4], "ca1": [0, 9], "ff1": [0, 6]}
    layers = {"sa0": 0, "ca0": 0, "ff0": 0, "sa1": 1, "ca1": 1, "ff1": 1}
    errors = {"sa0": 0.1, "ca0": 0.9, "ff0": 0.2, "sa1": 0.8, "ca1": 0.05, "ff1": 0.3}
    ffn = ["ff0", "ff1"]
    out = bubbling_union(schedules, errors, layers, ffn, top_n=2)  # top-2 errors: ca0, sa1
    assert out == {"sa0": [0, 5], "ca0": [0, 2, 6, 7], "ff0": [0, 2], "sa1": [0, 4, 6], "ca1": [0, 9], "ff1": [0, 6]}
    assert bubbling_union(out, errors, layers, ffn, top_n=2) == out  # idempotent
    assert bubbling_union(schedules, errors, layers, ffn, top_n=0) == schedules
    # an FFN in the top set absorbs deeper FFNs (and keeps its own)
    out3 = bubbling_union(schedules, {**errors, "ff0": 5.0}, layers, ffn, top_n=1)
    assert out3["ff0"] == [0, 2, 6]


def test_reuse_error_mean_over_pairs():
    feats = torch.tensor([[0.0, 0.0], [1.0, 3.0], [2.0, 2.0]])
    # pairs: (0,1) mean|.|=2, (0,2)=2, (1,2)=1 -> 5/3
    assert reuse_error(feats) == pytest.approx(5 / 3)
