"""`run_compare(settings)`: the whole `diffaccel compare` job, callable from Python as well as the CLI.

Load the model, resolve the strategies, split the (seed, conditioning) units across processes, run the
harness (which writes every record atomically as it finishes), then, on the main process, merge the
shards and write the table (`report.md`, `summary.json`), the image grid (`grid.png`) and the
speed–quality plot (`speed_quality.png`) into `--out`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic import atomic_write_text
from .defaults import default_specs
from .distributed import Processes
from .harness import Harness, RunLimitReached, WorkUnit
from .models import LoadedModel, load_model, zoo_kind
from .output import CompareOutcome, prepare_out_dir, resolve_out
from .prompts import read_prompts
from .report import Row, markdown_table, print_table, summarize
from .specs import StrategySpec, parse_spec_list
from .store import RESULTS_NAME, ResultsStore, load_array

logger = logging.getLogger(__name__)

DEFAULT_SEEDS = (0, 1, 2, 3)
#: a seed never scored: warm-up calls and calibrations (MagCache, HyCa's probe) run on it
DEFAULT_WARMUP_SEED = 10_000


@dataclass
class CompareSettings:
    """Everything `diffaccel compare` takes (CLI flags map one to one)."""

    model: str = "flux-photos"
    strategies: list[str] | None = None
    steps: int | None = None
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    guidance_scale: float | None = None
    prompts_file: str | None = None
    out: str | None = None  # default: diffaccel-compare/<model>/<timestamp> (see resolve_out)
    resume: bool = False
    overwrite: bool = False
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None
    warmup_seed: int = DEFAULT_WARMUP_SEED
    max_runs: int | None = None
    repeats: int = 1
    grid_seeds: int = 3
    grid_images: int = 4
    height: int | None = None
    width: int | None = None
    episodes: int | None = None  # policies: evaluation episodes per seed (default 200)
    problems: int | None = None  # dLLMs: held-out problems per seed (default 64)
    batch_size: int | None = None  # dLLMs: prompts per pipeline call (default 64)
    scheduler: dict[str, Any] = field(default_factory=dict)  # scheduler config overrides (--scheduler KEY=VALUE)
    lpips: bool = True
    peers: bool = True
    progress: bool = True
    print_table: bool = True
    tune: list[float] = field(default_factory=list)  # PSNR targets of `--tune psnr=...` (rows added by diffaccel.tune)


def run_compare(settings: CompareSettings, console=None) -> CompareOutcome:
    processes = Processes.detect(settings.device)
    _set_threads(settings)
    if zoo_kind(settings.model) == "dllm":
        from .dllm import run_dllm_compare

        return run_dllm_compare(settings, processes, console)
    if zoo_kind(settings.model) == "policy":
        from .policy import run_policy_compare

        return run_policy_compare(settings, processes, console)
    out_dir = resolve_out(settings, processes)
    prepare_out_dir(out_dir, settings, processes)
    prompts = read_prompts(settings.prompts_file) if settings.prompts_file else None
    device = processes.device(settings.device)
    model = load_model(
        settings.model,
        device=device,
        dtype=settings.dtype,
        prompts=prompts,
        height=settings.height,
        width=settings.width,
        scheduler_overrides=settings.scheduler,
    )
    steps = settings.steps or model.default_steps
    specs = (
        parse_spec_list(settings.strategies)
        if settings.strategies
        else default_specs(settings.peers, model.name, steps)
    )
    if settings.tune:
        from .tuned import tuned_specs

        specs += [s for s in tuned_specs(model, steps, settings, out_dir) if s not in specs]
    units = [WorkUnit(seed, condition) for condition in model.conditions for seed in settings.seeds]
    store = ResultsStore(out_dir, shard=processes.shard_name).load()
    from .quality import Scorer

    scorer = Scorer(use_lpips=settings.lpips, device="cpu")
    harness = Harness(
        model,
        store,
        out_dir,
        steps,
        settings.guidance_scale,
        settings.warmup_seed,
        scorer,
        max_runs=settings.max_runs,
        progress=settings.progress,
        process_index=processes.index,
        repeats=settings.repeats,
    )
    _write_run_info(out_dir, settings, model, steps, specs, processes)
    interrupted = False
    try:
        harness.run(specs, processes.split(units))
    except RunLimitReached as stop:
        interrupted = True
        logger.warning("%s; run again with --resume to finish", stop)
    processes.wait()
    outcome = CompareOutcome(out_dir, [], [], interrupted, lpips_message=scorer.lpips_message)
    if not processes.is_main:
        return outcome
    store.merge_shards()
    by_tag = {s.tag: s for s in specs}
    records = [
        r
        for r in store.records()
        if _belongs(r, model, steps, settings, specs) and harness.measured_as_now(by_tag[r["tag"]], r)
    ]
    rows = summarize(records, order=[s.tag for s in specs])
    outcome.records, outcome.rows = records, rows
    outcome.paths = _write_reports(out_dir, model, steps, settings, specs, rows, harness, units)
    footer = _footer(outcome, scorer, settings)
    atomic_write_text(
        out_dir / "report.md",
        f"{_title(model, steps, settings)}\n\n{markdown_table(rows)}\n\n"
        + "\n".join(f"{line}  " for line in footer if not line.startswith(tuple(outcome.paths)))
        + "\n",
    )
    if settings.print_table:
        print_table(rows, _title(model, steps, settings), footer, console=console)
    return outcome


def _set_threads(settings: CompareSettings) -> None:
    """Zoo and testing models are tiny: on a CPU one thread avoids thread start-up and contention costs
    that dwarf the work itself (and makes timings steadier); `--threads` overrides."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    elif settings.device == "cpu" and (zoo_kind(settings.model) is not None or settings.model.startswith("testing:")):
        torch.set_num_threads(1)


