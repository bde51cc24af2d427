"""`diffaccel compare --model <dLLM zoo model>` (e.g. `llada-addition`): diffusion language models.

Diffusion LMs are scored by `diffaccel.dllm.evaluate.evaluate_dllm` (task accuracy, token and sequence
agreement with the full decode, NFE, tokens/s, wall-clock speedup), not by image metrics. This module
gives them the same job around it as image models get: per seed a held-out problem set of the model's task
(`pipe.task.held_out(count, seed=seed)`), the full run first (its tokens, time and NFE cached in
`<out>/baseline/`, so a resumed comparison reuses them), then each strategy alone against that reference,
each record written atomically to `results.jsonl` as soon as it exists, and a table of its own.
Seeds are split across processes like image units.

`--strategies` takes dLLM strategy specs (`dkv-cache:refresh_interval=4`, `ssd:draft_length=4`; default:
every dLLM strategy at its defaults); `--steps` overrides the sampling steps.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic import atomic_write_text
from ..core.extras import require
from ..strategies.registry import StrategyRequest
from .output import CompareOutcome, prepare_out_dir, records_of_this_run, resolve_out
from .report import format_number
from .specs import BASELINE_NAMES, split_spec_list
from .store import RESULTS_NAME, ResultsStore, load_array, record_key, save_array

logger = logging.getLogger(__name__)

# what a dLLM row measures: task accuracy, agreement with the full run, and forward-pass cost
QUALITY_AND_COST = ("accuracy", "token_agreement", "sequence_agreement", "nfe", "nfe_ratio", "forward_rows")
DLLM_COLUMNS = (*QUALITY_AND_COST, "tokens_per_s", "speedup", "cpu_speedup", "wall_s")
DEFAULT_PROBLEMS = 64


def dllm_specs(values: list[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    """(canonical tag, name, options) per requested dLLM strategy, validated by the dLLM resolver."""
    from ..dllm.api import dllm_strategies, resolve

    texts = split_spec_list(values) if values else list(dllm_strategies())
    specs, seen = [], set()
    for text in texts:
        request = StrategyRequest.parse(text).sorted()
        if request.name.lower() in BASELINE_NAMES or request.name == "full":
            continue
        resolve(request.name, request.options_dict)  # raises with the list of dLLM strategies
        if request.text not in seen:
            seen.add(request.text)
            specs.append((request.text, request.name, request.options_dict))
    return specs


def run_dllm_compare(settings, processes, console=None):
    from .. import zoo
    from ..dllm.evaluate import evaluate_dllm
    from .models import parse_dtype

    specs = dllm_specs(settings.strategies)
    out_dir = resolve_out(settings, processes)
    prepare_out_dir(out_dir, settings, processes)
    store = ResultsStore(out_dir, shard=processes.shard_name).load()
    pipe = zoo.load(settings.model, device=processes.device(settings.device), dtype=parse_dtype(settings.dtype))
    task = getattr(pipe, "task", None)
    if task is None:
        raise ValueError(f"dLLM zoo model {settings.model!r} has no `task` to draw held-out problems from")
    sampling = {} if settings.steps is None else {"steps": settings.steps}
    steps = settings.steps or pipe.sampling_config().steps
    count = DEFAULT_PROBLEMS

    def base(tag: str, name: str, options: dict, seed: int) -> dict[str, Any]:
        return {
            "model": settings.model,
            "strategy": name,
            "options": options,
            "tag": tag,
            "family": "dllm",
            "seed": seed,
            "condition": f"held-out-{count}",
            "num_inference_steps": steps,
            "guidance_scale": None,
            "prompt": None,
            "class": None,
            "full_steps": None,
            "computed_fraction": None,
            "psnr": None,
            "ssim": None,
            "lpips": None,
            "process_index": processes.index,
        }

    def as_record(result, tag, name, options, seed) -> dict[str, Any]:
        record = base(tag, name, options, seed)
        data = result.as_dict()
        record.update(
            status="ok",
            steps=steps,
            wall_s=data["wall_s"],
            config=data["strategy"],
            **{
                k: data[k]
                for k in (
                    *QUALITY_AND_COST,
                    "query_tokens",
                    "tokens_per_s",
                    "speedup",
                    "cpu_s",
                    "cpu_speedup",
                    "prompts",
                    "gen_length",
                )
            },
        )
        return record

    for seed in processes.split(list(settings.seeds)):
        input_ids, answers = task.held_out(count, seed=seed)
        model = getattr(pipe, "model", None)
        if isinstance(model, torch.nn.Module):
            input_ids, answers = (
                input_ids.to(next(model.parameters()).device),
                answers.to(next(model.parameters()).device),
            )
        todo = [s for s in specs if not store.is_done(record_key(base(s[0], s[1], s[2], seed)))]
        reference = _load_reference(out_dir, settings.model, seed, steps, count)
        full_key = record_key(base("none", "none", {}, seed))
        if reference is None or not store.is_done(full_key):
            records, reference = evaluate_dllm(
                pipe, [], input_ids, answers, sampling=sampling, generator_seed=seed, progress=False
            )
            _save_reference(out_dir, settings.model, seed, steps, count, reference)
            if not store.is_done(full_key):
                store.put(as_record(records[0], "none", "none", {}, seed))
        for tag, name, options in todo:
            try:
                records, _ = evaluate_dllm(
                    pipe,
                    [StrategyRequest.of(name, options).text],
                    input_ids,
                    answers,
                    sampling=sampling,
                    generator_seed=seed,
                    reference=reference,
                    progress=False,
                )
                store.put(as_record(records[0], tag, name, options, seed))
            except Exception as error:  # noqa: BLE001 - one failing strategy must not end the comparison
                logger.warning("%s failed on seed %d: %s", tag, seed, error)
                failed = base(tag, name, options, seed)
                failed.update(status="failed", reason=f"{type(error).__name__}: {error}", seed=None, condition=None)
                store.put(failed)
    processes.wait()
    outcome = CompareOutcome(out_dir, [], [])
    if processes.is_main:
        tags = ["none"] + [s[0] for s in specs]
        outcome.records = records_of_this_run(
            store, settings, tags, steps, lambda seed: seed is None or seed in settings.seeds
        )
        outcome.paths = {"results": out_dir / RESULTS_NAME}
        table = dllm_markdown(outcome.records, tags)
        atomic_write_text(
            out_dir / "report.md",
            f"diffaccel compare: {settings.model} (dLLM), {count} held-out problems "
            f"per seed, seeds {','.join(map(str, settings.seeds))}\n\n{table}\n",
        )
        outcome.paths["report"] = out_dir / "report.md"
        from .dllm_plot import dllm_speed_accuracy_plot

        plot = dllm_speed_accuracy_plot(outcome.records, tags, out_dir / "dllm.png", title=f"{settings.model} (dLLM)")
        if plot is not None:
            outcome.paths["plot"] = plot
        if settings.print_table:
            _print_dllm_table(outcome.records, tags, settings.model, console)
    return outcome


def _reference_paths(out_dir: Path, model: str, seed: int, steps: int, count: int) -> tuple[Path, Path]:
    stem = out_dir / "baseline" / f"dllm_steps{steps}_n{count}" / f"seed{seed}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _save_reference(out_dir, model, seed, steps, count, reference) -> None:
    tokens, meta = _reference_paths(out_dir, model, seed, steps, count)
    save_array(tokens, reference.generated.cpu().numpy())
    atomic_write_text(meta, json.dumps({"wall_s": reference.wall_s, "nfe": reference.nfe, "cpu_s": reference.cpu_s}))


def _load_reference(out_dir, model, seed, steps, count):
    from ..dllm.evaluate import FullRun

    tokens_path, meta_path = _reference_paths(out_dir, model, seed, steps, count)
    tokens = load_array(tokens_path)
    if tokens is None or not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    return FullRun(torch.from_numpy(np.asarray(tokens)), meta["wall_s"], meta["nfe"], meta.get("cpu_s"))


def _rows(records: list[dict[str, Any]], tags: list[str]) -> list[tuple[str, list[dict[str, Any]], str]]:
    rows = []
    for tag in tags:
        group = [r for r in records if r.get("tag") == tag]
        ok = [r for r in group if r.get("status") == "ok"]
        reason = next((r.get("reason", "") for r in group if r.get("status") != "ok"), "")
        if group:
            rows.append((tag, ok, reason))
    return rows


def _cells(ok: list[dict[str, Any]]) -> list[str]:
    from ..metrics import spread

    digits = {
        "accuracy": 3,
        "token_agreement": 4,
        "sequence_agreement": 3,
        "nfe": 0,
        "nfe_ratio": 3,
        "forward_rows": 0,
        "tokens_per_s": 1,
        "speedup": 2,
        "cpu_speedup": 2,
        "wall_s": 3,
    }
    return [format_number(spread(r.get(c) for r in ok), digits[c]) for c in DLLM_COLUMNS]


def dllm_markdown(records: list[dict[str, Any]], tags: list[str]) -> str:
    lines = ["| strategy | runs | " + " | ".join(DLLM_COLUMNS) + " | note |", "|" + "---|" * (len(DLLM_COLUMNS) + 3)]
    for tag, ok, reason in _rows(records, tags):
        lines.append(f"| {tag} | {len(ok)} | " + " | ".join(_cells(ok)) + f" | {reason} |")
    return "\n".join(lines)


def _print_dllm_table(records: list[dict[str, Any]], tags: list[str], model: str, console=None) -> None:
    Console = require("rich.console", "compare").Console
    Table = require("rich.table", "compare").Table

    console = console or Console()
    if not console.is_terminal:
        console = Console(width=200)
    table = Table(title=f"diffaccel compare: {model} (dLLM; mean ± std over seeds)", title_justify="left")
    for header in ("strategy", "runs") + DLLM_COLUMNS + ("note",):
        table.add_column(header, justify="left" if header in ("strategy", "note") else "right")
    for tag, ok, reason in _rows(records, tags):
        table.add_row(tag, str(len(ok)), *_cells(ok), reason)
    console.print(table)
