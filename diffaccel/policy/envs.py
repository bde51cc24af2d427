"""ObstacleReach-2D: a point robot reaches a goal past obstacles, with a bimodal scripted expert.

A CPU-sized stand-in for the manipulation benchmarks of Diffusion Policy and BAC (ours). The expert
passes each obstacle above or below with probability 1/2 per episode, so the demonstrations are
multimodal: a policy that averages the modes drives into the obstacle. That makes it a test of what
diffusion policies are for, and separates mild from aggressive acceleration.

* `obstacle-reach`: start x∈[.05,.15], y∈[.35,.65]; goal x∈[.85,.95], y∈[.35,.65]; one disc of
  radius 0.16 jittered around the centre; the expert follows three waypoints on a circle of radius
  0.22 around it, then heads to the goal (two modes). It moves on to the next waypoint once within
  0.02 of the current one: its episodes average 23.3 steps (the design prototype's expert: 23.5) and
  keep at least 0.022 from the disc. (Turning a whole step early, within 0.04, cut the corners to
  0.013 from the disc.)
* `obstacle-reach-two` [ours, harder]: two discs of radius 0.1 at x≈0.35 and x≈0.65, each passed
  above or below independently (four modes, and a crossing between the discs).

Actions are Δxy clipped to a norm of 0.04; an episode ends with success within 0.04 of the goal,
with failure on touching a disc or after 60 steps. Observation: agent xy, goal xy, then every
obstacle centre xy. Everything is batched numpy, so hundreds of episodes step together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_STEP = 0.04
GOAL_TOLERANCE = 0.04
MAX_STEPS = 60


@dataclass(frozen=True)
class TaskSpec:
    name: str
    obstacle_x: tuple[float, ...]  # nominal centres
    radius: float
    waypoint_radius: float
    waypoint_angles_deg: tuple[float, ...]  # measured from +x, mirrored for "below"
    jitter: float
    waypoint_tolerance: float = 0.02  # the expert heads for the next waypoint once this close


TASKS = {
    "obstacle-reach": TaskSpec("obstacle-reach", (0.5,), 0.16, 0.22, (150.0, 90.0, 30.0), 0.05),
    "obstacle-reach-two": TaskSpec("obstacle-reach-two", (0.35, 0.65), 0.10, 0.15, (135.0, 90.0, 45.0), 0.04),
}


def task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown environment {name!r}; choose one of {sorted(TASKS) + ['push-t']}")
    return TASKS[name]


class ObstacleReach:
    """A batch of `num_envs` independent episodes. `reset(seed)` → obs (N, obs_dim); `step(actions)`
    → obs, and updates `done` / `success` (finished episodes stay frozen)."""

    def __init__(self, name: str = "obstacle-reach", num_envs: int = 1):
        self.spec = task(name)
        self.num_envs = num_envs
        self.num_obstacles = len(self.spec.obstacle_x)
        self.obs_dim = 4 + 2 * self.num_obstacles
        self.action_dim = 2
        self.max_steps = MAX_STEPS

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        n, s = self.num_envs, self.spec
        self.agent = np.stack([rng.uniform(0.05, 0.15, n), rng.uniform(0.35, 0.65, n)], 1)
        self.goal = np.stack([rng.uniform(0.85, 0.95, n), rng.uniform(0.35, 0.65, n)], 1)
        centres = [
            np.stack([x + rng.uniform(-s.jitter, s.jitter, n) * 0.5, 0.5 + rng.uniform(-s.jitter, s.jitter, n)], 1)
            for x in s.obstacle_x
        ]
        self.obstacles = np.stack(centres, 1)  # (N, k, 2)
        self.done = np.zeros(n, bool)
        self.success = np.zeros(n, bool)
        self.collided = np.zeros(n, bool)
        self.steps = np.zeros(n, int)
        return self.observe()

    def observe(self) -> np.ndarray:
        return np.concatenate([self.agent, self.goal, self.obstacles.reshape(self.num_envs, -1)], 1).astype(np.float32)

    def step(self, actions: np.ndarray) -> np.ndarray:
        actions = clip_norm(np.asarray(actions, np.float64), MAX_STEP)
        live = ~self.done
        self.agent[live] += actions[live]
        self.steps[live] += 1
        hit = (np.linalg.norm(self.agent[:, None] - self.obstacles, axis=2) < self.spec.radius).any(1) & live
        reached = (np.linalg.norm(self.agent - self.goal, axis=1) < GOAL_TOLERANCE) & live & ~hit
        self.collided |= hit
        self.success |= reached
        self.done |= hit | reached | (self.steps >= MAX_STEPS)
        return self.observe()


def clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v * np.minimum(1.0, limit / np.maximum(norm, 1e-12))


class ScriptedExpert:
    """Waypoints around every obstacle on its sampled side, then the goal; full speed towards the next one."""

    def __init__(self, env: ObstacleReach, seed: int):
        rng = np.random.default_rng(seed)
        s = env.spec
        n, k = env.num_envs, env.num_obstacles
        self.sides = np.where(rng.random((n, k)) < 0.5, 1.0, -1.0)
        angles = np.deg2rad(np.array(s.waypoint_angles_deg))
        offsets = s.waypoint_radius * np.stack([np.cos(angles), np.sin(angles)], 1)  # (w, 2)
        points = (
            env.obstacles[:, :, None, :]
            + offsets[None, None] * np.stack([np.ones_like(self.sides), self.sides], -1)[:, :, None, :]
        )  # (n, k, w, 2)
        self.waypoints = np.concatenate([points.reshape(n, -1, 2), env.goal[:, None]], 1)
        self.index = np.zeros(n, int)
        self.tolerance = s.waypoint_tolerance
        self.env = env

    def act(self) -> np.ndarray:
        agent = self.env.agent
        rows = np.arange(len(agent))
        last = self.waypoints.shape[1] - 1
        while True:
            target = self.waypoints[rows, self.index]
            near = (np.linalg.norm(target - agent, axis=1) < self.tolerance) & (self.index < last)
            if not near.any():
                break
            self.index[near] += 1
        return clip_norm(target - agent, MAX_STEP)


def collect_demos(name: str, episodes: int, seed: int, action_noise: float = 0.0) -> list[dict]:
    """Expert episodes as {"obs": (L+1, obs_dim), "action": (L, 2), "target": (L,), "success": bool}.

    `target[t]` is the index of the waypoint the expert heads for with action t (obstacle k's waypoints are
    k·w .. k·w + w − 1 for w waypoints per obstacle, then the goal): it marks where the expert commits to a side
    of each obstacle (`diffaccel.policy.data.turn_steps`).

    `action_noise` > 0 (ours, after DART, Laskey et al. 2017, "DART: Noise Injection for Robust Imitation
    Learning"): the environment executes the expert's action plus Gaussian noise of that standard deviation per
    coordinate, while `action` records the expert's clean action. The demonstrations then visit states just off
    the expert's path, labelled with the expert's correction back towards its waypoint, which a policy's own
    small errors lead it into and clean demonstrations never show. Noise-free demonstrations are bit-identical
    to those collected without the argument."""
    if action_noise < 0:
        raise ValueError(f"action_noise must be >= 0, got {action_noise}")
    env = ObstacleReach(name, episodes)
    obs = [env.reset(seed)]
    expert = ScriptedExpert(env, seed + 1)
    noise = np.random.default_rng(seed + 2)
    acts, alive, targets = [], [], []
    while not env.done.all():
        alive.append(~env.done)
        a = expert.act()
        acts.append(a)
        targets.append(expert.index.copy())
        executed = a + noise.normal(0.0, action_noise, a.shape) if action_noise > 0 else a
        obs.append(env.step(executed))
    demos = []
    alive_arr = np.array(alive)
    for i in range(episodes):
        length = int(alive_arr[:, i].sum())
        demos.append(
            {
                "obs": np.array([o[i] for o in obs[: length + 1]]),
                "action": np.array([a[i] for a in acts[:length]]),
                "target": np.array([t[i] for t in targets[:length]]),
                "success": bool(env.success[i]),
            }
        )
    return demos
