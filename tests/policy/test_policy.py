"""The policy package against independent references: the environment's geometry, the expert's
modes, the training windows, the sampling loop (a hand-written DDPM loop) and the evaluation counts."""

import numpy as np
import pytest
import torch

from diffaccel.policy import DiffusionTransformerPolicy, ObstacleReach, PolicyConfig, collect_demos, evaluate
from diffaccel.policy.data import make_windows
from diffaccel.policy.envs import MAX_STEP, TASKS, ScriptedExpert


@pytest.mark.parametrize("name,obstacles", [("obstacle-reach", 1), ("obstacle-reach-two", 2)])
def test_expert_always_succeeds_and_is_multimodal(name, obstacles):
    env = ObstacleReach(name, 64)
    env.reset(3)
    expert = ScriptedExpert(env, 4)
    while not env.done.all():
        env.step(expert.act())
    assert env.success.all() and not env.collided.any()
    sides = expert.sides
    assert sides.shape == (64, obstacles) and set(np.unique(sides)) == {-1.0, 1.0}


def test_environment_rules():
    env = ObstacleReach("obstacle-reach", 3)
    env.reset(0)
    env.agent[:] = env.obstacles[:, 0] - [0.2, 0.0]
    env.goal[1] = env.agent[1] + [0.03, 0.0]
    obs = env.step(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))  # env 0: a huge step, clipped to 0.04
    assert np.allclose(obs[0, :2] - (env.obstacles[0, 0] - [0.2, 0.0]), [MAX_STEP, 0.0], atol=1e-6)
    assert env.success.tolist() == [False, True, False] and env.done.tolist() == [False, True, False]
    env.agent[0] = env.obstacles[0, 0] + [0.16 + 0.03, 0.0]
    env.step(np.array([[-0.04, 0.0], [0.0, 0.0], [0.0, 0.0]]))  # into the disc
    assert env.collided.tolist() == [True, False, False] and env.done[0]
    frozen = env.agent.copy()
    env.step(np.ones((3, 2)))
    assert np.array_equal(env.agent[:2], frozen[:2])  # finished episodes do not move


def test_windows_pad_like_the_reference_sampler():
    demo = {
        "obs": np.arange(4)[:, None].repeat(6, 1).astype(float),
        "action": np.arange(1, 4)[:, None].repeat(2, 1).astype(float),
    }
    obs, act = make_windows([demo], horizon=4, n_obs_steps=2, starts="every-step")
    assert obs[:, :, 0].tolist() == [[0, 0], [0, 1], [1, 2]]
    # the reference `sample_sequence` repeats the first action before the start and the last one after the end
    assert act[:, :, 0].tolist() == [[1, 1, 2, 3], [1, 2, 3, 3], [2, 3, 3, 3]]
    _, zero = make_windows([demo], horizon=4, n_obs_steps=2, pad_after="zero", starts="every-step")  # ours
    assert zero[:, :, 0].tolist() == [[1, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 0]]
    # the reference range with Ta = 2 (pad_before 1, pad_after 1): sequence starts −1 and 0 only
    obs, act = make_windows([demo], horizon=4, n_obs_steps=2, n_action_steps=2)
    assert obs[:, :, 0].tolist() == [[0, 0], [0, 1]] and act[:, :, 0].tolist() == [[1, 1, 2, 3], [1, 2, 3, 3]]
    with pytest.raises(ValueError, match="pad_after"):
        make_windows([demo], horizon=4, n_obs_steps=2, pad_after="mirror")
    with pytest.raises(ValueError, match="starts"):
        make_windows([demo], horizon=4, n_obs_steps=2, starts="middle")


def _official_create_indices(episode_ends, sequence_length, pad_before, pad_after):
    """A transcription of `create_indices` in the official `diffusion_policy/common/sampler.py` (all episodes
    kept): rows (buffer_start, buffer_end, sample_start, sample_end)."""
    pad_before = min(max(pad_before, 0), sequence_length - 1)
    pad_after = min(max(pad_after, 0), sequence_length - 1)
    indices = []
    for i in range(len(episode_ends)):
        start_idx = 0 if i == 0 else episode_ends[i - 1]
        episode_length = episode_ends[i] - start_idx
        for idx in range(-pad_before, episode_length - sequence_length + pad_after + 1):
            buffer_start = max(idx, 0) + start_idx
            buffer_end = min(idx + sequence_length, episode_length) + start_idx
            sample_start = buffer_start - (idx + start_idx)
            sample_end = sequence_length - ((idx + sequence_length + start_idx) - buffer_end)
            indices.append((buffer_start, buffer_end, sample_start, sample_end))
    return indices


