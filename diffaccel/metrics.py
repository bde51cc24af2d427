"""Fidelity of an accelerated run to the full-step run of the same seed and conditioning: PSNR, SSIM, LPIPS.

Conventions (what every function here expects and why):

- An *image* is converted by :func:`to_float_image` to ``float64`` ``(H, W, C)`` in ``[0, 1]``. Accepted inputs:
  ``PIL.Image``; ``uint8`` arrays (divided by 255); float arrays ``(H, W)`` or ``(H, W, C)`` in ``[0, 1]`` (the
  diffusers ``output_type="np"`` layout); torch tensors ``(C, H, W)`` in ``[0, 1]`` (``output_type="pt"``).
  Float values outside ``[0, 1]`` are an error rather than a silently wrong ``data_range``.
- The *reference* is always the full-step output; the *test* is the accelerated output.
- PSNR and SSIM use scikit-image with ``data_range=1.0`` (the images' range, not their observed extremes).
- SSIM uses scikit-image's defaults (uniform 7x7 window, sample covariance, ``K1=0.01, K2=0.03``); on images
  smaller than 7 pixels the window shrinks to the largest odd size that fits (at least 3).
- LPIPS (Zhang et al. 2018, v0.1 linear heads on AlexNet) is optional: it needs the ``lpips`` package
  (``pip install diffaccel[lpips]``) and the torchvision AlexNet weights file ``alexnet-owt-7be5be79.pth`` on
  disk. diffaccel checks for the file before constructing anything and never downloads it; without it, LPIPS is
  ``None`` and :func:`lpips_status` says which file to put where. A randomly initialised backbone is never used.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core.extras import require

_skimage_metrics = require("skimage.metrics", "compare")
peak_signal_noise_ratio = _skimage_metrics.peak_signal_noise_ratio
structural_similarity = _skimage_metrics.structural_similarity

logger = logging.getLogger(__name__)

DATA_RANGE = 1.0
SSIM_DEFAULT_WIN_SIZE = 7
LPIPS_BACKBONE_FILENAME = "alexnet-owt-7be5be79.pth"
LPIPS_BACKBONE_ENV = "DIFFACCEL_LPIPS_BACKBONE"
# AlexNet's first layers collapse inputs below this side to nothing useful; smaller images are upsampled (ours).
LPIPS_MIN_SIDE = 64


# --------------------------------------------------------------------------------------------------- conversion
def to_float_image(image: Any) -> np.ndarray:
    """``image`` as ``float64`` ``(H, W, C)`` in ``[0, 1]`` (see the module docstring for accepted layouts)."""
    if hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray):  # PIL.Image
        image = np.asarray(image)
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch.Tensor, (C, H, W)
        tensor = image.detach().cpu().float()
        if tensor.ndim != 3:
            raise ValueError(f"a tensor image must be (C, H, W), got shape {tuple(tensor.shape)}")
        image = tensor.permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"an image must be (H, W) or (H, W, C), got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == bool or not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("image contains NaN or inf")
    low, high = float(array.min()), float(array.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"float images must lie in [0, 1] (data_range=1), got values in [{low:.4g}, {high:.4g}]")
    return np.clip(array, 0.0, 1.0)


def _pair(reference: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    reference, test = to_float_image(reference), to_float_image(test)
    if reference.shape != test.shape:
        raise ValueError(f"reference and test images differ in shape: {reference.shape} vs {test.shape}")
    return reference, test


# --------------------------------------------------------------------------------------------------- PSNR / SSIM
def psnr(reference: Any, test: Any) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)`` for ``[0, 1]`` images; ``inf`` when identical."""
    reference, test = _pair(reference, test)
    if np.array_equal(reference, test):
        return math.inf
    return float(peak_signal_noise_ratio(reference, test, data_range=DATA_RANGE))


