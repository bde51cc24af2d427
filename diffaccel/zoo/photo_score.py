"""An absolute score for the photo models: is a sample recognisably a crop of the photo that was asked for?

Each sample is matched to its nearest neighbour (Euclidean distance in RGB pixel space) among a fresh bank of
training-distribution crops of all photos (:func:`diffaccel.zoo.data.photo_crop_bank` with a different seed than
training); the score is the share of samples whose nearest crop comes from the requested photo. With eight
photos chance is 12.5%. It cannot tell a memorised crop from a novel one, which is fine for its purpose: catching
samples that look like the wrong photo or like no photo.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import PHOTO_CLASS_NAMES, photo_crop_bank

REFERENCE_SEED = 99


def nearest_photo(images, reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Class id of the nearest reference crop for each image (``(B, H, W, 3)`` numpy or ``(B, 3, H, W)`` tensor)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    images = images.float().cpu()
    bank, labels = reference or photo_crop_bank(
        PHOTO_CLASS_NAMES, crops_per_class=256, size=images.shape[-1], seed=REFERENCE_SEED
    )
    distances = torch.cdist(images.flatten(1), bank.flatten(1))
    return labels[distances.argmin(dim=1)]


def photo_accuracy(images, requested_labels, reference=None) -> float:
    requested = torch.as_tensor(requested_labels).reshape(-1).cpu()
    return (nearest_photo(images, reference) == requested).float().mean().item()


def sample_photo_accuracy(pipe, samples_per_class: int = 8, seed: int = 1234, **call_kwargs) -> float:
    """Generate ``samples_per_class`` crops of every photo with ``pipe`` and return :func:`photo_accuracy`."""
    labels = torch.arange(pipe.num_classes).repeat(samples_per_class)
    generator = torch.Generator("cpu").manual_seed(seed)
    images = pipe(class_labels=labels, generator=generator, output_type="pt", **call_kwargs).images
    return photo_accuracy(images, labels)


def evaluate_photo_pipeline(pipe, num_inference_steps: int, scales=(1.0, 2.0, 4.0)) -> dict:
    """Manifest metrics for a photo model: accuracy at the default guidance scale and at ``scales``."""
    pipe.set_progress_bar_config(disable=True)
    scales = sorted({*scales, pipe.default_guidance_scale})
    by_scale = {
        str(scale): sample_photo_accuracy(pipe, num_inference_steps=num_inference_steps, guidance_scale=scale)
        for scale in scales
    }
    return {
        "photo_accuracy": by_scale[str(pipe.default_guidance_scale)],
        "photo_accuracy_guidance_scale": pipe.default_guidance_scale,
        "photo_accuracy_definition": f"share of {8 * pipe.num_classes} samples (8 per photo, seed 1234, "
        f"{num_inference_steps} steps) whose nearest crop (RGB L2, crop bank seed {REFERENCE_SEED}) is from the requested photo",
        "photo_accuracy_by_guidance_scale": by_scale,
    }
