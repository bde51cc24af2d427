"""Each peer at its own best setting: sweep its threshold / interval on a zoo model and keep, per PSNR
target, the fastest setting that meets it (the rows `diffaccel compare` shows by default).

    OMP_NUM_THREADS=1 python eval/peer_sweep.py --model flux-photos --steps 20 \
        --out docs/compare/runs/flux-photos-20-peer-sweep

Settings are chosen on seeds 100-101 (the seeds `diffaccel compare --tune` calibrates on; never scored by
a default comparison) with the rule `diffaccel.tune` applies to its own candidates [ours]: mean PSNR at
least the target plus 0.5 dB, and no seed below the target; among those, the highest CPU-time speed-up.
The sweep is one `diffaccel compare` run (its records, report and plot land in `--out`, and `--resume`
continues it); the choice is printed and written to `<out>/best.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffaccel.compare.run import CompareSettings, run_compare
from diffaccel.core.atomic import atomic_write_text
from diffaccel.tune import DEFAULT_MARGIN_DB

#: each peer's own knob, from just past its default towards more skipping (diffusers' defaults: FBCache
#: 0.05 and MagCache 0.06, which skip little on these models, and TaylorSeer interval 5 from step 3 with
#: order 1 and bfloat16 factors; factors are kept in float32 here, the better choice on a CPU)
SWEEPS = {
    "diffusers:fbc": [f"threshold={t}" for t in (0.1, 0.15, 0.2, 0.3)],
    "diffusers:magcache": [
        "threshold=0.12",
        "threshold=0.24",
        "threshold=0.24,max_skip_steps=6",
        "threshold=0.5,max_skip_steps=6",
    ],
    "diffusers:taylorseer": [f"cache_interval={i},taylor_factors_dtype=float32" for i in (4, 5, 6, 8)]
    + [f"cache_interval={i},max_order=2,taylor_factors_dtype=float32" for i in (6, 8)],
    # diffusers keeps their state per attention module, not per guidance branch, so on two-call guidance
    # they are reported unsupported (one row each, so the table says so)
    "diffusers:pab": [""],
    "diffusers:fastercache": [""],
}


def specs() -> list[str]:
    return [f"{peer}:{opts}" if opts else peer for peer, settings in SWEEPS.items() for opts in settings]


def best_settings(records: list[dict], targets, margin_db: float = DEFAULT_MARGIN_DB) -> dict:
    """{target: {peer: {tag, psnr, worst_psnr, cpu_speedup, computed_fraction}}} from the sweep's records."""
    by_tag: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok" and r.get("psnr") is not None:
            by_tag[r["tag"]].append(r)
    figures = {
        tag: {
            "peer": rows[0]["strategy"],
            "tag": tag,
            "psnr": float(np.mean([min(r["psnr"], 100.0) for r in rows])),
            "worst_psnr": float(np.min([min(r["psnr"], 100.0) for r in rows])),
            "cpu_speedup": float(np.mean([r["cpu_speedup"] for r in rows])),
            "computed_fraction": float(np.mean([r["computed_fraction"] for r in rows])),
            "seeds": sorted(r["seed"] for r in rows),
        }
        for tag, rows in by_tag.items()
    }
    best: dict = {}
    for target in targets:
        best[target] = {}
        for row in figures.values():
            if row["psnr"] < target + margin_db or row["worst_psnr"] < target or row["computed_fraction"] >= 0.999:
                continue
            current = best[target].get(row["peer"])
            if current is None or row["cpu_speedup"] > current["cpu_speedup"]:
                best[target][row["peer"]] = row
    return {"figures": figures, "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="flux-photos")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", default="100,101")
    parser.add_argument("--targets", type=float, nargs="+", default=[35.0, 30.0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = CompareSettings(
        model=args.model,
        strategies=specs(),
        steps=args.steps,
        seeds=[int(s) for s in args.seeds.split(",")],
        out=args.out,
        resume=args.resume,
        overwrite=not args.resume,
        threads=1,
        lpips=False,
        progress=False,
        print_table=False,
    )
    outcome = run_compare(settings)
    chosen = best_settings(outcome.records, args.targets)
    atomic_write_text(Path(args.out) / "best.json", json.dumps(chosen, indent=1) + "\n")
    for target, peers in chosen["best"].items():
        for row in peers.values():
            print(
                f"{target:g} dB  {row['tag']:70s} PSNR {row['psnr']:.2f} (worst {row['worst_psnr']:.2f})  "
                f"{row['cpu_speedup']:.2f}x CPU  computed {row['computed_fraction']:.3f}"
            )


if __name__ == "__main__":
    main()