def ssim_window_size(height: int, width: int) -> int:
    """scikit-image's default 7, or the largest odd window that fits a smaller image (at least 3)."""
    side = min(height, width)
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    return min(SSIM_DEFAULT_WIN_SIZE, side if side % 2 == 1 else side - 1)


def ssim(reference: Any, test: Any) -> float:
    """Mean structural similarity (Wang et al. 2004) over channels, scikit-image defaults, ``data_range=1``."""
    reference, test = _pair(reference, test)
    win_size = ssim_window_size(*reference.shape[:2])
    return float(structural_similarity(reference, test, data_range=DATA_RANGE, channel_axis=-1, win_size=win_size))


# --------------------------------------------------------------------------------------------------- LPIPS
def lpips_backbone_candidates() -> list[Path]:
    """Where the AlexNet weights are looked for, in order: ``$DIFFACCEL_LPIPS_BACKBONE`` (a file, or a folder
    holding ``alexnet-owt-7be5be79.pth``), then torchvision's cache ``torch.hub.get_dir()/checkpoints``."""
    import torch

    candidates = []
    override = os.environ.get(LPIPS_BACKBONE_ENV)
    if override:
        path = Path(override).expanduser()
        candidates.append(path / LPIPS_BACKBONE_FILENAME if path.is_dir() else path)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILENAME)
    return candidates


def find_lpips_backbone() -> Path | None:
    """The first existing file among :func:`lpips_backbone_candidates`, or ``None``. Only looks at the disk."""
    for path in lpips_backbone_candidates():
        if path.is_file():
            return path
    return None


def lpips_status() -> tuple[bool, str]:
    """``(available, message)`` for LPIPS, decided without constructing a network or touching the network.

    The backbone file is checked first, so a missing file is reported even where ``lpips`` is not installed.
    """
    import importlib.util

    backbone = find_lpips_backbone()
    if backbone is None:
        folder = lpips_backbone_candidates()[-1].parent
        return False, (
            f"LPIPS unavailable: the AlexNet backbone weights were not found locally and diffaccel never downloads "
            f"them. Put the torchvision file '{LPIPS_BACKBONE_FILENAME}' (AlexNet IMAGENET1K_V1, about 233 MB) in "
            f"'{folder}' or set {LPIPS_BACKBONE_ENV} to its path. LPIPS is reported as null until then."
        )
    missing = [name for name in ("lpips", "torchvision") if importlib.util.find_spec(name) is None]
    if missing:
        return False, (
            f"LPIPS unavailable: found the backbone at '{backbone}' but the package(s) {', '.join(missing)} are not "
            f"installed; install them with `pip install 'diffaccel[lpips]'`."
        )
    return True, f"LPIPS (AlexNet, v0.1 linear heads) with backbone weights from '{backbone}'"


def alexnet_features_to_lpips_keys(lpips_net_keys: Iterable[str]) -> dict[str, str]:
    """Map the parameter names of ``lpips.pretrained_networks.alexnet`` (``slice<k>.<i>.<param>``, where ``<i>`` is
    the index in torchvision's ``alexnet().features``) to the checkpoint's names (``features.<i>.<param>``)."""
    mapping = {}
    for key in lpips_net_keys:
        slice_name, index, param = key.split(".", 2)
        if not slice_name.startswith("slice") or not index.isdigit():
            raise ValueError(f"unexpected LPIPS AlexNet parameter name {key!r}")
        mapping[key] = f"features.{index}.{param}"
    return mapping


