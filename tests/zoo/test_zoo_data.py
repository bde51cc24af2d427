"""Zoo training data comes from files inside installed wheels and is deterministic."""

from __future__ import annotations

import os

import numpy as np
import skimage
import torch

from diffaccel.zoo import data


def test_photos_are_rgb_files_shipped_in_the_wheels():
    skimage_dir = os.path.join(os.path.dirname(skimage.__file__), "data")
    shipped = set(os.listdir(skimage_dir))
    for name, (package, item) in data.PHOTO_SOURCES.items():
        if package == "skimage":
            assert any(f.startswith(item + ".") for f in shipped), f"{item} is not a file in {skimage_dir}"
        photo = data.load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[-1] == 3
        assert min(photo.shape[:2]) >= 256


def test_crop_bank_is_deterministic_and_starts_with_the_centre_square():
    names = ("camera", "china")
    first, labels = data.photo_crop_bank(names, crops_per_class=3, size=16, seed=5)
    second, _ = data.photo_crop_bank(names, crops_per_class=3, size=16, seed=5)
    assert first.shape == (6, 3, 16, 16) and torch.equal(first, second)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert 0.0 <= first.min() and first.max() <= 1.0
    # camera is greyscale: all three channels equal.
    assert torch.equal(first[0, 0], first[0, 1])


def test_digits_split_is_a_fixed_partition():
    x_train, y_train, x_test, y_test = data.digits_split()
    assert len(y_train) + len(y_test) == 1797 and len(y_test) == 359
    assert x_train.shape[1:] == (1, 8, 8) and float(x_train.max()) == 1.0
    assert torch.equal(data.digits_split()[3], y_test)
