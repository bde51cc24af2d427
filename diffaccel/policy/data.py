"""Training windows from demonstrations, as the reference `SequenceSampler` cuts them: for every
decision step i, the observations i−To+1..i (the first one repeated before the start) and the
actions i−To+1..i−To+horizon (the first action repeated before the start, zero motion after the end)."""

from __future__ import annotations

import numpy as np
import torch


def make_windows(demos: list[dict], horizon: int, n_obs_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    obs_windows, action_windows = [], []
    for demo in demos:
        obs, act = demo["obs"], demo["action"]
        length = len(act)
        for i in range(length):
            o_idx = np.clip(np.arange(i - n_obs_steps + 1, i + 1), 0, None)
            a_idx = np.arange(i - n_obs_steps + 1, i - n_obs_steps + 1 + horizon)
            chunk = act[np.clip(a_idx, 0, length - 1)].copy()
            chunk[a_idx >= length] = 0.0
            obs_windows.append(obs[o_idx])
            action_windows.append(chunk)
    return (
        torch.tensor(np.array(obs_windows), dtype=torch.float32),
        torch.tensor(np.array(action_windows), dtype=torch.float32),
    )
