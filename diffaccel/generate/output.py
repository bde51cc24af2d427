"""Writing what a generation produced: PNG images, MP4 videos (imageio + ffmpeg), GIFs or PNG frames on request.

Arrays come from the pipelines with ``output_type="np"``: images ``(B, H, W, C)``, videos ``(B, F, H, W, C)``, floats
in [0, 1]. They are quantised once (round to nearest, like diffusers' ``numpy_to_pil``) and written as they are; a
batch of several (a zoo model asked for no class draws one sample per class) becomes ``<stem>_<i>`` files.
MP4 needs the ffmpeg binary that the ``imageio-ffmpeg`` package ships (``pip install "diffaccel[video]"``); without
it an MP4 request is an error naming the extra, never a silent switch to another format.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from ..core.extras import require

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("png",)
#: "png" for a video writes one PNG per frame into a folder
VIDEO_FORMATS = ("mp4", "gif", "png")
VIDEO_EXTRA_HINT = 'pip install "diffaccel[video]"  (or: pip install imageio-ffmpeg)'


class OutputError(ValueError):
    """The requested output cannot be written (unknown format, missing writer)."""


def formats_for(kind: str) -> tuple[str, ...]:
    return IMAGE_FORMATS if kind == "image" else VIDEO_FORMATS


def resolve_format(kind: str, requested: str | None, output: str | os.PathLike | None) -> str:
    """The output format: ``--format`` if given, else the output path's suffix, else PNG (images) / MP4 (videos).
    A ``--format`` that contradicts the path's suffix is an error rather than a file with a misleading name."""
    allowed = formats_for(kind)
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    fmt = (requested or suffix or allowed[0]).lower()
    if fmt not in allowed:
        raise OutputError(f"{kind} output format must be one of {', '.join(allowed)}, got {fmt!r}")
    if requested and suffix and suffix != fmt and not (kind == "video" and fmt == "png"):
        raise OutputError(f"--format {requested} contradicts the output file name {str(output)!r}")
    if fmt == "mp4":
        check_mp4_writer()
    return fmt


def check_mp4_writer() -> None:
    """Fail before generating when MP4 cannot be written."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise OutputError(
            "writing MP4 needs the 'video' extra (the ffmpeg binary of imageio-ffmpeg): "
            f"{VIDEO_EXTRA_HINT}. Or ask for another format explicitly: --format gif, or --format png for one PNG "
            "per frame."
        )


def to_uint8(array: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)


#: The extensions the saver writes. Only these count as a suffix: a default name such as
#: ``wan-tiny-taocache_threshold=0.05-seed0`` (a frames folder) has a dot that is not one.
MEDIA_SUFFIXES = (".png", ".mp4", ".gif")


def split_media_suffix(path: Path) -> tuple[Path, str]:
    """``path`` without its media extension, and that extension (``""`` when it has none)."""
    suffix = path.suffix if path.suffix.lower() in MEDIA_SUFFIXES else ""
    return (path.with_name(path.name[: -len(suffix)]) if suffix else path), suffix


def numbered(path: Path, count: int) -> list[Path]:
    """Where ``count`` outputs of one run go: ``path`` itself for one, ``<stem>_<i><suffix>`` for several (a
    prompt that names no class of a zoo model draws one sample per class)."""
    if count == 1:
        return [path]
    stem, suffix = split_media_suffix(path)
    return [stem.with_name(f"{stem.name}_{i}{suffix}") for i in range(count)]


def save_images(images: np.ndarray, path: str | os.PathLike) -> list[Path]:
    """``images`` ``(B, H, W, C)``: one PNG at ``path`` for a single image, ``<stem>_<i>.png`` for several."""
    iio = require("imageio.v3", "compare")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images)
    targets = numbered(path, len(pixels))
    for target, image in zip(targets, pixels):
        iio.imwrite(target, image[..., 0] if image.shape[-1] == 1 else image, extension=".png")
    return targets


def save_videos(videos: np.ndarray, path: str | os.PathLike, fmt: str, fps: int) -> list[Path]:
    """``videos`` ``(B, F, H, W, C)``, named as :func:`save_images` names images: one video at ``path``, several
    at ``<stem>_<i>.<fmt>`` (PNG frames: one folder per video). Returns every file written, in order."""
    path = Path(path)
    if fmt == "png":  # the frames of a video go to a folder named like the file would be, without its suffix
        path = split_media_suffix(path)[0]
    return [
        written
        for target, frames in zip(numbered(path, len(videos)), videos)
        for written in save_video(frames, target, fmt, fps)
    ]


def save_video(frames: np.ndarray, path: str | os.PathLike, fmt: str, fps: int) -> list[Path]:
    """``frames`` ``(F, H, W, C)`` (one video) as MP4 (H.264, yuv420p), GIF, or a folder of PNG frames."""
    imageio = require("imageio.v2", "compare")
    iio = require("imageio.v3", "compare")

    path = Path(path)
    pixels = to_uint8(frames)
    if fmt == "png":
        folder = split_media_suffix(path)[0]
        folder.mkdir(parents=True, exist_ok=True)
        targets = [folder / f"frame_{i:04d}.png" for i in range(len(pixels))]
        for target, frame in zip(targets, pixels):
            iio.imwrite(target, frame, extension=".png")
        return targets
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "mp4":
        check_mp4_writer()
        # macro_block_size=1: keep the exact size (H.264 with yuv420p still needs even sides; the pipelines'
        # sizes are multiples of 8 or 16)
        imageio.mimwrite(
            path,
            list(pixels),
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            quality=8,
            macro_block_size=1,
            pixelformat="yuv420p",
        )
    elif fmt == "gif":
        iio.imwrite(path, list(pixels), extension=".gif", duration=1000.0 / fps, loop=0)  # duration: ms per frame
    else:
        raise OutputError(f"unknown video format {fmt!r}; choose one of {', '.join(VIDEO_FORMATS)}")
    return [path]
