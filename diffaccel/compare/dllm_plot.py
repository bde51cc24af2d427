"""The picture of a dLLM comparison: accuracy and forward passes against CPU-time speedup per strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics import spread


def dllm_speed_accuracy_plot(
    records: list[dict[str, Any]], tags: list[str], path: Path, title: str = ""
) -> Path | None:
    """Two panels (matplotlib, Agg): task accuracy, and NFE relative to the full run, each against the
    CPU-time speedup over the full run (wall-clock when CPU time is missing). None when nothing is scored."""
    from .render import pyplot, save_figure

    plt = pyplot()

    points = []
    for tag in tags:
        ok = [r for r in records if r.get("tag") == tag and r.get("status") == "ok"]
        if not ok:
            continue
        speed = spread(r.get("cpu_speedup") if r.get("cpu_speedup") is not None else r.get("speedup") for r in ok)
        points.append(
            (
                tag,
                speed,
                spread(r.get("accuracy") for r in ok),
                spread(r.get("nfe_ratio") for r in ok),
                spread(r.get("token_agreement") for r in ok),
            )
        )
    if not points or all(p[1].mean is None for p in points):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 5.6), squeeze=False)
    for ax, index, label in (
        (axes[0][0], 2, "task accuracy (exact match)"),
        (axes[0][1], 3, "forward passes / full run"),
    ):
        for tag, speed, *values in points:
            value = values[index - 2]
            if speed.mean is None or value.mean is None:
                continue
            agreement = values[2].mean
            name = tag if agreement is None else f"{tag} (agreement {agreement:.3f})"
            ax.errorbar(
                speed.mean, value.mean, xerr=speed.std or 0.0, yerr=value.std or 0.0, fmt="o", capsize=3, label=name
            )
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("CPU-time speedup vs the full run (one thread)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, min(0.45, 0.04 * ((len(labels) + 1) // 2) + 0.02), 1, 1))
    return save_figure(fig, path)
