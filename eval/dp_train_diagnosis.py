"""Short A/B trainings of the `dp-reach` recipe: optimiser settings and weight init.

``python eval/dp_train_diagnosis.py VARIANT [--steps 1500] [--episodes 100] [--out DIR]`` trains the zoo recipe
with the variant's overrides through the zoo's own loop (``diffaccel.zoo.train.train``, one thread, full cosine
schedule over ``--steps``), evaluates the EMA weights at full steps (100 DDPM steps, seed 0) and writes
``<out>/<variant>.json`` (skipped when it exists, so a sweep resumes). Variants:

* ``current``: the zoo recipe of the time (n_emb 64, uniform windows, lr 1e-3, default betas, no weight decay,
  our init; ``MEASURED_WITH`` pins it);
* ``ref-opt-1e-4`` / ``ref-opt-3e-4``: the reference low-dim transformer optimiser (Chi et al. 2023, official
  ``train_diffusion_transformer_lowdim_workspace``: AdamW betas (0.9, 0.95), weight decay 0.1 on weight matrices
  only) at lr 1e-4 / 3e-4;
* ``ref-init``: the current optimiser with the reference weight init;
* ``ref-all-3e-4`` / ``ref-all-1e-3``: reference optimiser and init at lr 3e-4 / 1e-3;
* ``edge-pad``: the current optimiser with action chunks padded after a demonstration's end by repeating its
  last action, as the reference ``SequenceSampler`` does (all other variants pad with zero motion, the recipe
  they were measured with);
* ``edge-demos-1000``: ``edge-pad`` with 1,000 demonstrations instead of 200 (five times as many first-plan
  windows, where the trained policy blends the two modes).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from diffaccel.core.atomic import atomic_write_text
from diffaccel.policy.zoo import DPReachTraining
from diffaccel.zoo.train import train

#: the dp-reach recipe these A/B runs were measured with (before the zoo recipe moved to n_emb 128 and the first
#: window drawn 12x as often): pinned, so that a variant trains what its record says, whatever the zoo recipe is now
MEASURED_WITH = {"n_emb": 64, "first_window_weight": 1.0}
REF_OPT = {"betas": (0.9, 0.95), "weight_decay": 0.1}
ZERO = {"action_pad": "zero"}
VARIANTS = {
    "current": {**ZERO},
    "ref-opt-1e-4": {"learning_rate": 1e-4, **REF_OPT, **ZERO},
    "ref-opt-3e-4": {"learning_rate": 3e-4, **REF_OPT, **ZERO},
    "ref-init": {"weight_init": "reference", **ZERO},
    "ref-all-3e-4": {"learning_rate": 3e-4, "weight_init": "reference", **REF_OPT, **ZERO},
    "ref-all-1e-3": {"learning_rate": 1e-3, "weight_init": "reference", **REF_OPT, **ZERO},
    "edge-pad": {"action_pad": "edge"},
    "edge-demos-1000": {"action_pad": "edge", "demos": 1000},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--out", default="eval/results/dp-train-diagnosis")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    record = out / f"{args.variant}-{args.steps}.json"
    if record.exists():
        print(record.read_text())
        return 0
    recipe = DPReachTraining(**{**MEASURED_WITH, **VARIANTS[args.variant]})
    recipe.steps, recipe.eval_episodes = args.steps, args.episodes
    start = time.process_time()
    manifest = train(
        recipe, out / f"{args.variant}-{args.steps}-weights", command=" ".join(["diagnosis", args.variant])
    )
    result = {
        "variant": args.variant,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in VARIANTS[args.variant].items()},
        "steps": args.steps,
        "episodes": args.episodes,
        "final_loss": manifest["final_loss"],
        "success_rate": manifest["metrics"]["success_rate"],
        "success_stderr": manifest["metrics"]["success_stderr"],
        "collision_rate": manifest["metrics"]["collision_rate"],
        "train_wall_s": manifest["train_wall_s"],
        "cpu_s": round(time.process_time() - start, 1),
    }
    atomic_write_text(record, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
