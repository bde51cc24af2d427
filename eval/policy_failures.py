"""Where a policy fails on ObstacleReach-2D: when and how its episodes hit a disc (ours, a diagnosis).

Runs `diffaccel.policy.evaluate` with an `on_step` recorder and reports, over the episodes that collide:
* the re-plan during which they collide (0 is the plan made at reset), and which disc they hit (left to right);
* where on the disc: the angle of the contact point seen from the disc's centre (180 is the side facing the
  start, 90 the top); the expert passes on a circle 0.06 (one disc) outside the disc;
* whether the path had crossed the disc's horizontal centre line before the contact (after its first step it
  was on one side of the disc, then turned to the other): a mode switch between plans, the failure
  multimodality causes.

    OMP_NUM_THREADS=1 python eval/policy_failures.py --model dp-reach --seed 0 [--strategy bac]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import diffaccel
from diffaccel.policy import evaluate


def collision_report(path: np.ndarray, steps: np.ndarray, discs: np.ndarray, collided: np.ndarray, plan: int) -> dict:
    """Per-collision facts from the recorded positions `path` (episodes, steps, 2), each episode's step count,
    the disc centres (episodes, k, 2) and the collided flags."""
    rows = []
    for i in np.flatnonzero(collided):
        end = path[i, steps[i] - 1]
        hit = int(np.argmin(np.linalg.norm(discs[i] - end, axis=1)))  # discs are listed left to right
        disc = discs[i, hit]
        rel = path[i, : steps[i]] - disc
        start_side = np.sign(path[i, 0, 1] - disc[1]) or 1.0
        crossed = bool((np.sign(rel[:, 1]) == -start_side).any())
        angle = float(np.degrees(np.arctan2(*(end - disc)[::-1])))
        plan_index = int((steps[i] - 1) // plan)
        facts = {"episode": int(i), "step": int(steps[i]), "plan": plan_index, "disc": hit, "angle": angle}
        rows.append({**facts, "crossed_centre_line": crossed})
    return {
        "collisions": len(rows),
        "by_plan": np.bincount([r["plan"] for r in rows]).tolist() if rows else [],
        "by_disc": np.bincount([r["disc"] for r in rows], minlength=discs.shape[1]).tolist(),
        "facing_start": sum(abs(r["angle"]) > 90 for r in rows),
        "crossed_centre_line": sum(r["crossed_centre_line"] for r in rows),
        "rows": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dp-reach", help="a policy zoo name")
    p.add_argument("--env", default=None, help="default: the zoo model's environment")
    p.add_argument("--strategy", default=None, help="a diffaccel strategy spec to wrap the policy with")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--calibration-seed",
        type=int,
        default=10_000,
        help="with --strategy: first run 64 episodes on this seed, so that BAC calibrates on their reset "
        "observations (its first run) and not on the measured episodes",
    )
    p.add_argument("--out", default=None, help="write the report as JSON here")
    a = p.parse_args()
    policy = diffaccel.zoo.load(a.model)
    env_name = a.env or policy.env_name  # the environment the zoo policy was trained on (its config.json)
    if a.strategy:
        diffaccel.wrap(policy, a.strategy)
        evaluate(policy, env=env_name, episodes=64, seed=a.calibration_seed)
    positions, last = [], {}

    def on_step(env):
        positions.append(env.agent.copy())
        last.update(steps=env.steps.copy(), discs=env.obstacles.copy(), collided=env.collided.copy())

    result = evaluate(policy, env=env_name, episodes=a.episodes, seed=a.seed, on_step=on_step)
    report = collision_report(
        np.stack(positions, 1), last["steps"], last["discs"], last["collided"], policy.config.n_action_steps
    )
    summary = {k: result[k] for k in ("env", "episodes", "seed", "success_rate", "collision_rate")}
    print(json.dumps({**summary, **{k: v for k, v in report.items() if k != "rows"}}))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "strategy": a.strategy, **summary, **report}, f, indent=1)


if __name__ == "__main__":
    main()
