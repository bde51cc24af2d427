"""Training windows from demonstrations, as the reference `SequenceSampler` cuts them: for every
decision step i, the observations i−To+1..i (the first one repeated before the start) and the
actions i−To+1..i−To+horizon (the first action repeated before the start, the last one repeated after
the end: `sample_sequence` in the official `diffusion_policy/common/sampler.py` pads both edges so).

`pad_after="zero"` (ours, the zoo recipe before the reference padding) fills the steps after the end with
zero motion instead; the policy must then also predict when the episode ends, which costs it precision.
"""

from __future__ import annotations

import numpy as np
import torch

PAD_AFTER = ("edge", "zero")


def make_windows(
    demos: list[dict], horizon: int, n_obs_steps: int, pad_after: str = "edge"
) -> tuple[torch.Tensor, torch.Tensor]:
    if pad_after not in PAD_AFTER:
        raise ValueError(f"unknown pad_after {pad_after!r}; choose one of {PAD_AFTER}")
    obs_windows, action_windows = [], []
    for demo in demos:
        obs, act = demo["obs"], demo["action"]
        length = len(act)
        for i in range(length):
            o_idx = np.clip(np.arange(i - n_obs_steps + 1, i + 1), 0, None)
            a_idx = np.arange(i - n_obs_steps + 1, i - n_obs_steps + 1 + horizon)
            chunk = act[np.clip(a_idx, 0, length - 1)].copy()
            if pad_after == "zero":
                chunk[a_idx >= length] = 0.0
            obs_windows.append(obs[o_idx])
            action_windows.append(chunk)
    return (
        torch.tensor(np.array(obs_windows), dtype=torch.float32),
        torch.tensor(np.array(action_windows), dtype=torch.float32),
    )
