"""The README grid layout, checked pixel by pixel on a hand-made case."""

from __future__ import annotations

import numpy as np

from diffaccel.zoo.grid import image_grid


def test_grid_layout_and_nearest_upscaling():
    dark = np.zeros((2, 3, 1), dtype=np.float32)
    light = np.ones((2, 3, 3), dtype=np.float32) * np.array([1.0, 0.5, 0.0], dtype=np.float32)
    grid = np.asarray(image_grid([[dark, light], [light]], row_labels=["a", "b"], scale=2, padding=1, label_width=10))
    # width: label margin 10 + 2 columns of (6 + 1) + 1; height: 2 rows of (4 + 1) + 1
    assert grid.shape == (11, 10 + 2 * 7 + 1, 3)
    assert (grid[1:5, 11:17] == 0).all()  # first tile, greyscale expanded to RGB
    assert (grid[1:5, 18:24] == [255, 128, 0]).all()  # second tile, scaled 2x
    assert (grid[6:10, 11:17] == [255, 128, 0]).all()  # second row
    assert (grid[6:10, 18:24] == 255).all()  # missing tile stays background
    assert (grid[0] == 255).all() and (grid[:, 17] == 255).all()  # padding lines
