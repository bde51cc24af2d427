"""`diffaccel compare --model <dLLM zoo model>`: the dispatch point to the dLLM evaluation.

Diffusion language models are scored differently from images (task accuracy, token agreement with the
full-step decode, NFE, tokens/s), by `diffaccel.dllm.evaluate`. This module only routes the comparison
there and writes its per-run records into `results.jsonl` the same atomic, resumable way, with its own table.

Contract expected from `diffaccel.dllm.evaluate`: a function `evaluate_records(model, strategies, seeds,
steps, device, done=<set of record keys>, on_record=<callable>)` (keyword arguments; unknown ones may be
ignored) that yields or returns one dict per run carrying at least `strategy`, `options`, `seed`, and the
dLLM figures (`accuracy`, `token_agreement`, `nfe`, `tokens_per_s`, `speedup`).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from .report import _fmt
from .store import RESULTS_NAME, ResultsStore, record_key

DLLM_COLUMNS = ("accuracy", "token_agreement", "nfe", "tokens_per_s", "speedup")


class DllmEvaluationUnavailable(RuntimeError):
    pass


def _evaluator():
    try:
        module = importlib.import_module("diffaccel.dllm.evaluate")
    except ImportError as error:
        raise DllmEvaluationUnavailable(
            "dLLM comparison needs diffaccel.dllm.evaluate, which this installation does not have yet "
            f"({error}); image models (e.g. --model flux-photos) are compared meanwhile."
        ) from error
    for name in ("evaluate_records", "compare_records", "evaluate"):
        function = getattr(module, name, None)
        if callable(function):
            return function
    raise DllmEvaluationUnavailable("diffaccel.dllm.evaluate has no evaluate_records/compare_records/evaluate function")


def run_dllm_compare(settings, processes, console=None):
    from .run import CompareOutcome, _prepare_out_dir, default_out

    evaluate = _evaluator()
    out_dir = Path(settings.out) if settings.out else default_out(settings.model)
    _prepare_out_dir(out_dir, settings, processes)
    store = ResultsStore(out_dir, shard=processes.shard_name).load()
    offered = dict(model=settings.model, strategies=settings.strategies, seeds=processes.split(list(settings.seeds)),
                   steps=settings.steps, device=settings.device,
                   done={k for k, r in store.all.items() if r.get("status", "ok") == "ok"},
                   on_record=None)
    accepted = set(inspect.signature(evaluate).parameters)
    kwargs = {k: v for k, v in offered.items() if k in accepted}

    def put(record: dict[str, Any]) -> None:
        record.setdefault("model", settings.model)
        record.setdefault("status", "ok")
        record.setdefault("tag", record.get("strategy"))
        if record_key(record) in store.all and store.is_done(record_key(record)):
            return
        store.put(record)

    if "on_record" in accepted:
        kwargs["on_record"] = put
    result = evaluate(**kwargs)
    for record in result or []:
        put(dict(record))
    processes.wait()
    outcome = CompareOutcome(out_dir, [], [])
    if processes.is_main:
        store.merge_shards()
        outcome.records = [r for r in store.records() if r.get("model") == settings.model]
        outcome.paths = {"results": out_dir / RESULTS_NAME}
        if settings.print_table:
            _print_dllm_table(outcome.records, settings.model, console)
    return outcome


def _print_dllm_table(records: list[dict[str, Any]], model: str, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..metrics import spread

    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.get("tag") or record.get("strategy"), []).append(record)
    table = Table(title=f"diffaccel compare: {model} (dLLM)", title_justify="left")
    for header in ("strategy", "runs") + DLLM_COLUMNS:
        table.add_column(header, justify="left" if header == "strategy" else "right")
    for tag, group in groups.items():
        table.add_row(str(tag), str(len(group)), *[_fmt(spread(r.get(c) for r in group), 3) for c in DLLM_COLUMNS])
    (console or Console()).print(table)