def _official_sample(rows, index, sequence_length):
    """The official `sample_sequence`: copy the buffer slice, repeat its first / last row into the padding."""
    buffer_start, buffer_end, sample_start, sample_end = index
    sample = rows[buffer_start:buffer_end]
    data = np.zeros((sequence_length,) + rows.shape[1:])
    data[:sample_start] = sample[0]
    data[sample_end:] = sample[-1]
    data[sample_start:sample_end] = sample
    return data


def test_reference_window_range_is_the_official_sampler():
    """Demonstrations of 23 and 9 actions with horizon 16, To 2, Ta 8 (the low-dim config's pad_before 1,
    pad_after 7). Hand-computed: starts −1..23−16+7 = 14 give decision steps 0..15 (16 windows, against 23 for a
    window at every step); for 9 actions starts −1..0, decision steps 0 and 1. Every window equals the official
    sampler's output on a replay buffer of (obs, action) rows."""
    rng = np.random.default_rng(0)
    demos = [
        {"obs": rng.random((n + 1, 6)), "action": rng.random((n, 2))}
        for n in (23, 9)  # our demonstrations keep the final observation too: n + 1 rows
    ]
    obs, act = make_windows(demos, horizon=16, n_obs_steps=2, n_action_steps=8)
    assert len(obs) == 16 + 2 and len(make_windows(demos, 16, 2, starts="every-step")[0]) == 23 + 9
    ends = np.cumsum([23, 9])
    buffer_obs = np.concatenate([d["obs"][:-1] for d in demos])
    buffer_act = np.concatenate([d["action"] for d in demos])
    indices = _official_create_indices(ends, 16, pad_before=1, pad_after=7)
    assert [i[0] for i in indices[:3]] == [0, 0, 1] and len(indices) == 18
    for k, index in enumerate(indices):
        assert np.allclose(obs[k].numpy(), _official_sample(buffer_obs, index, 16)[:2], atol=1e-7)
        assert np.allclose(act[k].numpy(), _official_sample(buffer_act, index, 16), atol=1e-7)


def test_predict_action_is_the_reference_ddpm_loop():
    torch.manual_seed(0)
    policy = DiffusionTransformerPolicy(PolicyConfig(n_layer=1, n_emb=16)).eval()
    obs = torch.rand(2, 3, 6)
    out = policy.predict_action({"obs": obs}, generator=torch.Generator().manual_seed(1), num_inference_steps=7)
    assert out["action"].shape == (2, 8, 2) and out["action_pred"].shape == (2, 16, 2)
    assert torch.equal(out["action"], out["action_pred"][:, 1:9])
    # the same loop written out by hand
    gen = torch.Generator().manual_seed(1)
    cond = policy.obs_normalizer.normalize(obs[:, -2:])
    x = torch.randn(2, 16, 2, generator=gen)
    sched = policy.noise_scheduler
    sched.set_timesteps(7)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(policy.model(x, t, cond), t, x, generator=gen).prev_sample
    assert torch.equal(policy.action_normalizer.unnormalize(x), out["action_pred"])
    with pytest.raises(ValueError, match="obs must be"):
        policy.predict_action({"obs": torch.rand(2, 1, 6)})


def test_causal_and_memory_masks():
    policy = DiffusionTransformerPolicy(PolicyConfig(n_layer=1, n_emb=16, horizon=4, n_obs_steps=2))
    assert policy.model.mask.tolist() == [
        [False, True, True, True],
        [False, False, True, True],
        [False, False, False, True],
        [False, False, False, False],
    ]
    # action token t sees memory token s only when t >= s - 1 (s = 0 is the time token)
    assert policy.model.memory_mask.tolist() == [
        [False, False, True],
        [False, False, False],
        [False, False, False],
        [False, False, False],
    ]


@pytest.mark.parametrize("causal", [True, False])
def test_causal_attn_decides_what_each_action_token_sees(causal):
    """The reference's `causal_attn`: with it, token 0's noise prediction is blind to a later action token and to
    the second observation (memory token 2), exactly; without it (full attention, no masks) both move it."""
    torch.manual_seed(0)
    model = DiffusionTransformerPolicy(PolicyConfig(n_layer=2, n_emb=16, horizon=4, causal_attn=causal)).model.eval()
    sample, cond = torch.randn(1, 4, 2), torch.randn(1, 2, 6)
    base = model(sample, 5, cond)
    later, second_obs = sample.clone(), cond.clone()
    later[:, 3] += 1.0
    second_obs[:, 1] += 1.0
    for moved in (model(later, 5, cond), model(sample, 5, second_obs)):
        assert torch.equal(moved[:, 0], base[:, 0]) == causal


