"""HyCa against references: TaylorSeer itself (one cluster, Taylor solver) and a synthetic unit
whose channel groups follow known trajectories."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

import diffaccel
from diffaccel.forecast.descriptors import channel_descriptors, cluster_channels
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from tests.synthetic import Trajectory, run

FLUX = "FluxTransformer2DModel"
STEPS = 14


def _flux_loop(model, inputs):
    with torch.no_grad():
        return [model(**at_step(FLUX, inputs, n, STEPS))[0] for n in range(STEPS)]


@pytest.mark.parametrize("granularity", ["modules", "stack"])
@pytest.mark.parametrize("solver,order", [("tf1", 1), ("tf2", 2)])
def test_single_cluster_taylor_solver_is_exactly_taylorseer(solver, order, granularity):
    inputs = tiny_inputs(FLUX)
    model = build_tiny(FLUX)
    options = dict(interval=4, warmup=2, num_clusters=1, solvers=solver, granularity=granularity)
    profile = diffaccel.hyca.profile(model, run=lambda: _flux_loop(model, inputs), options=options)
    assert set(profile.summary()) == {solver}
    hyca = _flux_loop(diffaccel.wrap(model, "hyca", profile=profile, **options), inputs)
    diffaccel.unwrap(model)
    taylor = _flux_loop(
        diffaccel.wrap(model, "taylorseer", interval=4, order=order, warmup=2, granularity=granularity), inputs
    )
    assert all(torch.equal(a, b) for a, b in zip(hyca, taylor))
    assert not torch.equal(hyca[3], _flux_loop(diffaccel.unwrap(model), inputs)[3])  # forecasts were used


GROUP = 4  # channels per group: constant, linear, oscillating
TRUTH = np.repeat([0, 1, 2], GROUP)


def _channels(n: int) -> torch.Tensor:
    d = torch.arange(GROUP, dtype=torch.float64)
    constant = 1.0 + d
    linear = 0.5 + (0.3 + 0.1 * d) * n
    oscillating = (1.0 + 0.2 * d) * math.sin(2 * math.pi * n / 3.0 + 0.3)
    return torch.cat([constant, linear, oscillating])


def _squared_error(**options) -> float:
    model = Trajectory(_channels)
    width = 3 * GROUP
    diffaccel.wrap(model, "hyca", **options)
    run(model, 40, width=width)  # first run: the probe
    outputs = run(model, 40, width=width)
    return sum(float(((o[0] - _channels(n)) ** 2).sum()) for n, o in enumerate(outputs)), model


def test_hybrid_beats_every_single_solver_and_recovers_the_groups():
    common = dict(interval=4, warmup=2, probe_steps=12, factor_dtype="float64")
    hybrid_error, model = _squared_error(num_clusters=3, **common)
    strategy = diffaccel.engines(model)[""].strategies[0]
    leaf = strategy.profile.units["unit"][0]
    assert adjusted_rand_score(TRUTH, leaf.labels) == 1.0
    chosen = {int(TRUTH[leaf.labels == c][0]): s for c, s in enumerate(leaf.solvers)}
    assert chosen[1] in ("tf1", "tf2", "ab2")  # an extrapolator for the linear group
    singles = {
        name: _squared_error(num_clusters=1, solvers=name, **common)[0]
        for name in ("reuse", "tf1", "tf2", "ab2", "damped")
    }
    assert all(hybrid_error < err for err in singles.values()), (hybrid_error, singles)


def test_profile_save_load_round_trip(tmp_path):
    model = Trajectory(_channels)
    profile = diffaccel.hyca.profile(
        model,
        run=lambda: run(model, 20, width=3 * GROUP),
        options=dict(interval=4, warmup=2, num_clusters=3, probe_steps=12),
    )
    path = tmp_path / "profile.safetensors"
    profile.save(path)
    loaded = diffaccel.hyca.HycaProfile.load(path)
    assert loaded.model_class == "Trajectory" and loaded.config == profile.config
    assert np.array_equal(loaded.units["unit"][0].labels, profile.units["unit"][0].labels)
    assert loaded.units["unit"][0].solvers == profile.units["unit"][0].solvers
    by_path = run(
        diffaccel.wrap(Trajectory(_channels), "hyca", interval=4, warmup=2, profile=str(path)), 20, width=3 * GROUP
    )
    by_object = run(
        diffaccel.wrap(Trajectory(_channels), "hyca", interval=4, warmup=2, profile=profile), 20, width=3 * GROUP
    )
    assert all(torch.equal(a, b) for a, b in zip(by_path, by_object))


def test_clustering_is_deterministic():
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(size=(10, 5)).cumsum(0), np.sin(np.arange(10))[:, None] * rng.normal(size=5)], 1)
    a = cluster_channels(channel_descriptors(y), 2, seed=3)
    b = cluster_channels(channel_descriptors(y), 2, seed=3)
    assert np.array_equal(a, b)


def test_profile_for_another_model_is_rejected():
    model = Trajectory(_channels)
    profile = diffaccel.hyca.profile(
        model, run=lambda: run(model, 20, width=3 * GROUP), options=dict(interval=4, warmup=2, probe_steps=12)
    )
    flux = diffaccel.wrap(build_tiny(FLUX), "hyca", profile=profile)
    with pytest.raises(ValueError, match="no assignment for cache unit"):
        _flux_loop(flux, tiny_inputs(FLUX))


def test_unknown_solver_is_rejected():
    with pytest.raises(ValueError, match="unknown HyCa solver 'rk9'"):
        diffaccel.wrap(build_tiny(FLUX), "hyca", solvers="tf1,rk9")


def test_solver_pool_from_a_text_spec():
    model = diffaccel.wrap(build_tiny(FLUX), "hyca:solvers=tf1|damped,interval=3")
    strategy = diffaccel.engines(model)[""].strategies[0]
    assert strategy.config.solver_names == ["tf1", "damped"] and strategy.config.interval == 3


def _drifting_zigzag(n: int) -> torch.Tensor:
    """A slow drift under a fast zigzag: reuse has small errors that all lag one way, tf1 larger ones
    that cancel."""
    return torch.tensor([0.1 * n + 0.3 * (-1) ** n], dtype=torch.float64)


@pytest.mark.parametrize("selection,expected", [("squared", "reuse"), ("accumulated", "tf1")])
def test_selection_criterion_trades_per_step_error_for_integrated_error(selection, expected):
    model = Trajectory(_drifting_zigzag)
    diffaccel.wrap(
        model,
        "hyca",
        interval=3,
        warmup=2,
        num_clusters=1,
        solvers="reuse|tf1",
        selection=selection,
        factor_dtype="float64",
    )
    run(model, 30, width=1)  # the probe
    outputs = [float(o[0, 0]) for o in run(model, 30, width=1)]
    truth = [float(_drifting_zigzag(n)) for n in range(30)]
    assert diffaccel.engines(model)[""].strategies[0].profile.units["unit"][0].solvers == [expected]
    per_step = sum((o - t) ** 2 for o, t in zip(outputs, truth))
    integrated = abs(sum(outputs) - sum(truth))  # what a sampler that sums the outputs would be off by
    # by hand for reuse (full steps 0, 1, 4, ..., 28): errors -0.7/-0.2 after odd, +0.5/-0.2 after even full
    # steps: squares 5*0.53 + 4*0.29 + 0.25 = 4.06, sum 5*(-0.9) + 4*0.3 + 0.5 = -2.8; tf1's are the run's own
    assert (round(per_step, 2), round(integrated, 2)) == ({"reuse": (4.06, 2.8), "tf1": (9.92, 1.6)}[expected])
