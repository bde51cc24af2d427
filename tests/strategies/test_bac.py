"""BAC against references: the unwrapped model (a schedule that updates every step), hand-written torch
hooks that reuse outputs at hand-picked steps, and the schedule's own call counts."""

import itertools

import pytest
import torch

import diffaccel
from diffaccel.policy import DiffusionTransformerPolicy, PolicyConfig
from diffaccel.strategies.bac_schedule import BacSchedule
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs

STEPS = 12


def _policy(seed=0, causal_attn=True):
    torch.manual_seed(seed)
    config = PolicyConfig(n_layer=2, n_emb=32, horizon=16, causal_attn=causal_attn)
    return DiffusionTransformerPolicy(config).eval()


def _act(policy, seed, steps=STEPS, obs_seed=0):
    obs = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(obs_seed))
    return policy.predict_action(
        {"obs": obs}, generator=torch.Generator().manual_seed(seed), num_inference_steps=steps
    )["action_pred"]


def _model_loop(name, model, inputs):
    with torch.no_grad():
        out = [model(**at_step(name, inputs, n, STEPS)) for n in range(STEPS)]
    return [o[0] if isinstance(o, tuple) else o.sample for o in out]


@pytest.mark.parametrize("scope, causal_attn", [("block", True), ("unified", True), ("block", False)])
def test_every_step_schedule_is_bit_identical_on_the_policy(scope, causal_attn):
    policy = _policy(causal_attn=causal_attn)
    reference = _act(policy, 1)
    schedule = diffaccel.bac.calibrate(
        policy, run=lambda: _act(policy, 1), options={"num_updates": STEPS, "scope": scope}
    )
    assert all(s == list(range(STEPS)) for s in schedule.updates.values())
    diffaccel.wrap(policy, "bac", schedule=schedule)
    assert torch.equal(_act(policy, 1), reference)
    assert diffaccel.summary(policy).computed_fraction == 1.0
    diffaccel.unwrap(policy)


@pytest.mark.parametrize("name", ["FluxTransformer2DModel", "UNet2DModel"])
def test_every_step_schedule_is_bit_identical_on_dit_and_unet(name):
    model, inputs = build_tiny(name), tiny_inputs(name)
    reference = _model_loop(name, model, inputs)
    diffaccel.wrap(model, "bac", num_updates=STEPS)
    first = _model_loop(name, model, inputs)  # the calibration run computes everything
    second = _model_loop(name, model, inputs)
    diffaccel.unwrap(model)
    assert all(torch.equal(a, b) for a, b in zip(reference, first))
    assert all(torch.equal(a, b) for a, b in zip(reference, second))


@pytest.mark.parametrize("name", ["FluxTransformer2DModel", "UNet2DModel"])
def test_calibrated_schedule_on_dit_and_unet_computes_exactly_its_update_steps(name):
    model, inputs = build_tiny(name), tiny_inputs(name)
    schedule = diffaccel.bac.calibrate(
        model, run=lambda: _model_loop(name, model, inputs), options={"num_updates": 3, "top_blocks": 2}
    )
    assert schedule.num_steps == STEPS and set(schedule.union_units) <= set(schedule.updates)
    for unit, steps in schedule.updates.items():
        assert set(schedule.acs[unit]) | {STEPS - 1} <= set(steps)
    diffaccel.wrap(model, "bac", schedule=schedule)
    _model_loop(name, model, inputs)
    units = diffaccel.summary(model).as_dict()["units"]
    diffaccel.unwrap(model)
    assert {n: u["computed"] for n, u in units.items()} == {n: len(s) for n, s in schedule.updates.items()}


def _reference_reuse(policy, updates: dict, seed):
    """Independent reference: plain torch forward hooks replace each unit's output by its last computed
    one at steps outside its update set (the module still runs; only its output is swapped)."""
    modules = dict(policy.model.named_modules())
    step = {"n": -1}
    cache, handles = {}, []
    handles.append(policy.model.register_forward_pre_hook(lambda m, a: step.__setitem__("n", step["n"] + 1)))
    for name, steps in updates.items():

        def hook(module, args, output, name=name, steps=set(steps)):  # noqa: B006 (binds this unit's steps, never mutated)
            if step["n"] in steps or name not in cache:
                cache[name] = output
                return output
            return cache[name]

        handles.append(modules[name].register_forward_hook(hook))
    try:
        return _act(policy, seed)
    finally:
        for h in handles:
            h.remove()


