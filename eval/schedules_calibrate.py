"""Calibrate a schedule on a `diffaccel compare` model and save it (the file `schedule=` loads).

    OMP_NUM_THREADS=1 python eval/schedules_calibrate.py --model flux-photos --steps 50 --seeds 0 \
        --granularity stack --order 2 --num-full 10 --out docs/compare/schedules/flux-photos-50-stack-o2-k10.json

The calibration calls the pipeline exactly as `diffaccel compare` does (same conditioning, guidance and
generator), so its seeds should be kept out of the seeds a comparison validates on.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

import diffaccel
from diffaccel.compare.models import load_model
from diffaccel.compare.quality import output_array


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flux-photos")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seeds", default="0", help="comma-separated calibration seeds")
    parser.add_argument("--guidance-scale", type=float, default=None)
    parser.add_argument("--granularity", default="stack")
    parser.add_argument("--order", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument(
        "--num-full",
        type=int,
        nargs="+",
        default=[None],
        help="full-step budgets; several write one file each (suffix -k<K>)",
    )
    parser.add_argument("--out", required=True, help="output .json (with several budgets: a prefix)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    model = load_model(args.model)
    condition = model.conditions[0]
    seeds = [int(s) for s in args.seeds.split(",")]

    def generate(seed: int):
        return output_array(model.pipe(**model.call_kwargs(condition, args.steps, seed, args.guidance_scale)))

    start = time.process_time()
    schedule = diffaccel.schedules.calibrate(
        model.pipe,
        generate,
        args.steps,
        seeds,
        args.granularity,
        args.order,
        args.warmup,
        args.num_full[0],
        args.guidance_scale,
    )
    for k in args.num_full:
        chosen = schedule if k == args.num_full[0] else schedule.with_budget(k)
        out = args.out if len(args.num_full) == 1 else args.out.replace(".json", f"-k{k}.json")
        chosen.save(out)
        print(f"{out}: full steps {chosen.full_steps} (predicted error {chosen.predicted_error:.4g})")
    print(f"cpu time {time.process_time() - start:.1f} s")


if __name__ == "__main__":
    main()
