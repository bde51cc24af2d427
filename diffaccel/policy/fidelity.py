"""Action-chunk fidelity: how far an accelerated policy's chunks are from the full-step chunks for the
same observations and the same initial noise (the policy counterpart of PSNR against the full-step
image). Observations come from held-out expert episodes, one decision step per episode."""

from __future__ import annotations

import numpy as np
import torch

from .envs import collect_demos

FIDELITY_SEED_OFFSET = 20_000  # fidelity observations never overlap training demos or evaluation episodes


def fidelity_observations(env: str, count: int, seed: int, n_obs_steps: int = 2) -> torch.Tensor:
    """(count, n_obs_steps, obs_dim) observation windows at random decision steps of held-out expert episodes."""
    demos = collect_demos(env, count, FIDELITY_SEED_OFFSET + seed)
    rng = np.random.default_rng(seed)
    windows = []
    for demo in demos:
        i = int(rng.integers(0, len(demo["action"])))
        idx = np.clip(np.arange(i - n_obs_steps + 1, i + 1), 0, None)
        windows.append(demo["obs"][idx])
    return torch.tensor(np.array(windows), dtype=torch.float32)


def action_chunks(policy, obs: torch.Tensor, seed: int, num_inference_steps: int | None = None) -> torch.Tensor:
    """The predicted chunks (B, horizon, action_dim) for `obs`, with initial noise from `seed`."""
    return policy.predict_action(
        {"obs": obs}, generator=torch.Generator().manual_seed(seed), num_inference_steps=num_inference_steps
    )["action_pred"].float()


def chunk_errors(chunks: torch.Tensor, reference: torch.Tensor) -> dict:
    """RMSE and max-abs difference in action units (the environment clips steps to a norm of 0.04)."""
    diff = (chunks - reference).double()
    return {"chunk_rmse": float(diff.pow(2).mean().sqrt()), "chunk_max_abs": float(diff.abs().max())}