def _count_computations(policy, names):
    """Count executions of each module's own forward (torch's call hooks fire even when a diffaccel hook
    returns a cached output, so the count wraps the forward that the diffaccel hooks wrap in turn)."""
    modules = dict(policy.model.named_modules())
    calls = {n: 0 for n in names}
    for n in names:
        original = modules[n].forward

        def counted(*args, _n=n, _original=original, **kwargs):
            calls[_n] += 1
            return _original(*args, **kwargs)

        modules[n].forward = counted
    return calls


def _stop_counting(policy, calls):
    modules = dict(policy.model.named_modules())
    for n in calls:
        del modules[n].forward


def test_runtime_reuses_outputs_exactly_at_hand_picked_steps_and_skips_the_work():
    policy = _policy()
    names = [f"decoder.layers.{i}.{u}" for i in range(2) for u in ("self_attn", "multihead_attn", "linear2")]
    updates = {n: sorted({0, STEPS - 1} | set(range(k % 3 + 1, STEPS, k % 4 + 2))) for k, n in enumerate(names)}
    schedule = BacSchedule("TransformerDenoiser", STEPS, updates)
    expected = _reference_reuse(policy, updates, seed=3)
    calls = _count_computations(policy, names + ["decoder.layers.0.linear1"])
    diffaccel.wrap(policy, "bac", schedule=schedule)
    got = _act(policy, 3)
    diffaccel.unwrap(policy)
    _stop_counting(policy, calls)
    assert torch.equal(got, expected)
    assert not torch.equal(got, _act(policy, 3))
    for n in names:
        assert calls[n] == len(updates[n]), n
    assert calls["decoder.layers.0.linear1"] == len(updates["decoder.layers.0.linear2"])  # the feeder is skipped too


def _reference_extrapolation(policy, updates: dict, seed):
    """Independent reference for forecast="taylor": at a skipped step k a unit returns
    `F + (k − c)·(F − F_prev)/(c − c_prev)` from its last two update steps c_prev < c (just F after one)."""
    modules = dict(policy.model.named_modules())
    step = {"n": -1}
    seen, handles = {}, []
    handles.append(policy.model.register_forward_pre_hook(lambda m, a: step.__setitem__("n", step["n"] + 1)))
    for name, steps in updates.items():

        def hook(module, args, output, name=name, steps=set(steps)):  # noqa: B006 (binds this unit's steps)
            k, past = step["n"], seen.setdefault(name, [])
            if k in steps or not past:
                past.append((k, output))
                return output
            (c, f), prev = past[-1], past[-2] if len(past) > 1 else None
            if prev is None:
                return f

            def line(now, before):  # attention returns (output, None)
                if isinstance(now, tuple):
                    return (line(now[0], before[0]), *now[1:])
                return torch.add(now, torch.sub(now, before).div_(c - prev[0]), alpha=k - c)

            return line(f, prev[1])

        handles.append(modules[name].register_forward_hook(hook))
    try:
        return _act(policy, seed)
    finally:
        for h in handles:
            h.remove()


def test_taylor_forecast_option_extrapolates_between_update_steps():
    """Ours: `forecast="taylor"` keeps BAC's schedule and computations but extrapolates linearly from
    a unit's last two updates instead of reusing the last one; an every-step schedule stays exact."""
    policy = _policy()
    names = [f"decoder.layers.{i}.{u}" for i in range(2) for u in ("self_attn", "multihead_attn", "linear2")]
    updates = {n: sorted({0, STEPS - 1} | set(range(k % 3 + 1, STEPS, k % 4 + 2))) for k, n in enumerate(names)}
    expected = _reference_extrapolation(policy, updates, seed=3)
    diffaccel.wrap(policy, "bac", schedule=BacSchedule("TransformerDenoiser", STEPS, updates), forecast="taylor")
    got = _act(policy, 3)
    diffaccel.unwrap(policy)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(got, _reference_reuse(policy, updates, seed=3), atol=1e-4, rtol=0)
    every = BacSchedule("TransformerDenoiser", STEPS, {n: list(range(STEPS)) for n in names})
    diffaccel.wrap(policy, "bac", schedule=every, forecast="taylor")
    assert torch.equal(_act(policy, 3), _reference_reuse(policy, {}, seed=3))
    diffaccel.unwrap(policy)
    with pytest.raises(ValueError, match="forecast must be one of"):
        diffaccel.wrap(policy, "bac", forecast="quadratic")


