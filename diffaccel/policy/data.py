"""Training windows from demonstrations, as the reference `SequenceSampler` cuts them.

A window for decision step i holds the observations i−To+1..i and the actions i−To+1..i−To+horizon; indices
before the start repeat the first row and indices after the end repeat the last one (`sample_sequence` in the
official `diffusion_policy/common/sampler.py` pads both edges so).

Which decision steps get a window (`starts`):

* ``"reference"`` (default): the official `create_indices` with the low-dim configs' `pad_before = To − 1` and
  `pad_after = Ta − 1` (`task/pusht_lowdim.yaml`): sequence starts s = −pad_before .. L − horizon + pad_after, i.e.
  decision steps i = s + To − 1 = 0 .. L − horizon + Ta + To − 2. The last executed action of every window is a
  real one, so at most Ta − 1 of the chunk's executed actions are padding.
* ``"every-step"`` (ours, the zoo recipe's choice): a window at every step i = 0 .. L − 1, which adds
  horizon − Ta − To + 1 (7 for 16/8/2) windows per demonstration made mostly of end padding. On ObstacleReach-2D
  the policy needs them: an episode ends within 0.04 of the goal, and without them it never sees a state that
  close and overshoots (the reference range lost 7 of 200 episodes so; docs/policy/README.md).

`turn_steps` / `turn_windows` (ours) find the windows where the expert commits to a side of a later obstacle
mid-episode, for the training recipe's `turn_window_weight`.

`pad_after="zero"` (ours, an earlier zoo recipe) fills the steps after the end with zero motion instead of
repeating the last action; the policy must then also predict when the episode ends, which costs it precision.
"""

from __future__ import annotations

import numpy as np
import torch

PAD_AFTER = ("edge", "zero")
STARTS = ("reference", "every-step")


def replay_rows(demos: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (observation, action) pair of the demonstrations, as the reference's replay buffer holds them: the
    reference fits its `LinearNormalizer` on these rows (`get_normalizer`), not on the training windows (which
    under the reference window range leave out the last steps of every demonstration)."""
    obs = np.concatenate([d["obs"][: len(d["action"])] for d in demos])
    act = np.concatenate([d["action"] for d in demos])
    return torch.tensor(obs, dtype=torch.float32), torch.tensor(act, dtype=torch.float32)


def decision_steps(length: int, horizon: int, n_obs_steps: int, n_action_steps: int, starts: str) -> range:
    """The decision steps i that get a window in a demonstration of `length` actions."""
    if starts == "every-step":
        return range(length)
    if starts != "reference":
        raise ValueError(f"unknown starts {starts!r}; choose one of {STARTS}")
    # create_indices clamps both pads to [0, horizon − 1]
    pad_before = min(max(n_obs_steps - 1, 0), horizon - 1)
    pad_after = min(max(n_action_steps - 1, 0), horizon - 1)
    first, last = -pad_before, length - horizon + pad_after
    return range(first + n_obs_steps - 1, last + n_obs_steps)


def turn_steps(target: np.ndarray, waypoints_per_obstacle: int, n_obstacles: int) -> list[int]:
    """The steps t at which the expert turns towards the first waypoint of a later obstacle (k = 1 .. n − 1; the
    index n·w after the last obstacle's waypoints is the goal), from a demonstration's `target` (`collect_demos`).
    There it draws that obstacle's side afresh, so the observation history up to t says nothing about which way
    it goes: the mid-episode counterpart of the reset window."""
    target = np.asarray(target)
    obstacle, waypoint = np.divmod(target, waypoints_per_obstacle)
    changed = np.concatenate([[True], np.diff(target) != 0])
    starts = changed & (waypoint == 0) & (obstacle >= 1) & (obstacle < n_obstacles)
    return [int(t) for t in np.flatnonzero(starts)]


def turn_windows(steps: range, turns: list[int], n_action_steps: int) -> list[bool]:
    """For each decision step i in `steps`, whether its window is one where a turn t is undecided: its executed
    actions i .. i + Ta − 1 hold t (t − Ta + 1 ≤ i ≤ t), or its history has seen one step of the new heading
    only (i = t + 1)."""
    return [any(t - n_action_steps + 1 <= i <= t + 1 for t in turns) for i in steps]


def make_windows(
    demos: list[dict],
    horizon: int,
    n_obs_steps: int,
    pad_after: str = "edge",
    n_action_steps: int = 8,
    starts: str = "reference",
) -> tuple[torch.Tensor, torch.Tensor]:
    if pad_after not in PAD_AFTER:
        raise ValueError(f"unknown pad_after {pad_after!r}; choose one of {PAD_AFTER}")
    obs_windows, action_windows = [], []
    for demo in demos:
        obs, act = demo["obs"], demo["action"]
        length = len(act)
        for i in decision_steps(length, horizon, n_obs_steps, n_action_steps, starts):
            o_idx = np.clip(np.arange(i - n_obs_steps + 1, i + 1), 0, length - 1)
            a_idx = np.arange(i - n_obs_steps + 1, i - n_obs_steps + 1 + horizon)
            chunk = act[np.clip(a_idx, 0, length - 1)].copy()
            if pad_after == "zero":
                chunk[a_idx >= length] = 0.0
            obs_windows.append(obs[o_idx])
            action_windows.append(chunk)
    if not obs_windows:
        raise ValueError("no training windows: every demonstration is shorter than the window range allows")
    return (
        torch.tensor(np.array(obs_windows), dtype=torch.float32),
        torch.tensor(np.array(action_windows), dtype=torch.float32),
    )
