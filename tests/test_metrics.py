"""diffaccel.metrics against hand-computed values (closed forms, not a second call of the same library)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from diffaccel import metrics


def _reference(shape=(16, 16, 3), seed=0):
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=shape)


def _checkerboard_signs(shape):
    rows, cols = np.indices(shape[:2])
    signs = np.where((rows + cols) % 2 == 0, 1.0, -1.0)
    return np.broadcast_to(signs[..., None], shape)


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    image = _reference()
    assert metrics.psnr(image, image.copy()) == math.inf
    assert metrics.ssim(image, image.copy()) == pytest.approx(1.0, abs=1e-12)
    scores = metrics.compare_images(image, image.copy())
    assert scores.psnr == math.inf and scores.ssim == pytest.approx(1.0) and scores.lpips is None


@pytest.mark.parametrize("amplitude", [0.1, 0.05, 0.01])
def test_known_noise_level_gives_its_psnr(amplitude):
    # +-amplitude on every pixel, no clipping (reference in [0.2, 0.8]): MSE = amplitude**2 exactly,
    # so PSNR = 10 log10(1 / amplitude**2) = -20 log10(amplitude) for data_range 1.
    reference = _reference()
    test = reference + amplitude * _checkerboard_signs(reference.shape)
    assert metrics.psnr(reference, test) == pytest.approx(-20 * math.log10(amplitude), abs=1e-9)


def test_uint8_pil_and_tensor_inputs_use_data_range_one():
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    test = np.clip(reference.astype(int) + rng.integers(-3, 4, size=reference.shape), 0, 255).astype(np.uint8)
    mse = np.mean((reference / 255.0 - test / 255.0) ** 2)
    expected = 10 * math.log10(1.0 / mse)
    assert metrics.psnr(reference, test) == pytest.approx(expected, abs=1e-9)
    assert metrics.psnr(Image.fromarray(reference), Image.fromarray(test)) == pytest.approx(expected, abs=1e-9)
    as_tensor = lambda a: torch.from_numpy(a / 255.0).permute(2, 0, 1)  # noqa: E731  (C, H, W) like output_type="pt"
    assert metrics.psnr(as_tensor(reference), as_tensor(test)) == pytest.approx(expected, abs=1e-6)


def test_ssim_of_constant_images_is_the_luminance_term():
    # Constant images: variances and covariance vanish, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 L)^2.
    a, b, c1 = 0.5, 0.6, (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    for shape in [(8, 8, 1), (32, 32, 3), (4, 5, 3)]:
        assert metrics.ssim(np.full(shape, a), np.full(shape, b)) == pytest.approx(expected, abs=1e-10)


def test_ssim_of_a_single_window_matches_the_formula():
    # A 7x7 image holds exactly one 7x7 window: SSIM is Wang et al.'s formula over the whole image, with
    # scikit-image's sample (N-1) covariance, averaged over channels.
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, size=(7, 7, 2))
    y = np.clip(x + rng.normal(0, 0.1, size=x.shape), 0, 1)
    c1, c2 = (0.01) ** 2, (0.03) ** 2
    values = []
    for ch in range(2):
        xs, ys = x[..., ch].ravel(), y[..., ch].ravel()
        mx, my = xs.mean(), ys.mean()
        vx, vy = xs.var(ddof=1), ys.var(ddof=1)
        cxy = ((xs - mx) * (ys - my)).sum() / (xs.size - 1)
        values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert metrics.ssim(x, y) == pytest.approx(np.mean(values), abs=1e-10)


def test_ssim_window_shrinks_to_odd_size_for_small_images():
    assert metrics.ssim_window_size(8, 8) == 7
    assert metrics.ssim_window_size(64, 32) == 7
    assert metrics.ssim_window_size(6, 9) == 5
    assert metrics.ssim_window_size(3, 3) == 3
    with pytest.raises(ValueError, match="at least 3x3"):
        metrics.ssim_window_size(2, 8)


def test_bad_inputs_are_errors():
    image = _reference()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.psnr(image, image * 255.0)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.ssim(image, image[:8])
    with pytest.raises(ValueError, match="NaN"):
        metrics.psnr(image, np.full_like(image, np.nan))


@pytest.fixture
def no_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv(metrics.LPIPS_BACKBONE_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(metrics, "_LPIPS_CACHE", {})
    # If anything tried to import lpips (i.e. construct a network) this would raise ImportError.
    monkeypatch.setitem(sys.modules, "lpips", None)
    return tmp_path / "hub" / "checkpoints"


def test_lpips_unavailable_names_the_file_and_folder(no_backbone):
    available, message = metrics.lpips_status()
    assert not available
    assert "alexnet-owt-7be5be79.pth" in message
    assert f"'{no_backbone}'" in message
    assert metrics.LPIPS_BACKBONE_ENV in message
    metric = metrics.LPIPSMetric()
    image = _reference()
    assert metric.available is False and metric(image, image) is None
    assert metrics.compare_images(image, image * 0.9, lpips=True).lpips is None


def test_lpips_backbone_found_via_env_but_package_missing(no_backbone, tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / metrics.LPIPS_BACKBONE_FILENAME).write_bytes(b"not checked here")
    monkeypatch.setenv(metrics.LPIPS_BACKBONE_ENV, str(folder))
    assert metrics.find_lpips_backbone() == folder / metrics.LPIPS_BACKBONE_FILENAME
    available, message = metrics.lpips_status()
    assert not available and "diffaccel[lpips]" in message and "lpips" in message
    assert metrics.LPIPSMetric()(_reference(), _reference()) is None


def test_lpips_backbone_in_torch_hub_cache_is_found(no_backbone):
    no_backbone.mkdir(parents=True)
    (no_backbone / metrics.LPIPS_BACKBONE_FILENAME).write_bytes(b"")
    assert metrics.find_lpips_backbone() == no_backbone / metrics.LPIPS_BACKBONE_FILENAME


def test_alexnet_checkpoint_keys_map_to_lpips_slices():
    mapping = metrics.alexnet_features_to_lpips_keys(["slice1.0.weight", "slice2.3.bias", "slice5.10.weight"])
    assert mapping == {
        "slice1.0.weight": "features.0.weight",
        "slice2.3.bias": "features.3.bias",
        "slice5.10.weight": "features.10.weight",
    }
    with pytest.raises(ValueError):
        metrics.alexnet_features_to_lpips_keys(["lin0.model.1.weight"])


def test_video_scores_per_frame_means_and_temporal_error():
    reference = [_reference(seed=s) for s in range(4)]
    # Same +-0.1 pattern on every frame: each frame has PSNR 20 dB and the motion is untouched.
    signs = _checkerboard_signs(reference[0].shape)
    shifted = [frame + 0.1 * signs for frame in reference]
    scores = metrics.compare_videos(reference, shifted)
    assert scores.psnr == pytest.approx(20.0, abs=1e-9)
    assert scores.psnr_frames == pytest.approx([20.0] * 4, abs=1e-9)
    assert scores.temporal_error == pytest.approx(0.0, abs=1e-12)
    assert scores.lpips is None
    # Flicker: +0.1 on odd frames only -> every frame difference is off by exactly 0.1 everywhere.
    flicker = [frame + (0.1 if t % 2 else 0.0) for t, frame in enumerate(reference)]
    assert metrics.temporal_error(reference, flicker) == pytest.approx(0.1, abs=1e-12)
    assert metrics.compare_videos(reference[:1], reference[:1]).temporal_error is None


def test_spread_handles_none_and_inf():
    s = metrics.spread([1.0, 2.0, None, 3.0])
    assert (s.mean, s.min, s.max, s.count) == (2.0, 1.0, 3.0, 3)
    assert s.std == pytest.approx(math.sqrt(2 / 3))
    assert metrics.spread([None, None]).mean is None
    assert metrics.spread([math.inf, 30.0]).mean == math.inf
