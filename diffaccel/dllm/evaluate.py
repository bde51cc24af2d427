"""Compare dLLM strategies against the full (unaccelerated) run of the same pipeline and prompts.

``evaluate_dllm(pipe, ["dkv-cache", "ssd:draft_length=4"], input_ids, answers)`` returns one
:class:`DLLMRunRecord` per strategy, the first being the full run (``strategy == "full"``): task
accuracy (exact match of the generated answer, when ``answers`` are given), token agreement with
the full run, forward passes (NFE), tokens per second and wall-clock speedup over the full run.
This is the dLLM half of ``diffaccel compare``; the CLI owns output files and tables.

Timing: every configuration runs once untimed first (FlexAttention compiles there), then
``repeats`` timed passes over all prompts; the reported wall time is the fastest pass (least
disturbed by other processes on a shared machine). The least process CPU time over the passes is
reported beside it (``cpu_s``, ``cpu_speedup``): with one torch thread it is the work done, and it
moves far less than wall time when other jobs share the cores.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from ..api import summary, unwrap, wrap  # the engine's own: it takes a list of configs (a composition)
from ..strategies.base import StrategyConfig
from .api import resolve

logger = logging.getLogger(__name__)


@dataclass
class DLLMRunRecord:
    """One strategy on one prompt set. ``speedup`` and ``token_agreement`` are relative to the full run."""

    strategy: str
    prompts: int
    gen_length: int
    accuracy: float | None
    token_agreement: float
    sequence_agreement: float
    nfe: int
    forward_rows: int
    query_tokens: int
    tokens_generated: int
    wall_s: float
    tokens_per_s: float
    speedup: float
    nfe_ratio: float
    sampling: dict[str, Any]
    details: dict[str, Any]
    cpu_s: float | None = None
    cpu_speedup: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _configs(spec) -> list[StrategyConfig]:
    """The validated configs of one row: a spec, a config, or a composition (a list, or specs joined by `+`)."""
    if isinstance(spec, str):
        return [resolve(part) for part in spec.split("+")]
    if isinstance(spec, StrategyConfig):
        return [resolve(spec)]
    if isinstance(spec, (list, tuple)) and spec:
        return [c for part in spec for c in _configs(part)]
    raise TypeError(f"a strategy row is a spec, a config or a list of them, got {spec!r}")


def _strategy_tag(spec) -> str:
    if spec is None or spec == "full":
        return "full"
    return "+".join(c.strify() for c in _configs(spec))


def _run_all(pipe, input_ids, batch_size, sampling, generator_seed):
    outputs, nfe, rows, query = [], 0, 0, 0
    for start in range(0, input_ids.shape[0], batch_size):
        generator = torch.Generator(device=input_ids.device).manual_seed(generator_seed + start)
        out = pipe(input_ids=input_ids[start : start + batch_size], generator=generator, **sampling)
        outputs.append(out.generated)
        nfe += out.record.forward_calls
        rows += out.record.forward_rows
        query += out.record.query_tokens
    return torch.cat(outputs), nfe, rows, query


@dataclass
class FullRun:
    """The reference every strategy is compared with: the unwrapped pipeline on the same prompts."""

    generated: torch.Tensor
    wall_s: float
    nfe: int
    cpu_s: float | None = None


def evaluate_dllm(
    pipe,
    strategies: Sequence[str | StrategyConfig | None],
    input_ids: torch.Tensor,
    answers: torch.Tensor | None = None,
    *,
    sampling: dict[str, Any] | None = None,
    batch_size: int = 64,
    repeats: int = 1,
    generator_seed: int = 0,
    reference: FullRun | None = None,
    progress: bool = True,
) -> tuple[list[DLLMRunRecord], FullRun]:
    """Run the full pipeline (unless ``reference`` is given), then each strategy, on the same prompts.

    ``strategies`` are names or specs (``"dkv-cache:refresh_interval=4"``) or config objects, or
    compositions (a list of them, or specs joined by ``+``: ``"sparsed+dkv-cache"``), one row each;
    ``sampling`` holds pipeline options (``gen_length``, ``steps``, ``block_length``, ...).
    Returns the records (the full run first when it was run here) and the reference, so a
    resumed sweep can pass it back in instead of recomputing it.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    sampling = dict(sampling or {})
    specs = ([] if reference is not None else [None]) + [s for s in strategies if s not in (None, "full")]
    records: list[DLLMRunRecord] = []
    full_generated, full_wall, full_nfe, full_cpu = (
        (None, None, None, None)
        if reference is None
        else (reference.generated, reference.wall_s, reference.nfe, reference.cpu_s)
    )
    for spec in tqdm(specs, desc="dllm strategies", disable=not progress):
        tag = _strategy_tag(spec)
        if spec is not None:
            configs = _configs(spec)
            wrap(pipe, configs if len(configs) > 1 else configs[0])
        try:
            _run_all(pipe, input_ids[:batch_size], batch_size, sampling, generator_seed)  # warm-up / compile
            walls, cpus = [], []
            for _ in range(repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                generated, nfe, rows, query = _run_all(pipe, input_ids, batch_size, sampling, generator_seed)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu_start)
            details = summary(pipe).as_dict() if spec is not None else {}
        finally:
            if spec is not None:
                unwrap(pipe)
        wall, cpu = min(walls), min(cpus)
        if full_generated is None:
            full_generated, full_wall, full_nfe, full_cpu = generated, wall, nfe, cpu
        tokens = generated.numel()
        records.append(
            DLLMRunRecord(
                strategy=tag,
                prompts=int(input_ids.shape[0]),
                gen_length=int(generated.shape[1]),
                accuracy=None if answers is None else float((generated == answers).all(1).float().mean()),
                token_agreement=float((generated == full_generated).float().mean()),
                sequence_agreement=float((generated == full_generated).all(1).float().mean()),
                nfe=nfe,
                forward_rows=rows,
                query_tokens=query,
                tokens_generated=tokens,
                wall_s=wall,
                tokens_per_s=tokens / wall if wall > 0 else float("inf"),
                speedup=full_wall / wall if wall > 0 else float("inf"),
                nfe_ratio=nfe / full_nfe if full_nfe else 1.0,
                sampling=sampling,
                details=details,
                cpu_s=cpu,
                cpu_speedup=full_cpu / cpu if full_cpu and cpu > 0 else None,
            )
        )
        logger.info(
            "%s: accuracy %s, agreement %.4f, NFE %d, %.2fs",
            tag,
            records[-1].accuracy,
            records[-1].token_agreement,
            nfe,
            wall,
        )
    return records, FullRun(full_generated, full_wall, full_nfe, full_cpu)


def format_table(records: Sequence[DLLMRunRecord]) -> str:
    """A plain-text table (also valid Markdown) of the records."""
    header = "| strategy | accuracy | token agreement | NFE | NFE ratio | tokens/s | speedup | CPU-time speedup |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in records:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.4f}"
        cpu = "-" if r.cpu_speedup is None else f"{r.cpu_speedup:.2f}x"
        lines.append(
            f"| {r.strategy} | {acc} | {r.token_agreement:.4f} | {r.nfe} | {r.nfe_ratio:.3f} | "
            f"{r.tokens_per_s:.1f} | {r.speedup:.2f}x | {cpu} |"
        )
    return "\n".join(lines)
