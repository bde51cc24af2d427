"""Scoring one run's output against the full-step output of the same seed and conditioning.

Thin glue over `diffaccel.metrics` (PSNR and SSIM with scikit-image, `data_range=1`; LPIPS only with the
real AlexNet weights on disk): it turns a pipeline output into arrays and averages per-image scores into the
per-run numbers of a record. Video outputs are scored per frame, with the temporal-consistency figure.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def output_array(output: Any) -> np.ndarray:
    """A pipeline output (`output_type="np"`) as float32: `(B, H, W, C)` images or `(B, F, H, W, C)` videos."""
    value = getattr(output, "images", None)
    if value is None:
        value = getattr(output, "frames", None)
    if value is None and isinstance(output, (tuple, list)):
        value = output[0]
    if value is None:
        raise TypeError(f"cannot find images or frames in a {type(output).__name__}")
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
        if value.ndim == 4 and value.shape[1] in (1, 3) and value.shape[-1] not in (1, 3):
            value = value.transpose(0, 2, 3, 1)
    elif isinstance(value, list):
        value = np.stack([np.asarray(v) for v in value])
        if value.dtype == np.uint8:
            value = value.astype(np.float32) / 255.0
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 3:  # (B, H, W) greyscale
        array = array[..., None]
    if array.ndim not in (4, 5):
        raise ValueError(f"unexpected output shape {array.shape}; expected (B, H, W, C) or (B, F, H, W, C)")
    return array


class Scorer:
    """PSNR / SSIM / LPIPS of test outputs against reference outputs.

    `lpips_message` says why LPIPS is null when it is (shown once by the CLI)."""

    def __init__(self, use_lpips: bool = True, device: str = "cpu"):
        from .. import metrics

        self._metrics = metrics
        available, message = metrics.lpips_status()
        self.lpips_message = message if not available else ""
        self.lpips = metrics.get_lpips(device) if (available and use_lpips) else None
        if not use_lpips:
            self.lpips_message = "LPIPS disabled (--no-lpips)"

    def score(self, reference: np.ndarray, test: np.ndarray) -> dict[str, Any]:
        if reference.shape != test.shape:
            raise ValueError(f"output shape {test.shape} differs from the baseline's {reference.shape}")
        m = self._metrics
        if reference.ndim == 5:
            videos = [m.compare_videos(list(r), list(t), self.lpips) for r, t in zip(reference, test)]
            per = {
                "psnr": [v.psnr for v in videos],
                "ssim": [v.ssim for v in videos],
                "lpips": [v.lpips for v in videos],
            }
            temporal = [v.temporal_error for v in videos if v.temporal_error is not None]
        else:
            scores = m.compare_image_batches(list(reference), list(test), self.lpips)
            per = {
                "psnr": [s.psnr for s in scores],
                "ssim": [s.ssim for s in scores],
                "lpips": [s.lpips for s in scores],
            }
            temporal = []
        result: dict[str, Any] = {}
        for name, values in per.items():
            result[name] = m.spread(values).mean
            result[f"{name}_images"] = [None if v is None else float(v) for v in values]
        result["temporal_error"] = float(np.mean(temporal)) if temporal else None
        return result
