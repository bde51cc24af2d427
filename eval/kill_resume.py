"""Data safety of `diffaccel compare` under SIGKILL and concurrent writers, counted on real processes.

* kill: start a comparison (`testing:tiny-flux`, 6 steps, 200 seeds: 800 records, enough work that every
  kill lands mid-run), SIGKILL it once a random number of new records is on disk, start it again with `--resume`, `--kills` times,
  then let it finish; count the records lost (expected but absent) and duplicated (one key on several
  lines), and lines that are not valid JSON.
* concurrent: start `--writers` comparisons with different strategy sets on one `--out` at the same moment
  (8 seeds each, each with `--resume`, as two sweeps started side by side); when all exit, count the
  records of every set that are missing or duplicated.

    OMP_NUM_THREADS=1 python eval/kill_resume.py --kills 20 --writers 2 4 --out eval/results/kill_resume.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

KILL_SEEDS = 200  # 800 records: enough work that every kill lands mid-run
CONCURRENT_SEEDS = 8
STRATEGY_SETS = [
    "taylorseer:interval=2",
    "taylorseer:interval=3",
    "taocache",
    "hyca:interval=2",
    "taylorseer:interval=2,order=2",
    "taylorseer:interval=3,granularity=stack",
]


def compare_command(out: Path, strategies: str, resume: bool, seeds: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "diffaccel.cli",
        "compare",
        "--model",
        "testing:tiny-flux",
        "--steps",
        "6",
        "--seeds",
        f"0-{seeds - 1}",
        "--strategies",
        strategies,
        "--no-peers",
        "--no-lpips",
        "--no-progress",
        "--out",
        str(out),
    ]
    return cmd + (["--resume"] if resume else [])


def read_records(out: Path) -> tuple[list[dict], int]:
    records, invalid = [], 0
    path = out / "results.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                invalid += 1
    return records, invalid


def key(record: dict) -> tuple:
    return (record.get("tag"), record.get("seed"), record.get("condition"))


def count(out: Path, strategy_sets: list[str], seed_count: int) -> dict:
    records, invalid = read_records(out)
    keys = Counter(key(r) for r in records if r.get("status") == "ok")
    seeds = range(seed_count)
    conditions = {k[2] for k in keys} or {None}
    expected = {(tag, s, c) for c in conditions for s in seeds for tag in ["none", *strategy_sets]}
    return {
        "records": len(records),
        "expected": len(expected),
        "lost": len(expected - set(keys)),
        "duplicated": sum(n - 1 for n in keys.values() if n > 1),
        "invalid_lines": invalid,
        "not_ok": sum(r.get("status") != "ok" for r in records),
    }


def kill_sweep(kills: int, rng: random.Random, env: dict, root: Path) -> dict:
    out = root / "kill"
    sets = STRATEGY_SETS[:3]
    strategies = " ".join(sets)
    expected = (1 + len(sets)) * KILL_SEEDS  # the baseline row runs every seed too
    kill_points = []
    for i in range(kills):
        # Kill at a random record count rather than after a random delay, so that every kill lands mid-run
        # however fast the machine is: the remaining records are shared out so all kills fit before the end.
        done = count(out, sets, KILL_SEEDS)["records"]  # 0 before the first run wrote anything
        share = max(1, (expected - done) // (kills - i + 1))
        target = done + rng.randint(1, share)
        proc = subprocess.Popen(
            compare_command(out, strategies, resume=i > 0, seeds=KILL_SEEDS),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None and count(out, sets, KILL_SEEDS)["records"] < target:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kill_points.append((target, "killed"))
        else:
            kill_points.append((target, "finished before the kill"))
        print(f"kill {i + 1}/{kills}: {kill_points[-1]}; {count(out, sets, KILL_SEEDS)}", flush=True)
    final = subprocess.run(
        compare_command(out, strategies, resume=True, seeds=KILL_SEEDS),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "kills": kills,
        "kill_points": kill_points,
        "killed_mid_run": sum(1 for _, outcome in kill_points if outcome == "killed"),
        "final_exit_code": final.returncode,
        **count(out, sets, KILL_SEEDS),
    }


def concurrent(writers: int, env: dict, root: Path) -> dict:
    out = root / f"concurrent-{writers}"
    sets = [STRATEGY_SETS[i % len(STRATEGY_SETS)] for i in range(writers)]
    procs = [
        subprocess.Popen(
            compare_command(out, s, resume=True, seeds=CONCURRENT_SEEDS),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in sets
    ]
    codes = [p.wait() for p in procs]
    return {"writers": writers, "strategy_sets": sets, "exit_codes": codes, **count(out, sets, CONCURRENT_SEEDS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--writers", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="eval/results/kill_resume.json")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rng = random.Random(args.seed)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="diffaccel-kill-") as tmp:
        root = Path(tmp)
        result = {
            "command": f"python eval/kill_resume.py --kills {args.kills} --writers "
            f"{' '.join(map(str, args.writers))} --seed {args.seed}"
        }
        result["concurrent"] = [concurrent(w, env, root) for w in args.writers]
        print(json.dumps(result["concurrent"]), flush=True)
        if args.kills:
            result["kill"] = kill_sweep(args.kills, rng, env, root)
    result["seconds"] = round(time.time() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
