"""`diffaccel compare --model <dLLM zoo model>` (e.g. `llada-addition`): diffusion language models.

Diffusion LMs are scored by `diffaccel.dllm.evaluate.evaluate_dllm` (task accuracy, token and sequence
agreement with the full decode, NFE, tokens/s, wall-clock speedup), not by image metrics. This module
gives them the same job around it as image models get: per seed a held-out problem set of the model's task
(`pipe.task.held_out(count, seed=seed)`), the full run first (its tokens, time and NFE cached in
`<out>/baseline/`, so a resumed comparison reuses them), then each strategy alone against that reference,
each record written atomically to `results.jsonl` as soon as it exists, and a table of its own.
Seeds are split across processes like image units.

`--strategies` takes dLLM strategy specs (`dkv-cache:refresh_interval=4`, `ssd:draft_length=4`) and
compositions joined by `+` (`sparsed+dkv-cache`), one row each; default: `DEFAULT_DLLM_SPECS`.
`--steps` overrides the sampling steps, `--problems` the held-out problems per seed (64), `--batch-size`
the prompts per pipeline call (64), `--repeats` the timed passes (the fastest is kept). Every row reports
task accuracy (exact match), token agreement with the full run, NFE, rows through the model, process
CPU-time speedup (one torch thread by default, see `run._set_threads`) beside wall-clock, and tokens/s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.atomic import atomic_write_text
from ..core.errors import UnsupportedFamilyError
from ..core.extras import require
from ..strategies.registry import StrategyRequest
from .identity import canonical_digest, config_payload, finished_as_now, module_digest
from .output import CompareOutcome, prepare_out_dir, records_of_this_run, resolve_out
from .report import format_number
from .specs import BASELINE_NAMES, split_spec_list
from .store import RESULTS_NAME, ResultsStore, load_array, record_key, save_array

logger = logging.getLogger(__name__)

# what a dLLM row measures: task accuracy, agreement with the full run, and forward-pass cost
QUALITY_AND_COST = ("accuracy", "token_agreement", "sequence_agreement", "nfe", "nfe_ratio", "forward_rows")
# query_tokens: (row, position) pairs the model computed; below forward_rows * length when a cache serves the rest
DLLM_COLUMNS = (*QUALITY_AND_COST, "query_tokens", "tokens_per_s", "speedup", "cpu_speedup", "wall_s", "cpu_s")
DEFAULT_PROBLEMS = 64
DEFAULT_BATCH_SIZE = 64


#: the default rows, model-agnostic: each strategy at its paper's / official code's defaults, Fast-dLLM's
#: two caches, and the compositions (SparseD under dKV-Cache; SSD with Fast-dLLM's cache at the fixed
#: schedule, threshold None, beside that cached stepwise run, the reference SSD is lossless against)
DEFAULT_DLLM_SPECS = (
    "dkv-cache",
    "sparsed",
    "fast-dllm:cache=prefix",
    "fast-dllm:cache=dual",
    "ssd",
    "sparsed+dkv-cache",
    "fast-dllm:threshold=None,cache=dual",
    "ssd+fast-dllm:threshold=None,cache=dual",
)


def dllm_specs(values: list[str] | None) -> list[tuple[str, str, dict[str, Any]]]:
    """(canonical tag, name, options) per requested dLLM row, validated by the dLLM resolver.

    A composition is its parts joined by `+` (`sparsed+dkv-cache`, `ssd:draft_length=8+fast-dllm:cache=dual`):
    its name is the parts' names joined by `+`, its options one dict per part (a list), its tag the parts'
    canonical specs joined by `+` in the order given."""
    from ..dllm.api import resolve

    texts = split_spec_list(values) if values else list(DEFAULT_DLLM_SPECS)
    specs, seen = [], set()
    for text in texts:
        requests = [StrategyRequest.parse(part).sorted() for part in text.split("+")]
        if len(requests) == 1 and (requests[0].name.lower() in BASELINE_NAMES or requests[0].name == "full"):
            continue
        for request in requests:
            resolve(request.name, request.options_dict)  # raises with the list of dLLM strategies
        tag = "+".join(r.text for r in requests)
        if tag not in seen:
            seen.add(tag)
            if len(requests) == 1:
                specs.append((tag, requests[0].name, requests[0].options_dict))
            else:
                specs.append((tag, "+".join(r.name for r in requests), [r.options_dict for r in requests]))
    return specs


def _row_spec(name: str, options: dict[str, Any] | list[dict[str, Any]]) -> str:
    """The spec text `evaluate_dllm` runs for a row (parts joined by `+` for a composition)."""
    if isinstance(options, list):
        return "+".join(StrategyRequest.of(n, o).text for n, o in zip(name.split("+"), options, strict=True))
    return StrategyRequest.of(name, options).text


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
    count = settings.problems or DEFAULT_PROBLEMS
    batch_size = settings.batch_size or DEFAULT_BATCH_SIZE
    condition = f"held-out-{count}" + ("" if batch_size == DEFAULT_BATCH_SIZE else f"-batch{batch_size}")
    timing = {"batch_size": batch_size, "repeats": settings.repeats}
    run_digest = _run_digest(pipe, sampling)

    def base(tag: str, name: str, options: dict, seed: int) -> dict[str, Any]:
        return {
            "model": settings.model,
            "strategy": name,
            "options": options,
            "tag": tag,
            "family": "dllm",
            "seed": seed,
            "condition": condition,
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
            config_digest=run_digest(name, options),
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
        todo = [s for s in specs if not finished_as_now(store, record_key(base(*s, seed)), run_digest(s[1], s[2]))]
        full_digest = run_digest("none", {})
        reference = _load_reference(out_dir, seed, steps, count, batch_size, full_digest)
        full_key = record_key(base("none", "none", {}, seed))
        full_done = finished_as_now(store, full_key, full_digest)
        if reference is None or not full_done:
            records, reference = evaluate_dllm(
                pipe, [], input_ids, answers, sampling=sampling, generator_seed=seed, progress=False, **timing
            )
            _save_reference(out_dir, seed, steps, count, batch_size, reference, full_digest)
            if not full_done:
                store.put(as_record(records[0], "none", "none", {}, seed))
        for tag, name, options in todo:
            try:
                records, _ = evaluate_dllm(
                    pipe,
                    [_row_spec(name, options)],
                    input_ids,
                    answers,
                    sampling=sampling,
                    generator_seed=seed,
                    reference=reference,
                    progress=False,
                    **timing,
                )
                store.put(as_record(records[0], tag, name, options, seed))
            except UnsupportedFamilyError as error:  # refused at wrap for this architecture: a row, not a failure
                logger.info("%s: unsupported: %s", tag, error)
                unsupported = base(tag, name, options, seed)
                unsupported.update(status="unsupported", reason=f"unsupported: {error}", seed=None, condition=None)
                store.put(unsupported)
            except Exception as error:  # noqa: BLE001 - one failing strategy must not end the comparison
                logger.warning("%s failed on seed %d: %s", tag, seed, error)
                failed = base(tag, name, options, seed)
                failed.update(status="failed", reason=f"{type(error).__name__}: {error}", seed=None, condition=None)
                store.put(failed)
    processes.wait()
    outcome = CompareOutcome(out_dir, [], [])
    if processes.is_main:
        tags = ["none"] + [s[0] for s in specs]
        outcome.records = [
            r
            for r in records_of_this_run(
                store, settings, tags, steps, lambda seed: seed is None or seed in settings.seeds
            )
            if r.get("condition") in (condition, None)  # a folder may hold other problem counts / batch sizes
        ]
        outcome.paths = {"results": out_dir / RESULTS_NAME}
        table = dllm_markdown(outcome.records, tags)
        atomic_write_text(
            out_dir / "report.md",
            f"diffaccel compare: {settings.model} (dLLM), {count} held-out problems per seed in batches of "
            f"{batch_size}, seeds {','.join(map(str, settings.seeds))}, {torch.get_num_threads()} torch "
            f"thread(s), fastest of {settings.repeats} timed pass(es)\n\n{table}\n",
        )
        outcome.paths["report"] = out_dir / "report.md"
        from .dllm_plot import dllm_speed_accuracy_plot

        plot = dllm_speed_accuracy_plot(outcome.records, tags, out_dir / "dllm.png", title=f"{settings.model} (dLLM)")
        if plot is not None:
            outcome.paths["plot"] = plot
        if settings.print_table:
            _print_dllm_table(outcome.records, tags, settings.model, console)
    return outcome


def _run_digest(pipe, sampling: dict[str, Any]):
    """`(name, options) -> digest` of what a row runs: the model's weights, the full sampling configuration
    (defaults included: a new default confidence rule changes every row) and each part's resolved strategy
    config (`none`: no part)."""
    from ..dllm.api import resolve

    common = {
        "weights": module_digest(pipe.model),
        "sampling": dataclasses.asdict(pipe.sampling_config(**sampling)),
    }

    def digest(name: str, options: dict[str, Any] | list[dict[str, Any]]) -> str:
        if name == "none":
            parts = []
        elif isinstance(options, list):
            parts = [config_payload(resolve(n, o)) for n, o in zip(name.split("+"), options, strict=True)]
        else:
            parts = [config_payload(resolve(name, options))]
        return canonical_digest({**common, "strategies": parts})

    return digest


def _reference_paths(out_dir: Path, seed: int, steps: int, count: int, batch_size: int) -> tuple[Path, Path]:
    stem = out_dir / "baseline" / f"dllm_steps{steps}_n{count}_batch{batch_size}" / f"seed{seed}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _save_reference(out_dir, seed, steps, count, batch_size, reference, digest: str) -> None:
    tokens, meta = _reference_paths(out_dir, seed, steps, count, batch_size)
    save_array(tokens, reference.generated.cpu().numpy())
    fields = {"wall_s": reference.wall_s, "nfe": reference.nfe, "cpu_s": reference.cpu_s, "config_digest": digest}
    atomic_write_text(meta, json.dumps(fields))


def _load_reference(out_dir, seed, steps, count, batch_size, digest: str):
    """The cached full run, or None when there is none or it was decoded on other weights or settings."""
    from ..dllm.evaluate import FullRun

    tokens_path, meta_path = _reference_paths(out_dir, seed, steps, count, batch_size)
    tokens = load_array(tokens_path)
    if tokens is None or not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("config_digest") != digest:
        return None
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
        "query_tokens": 0,
        "tokens_per_s": 1,
        "speedup": 2,
        "cpu_speedup": 2,
        "wall_s": 3,
        "cpu_s": 3,
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
