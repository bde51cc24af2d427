"""Run folders of `diffaccel compare`: where a comparison writes (`--out`, a new time-stamped folder, or the
latest one with `--resume`), checking and clearing it, and the outcome handed back to the caller.

Shared by the image/video path (`run`) and the diffusion-LM path (`dllm`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .distributed import Processes
from .store import RESULTS_NAME, SHARD_DIR

if TYPE_CHECKING:
    from .report import Row
    from .run import CompareSettings


@dataclass
class CompareOutcome:
    out_dir: Path
    records: list[dict[str, Any]]
    rows: list[Row]
    interrupted: bool = False
    paths: dict[str, Path] = field(default_factory=dict)
    lpips_message: str = ""


class OutputExistsError(FileExistsError):
    pass


def model_folder(model: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    return Path("diffaccel-compare") / slug


def resolve_out(settings: CompareSettings, processes: Processes) -> Path:
    """`--out`, else a new time-stamped folder under `diffaccel-compare/<model>/` (so running the command twice
    never collides), or with `--resume` the most recent folder there that holds results."""
    if settings.out:
        return Path(settings.out)
    if processes.count > 1:
        raise ValueError("with several processes pass --out (every process must write to the same folder)")
    root = model_folder(settings.model)
    if settings.resume:
        candidates = sorted(p for p in root.glob("*") if (p / RESULTS_NAME).is_file() or (p / SHARD_DIR).is_dir())
        if not candidates:
            raise FileNotFoundError(f"--resume: no earlier comparison of {settings.model} under {root}; pass --out DIR")
        return candidates[-1]
    return root / time.strftime("%Y%m%d-%H%M%S")


def prepare_out_dir(out_dir: Path, settings: CompareSettings, processes: Processes) -> None:
    exists = (out_dir / RESULTS_NAME).is_file() or (out_dir / SHARD_DIR).is_dir()
    if exists and not (settings.resume or settings.overwrite):
        raise OutputExistsError(
            f"{out_dir} already holds results; pass --resume to continue them (finished runs are skipped), "
            "--overwrite to start again, or another --out"
        )
    processes.wait()  # every process has checked before the main one may delete anything
    if processes.is_main and exists and settings.overwrite:
        for name in (
            RESULTS_NAME,
            "report.md",
            "summary.json",
            "grid.png",
            "frames.png",
            "speed_quality.png",
            "run.json",
        ):
            (out_dir / name).unlink(missing_ok=True)
        for name in (SHARD_DIR, "baseline", "images", "calibration"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    processes.wait()


def records_of_this_run(store, settings: CompareSettings, tags: list[str], steps: int, seed_ok) -> list[dict]:
    """Merge the processes' shards, then keep the records this run asked for: its model, rows, step count and
    seeds (`seed_ok(seed)`). A resumed folder may hold other runs' records, which the report must not show."""
    store.merge_shards()
    return [
        r
        for r in store.records()
        if r.get("model") == settings.model
        and r.get("tag") in tags
        and r.get("num_inference_steps") == steps
        and seed_ok(r.get("seed"))
    ]
