"""The short per-model table of the README from `diffaccel compare` records: the tuned presets against the
goals and each peer's best setting at the same PSNR target.

    python eval/validation_summary.py docs/compare/runs/pixart-photos-50-validation \
        --tuned pixart-photos-50-validation 35 "taylorseer:preset=psnr35" ...

For every folder, per target (35 and 30 dB): the tuned row given with `--tuned FOLDER TARGET SPEC` (a spec
chosen on other models: the validation figure), whether it meets the goal (mean PSNR >= target and CPU-time
speed-up >= 4x at 35 dB, >= 5x at 30 dB, and faster than every peer that meets the target), and for each peer
the fastest of its rows in the folder whose mean PSNR meets the target. Peers are picked on the model itself,
after the fact, which favours them: the comparison is stricter on us than on them.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffaccel.compare.specs import parse_spec
from diffaccel.compare.store import read_jsonl

GOALS = {35.0: 4.0, 30.0: 5.0}  # PSNR target (dB) -> minimum CPU-time speed-up


def rows_by_tag(folder: Path) -> dict[str, dict]:
    """Mean figures per tag over the folder's finished runs (PSNR capped at 100 dB for lossless rows)."""
    runs = defaultdict(list)
    for record in read_jsonl(folder / "results.jsonl"):
        if record.get("status") == "ok":
            runs[record["tag"]].append(record)
    rows = {}
    for tag, records in runs.items():
        psnr = [min(r["psnr"], 100.0) for r in records if r.get("psnr") is not None]
        rows[tag] = {
            "tag": tag,
            "strategy": records[0]["strategy"],
            "family": records[0]["family"],
            "model": records[0]["model"],
            "runs": len(records),
            "psnr": float(np.mean(psnr)) if psnr else None,
            "cpu_speedup": float(np.mean([r["cpu_speedup"] for r in records])),
            "cpu_s": float(np.mean([r["cpu_s"] for r in records])),
            "computed": float(np.mean([r["computed_fraction"] for r in records])),
            "full_steps": records[0]["full_steps"],
            "steps": records[0]["steps"],
        }
    return rows


def best_peer_rows(rows: dict[str, dict], target: float) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for row in rows.values():
        if row["family"] in ("baseline", "diffaccel") or row["psnr"] is None or row["psnr"] < target:
            continue
        if row["computed"] >= 0.999:  # skips nothing: not a useful row
            continue
        if row["strategy"] not in best or row["cpu_speedup"] > best[row["strategy"]]["cpu_speedup"]:
            best[row["strategy"]] = row
    return best


def _cells(row: dict) -> str:
    full = f"{row['full_steps']} / {row['steps']}" if row["family"] == "diffaccel" else "–"
    return f"{full} | {row['computed']:.2f} | {row['cpu_speedup']:.2f}x | {row['psnr']:.2f}"


def summary_markdown(folder: Path, tuned: dict[float, str]) -> str:
    rows = rows_by_tag(folder)
    baseline = rows["none"]
    lines = [
        f"**{baseline['model']}** (`{folder}`; baseline {baseline['cpu_s']:.2f} s CPU per call, {baseline['runs']} seeds)",
        "",
        "| target | row | full / steps | computed | CPU speedup | PSNR dB | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, min_speedup in GOALS.items():
        peers = best_peer_rows(rows, target)
        spec = tuned.get(target)
        if spec is not None:
            row = rows.get(parse_spec(spec).tag)
            if row is None:
                lines.append(f"| {target:g} dB | tuned `{spec}` | not run | | | | |")
            else:
                fastest_peer = max((p["cpu_speedup"] for p in peers.values()), default=0.0)
                checks = [
                    ("PSNR", row["psnr"] >= target),
                    (f"≥ {min_speedup:g}x", row["cpu_speedup"] >= min_speedup),
                    ("ahead of peers", row["cpu_speedup"] > fastest_peer),
                ]
                verdict = (
                    "met" if all(ok for _, ok in checks) else "missed: " + ", ".join(n for n, ok in checks if not ok)
                )
                lines.append(f"| {target:g} dB | tuned `{row['tag']}` | {_cells(row)} | {verdict} |")
        for name, row in sorted(peers.items()):
            lines.append(f"| {target:g} dB | best {name}: `{row['tag']}` | {_cells(row)} | |")
        if not peers:
            lines.append(f"| {target:g} dB | no peer row reaches {target:g} dB while skipping work | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument(
        "--tuned",
        nargs=3,
        action="append",
        default=[],
        metavar=("FOLDER_NAME", "TARGET", "SPEC"),
        help="the tuned spec for a PSNR target in the folder with this name (repeatable)",
    )
    args = parser.parse_args(argv)
    tuned: dict[str, dict[float, str]] = defaultdict(dict)
    for name, target, spec in args.tuned:
        tuned[Path(name).name][float(target)] = spec
    print("\n\n".join(summary_markdown(folder, tuned[folder.name]) for folder in args.folders))


if __name__ == "__main__":
    main()
