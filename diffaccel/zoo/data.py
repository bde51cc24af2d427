"""Training data for the reference zoo, taken only from files that ship inside installed wheels.

Nothing here downloads: scikit-learn's ``load_digits`` and ``load_sample_images`` and the scikit-image photos
listed in :data:`PHOTO_SOURCES` are read from the package directories (``skimage.data`` items that are fetched
with pooch are deliberately not used).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.extras import require

DIGIT_CLASS_NAMES = tuple(str(d) for d in range(10))

# class name -> (package, item). Every item is a file inside the installed wheel (checked: no pooch fetch).
PHOTO_SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut"),
    "camera": ("skimage", "camera"),
    "coffee": ("skimage", "coffee"),
    "chelsea": ("skimage", "chelsea"),
    "rocket": ("skimage", "rocket"),
    "coins": ("skimage", "coins"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}
PHOTO_CLASS_NAMES = tuple(PHOTO_SOURCES)


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 scikit-learn digits as ``(images, labels)``: images ``(N, 1, 8, 8)`` float32 in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return images, labels


def digits_split(test_fraction: float = 0.2, seed: int = 0):
    """Deterministic train/test split of the digits: ``(x_train, y_train, x_test, y_test)``."""
    images, labels = load_digits_tensors()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def load_photo(name: str) -> np.ndarray:
    """One of :data:`PHOTO_SOURCES` as an RGB ``uint8`` array (greyscale photos are repeated to 3 channels)."""
    if name not in PHOTO_SOURCES:
        raise KeyError(f"unknown photo {name!r}; available: {', '.join(PHOTO_SOURCES)}")
    package, item = PHOTO_SOURCES[name]
    if package == "skimage":
        image = getattr(require("skimage.data", "zoo"), item)()
    else:
        from sklearn.datasets import load_sample_image

        image = load_sample_image(item)
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def downscale_short_side(image: np.ndarray, short_side: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, h, w)`` float in [0, 1] with the short side resized to ``short_side`` (antialiased)."""
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
    height, width = tensor.shape[-2:]
    scale = short_side / min(height, width)
    size = (max(short_side, round(height * scale)), max(short_side, round(width * scale)))
    return F.interpolate(tensor[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def photo_training_samples(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo models' training set: 512 crops per photo (`photo_crop_bank`) scaled to the models' [-1, 1]."""
    images, labels = photo_crop_bank(PHOTO_CLASS_NAMES, crops_per_class=512, size=size, seed=seed)
    return images * 2 - 1, labels


def photo_crop_bank(
    names: tuple[str, ...] = PHOTO_CLASS_NAMES,
    crops_per_class: int = 512,
    size: int = 32,
    min_fraction: float = 0.8,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random square crops of each photo, resized to ``size`` x ``size``: ``(images (N,3,size,size) in [0,1], labels)``.

    A crop's side is a uniform fraction in ``[min_fraction, 1]`` of the photo's short side at a uniform position,
    so every crop shows a large, recognisable part of its photo (the distribution the zoo models learn). The first
    crop of every class is the centred full short-side square. Work happens on a 4x-oversampled downscale so that
    building thousands of crops takes well under a second.
    """
    rng = np.random.default_rng(seed)
    images, labels = [], []
    work_side = 4 * size
    for class_id, name in enumerate(names):
        photo = downscale_short_side(load_photo(name), work_side)
        height, width = photo.shape[-2:]
        crops = []
        for index in range(crops_per_class):
            if index == 0:
                side = work_side
                top, left = (height - side) // 2, (width - side) // 2
            else:
                side = int(round(rng.uniform(min_fraction, 1.0) * work_side))
                top = int(rng.integers(0, height - side + 1))
                left = int(rng.integers(0, width - side + 1))
            crops.append(photo[:, top : top + side, left : left + side][None])
        resized = [
            F.interpolate(c, size=(size, size), mode="bilinear", antialias=True, align_corners=False) for c in crops
        ]
        images.append(torch.cat(resized).clamp(0, 1))
        labels.append(torch.full((crops_per_class,), class_id, dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)
