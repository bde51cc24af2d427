"""Batched closed-loop evaluation of a diffusion policy on ObstacleReach-2D."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from .envs import MAX_STEPS, ObstacleReach

logger = logging.getLogger(__name__)


def evaluate(
    policy,
    env: str = "obstacle-reach",
    episodes: int = 200,
    seed: int = 0,
    num_inference_steps: int | None = None,
    batch_size: int | None = None,
    on_plan: Callable[[dict], None] | None = None,
) -> dict:
    """Run `episodes` episodes (all in one batch unless `batch_size` says otherwise) and score them.

    Every `n_action_steps` environment steps the policy re-plans from the last `n_obs_steps`
    observations (the first observation repeated at the start, as the reference pads). Noise comes
    from a generator seeded with `seed` and the re-plan index, so a run is reproducible and two
    strategies see the same noise for the same plan.

    Returns `success_rate`, `success_stderr` (binomial standard error), `episodes`, `collision_rate`,
    `nfe` (denoiser calls, each on the whole batch, summed over re-plans), `replans`, `wall_s`
    (time spent in `predict_action`), `cpu_s` (its process CPU time) and `mean_steps` (of successes).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    batch_size = batch_size or episodes
    totals = {"success": 0, "collided": 0, "nfe": 0, "replans": 0, "wall_s": 0.0, "cpu_s": 0.0, "success_steps": 0}
    for start in range(0, episodes, batch_size):
        part = _run_batch(policy, env, min(batch_size, episodes - start), seed + start, num_inference_steps, on_plan)
        for key in totals:
            totals[key] += part[key]
    p = totals["success"] / episodes
    return {
        "env": env,
        "episodes": episodes,
        "seed": seed,
        "success_rate": p,
        "success_stderr": math.sqrt(p * (1 - p) / episodes),
        "collision_rate": totals["collided"] / episodes,
        "nfe": totals["nfe"],
        "replans": totals["replans"],
        "wall_s": totals["wall_s"],
        "cpu_s": totals["cpu_s"],
        "mean_steps": totals["success_steps"] / max(totals["success"], 1),
    }


def _run_batch(policy, env_name, n, seed, num_inference_steps, on_plan) -> dict:
    env = ObstacleReach(env_name, n)
    obs = env.reset(seed)
    cfg = policy.config
    history = [obs] * cfg.n_obs_steps
    device, dtype = policy.pos_device_dtype()
    nfe = replans = 0
    wall = cpu = 0.0
    while not env.done.all() and env.steps.max() < MAX_STEPS:
        window = torch.from_numpy(np.stack(history[-cfg.n_obs_steps :], 1)).to(device, dtype)
        generator = torch.Generator().manual_seed(seed * 1000 + replans)
        t0, c0 = time.perf_counter(), time.process_time()
        out = policy.predict_action({"obs": window}, generator=generator, num_inference_steps=num_inference_steps)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        nfe += len(policy.noise_scheduler.timesteps)
        replans += 1
        if on_plan is not None:
            on_plan(out)
        actions = out["action"].float().cpu().numpy()
        for k in range(actions.shape[1]):
            obs = env.step(actions[:, k])
            history.append(obs)
            if env.done.all():
                break
    return {
        "success": int(env.success.sum()),
        "collided": int(env.collided.sum()),
        "nfe": nfe,
        "replans": replans,
        "wall_s": wall,
        "cpu_s": cpu,
        "success_steps": int(env.steps[env.success].sum()),
    }
