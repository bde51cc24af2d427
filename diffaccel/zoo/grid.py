"""Sample grids for the README: one row per class, a class label on the left, nearest-neighbour upscaled.

``python -m diffaccel.zoo.grid <name> [--out PATH] [--per-class N] [--steps S] [--seed K]`` writes
``docs/zoo/<name>.png`` by default.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)


def _as_uint8_hwc(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def image_grid(
    rows: Sequence[Sequence],
    row_labels: Sequence[str] | None = None,
    scale: int = 4,
    padding: int = 2,
    label_width: int = 80,
    background: int = 255,
) -> Image.Image:
    """Tile ``rows`` (lists of images: PIL, ``uint8`` or float ``[0, 1]`` HWC arrays) into one RGB image.

    Every image is upscaled ``scale`` times with nearest-neighbour (so pixels stay visible), separated by
    ``padding`` pixels; ``row_labels`` are written in a left margin of ``label_width`` pixels.
    """
    tiles = [[_as_uint8_hwc(image) for image in row] for row in rows]
    height, width = tiles[0][0].shape[:2]
    tile_h, tile_w = height * scale, width * scale
    columns = max(len(row) for row in tiles)
    margin = label_width if row_labels else 0
    canvas = Image.new(
        "RGB",
        (margin + columns * (tile_w + padding) + padding, len(tiles) * (tile_h + padding) + padding),
        (background,) * 3,
    )
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(tiles):
        top = padding + r * (tile_h + padding)
        if row_labels:
            draw.text((4, top + tile_h // 2 - 5), str(row_labels[r]), fill=(0, 0, 0))
        for c, tile in enumerate(row):
            if tile.shape[:2] != (height, width):
                raise ValueError(f"all images must be {height}x{width}, got {tile.shape[:2]}")
            picture = Image.fromarray(tile).resize((tile_w, tile_h), Image.NEAREST)
            canvas.paste(picture, (margin + padding + c * (tile_w + padding), top))
    return canvas


def render_zoo_grid(
    name: str,
    per_class: int = 8,
    num_inference_steps: int | None = None,
    seed: int = 0,
    scale: int | None = None,
) -> Image.Image:
    """Sample ``per_class`` images of every class of zoo model ``name`` (one batched call, seeded) as a grid."""
    from . import load

    pipe = load(name)
    pipe.set_progress_bar_config(disable=True)
    labels = torch.arange(pipe.num_classes).repeat_interleave(per_class)
    kwargs = {} if num_inference_steps is None else {"num_inference_steps": num_inference_steps}
    images = pipe(
        class_labels=labels, generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **kwargs
    ).images
    rows = [list(images[i * per_class : (i + 1) * per_class]) for i in range(pipe.num_classes)]
    if scale is None:
        scale = max(1, 96 // images.shape[1])
    return image_grid(rows, row_labels=list(pipe.class_names), scale=scale)


def main(argv: list[str] | None = None) -> int:
    from . import names

    parser = argparse.ArgumentParser(prog="python -m diffaccel.zoo.grid", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=names())
    parser.add_argument("--out", help="PNG path (default docs/zoo/<name>.png)")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--steps", type=int, help="num_inference_steps (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    out = Path(args.out or f"docs/zoo/{args.name}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    render_zoo_grid(args.name, per_class=args.per_class, num_inference_steps=args.steps, seed=args.seed).save(out)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
