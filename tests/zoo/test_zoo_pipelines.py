"""Zoo pipelines load from the committed safetensors, are deterministic, and sample what their docs say.

Reference loops here are written independently of the pipelines (hand DDIM with the cosine schedule, hand Euler
on the Flux sigmas, separate cond/uncond calls), so a wrong schedule, null class or guidance batch fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffaccel import zoo
from diffaccel.zoo import flux_photos
from diffaccel.zoo.weights_io import verify_manifest, weights_dir

BUILTIN = ["flux-photos", "dit-digits", "unet-photos"]


class _Pipes(dict):
    """Loads each zoo pipeline once per module, on first use."""

    def __missing__(self, name):
        pipe = zoo.load(name)
        pipe.set_progress_bar_config(disable=True)
        self[name] = pipe
        return pipe


@pytest.fixture(scope="module")
def pipes():
    return _Pipes()


def _gen(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


def test_committed_weights_match_manifest_and_fit_the_budget():
    for name in BUILTIN:
        manifest = verify_manifest(name)
        assert manifest["name"] == name and manifest["command"].startswith("python -m diffaccel.zoo.train")
        assert {"model.safetensors", "config.json"} <= set(manifest["sha256"])
        files = sorted(p.name for p in weights_dir(name).iterdir())
        assert all(f.endswith((".safetensors", ".json")) for f in files), files
    # The budget covers every zoo model shipped as package data, not only the image ones (45 MB since the two
    # validation models, flux-photos-b and pixart-photos, joined; 55 MB since the two policies went to n_emb 128,
    # 4.8 MB each; 65 MB since their full-attention twins joined; weights stay float32 so that their training
    # command reproduces them byte for byte).
    root = weights_dir(BUILTIN[0]).parent
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 65 * 2**20


@pytest.mark.parametrize("name", BUILTIN)
def test_default_call_is_one_sample_per_class_and_deterministic(pipes, name):
    pipe = pipes[name]
    first = pipe(num_inference_steps=2, generator=_gen(0), output_type="np").images
    again = pipe(num_inference_steps=2, generator=_gen(0), output_type="np").images
    other = pipe(num_inference_steps=2, generator=_gen(1), output_type="np").images
    assert first.shape[0] == pipe.num_classes and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    fresh = zoo.load(name)
    fresh.set_progress_bar_config(disable=True)
    assert np.array_equal(fresh(num_inference_steps=2, generator=_gen(0), output_type="np").images, first)


@pytest.mark.parametrize("name", BUILTIN)
def test_output_types_and_class_names_agree(pipes, name):
    pipe = pipes[name]
    labels = [1, 0]
    as_np = pipe(class_labels=labels, num_inference_steps=2, generator=_gen(3), output_type="np").images
    as_pt = pipe(class_labels=labels, num_inference_steps=2, generator=_gen(3), output_type="pt").images
    as_pil = pipe(class_labels=[pipe.class_names[i] for i in labels], num_inference_steps=2, generator=_gen(3)).images
    assert torch.equal(as_pt.permute(0, 2, 3, 1), torch.from_numpy(as_np))
    pil_array = np.stack([np.asarray(image) for image in as_pil]).reshape(as_np.shape)
    assert np.array_equal(pil_array, (as_np * 255).round().astype(np.uint8))
    with pytest.raises(ValueError, match="unknown class name"):
        pipe(class_labels="nope", num_inference_steps=1)
    with pytest.raises(ValueError, match="out of range"):
        pipe(class_labels=[pipe.num_classes], num_inference_steps=1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(num_inference_steps=0)


@pytest.mark.parametrize("name", BUILTIN)
def test_set_timesteps_is_called_once_per_call(pipes, name, monkeypatch):
    pipe = pipes[name]
    calls = []
    original = pipe.scheduler.set_timesteps
    monkeypatch.setattr(pipe.scheduler, "set_timesteps", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    pipe(class_labels=[0], num_inference_steps=3, generator=_gen())
    pipe(class_labels=[0], num_inference_steps=2, generator=_gen())
    assert len(calls) == 2


def _cosine_alphas_cumprod(num_train_timesteps=1000):
    """squaredcos_cap_v2 (Nichol & Dhariwal 2021): beta_i = min(1 - abar(i+1)/abar(i), 0.999)."""
    abar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = [
        min(1 - abar((i + 1) / num_train_timesteps) / abar(i / num_train_timesteps), 0.999)
        for i in range(num_train_timesteps)
    ]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0).float()


@pytest.mark.parametrize("name", ["dit-digits", "unet-photos"])
def test_doubled_batch_guidance_matches_hand_ddim_with_separate_calls(pipes, name):
    pipe, steps, scale, labels = pipes[name], 4, 3.0, torch.tensor([2, 5])
    out = pipe(
        class_labels=labels, num_inference_steps=steps, guidance_scale=scale, generator=_gen(7), output_type="pt"
    ).images

    model = pipe.transformer if name == "dit-digits" else pipe.unet
    size, channels = model.config.sample_size, model.config.in_channels
    x = torch.randn((2, channels, size, size), generator=_gen(7))
    abar = _cosine_alphas_cumprod()
    timesteps = [int(round(t)) - 1 for t in np.arange(1000, 0, -1000 / steps)]  # "trailing" spacing
    null = torch.full_like(labels, pipe.num_classes)

    def predict(x, t, y):
        return model(x, torch.full((x.shape[0],), t), class_labels=y).sample

    assert pipe.scheduler.config.prediction_type == "v_prediction"
    with torch.no_grad():
        for t in timesteps:
            v_cond, v_uncond = predict(x, t, labels), predict(x, t, null)
            v = v_uncond + scale * (v_cond - v_uncond)
            prev = t - 1000 // steps
            a_t, a_prev = abar[t], (abar[prev] if prev >= 0 else torch.tensor(1.0))
            # v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho 2022); DDIM (eta 0) with x0 clipped to [-1, 1]
            x0 = (a_t.sqrt() * x - (1 - a_t).sqrt() * v).clamp(-1, 1)
            eps = a_t.sqrt() * v + (1 - a_t).sqrt() * x
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    torch.testing.assert_close(out, (x / 2 + 0.5).clamp(0, 1), atol=2e-5, rtol=0)


def test_flux_two_call_guidance_matches_hand_euler_and_uses_cache_contexts(pipes, monkeypatch):
    pipe, steps, scale, labels = pipes["flux-photos"], 3, 2.5, torch.tensor([0, 6])
    contexts = []
    original = pipe.transformer.cache_context

    def recording(name):
        contexts.append(name)
        return original(name)

    monkeypatch.setattr(pipe.transformer, "cache_context", recording)
    out = pipe(
        class_labels=labels, num_inference_steps=steps, guidance_scale=scale, generator=_gen(11), output_type="pt"
    ).images
    assert contexts == ["cond", "uncond"] * steps
    contexts.clear()
    pipe(class_labels=labels, num_inference_steps=2, guidance_scale=1.0, generator=_gen(11))
    assert contexts == ["cond", "cond"]

    transformer, embedder = pipe.transformer, pipe.class_embedder
    x = flux_photos.pack_pixels(torch.randn((2, 3, 32, 32), generator=_gen(11)))
    img_ids = flux_photos.image_position_ids(8, 8)
    txt_ids = torch.zeros(embedder.config.text_tokens, 3)
    sigmas = [1 - i / steps for i in range(steps)] + [0.0]  # FluxPipeline: linspace(1, 1/N, N), then 0

    def velocity(x, sigma, y):
        tokens, pooled = embedder(y)
        return transformer(
            hidden_states=x,
            timestep=torch.full((2,), sigma),
            pooled_projections=pooled,
            encoder_hidden_states=tokens,
            txt_ids=txt_ids,
            img_ids=img_ids,
        ).sample

    with torch.no_grad():
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            v_cond, v_uncond = velocity(x, sigma, labels), velocity(x, sigma, torch.full_like(labels, pipe.num_classes))
            x = x + (sigma_next - sigma) * (v_uncond + scale * (v_cond - v_uncond))
    expected = (flux_photos.unpack_pixels(x, 32, 32) / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=0)


def test_pack_unpack_roundtrip_and_position_ids():
    images = torch.randn(2, 3, 32, 32)
    tokens = flux_photos.pack_pixels(images)
    assert tokens.shape == (2, 64, 48)
    # token (row 1, col 2) holds the 4x4 patch at pixels [4:8, 8:12], channel-major
    assert torch.equal(tokens[0, 1 * 8 + 2], images[0, :, 4:8, 8:12].reshape(-1))
    assert torch.equal(flux_photos.unpack_pixels(tokens, 32, 32), images)
    ids = flux_photos.image_position_ids(8, 8)
    assert ids[10].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("name", [*BUILTIN, "wan-clips"])
def test_components_rebuild_the_pipeline_as_diffusers_does(pipes, name):
    """The pipelines share one ``__init__`` behind their own signatures; diffusers reads those signatures to tell
    components from settings, so ``type(pipe)(**pipe.components, **settings)`` must rebuild the same sampler."""
    pipe = pipes[name]
    components = pipe.components
    assert set(components) == {"scheduler", *type(pipe).component_classes}
    settings = {key: value for key, value in pipe.config.items() if not key.startswith("_") and key not in components}
    rebuilt = type(pipe)(**components, **settings)
    rebuilt.set_progress_bar_config(disable=True)
    assert rebuilt.config == pipe.config
    kwargs = dict(class_labels=[1], num_inference_steps=2, output_type="pt")
    first, second = pipe(generator=_gen(3), **kwargs), rebuilt(generator=_gen(3), **kwargs)
    assert torch.equal(first[0], second[0])


def test_weights_folder_without_a_guidance_setting_takes_the_pipeline_default(tmp_path):
    """Folders written before ``default_guidance_scale`` was saved load with the pipeline's own default."""
    import shutil

    from diffaccel.zoo import dit_digits
    from diffaccel.zoo.weights_io import read_json, write_json

    folder = tmp_path / "dit-digits"
    shutil.copytree(weights_dir("dit-digits"), folder)
    config = read_json(folder / "config.json")
    del config["pipeline"]["default_guidance_scale"]
    write_json(folder / "config.json", config)
    assert dit_digits.load(folder).default_guidance_scale == dit_digits.DEFAULT_GUIDANCE_SCALE