def _belongs(
    record: dict[str, Any], model: LoadedModel, steps: int, settings: CompareSettings, specs: list[StrategySpec]
) -> bool:
    """The records of this invocation's settings (an output folder may hold others from earlier runs)."""
    if record.get("model") != model.name or record.get("num_inference_steps") != steps:
        return False
    if record.get("guidance_scale") != settings.guidance_scale or record.get("tag") not in {s.tag for s in specs}:
        return False
    if record.get("scheduler") != model.scheduler_tag:
        return False
    seed = record.get("seed")
    conditions = {c.id for c in model.conditions}
    return seed is None or (seed in settings.seeds and record.get("condition") in conditions)


def _write_run_info(
    out_dir: Path,
    settings: CompareSettings,
    model: LoadedModel,
    steps: int,
    specs: list[StrategySpec],
    processes: Processes,
) -> None:
    if not processes.is_main:
        return
    info = {
        "settings": asdict(settings),
        "model_source": model.source,
        "steps": steps,
        "strategies": [s.tag for s in specs],
        "conditions": [c.id for c in model.conditions],
        "processes": processes.count,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    atomic_write_text(out_dir / "run.json", json.dumps(info, indent=2, default=str) + "\n")


def _title(model: LoadedModel, steps: int, settings: CompareSettings) -> str:
    guidance = "default" if settings.guidance_scale is None else settings.guidance_scale
    return (
        f"diffaccel compare: {model.name} ({model.source}), {steps} steps, guidance {guidance}, "
        f"seeds {','.join(map(str, settings.seeds))}, {len(model.conditions)} conditioning(s), device {model.device}"
        + (f", scheduler {model.scheduler_tag}" if model.scheduler_tag else "")
    )


def _footer(outcome: CompareOutcome, scorer, settings: CompareSettings) -> list[str]:
    lines = [
        "mean ± std over runs; speedup = baseline wall-clock / wall-clock of the same seed (pipeline call only, "
        "after one warm-up); CPU speedup = the same ratio of process CPU time (CPU runs; steadier when other "
        "work shares the cores); computed = share of block work computed (diffaccel.summary; peers: counted "
        "Linear/Conv MACs vs the baseline)."
    ]
    loads = [r["load_avg_1m"] for r in outcome.records if r.get("load_avg_1m") is not None and r.get("wall_s")]
    if loads:
        lines.append(
            f"machine load average (1 min) while timing: {min(loads):.1f} to {max(loads):.1f} on "
            f"{os.cpu_count()} logical CPUs"
            + ("; wall-clock figures are disturbed by other work" if max(loads) > (os.cpu_count() or 1) else "")
        )
    if scorer.lpips_message:
        lines.append(scorer.lpips_message)
    if outcome.interrupted:
        lines.append("Stopped early (--max-runs): run the same command with --resume to finish.")
    for name, path in outcome.paths.items():
        lines.append(f"{name}: {path}")
    return lines


#: how much the difference frames of the frame strip are amplified (differences are small)
FRAME_DIFF_GAIN = 5.0


def _frame_strip_rows(
    specs: list[StrategySpec], rows: list[Row], harness: Harness, unit: WorkUnit
) -> list[tuple[str, list[np.ndarray | None]]]:
    """One row per strategy: the first clip's frames, then their amplified absolute difference from the
    full-step clip of the same seed (black = identical), so flicker or lag shows frame by frame."""
    from ..metrics import to_float_image

    reference = [to_float_image(frame) for frame in load_array(harness.baseline_path(unit))[0]]
    strip = []
    for spec in specs:
        row = next((r for r in rows if r.tag == spec.tag), None)
        videos = load_array(harness.image_path(spec, unit)) if row is not None and row.status == "ok" else None
        if videos is None:
            continue
        clip = [to_float_image(frame) for frame in videos[0]]
        diffs = [np.clip(np.abs(f - r) * FRAME_DIFF_GAIN, 0.0, 1.0) for f, r in zip(clip, reference)]
        label = (
            spec.tag
            if spec.is_baseline or row.psnr is None or row.psnr.mean is None
            else f"{spec.tag}  PSNR {row.psnr.mean:.1f}"
        )
        strip.append((label, clip + diffs))
    return strip


def _write_reports(
    out_dir: Path,
    model: LoadedModel,
    steps: int,
    settings: CompareSettings,
    specs: list[StrategySpec],
    rows: list[Row],
    harness: Harness,
    units: list[WorkUnit],
) -> dict[str, Path]:
    from .render import image_grid, speed_quality_plot

    paths: dict[str, Path] = {"results": out_dir / RESULTS_NAME}
    title = _title(model, steps, settings)
    report = f"{title}\n\n{markdown_table(rows)}\n"
    atomic_write_text(out_dir / "report.md", report)
    atomic_write_text(out_dir / "summary.json", json.dumps([r.as_dict() for r in rows], indent=2, default=str) + "\n")
    paths["report"] = out_dir / "report.md"
    grid_units = [u for u in units if u.condition == model.conditions[0]][: settings.grid_seeds]
    if len(model.conditions) > 1 and len(grid_units) < settings.grid_seeds:
        grid_units = units[: settings.grid_seeds]
    per_unit = settings.grid_images
    first = load_array(harness.baseline_path(grid_units[0])) if grid_units else None
    if first is not None:
        per_unit = min(per_unit, first.shape[0])
    grid_rows = []
    for spec in specs:
        row = next((r for r in rows if r.tag == spec.tag), None)
        if row is None or row.status != "ok":
            continue
        cells: list[np.ndarray | None] = []
        for unit in grid_units:
            images = load_array(harness.image_path(spec, unit))
            shown = [] if images is None else list(images[:per_unit])
            cells.extend(shown + [None] * (per_unit - len(shown)))
        label = spec.tag
        if not spec.is_baseline and row.psnr is not None and row.psnr.mean is not None:
            label += f"  PSNR {row.psnr.mean:.1f}"
        grid_rows.append((label, cells))
    if grid_rows:
        header = f"{model.name}, {steps} steps; columns: " + ", ".join(
            f"{u.condition.id} seed {u.seed}" for u in grid_units
        )
        paths["grid"] = image_grid(grid_rows, out_dir / "grid.png", header=header[:160], group=per_unit)
    if first is not None and first.ndim == 5:  # videos (B, F, H, W, C): every frame of the first clip
        strip_rows = _frame_strip_rows(specs, rows, harness, grid_units[0])
        frames = first.shape[1]
        paths["frames"] = image_grid(
            strip_rows,
            out_dir / "frames.png",
            group=frames,
            cell=64,
            header=f"{model.name}, {steps} steps, {grid_units[0].condition.id} seed {grid_units[0].seed}, first clip: "
            f"{frames} frames, then |frame - full-step frame| x{FRAME_DIFF_GAIN:g}",
        )
    plot = speed_quality_plot(rows, out_dir / "speed_quality.png", title=title)
    if plot is not None:
        paths["plot"] = plot
    return paths
