"""Open-loop plans around the expert's mid-episode turn on `obstacle-reach-two` (ours, a diagnosis).

For expert demonstrations the policy never trained on, the policy plans from the expert's own observation
history at decision steps i = t + offset around each demonstration's turn t towards the second disc
(`diffaccel.policy.data.turn_steps`: there the expert draws that disc's side afresh). Per offset it reports:
* how often the executed part of the plan (Ta actions from the agent's position, clipped to the environment's
  step length) touches the first or the second disc;
* how often the plan ends on the side of the second disc the expert took; 0.5 where the history cannot tell;
* how many plans cross between the discs (end on the other side of the second disc than the agent is of the
  first), and the touch rate of the second disc among crossing and among same-side plans.

A plan that touches a disc at an offset where the history cannot tell the mode is the averaging failure
multimodality causes; `turn_window_weight` (ours) trains on these windows more often.

    OMP_NUM_THREADS=1 python eval/policy_turn_plans.py --model dp-reach-two [--folder DIR] --out FILE.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import diffaccel
from diffaccel.core.atomic import atomic_write_text
from diffaccel.policy.data import turn_steps
from diffaccel.policy.envs import MAX_STEP, TASKS, clip_norm, collect_demos
from diffaccel.policy.zoo import load as load_policy_folder

ENV = "obstacle-reach-two"


def turn_and_side(demo: dict) -> tuple[int, float]:
    """A demonstration's turn towards the second disc, and the side of that disc the expert passes (where it is
    when it reaches the disc's centre x; obs columns 6, 7 are that centre)."""
    spec = TASKS[ENV]
    (turn,) = turn_steps(demo["target"], len(spec.waypoint_angles_deg), len(spec.obstacle_x))
    obs = demo["obs"]
    past = np.flatnonzero(obs[:, 0] >= obs[0, 6])
    return turn, (np.sign(obs[past[0], 1] - obs[0, 7]) if len(past) else 0.0)


def plan_row(policy, demos: list[dict], turns: list[tuple[int, float]], offset: int, seed: int) -> dict | None:
    windows, sides = [], []
    for demo, (turn, side) in zip(demos, turns, strict=True):
        i = turn + offset
        if 0 <= i < len(demo["action"]):
            windows.append(demo["obs"][[max(i - 1, 0), i]])
            sides.append(side)
    if not windows:
        return None
    obs = torch.tensor(np.array(windows))
    actions = policy.predict_action({"obs": obs}, generator=torch.Generator().manual_seed(seed))["action"].numpy()
    path = obs[:, -1, :2].numpy()[:, None] + np.cumsum(clip_norm(actions.astype(np.float64), MAX_STEP), 1)
    centres = obs[:, -1, 4:].numpy().reshape(len(obs), -1, 2)
    touched = np.linalg.norm(path[:, :, None] - centres[:, None], axis=3).min(1) < TASKS[ENV].radius  # (n, discs)
    plan_side = np.sign(path[:, -1, 1] - centres[:, 1, 1])
    # a plan that ends on the other side of the second disc than the agent is of the first crosses between them
    crossing = plan_side != np.sign(obs[:, -1, 1].numpy() - centres[:, 0, 1])
    return {
        "offset": offset,
        "plans": len(windows),
        "touch_disc_1": float(touched[:, 0].mean()),
        "touch_disc_2": float(touched[:, 1].mean()),
        "expert_side": float((plan_side == np.array(sides)).mean()),
        "crossing": float(crossing.mean()),
        "touch_disc_2_crossing": float(touched[crossing, 1].mean()) if crossing.any() else None,
        "touch_disc_2_same_side": float(touched[~crossing, 1].mean()) if (~crossing).any() else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dp-reach-two", help="a policy zoo name")
    p.add_argument("--folder", default=None, help="load the policy from this weights folder instead")
    p.add_argument("--demos", type=int, default=300)
    p.add_argument("--demo-seed", type=int, default=50_000, help="not the training demonstrations' 10,000")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    a = p.parse_args()
    policy = load_policy_folder(a.folder) if a.folder else diffaccel.zoo.load(a.model)
    demos = collect_demos(ENV, a.demos, a.demo_seed)
    turns = [turn_and_side(d) for d in demos]
    ta = policy.config.n_action_steps
    rows = []
    for offset in range(-ta - 4, 4):
        row = plan_row(policy, demos, turns, offset, a.demo_seed + 100 + offset)
        if row is not None:
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.out:
        record = {"model": a.folder or a.model, "demos": a.demos, "demo_seed": a.demo_seed, "rows": rows}
        atomic_write_text(a.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