def test_evaluate_counts_and_is_reproducible():
    torch.manual_seed(0)
    policy = DiffusionTransformerPolicy(PolicyConfig(n_layer=1, n_emb=16)).eval()
    a = evaluate(policy, env="obstacle-reach", episodes=6, seed=2, num_inference_steps=3)
    b = evaluate(policy, env="obstacle-reach", episodes=6, seed=2, num_inference_steps=3, batch_size=3)
    assert a["episodes"] == 6 and a["nfe"] == 3 * a["replans"]
    assert b["episodes"] == 6 and b["replans"] >= a["replans"]  # two batches re-plan separately
    c = evaluate(policy, env="obstacle-reach", episodes=6, seed=2, num_inference_steps=3)
    assert {k: v for k, v in a.items() if not k.endswith("_s")} == {k: v for k, v in c.items() if not k.endswith("_s")}
    assert set(a) >= {"success_rate", "success_stderr", "episodes", "nfe", "wall_s"}
    with pytest.raises(ValueError, match="unknown environment"):
        evaluate(policy, env="push-x", episodes=2)


def test_evaluate_reports_every_plan_and_every_step_to_its_callbacks():
    """The trajectories `on_step` records give the collisions `evaluate` counts (recomputed from the positions and
    the discs here), one call per environment step and one `on_plan` call per re-plan."""
    torch.manual_seed(0)
    policy = DiffusionTransformerPolicy(PolicyConfig(n_layer=1, n_emb=16)).eval()
    plans, positions = [], []
    discs = {}

    def on_step(env):
        discs.update(centres=env.obstacles.copy(), radius=env.spec.radius)
        positions.append(env.agent.copy())  # a finished episode stays where it ended

    out = evaluate(policy, episodes=8, seed=5, num_inference_steps=2, on_plan=plans.append, on_step=on_step)
    assert len(plans) == out["replans"] and all(p["action"].shape[:2] == (8, 8) for p in plans)
    path = np.stack(positions, 1)  # (episodes, steps, 2)
    assert path.shape[1] == len(positions) <= 60
    touched = np.linalg.norm(path[:, :, None] - discs["centres"][:, None], axis=3).min(2) < discs["radius"]
    assert touched.any(1).sum() == round(out["collision_rate"] * 8) == 1  # random weights: 1 of 8 hits the disc


@pytest.mark.parametrize("name", ["obstacle-reach", "obstacle-reach-two"])
def test_expert_keeps_its_margin_from_the_discs(name):
    """The expert turns for the next waypoint within 0.02 of the current one, so its path stays at least
    0.02 from every disc (hand bound: chords of the 0.22 / 0.15 waypoint circles pass 0.03 outside the
    0.16 / 0.10 discs, and turning 0.02 early cuts at most about 0.01 off that)."""
    spec = TASKS[name]
    for d in collect_demos(name, 200, 3):
        obs = d["obs"]
        centres = obs[:, 4:].reshape(len(obs), -1, 2)
        clearance = np.linalg.norm(obs[:, None, :2] - centres, axis=2).min() - spec.radius
        assert clearance > 0.02


def test_demos_are_expert_episodes():
    demos = collect_demos("obstacle-reach", 10, 0)
    assert all(d["success"] for d in demos)
    for d in demos:
        steps = np.diff(d["obs"][:, :2], axis=0)
        assert np.allclose(steps, d["action"], atol=1e-6)


def test_push_t_without_its_extra_names_the_extra(monkeypatch):
    """gym-pusht is optional: with its import blocked, asking for Push-T says which extra to install,
    and nothing else needs it."""
    import sys

    from diffaccel.policy.pusht import PushTBatch

    monkeypatch.setitem(sys.modules, "gym_pusht", None)  # `import gym_pusht` now raises ImportError
    policy = DiffusionTransformerPolicy(PolicyConfig(n_layer=1, n_emb=16)).eval()
    with pytest.raises(ImportError, match=r"pip install 'diffaccel\[pusht\]'"):
        evaluate(policy, env="push-t", episodes=2)
    with pytest.raises(ImportError, match=r"diffaccel\[pusht\]"):
        PushTBatch(2)
    assert evaluate(policy, env="obstacle-reach", episodes=2, num_inference_steps=2)["episodes"] == 2