class LPIPSMetric:
    """LPIPS with real AlexNet weights, or an explicit "unavailable" object; never a random backbone.

    The ``lpips`` network is built with ``pnet_rand=True`` (so torchvision never tries to download), and then every
    backbone parameter is overwritten from the local AlexNet file; if any parameter is missing or mis-shaped the
    metric raises instead of scoring with random features. The linear heads are the v0.1 files in the lpips wheel.
    """

    def __init__(self, device: str = "cpu", min_side: int = LPIPS_MIN_SIDE):
        self.available, self.message = lpips_status()
        self.device, self.min_side = device, min_side
        self._model = None
        if not self.available:
            logger.warning(self.message)
            return
        self._model = self._build(find_lpips_backbone(), device)

    @staticmethod
    def _build(backbone: Path, device: str):
        import lpips
        import torch

        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        checkpoint = torch.load(backbone, map_location="cpu", weights_only=True)
        net_state = model.net.state_dict()
        mapping = alexnet_features_to_lpips_keys(net_state)
        loaded = {}
        for lpips_key, checkpoint_key in mapping.items():
            if checkpoint_key not in checkpoint:
                raise KeyError(f"{backbone} has no tensor {checkpoint_key!r}; is it torchvision's AlexNet checkpoint?")
            tensor = checkpoint[checkpoint_key]
            if tensor.shape != net_state[lpips_key].shape:
                raise ValueError(
                    f"{backbone}: {checkpoint_key} has shape {tuple(tensor.shape)}, "
                    f"expected {tuple(net_state[lpips_key].shape)}"
                )
            loaded[lpips_key] = tensor
        model.net.load_state_dict(loaded, strict=True)
        return model.eval().requires_grad_(False).to(device)

    def __call__(self, reference: Any, test: Any) -> float | None:
        """LPIPS distance (lower is closer), or ``None`` when unavailable."""
        if self._model is None:
            return None
        import torch
        import torch.nn.functional as F

        reference, test = _pair(reference, test)
        if reference.shape[-1] == 1:
            reference, test = np.repeat(reference, 3, axis=-1), np.repeat(test, 3, axis=-1)
        batch = torch.from_numpy(np.stack([reference, test])).permute(0, 3, 1, 2).float().to(self.device)
        short_side = min(batch.shape[-2:])
        if self.min_side and short_side < self.min_side:
            scale = self.min_side / short_side
            batch = F.interpolate(batch, scale_factor=scale, mode="bilinear", align_corners=False)
        with torch.no_grad():
            return float(self._model(batch[:1], batch[1:], normalize=True).item())


_LPIPS_CACHE: dict[str, LPIPSMetric] = {}


def get_lpips(device: str = "cpu") -> LPIPSMetric:
    """A shared :class:`LPIPSMetric` per device (constructing one loads a 233 MB file)."""
    if device not in _LPIPS_CACHE:
        _LPIPS_CACHE[device] = LPIPSMetric(device)
    return _LPIPS_CACHE[device]


# --------------------------------------------------------------------------------------------------- images
@dataclass
class ImageScores:
    """Scores of one test image against its full-step reference; ``lpips`` is ``None`` when unavailable."""

    psnr: float
    ssim: float
    lpips: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def compare_images(reference: Any, test: Any, lpips: LPIPSMetric | bool | None = None) -> ImageScores:
    """PSNR, SSIM and (if ``lpips`` is a metric, or ``True`` for :func:`get_lpips`) LPIPS of one pair."""
    metric = get_lpips() if lpips is True else (lpips or None)
    return ImageScores(
        psnr=psnr(reference, test), ssim=ssim(reference, test), lpips=metric(reference, test) if metric else None
    )


def compare_image_batches(
    references: Sequence[Any], tests: Sequence[Any], lpips: LPIPSMetric | bool | None = None
) -> list[ImageScores]:
    """:func:`compare_images` for matching sequences (for example two ``.images`` outputs of the same seeds)."""
    if len(references) != len(tests):
        raise ValueError(f"{len(references)} reference images but {len(tests)} test images")
    metric = get_lpips() if lpips is True else (lpips or None)
    return [compare_images(r, t, metric) for r, t in zip(references, tests)]


