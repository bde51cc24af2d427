"""Batched closed-loop evaluation of a diffusion policy on ObstacleReach-2D."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from .envs import ObstacleReach, task

logger = logging.getLogger(__name__)


def evaluate(
    policy,
    env: str = "obstacle-reach",
    episodes: int = 200,
    seed: int = 0,
    num_inference_steps: int | None = None,
    batch_size: int | None = None,
    on_plan: Callable[[dict], None] | None = None,
    on_step: Callable[[object], None] | None = None,
) -> dict:
    """Run `episodes` episodes (all in one batch unless `batch_size` says otherwise) and score them.

    Every `n_action_steps` environment steps the policy re-plans from the last `n_obs_steps`
    observations (the first observation repeated at the start, as the reference pads). Noise comes
    from a generator seeded with `seed` and the re-plan index, so a run is reproducible and two
    strategies see the same noise for the same plan.

    `on_plan(out)` is called with every `predict_action` output, `on_step(env)` with the environment after
    every environment step (e.g. to record trajectories: `env.agent`, `env.done`, `env.collided`).

    `env` is an ObstacleReach-2D task (`obstacle-reach`, `obstacle-reach-two`) or `push-t` (the optional
    `gym-pusht` extra, see `diffaccel.policy.pusht`; its records add `mean_score`, the reference's
    mean over episodes of the largest coverage reward).

    Returns `success_rate`, `success_stderr` (binomial standard error), `episodes`, `collision_rate`,
    `nfe` (denoiser calls, each on the whole batch, summed over re-plans), `replans`, `wall_s`
    (time spent in `predict_action`), `cpu_s` (its process CPU time) and `mean_steps` (of successes).
    """
    _check_env(env)  # an unknown name or a missing optional extra fails before any work
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    batch_size = batch_size or episodes
    totals = {"success": 0, "collided": 0, "nfe": 0, "replans": 0, "wall_s": 0.0, "cpu_s": 0.0, "success_steps": 0}
    totals["score"] = 0.0
    for start in range(0, episodes, batch_size):
        part = _run_batch(
            policy, env, min(batch_size, episodes - start), seed + start, num_inference_steps, on_plan, on_step
        )
        for key in totals:
            totals[key] += part[key]
    p = totals["success"] / episodes
    extra = {"mean_score": totals["score"] / episodes} if env == PUSHT else {}
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
        **extra,
    }


PUSHT = "push-t"


def make_env(name: str, num_envs: int):
    """A batch of `num_envs` episodes of `name`; Push-T is imported only when asked for."""
    if name == PUSHT:
        from .pusht import PushTBatch

        return PushTBatch(num_envs)
    return ObstacleReach(name, num_envs)


def _check_env(name: str) -> None:
    if name == PUSHT:
        from .pusht import require_gym_pusht

        require_gym_pusht()
    else:
        task(name)


def _policy_io(policy) -> tuple[int, torch.device, torch.dtype]:
    """Observation steps, device and dtype of our policy or of a reference-style one (`n_obs_steps`,
    parameters) used by duck typing."""
    n_obs_steps = getattr(getattr(policy, "config", None), "n_obs_steps", None) or policy.n_obs_steps
    if hasattr(policy, "pos_device_dtype"):
        return (n_obs_steps, *policy.pos_device_dtype())
    parameter = next(policy.parameters())
    return n_obs_steps, parameter.device, parameter.dtype


def _run_batch(policy, env_name, n, seed, num_inference_steps, on_plan, on_step) -> dict:
    env = make_env(env_name, n)
    obs = env.reset(seed)
    n_obs_steps, device, dtype = _policy_io(policy)
    history = [obs] * n_obs_steps
    nfe = replans = 0
    wall = cpu = 0.0
    while not env.done.all() and env.steps.max() < env.max_steps:
        window = torch.from_numpy(np.stack(history[-n_obs_steps:], 1)).to(device, dtype)
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
            if on_step is not None:
                on_step(env)
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
        "score": float(getattr(env, "max_reward", np.zeros(1)).sum()),
    }