def test_calibrate_on_one_seed_and_reuse_on_another(tmp_path):
    policy = _policy()
    path = tmp_path / "bac.json"
    schedule = diffaccel.bac.calibrate(
        policy, run=lambda: _act(policy, 1, obs_seed=1), path=path, options={"num_updates": 4, "top_blocks": 2}
    )
    loaded = BacSchedule.load(path)
    assert loaded == schedule
    full = _act(policy, 7, obs_seed=2)
    diffaccel.wrap(policy, "bac", schedule=str(path))
    cached = _act(policy, 7, obs_seed=2)
    summary = diffaccel.summary(policy)
    diffaccel.unwrap(policy)
    assert summary.computed_fraction < 0.6
    assert torch.isfinite(cached).all() and not torch.equal(cached, full)
    assert (cached - full).abs().max() < 1.0  # a close chunk, not an identical one
    # without a file: the first run calibrates (all computed, identical), the second caches with the same schedule
    reference = _act(policy, 1, obs_seed=1)
    diffaccel.wrap(policy, "bac", num_updates=4, top_blocks=2)
    assert torch.equal(_act(policy, 1, obs_seed=1), reference)  # the calibration run computes everything
    again = _act(policy, 7, obs_seed=2)
    diffaccel.unwrap(policy)
    assert torch.equal(again, cached)


def test_uniform_mode_updates_at_multiples_of_the_interval():
    policy = _policy()
    calls = _count_computations(policy, ["decoder.layers.1.self_attn"])
    diffaccel.wrap(policy, "bac", mode="uniform", interval=5)
    _act(policy, 0)
    diffaccel.unwrap(policy)
    _stop_counting(policy, calls)
    assert calls["decoder.layers.1.self_attn"] == len(range(0, STEPS, 5))


def test_bad_input_is_a_clear_error(tmp_path):
    policy = _policy()
    schedule = diffaccel.bac.calibrate(policy, run=lambda: _act(policy, 1), options={"num_updates": 3})
    diffaccel.wrap(policy, "bac", schedule=schedule)
    with pytest.raises(ValueError, match="calibrated for 12 steps but this run has 10"):
        _act(policy, 1, steps=10)
    diffaccel.unwrap(policy)
    with pytest.raises(ValueError, match="metric must be one of"):
        diffaccel.wrap(policy, "bac", metric="cos")
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a BAC schedule"):
        diffaccel.wrap(policy, "bac", schedule=str(bad))


def _recorded_unit_outputs(policy, names, seed):
    """Independent record of every unit's output at every step (plain torch hooks on the unwrapped policy)."""
    modules = dict(policy.model.named_modules())
    store = {n: [] for n in names}
    handles = [
        modules[n].register_forward_hook(
            lambda m, a, out, n=n: store[n].append((out[0] if isinstance(out, tuple) else out).reshape(-1).double())
        )
        for n in names
    ]
    try:
        _act(policy, seed, obs_seed=1)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.stack(v) for n, v in store.items()}


def _best_by_enumeration(score, m):
    """Official objective (each step scored against the latest update at or before it), every subset tried."""
    k = score.shape[0]

    def value(steps):
        bounds = [*steps, k]
        return sum(float(score[a, a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:]))

    return max(([0, *rest] for rest in itertools.combinations(range(1, k), m - 1)), key=value)


def test_unified_scope_gives_every_unit_the_dp_schedule_of_the_mean_cosine():
    policy = _policy()
    names = [f"decoder.layers.{i}.{u}" for i in range(2) for u in ("self_attn", "multihead_attn", "linear2")]
    feats = _recorded_unit_outputs(policy, names, seed=1)
    unit = {n: f / f.norm(dim=1, keepdim=True) for n, f in feats.items()}
    mean_cos = sum(u @ u.T for u in unit.values()) / len(unit)
    expected = sorted(set(_best_by_enumeration(mean_cos, 4)) | {STEPS - 1})
    schedule = diffaccel.bac.calibrate(
        policy, run=lambda: _act(policy, 1, obs_seed=1), options={"num_updates": 4, "scope": "unified"}
    )
    assert schedule.updates == {n: expected for n in names}
    assert schedule.config["scope"] == "unified"
    # the default (official) scope: each unit's own optimum of its own cosine matrix, before the union
    per_unit = diffaccel.bac.calibrate(policy, run=lambda: _act(policy, 1, obs_seed=1), options={"num_updates": 4})
    assert per_unit.acs == {n: _best_by_enumeration(u @ u.T, 4) for n, u in unit.items()}
    with pytest.raises(ValueError, match="scope must be one of"):
        diffaccel.wrap(policy, "bac", scope="layer")
