"""Noise-injected demonstrations (ours, after DART, Laskey et al. 2017): the environment executes the expert's
action plus Gaussian noise, the demonstration records the clean action. Checked against the expert's geometry
recomputed by hand, not against `collect_demos` itself."""

import numpy as np
import pytest

from diffaccel.policy.envs import MAX_STEP, TASKS, ObstacleReach, collect_demos
from diffaccel.policy.zoo import PolicyTraining


def _waypoints(name: str, episodes: int, seed: int) -> np.ndarray:
    """Each episode's waypoints (n, k·w + 1, 2), rebuilt from the task's numbers: the obstacles of `reset(seed)`,
    the expert's sides drawn from seed + 1 as `ScriptedExpert` draws them, then the goal."""
    env = ObstacleReach(name, episodes)
    env.reset(seed)
    spec = TASKS[name]
    sides = np.where(np.random.default_rng(seed + 1).random((episodes, env.num_obstacles)) < 0.5, 1.0, -1.0)
    rows = []
    for i in range(episodes):
        points = []
        for k in range(env.num_obstacles):
            for angle in np.deg2rad(spec.waypoint_angles_deg):
                offset = spec.waypoint_radius * np.array([np.cos(angle), sides[i, k] * np.sin(angle)])
                points.append(env.obstacles[i, k] + offset)
        rows.append(points + [env.goal[i]])
    return np.array(rows)


@pytest.mark.parametrize("sigma", [0.0, 0.01])
def test_demos_record_the_experts_clean_correction_at_the_state_reached(sigma):
    """Each recorded action is the expert's full-speed step from the state actually reached, towards the waypoint
    it was heading for; the states moved by that action plus noise of the requested size, and by exactly that
    action without noise."""
    name, episodes, seed = "obstacle-reach-two", 30, 7
    demos = collect_demos(name, episodes, seed, action_noise=sigma)
    waypoints = _waypoints(name, episodes, seed)
    residuals = []
    for i, d in enumerate(demos):
        agent = d["obs"][:-1, :2].astype(np.float64)
        towards = waypoints[i, d["target"]] - agent
        norm = np.linalg.norm(towards, axis=1, keepdims=True)
        clean = towards * np.minimum(1.0, MAX_STEP / norm)
        np.testing.assert_allclose(d["action"], clean, atol=2e-6)  # obs are stored in float32
        moved = np.diff(d["obs"][:, :2], axis=0)
        residuals.append(moved - d["action"])
    residuals = np.concatenate(residuals)
    if sigma == 0.0:
        assert np.abs(residuals).max() < 1e-6
    else:  # the clip to 0.04 shortens the noisy full-speed step, so the spread is a little under sigma
        assert 0.6 * sigma < residuals.std() < 1.1 * sigma


def test_negative_noise_is_refused():
    with pytest.raises(ValueError, match="action_noise must be >= 0"):
        collect_demos("obstacle-reach", 2, 0, action_noise=-0.01)


def test_the_recipe_keeps_only_the_demonstrations_the_noise_did_not_crash():
    """At 0.02 the noise drives some episodes into a disc; their windows would teach the approach to a
    collision, so the recipe drops them and says how many it kept."""
    recipe = PolicyTraining(name="dp-reach-two", demos=40, n_emb=16, demo_action_noise=0.02)
    successes = sum(d["success"] for d in collect_demos("obstacle-reach-two", 40, 10_000, action_noise=0.02))
    assert 0 < successes < 40
    assert recipe.demos_kept == successes
    assert recipe.config(recipe.build())["training_data"]["demos_kept"] == successes
