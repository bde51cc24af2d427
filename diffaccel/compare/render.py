"""The two pictures of a comparison: an image grid and a speed–quality plot (matplotlib, Agg backend).

Grid: one row per strategy, the baseline on top; the columns are the same (seed, image) pairs in every row,
so each strategy's output sits directly below the full-step output it is scored against. Videos show their
middle frame.

Plot: wall-clock speedup against PSNR and SSIM (and LPIPS when available), mean ± spread per row, one legend
entry per row; diffaccel's strategies and peers get different markers. Rows identical to the baseline
(PSNR inf) are drawn at the top edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_write
from ..core.extras import require
from .report import Row


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 4:  # video (F, H, W, C): middle frame
        image = image[image.shape[0] // 2]
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


def image_grid(
    rows: Sequence[tuple[str, Sequence[np.ndarray | None]]],
    path: Path,
    cell: int = 96,
    label_width: int = 260,
    padding: int = 4,
    header: str = "",
    group: int = 0,
    group_gap: int = 12,
) -> Path:
    """Write a labelled grid: `rows` is `(label, [image or None, ...])`, all rows with the same columns;
    every `group` columns (one seed's images) are followed by a wider gap."""
    from PIL import Image, ImageDraw

    columns = max((len(images) for _, images in rows), default=0)
    header_height = 22 if header else 0
    groups = (columns - 1) // group if group and columns else 0
    width = label_width + columns * (cell + padding) + padding + groups * group_gap
    height = header_height + len(rows) * (cell + padding) + padding
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if header:
        draw.text((padding, 4), header, fill=(0, 0, 0))
    for r, (label, images) in enumerate(rows):
        top = header_height + padding + r * (cell + padding)
        for i, line in enumerate(_wrap(label, 38)[:5]):
            draw.text((padding, top + 4 + 14 * i), line, fill=(0, 0, 0))
        for c, image in enumerate(images):
            left = label_width + padding + c * (cell + padding) + (c // group if group else 0) * group_gap
            if image is None:
                draw.rectangle([left, top, left + cell, top + cell], outline=(200, 200, 200))
                continue
            tile = Image.fromarray(_as_rgb_uint8(image)).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (left, top))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, canvas.save)
    return path


def _wrap(text: str, width: int) -> list[str]:
    words, lines, current = text.replace(",", ", ").split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return lines + ([current] if current else [])


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), or an error naming the `compare` extra."""
    matplotlib = require("matplotlib", "compare")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write `fig` to `path` as a PNG, atomically (a reader never sees half a file), and close it."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    finally:
        pyplot().close(fig)
    return path


def speed_quality_plot(rows: list[Row], path: Path, title: str = "") -> Path | None:
    """Speedup vs PSNR / SSIM (/ LPIPS) for every scored row; None when no row has both numbers."""
    plt = pyplot()

    scored = [
        r for r in rows if r.status == "ok" and r.family != "baseline" and r.speedup and r.speedup.mean is not None
    ]
    if not scored:
        return None
    metrics = [("psnr", "PSNR vs full-step (dB, higher is closer)"), ("ssim", "SSIM vs full-step")]
    if any(r.lpips is not None and r.lpips.mean is not None for r in scored):
        metrics.append(("lpips", "LPIPS vs full-step (lower is closer)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 6.0), squeeze=False)
    markers = {"diffaccel": "o", "diffusers": "s", "cache-dit": "^"}
    for ax, (name, label) in zip(axes[0], metrics):
        finite = [
            getattr(r, name).mean
            for r in scored
            if getattr(r, name) is not None
            and getattr(r, name).mean is not None
            and math.isfinite(getattr(r, name).mean)
        ]
        top = (max(finite) + 0.08 * (max(finite) - min(finite) + 1.0)) if finite else 1.0
        for row in scored:
            value = getattr(row, name)
            if value is None or value.mean is None:
                continue
            y, yerr, lossless = value.mean, value.std or 0.0, math.isinf(value.mean)
            if lossless:
                y, yerr = top, 0.0
            if yerr is not None and math.isnan(yerr):
                yerr = 0.0
            ax.errorbar(
                row.speedup.mean,
                y,
                xerr=row.speedup.std or 0.0,
                yerr=yerr,
                fmt=markers.get(row.family, "o"),
                capsize=3,
                label=row.tag + (" (identical to baseline)" if lossless else ""),
            )
        ax.axvline(1.0, color="grey", lw=0.8, ls="--")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_xlabel("wall-clock speedup vs full-step baseline")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    rows_of_legend = (len(labels) + 2) // 3
    fig.tight_layout(rect=(0, min(0.45, 0.035 * rows_of_legend + 0.02), 1, 1))
    return save_figure(fig, path)