@dataclass
class Spread:
    """Mean and spread of one score over runs. ``inf`` values (identical images) make ``mean`` inf, as they
    should: the run is lossless. ``None`` values (metric unavailable) are dropped; all ``None`` gives ``None``."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    count: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def spread(values: Iterable[float | None]) -> Spread:
    present = [float(v) for v in values if v is not None]
    if not present:
        return Spread(None, None, None, None, 0)
    array = np.asarray(present, dtype=np.float64)
    if np.isinf(array).any():
        finite = array[np.isfinite(array)]
        std = float(finite.std()) if finite.size == array.size else math.nan
        return Spread(float(array.mean()), std, float(array.min()), float(array.max()), len(present))
    return Spread(float(array.mean()), float(array.std()), float(array.min()), float(array.max()), len(present))


# --------------------------------------------------------------------------------------------------- video
@dataclass
class VideoScores:
    """Scores of a test video against its full-step reference.

    ``psnr`` / ``ssim`` / ``lpips`` are means over frames of the per-frame scores (``*_frames``).
    ``temporal_error`` is our temporal-consistency figure: the mean absolute difference between the two videos'
    frame-to-frame changes, ``mean_t mean_pixels |(test[t+1] - test[t]) - (ref[t+1] - ref[t])|`` in ``[0, 1]``
    image units (0: the test changes from frame to frame exactly as the reference does). It catches flicker or
    frozen motion that per-frame scores average away; ``None`` for a single frame.
    """

    psnr: float
    ssim: float
    lpips: float | None
    temporal_error: float | None
    psnr_frames: list[float] = field(default_factory=list)
    ssim_frames: list[float] = field(default_factory=list)
    lpips_frames: list[float | None] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def temporal_error(reference_frames: Sequence[Any], test_frames: Sequence[Any]) -> float | None:
    """Mean absolute difference of consecutive-frame differences (see :class:`VideoScores`)."""
    if len(reference_frames) != len(test_frames):
        raise ValueError(f"{len(reference_frames)} reference frames but {len(test_frames)} test frames")
    if len(reference_frames) < 2:
        return None
    reference = np.stack([to_float_image(f) for f in reference_frames])
    test = np.stack([to_float_image(f) for f in test_frames])
    if reference.shape != test.shape:
        raise ValueError(f"reference and test videos differ in shape: {reference.shape} vs {test.shape}")
    return float(np.abs(np.diff(test, axis=0) - np.diff(reference, axis=0)).mean())


def compare_videos(
    reference_frames: Sequence[Any], test_frames: Sequence[Any], lpips: LPIPSMetric | bool | None = None
) -> VideoScores:
    """Per-frame PSNR / SSIM / LPIPS means plus :func:`temporal_error`. Frames: any layout :func:`to_float_image`
    accepts, e.g. a ``(T, H, W, C)`` array from a diffusers video pipeline with ``output_type="np"``."""
    frames = compare_image_batches(list(reference_frames), list(test_frames), lpips)
    if not frames:
        raise ValueError("videos have no frames")
    lpips_frames = [f.lpips for f in frames]
    return VideoScores(
        psnr=float(np.mean([f.psnr for f in frames])),
        ssim=float(np.mean([f.ssim for f in frames])),
        lpips=None if any(v is None for v in lpips_frames) else float(np.mean(lpips_frames)),
        temporal_error=temporal_error(reference_frames, test_frames),
        psnr_frames=[f.psnr for f in frames],
        ssim_frames=[f.ssim for f in frames],
        lpips_frames=lpips_frames,
    )


__all__ = [
    "DATA_RANGE",
    "LPIPS_BACKBONE_ENV",
    "LPIPS_BACKBONE_FILENAME",
    "ImageScores",
    "LPIPSMetric",
    "Spread",
    "VideoScores",
    "compare_image_batches",
    "compare_images",
    "compare_videos",
    "find_lpips_backbone",
    "get_lpips",
    "lpips_backbone_candidates",
    "lpips_status",
    "psnr",
    "spread",
    "ssim",
    "ssim_window_size",
    "temporal_error",
    "to_float_image",
]
