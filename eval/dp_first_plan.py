"""Where a policy zoo model fails on ObstacleReach-2D: its first plan, or the plans after it.

``python eval/dp_first_plan.py [--model dp-reach] [--episodes 200] [--seeds 0 123] [--out DIR]`` prints and writes
``<out>/<model>.json`` with, per seed:

* ``first_chunk_in_disc``: share of first plans (from the reset observation repeated To times, as the reference
  pads) whose 8 planned actions, summed from the start, pass within the disc's radius of its centre;
* ``first_chunk_between_modes`` / ``expert_between_modes``: share of episodes whose position after those 8
  actions lies within 0.05 of the disc centre in y, for the policy and for the scripted expert (which passes
  above or below, never between);
* ``oracle_first_plan_success``: success when the scripted expert drives the first 8 steps and the policy plans
  every re-plan after that (same noise seeding as ``diffaccel.policy.evaluate``), beside the policy's own
  ``success`` at full steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffaccel import zoo
from diffaccel.core.atomic import atomic_write_text
from diffaccel.policy.envs import ObstacleReach, ScriptedExpert, collect_demos
from diffaccel.policy.evaluate import evaluate

BETWEEN = 0.05


def first_chunk(policy, env_name: str, episodes: int, seed: int) -> dict:
    env = ObstacleReach(env_name, episodes)
    obs = env.reset(seed)
    window = torch.from_numpy(np.stack([obs] * policy.config.n_obs_steps, 1))
    actions = policy.predict_action({"obs": window}, generator=torch.Generator().manual_seed(seed * 1000))["action"]
    path = env.agent[:, None] + np.cumsum(actions.numpy(), 1)
    centre = env.obstacles[:, 0]
    steps = policy.config.n_action_steps
    expert_end = np.array(
        [d["obs"][min(steps, len(d["obs"]) - 1), :2] for d in collect_demos(env_name, episodes, seed)]
    )
    return {
        "first_chunk_in_disc": float((np.linalg.norm(path - centre[:, None], axis=2).min(1) < env.spec.radius).mean()),
        "first_chunk_between_modes": float((np.abs(path[:, -1, 1] - centre[:, 1]) < BETWEEN).mean()),
        "expert_between_modes": float((np.abs(expert_end[:, 1] - centre[:, 1]) < BETWEEN).mean()),
    }


def oracle_first_plan(policy, env_name: str, episodes: int, seed: int) -> float:
    env = ObstacleReach(env_name, episodes)
    obs = env.reset(seed)
    expert = ScriptedExpert(env, seed + 1)
    history = [obs] * policy.config.n_obs_steps
    for _ in range(policy.config.n_action_steps):
        history.append(env.step(expert.act()))
    replans = 1
    while not env.done.all() and env.steps.max() < env.max_steps:
        window = torch.from_numpy(np.stack(history[-policy.config.n_obs_steps :], 1))
        generator = torch.Generator().manual_seed(seed * 1000 + replans)
        actions = policy.predict_action({"obs": window}, generator=generator)["action"].numpy()
        replans += 1
        for k in range(actions.shape[1]):
            history.append(env.step(actions[:, k]))
            if env.done.all():
                break
    return float(env.success.mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dp-reach")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 123])
    parser.add_argument("--out", default="eval/results/dp-first-plan")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    policy = zoo.load(args.model)
    result = {"model": args.model, "episodes": args.episodes, "seeds": {}}
    for seed in args.seeds:
        row = first_chunk(policy, policy.env_name, args.episodes, seed)
        row["success"] = evaluate(policy, env=policy.env_name, episodes=args.episodes, seed=seed)["success_rate"]
        row["oracle_first_plan_success"] = oracle_first_plan(policy, policy.env_name, args.episodes, seed)
        result["seeds"][str(seed)] = row
        print(seed, json.dumps(row))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out) / f"{args.model}.json", json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
