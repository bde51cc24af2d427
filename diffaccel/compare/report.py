"""From records to the table: one row per strategy spec, numbers as mean ± spread over the runs.

Spread is the population standard deviation over the scored (seed, conditioning) runs. Speedup is per run
(baseline wall-clock of the same seed / this wall-clock), then averaged; "CPU speedup" is the same ratio of
the process's CPU time for the call (CPU runs only), which a busy shared machine disturbs far less. A PSNR of `inf` means every image
was bit-identical to the baseline (a lossless row).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..core.extras import require
from ..metrics import Spread, spread

_SPREAD_FIELDS = (
    "full_steps",
    "computed_fraction",
    "speedup",
    "cpu_speedup",
    "wall_s",
    "psnr",
    "ssim",
    "lpips",
    "temporal_error",
)


@dataclass
class Row:
    tag: str
    strategy: str
    options: str
    family: str
    status: str
    runs: int
    steps: float | None = None
    full_steps: Spread | None = None
    computed_fraction: Spread | None = None
    speedup: Spread | None = None
    cpu_speedup: Spread | None = None
    wall_s: Spread | None = None
    psnr: Spread | None = None
    ssim: Spread | None = None
    lpips: Spread | None = None
    temporal_error: Spread | None = None  # videos only (see diffaccel.metrics.temporal_error)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag,
            "strategy": self.strategy,
            "options": self.options,
            "family": self.family,
            "status": self.status,
            "runs": self.runs,
            "steps": self.steps,
            "source": self.source,
            "notes": list(self.notes),
        }
        for name in _SPREAD_FIELDS:
            value = getattr(self, name)
            out[name] = None if value is None else value.as_dict()
        return out


def summarize(records: Iterable[dict[str, Any]], order: list[str] | None = None) -> list[Row]:
    """Rows in `order` (tags) when given, else in order of first appearance."""
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_tag.setdefault(record.get("tag"), []).append(record)
    tags = [t for t in (order or list(by_tag)) if t in by_tag]
    return [_row(tag, by_tag[tag]) for tag in tags]


def _row(tag: str, records: list[dict[str, Any]]) -> Row:
    ok = [r for r in records if r.get("status") == "ok" and r.get("seed") is not None]
    first = records[0]
    options = ",".join(f"{k}={v}" for k, v in sorted((first.get("options") or {}).items()))
    row = Row(tag, first.get("strategy", tag), options, first.get("family", ""), "ok" if ok else "", len(ok))
    if not ok:
        problem = next((r for r in records if r.get("status") in ("unsupported", "failed")), first)
        row.status = problem.get("status", "unknown")
        row.notes.append(problem.get("reason") or "")
        return row
    steps = {r.get("steps") for r in ok if r.get("steps") is not None}
    row.steps = next(iter(steps)) if len(steps) == 1 else (sum(steps) / len(steps) if steps else None)
    for name in _SPREAD_FIELDS:
        setattr(row, name, spread(r.get(name) for r in ok))
    sources = {r.get("computed_fraction_source") for r in ok if r.get("computed_fraction_source")}
    row.source = "; ".join(sorted(sources))
    notes = {r.get("note") for r in ok if r.get("note") and r.get("family") != "baseline"}
    row.notes.extend(sorted(notes))
    for problem in records:
        if problem.get("status") in ("unsupported", "failed"):  # e.g. raised after some runs had finished
            row.notes.append(f"{problem['status']} after {len(ok)} run(s): {problem.get('reason', '')}")
    return row


# ---------------------------------------------------------------------------------------------- formatting
def format_number(value: Spread | None, digits: int = 2, spread_digits: int | None = None) -> str:
    if value is None or value.mean is None:
        return "-"
    spread_digits = digits if spread_digits is None else spread_digits
    if math.isinf(value.mean):
        return "inf (identical)" if value.min is not None and math.isinf(value.min) else "inf"
    text = f"{value.mean:.{digits}f}"
    if value.count > 1 and value.std is not None and not math.isnan(value.std):
        text += f" ± {value.std:.{spread_digits}f}"
    return text


def _steps_cell(row: Row) -> str:
    if row.status != "ok":
        return "-"
    total = "-" if row.steps is None else f"{row.steps:g}"
    if row.full_steps is None or row.full_steps.mean is None:
        return f"- / {total}"
    full = row.full_steps.mean
    return f"{full:.1f} / {total}" if full != int(full) else f"{int(full)} / {total}"


HEADERS = (
    "strategy",
    "options",
    "full/steps",
    "computed",
    "speedup",
    "CPU speedup",
    "wall s",
    "PSNR dB",
    "SSIM",
    "LPIPS",
    "runs",
)
#: For videos, PSNR / SSIM / LPIPS are per-frame means and one more column shows temporal consistency.
VIDEO_HEADERS = HEADERS[:-1] + ("temporal err", "runs")


def is_video_table(rows: list[Row]) -> bool:
    return any(row.temporal_error is not None and row.temporal_error.mean is not None for row in rows)


def headers(rows: list[Row]) -> tuple[str, ...]:
    return VIDEO_HEADERS if is_video_table(rows) else HEADERS


def row_cells(row: Row, video: bool = False) -> list[str]:
    width = len(VIDEO_HEADERS if video else HEADERS)
    if row.status != "ok":
        return [row.strategy, row.options or "-"] + ["-"] * (width - 3) + ["0"]
    cells = [
        row.strategy,
        row.options or "-",
        _steps_cell(row),
        format_number(row.computed_fraction, 3),
        format_number(row.speedup, 2),
        format_number(row.cpu_speedup, 2),
        format_number(row.wall_s, 2),
        format_number(row.psnr, 2),
        format_number(row.ssim, 4),
        format_number(row.lpips, 4),
    ]
    if video:
        cells.append(format_number(row.temporal_error, 4))
    return cells + [str(row.runs)]


def row_note(row: Row) -> tuple[str, str]:
    """(short cell text, long footnote text or "")."""
    if row.status != "ok":
        return row.status, "; ".join(n for n in row.notes if n)
    short = "counted" if row.family in ("diffusers", "cache-dit") else ""
    return short, "; ".join(n for n in row.notes if n)


def _cells_and_footnotes(rows: list[Row]) -> tuple[list[list[str]], list[str]]:
    lines, footnotes = [], []
    video = is_video_table(rows)
    for row in rows:
        short, long = row_note(row)
        if long:
            footnotes.append(f"[{len(footnotes) + 1}] {row.tag}: {long}")
            short = f"{short} [{len(footnotes)}]".strip()
        lines.append(row_cells(row, video) + [short])
    return lines, footnotes


def markdown_table(rows: list[Row]) -> str:
    lines, footnotes = _cells_and_footnotes(rows)
    names = headers(rows)
    out = ["| " + " | ".join(names) + " | note |", "|" + "---|" * (len(names) + 1)]
    for cells in lines:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if footnotes:
        out.append("")
        out.extend(f"{f}  " for f in footnotes)
    return "\n".join(out)


def plain_table(rows: list[Row]) -> str:
    lines, footnotes = _cells_and_footnotes(rows)
    names = headers(rows)
    table = [list(names) + ["note"]] + lines
    widths = [max(len(line[i]) for line in table) for i in range(len(names) + 1)]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    return "\n".join(out + footnotes)


def print_table(rows: list[Row], title: str, footer: list[str] | None = None, console=None) -> None:
    """A rich table on the terminal (wide enough when the output is a file or a pipe)."""
    Console = require("rich.console", "compare").Console
    Table = require("rich.table", "compare").Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    lines, footnotes = _cells_and_footnotes(rows)
    table = Table(title=title, title_justify="left")
    for header in headers(rows):
        table.add_column(header, justify="left" if header in ("strategy", "options") else "right")
    table.add_column("note")
    for row, cells in zip(rows, lines):
        table.add_row(*cells, style=None if row.status == "ok" else "dim")
    console.print(table)
    for line in footnotes + list(footer or []):
        console.print(line, highlight=False, markup=False, soft_wrap=not console.is_terminal)
