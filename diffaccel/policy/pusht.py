"""Push-T through `gym-pusht` (the LeRobot port of Diffusion Policy's Push-T), an optional extra.

`pip install 'diffaccel[pusht]'` installs it; nothing else in diffaccel imports it, and the tests never
need it. Push-T has no scripted expert (the reference trains on about 200 human demonstrations, which
diffaccel cannot ship), so this is for users who bring a policy trained on their own copy of the data:

    result = diffaccel.policy.evaluate(my_policy, env="push-t", episodes=50, seed=100_000)

Scoring follows the reference runner: each step's reward is `clip(coverage / 0.95, 0, 1)`, an
episode's score is its largest reward, `mean_score` is their mean over episodes; an episode succeeds
when the T covers more than 95 % of the goal (`info["is_success"]`) and runs for at most 300 steps.
The observation is gym-pusht's `"state"` (agent xy, block xy, block angle; 5 values) unless
`obs_type="environment_state_agent_pos"` (agent xy then the 16 keypoint coordinates; 18 values);
actions are absolute target positions of the agent in the 512 × 512 workspace.
"""

from __future__ import annotations

import importlib

import numpy as np

ENV_NAME = "push-t"
GYM_ID = "gym_pusht/PushT-v0"
MAX_STEPS = 300
OBS_TYPES = ("state", "environment_state_agent_pos")
EXTRA_HINT = "Push-T needs the optional extra: pip install 'diffaccel[pusht]' (installs gym-pusht and gymnasium)"


def require_gym_pusht():
    """Import gymnasium and register gym-pusht's environments, or say which extra to install."""
    try:
        gym = importlib.import_module("gymnasium")
        importlib.import_module("gym_pusht")
    except ImportError as error:
        raise ImportError(f"{EXTRA_HINT}; import failed: {error}") from error
    return gym


class PushTBatch:
    """`num_envs` Push-T episodes stepped together, with ObstacleReach's interface: `reset(seed)` → obs
    (N, obs_dim); `step(actions)` → obs; `done`, `success`, `steps`; finished episodes stay frozen."""

    collided = None  # Push-T has no collision failure

    def __init__(self, num_envs: int = 1, obs_type: str = "state", max_steps: int = MAX_STEPS):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"unknown Push-T obs_type {obs_type!r}; choose one of {list(OBS_TYPES)}")
        gym = require_gym_pusht()
        self.obs_type = obs_type
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.envs = [gym.make(GYM_ID, obs_type=obs_type) for _ in range(num_envs)]
        self.obs_dim = 5 if obs_type == "state" else 18
        self.action_dim = 2

    def _flat(self, obs) -> np.ndarray:
        if self.obs_type == "state":
            return np.asarray(obs, np.float32)
        return np.concatenate([obs["agent_pos"], obs["environment_state"]]).astype(np.float32)

    def reset(self, seed: int) -> np.ndarray:
        self._obs = np.stack([self._flat(env.reset(seed=seed + i)[0]) for i, env in enumerate(self.envs)])
        self.done = np.zeros(self.num_envs, bool)
        self.success = np.zeros(self.num_envs, bool)
        self.collided = np.zeros(self.num_envs, bool)
        self.steps = np.zeros(self.num_envs, int)
        self.max_reward = np.zeros(self.num_envs)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, np.float64)
        for i, env in enumerate(self.envs):
            if self.done[i]:
                continue
            obs, reward, terminated, truncated, info = env.step(actions[i])
            self._obs[i] = self._flat(obs)
            self.steps[i] += 1
            self.max_reward[i] = max(self.max_reward[i], float(reward))
            self.success[i] |= bool(info.get("is_success", False))
            self.done[i] = bool(terminated or truncated) or self.steps[i] >= self.max_steps
        return self._obs.copy()

    def close(self) -> None:
        for env in self.envs:
            env.close()
