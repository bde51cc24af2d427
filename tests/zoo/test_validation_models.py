"""The validation zoo models (``flux-photos-b``, ``pixart-photos``): committed like the others, reproducible by their
recipe, of reasonable quality, and accelerated through the same adapters as the tuning models.

Nothing is tuned on these two; they exist so that presets chosen on ``flux-photos`` and ``wan-clips`` are also
reported on models they were not chosen on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffaccel
from diffaccel import zoo
from diffaccel.zoo import flux_photos, pixart_photos
from diffaccel.zoo.train import recipe_class, train
from diffaccel.zoo.weights_io import verify_manifest

VALIDATION = ["flux-photos-b", "pixart-photos"]


def _gen(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


@pytest.fixture(scope="module")
def pipes():
    loaded = {name: zoo.load(name) for name in VALIDATION}
    for pipe in loaded.values():
        pipe.set_progress_bar_config(disable=True)
    return loaded


def test_flux_photos_b_recipe_is_flux_photos_with_seed_1_and_2400_steps(tmp_path):
    """The b recipe must train exactly what ``flux-photos --seed 1 --steps 2400`` trains (its weights were made
    that way): same data, hyper-parameters and random draws. Checked byte for byte on a 2-step run of each."""
    b, base = recipe_class("flux-photos-b")(), recipe_class("flux-photos")()
    base.seed, base.steps = 1, 2400  # what the CLI overrides do, after the recipe is built
    assert (b.name, b.seed, b.steps) == ("flux-photos-b", 1, 2400)
    for attribute in ("batch_size", "learning_rate", "warmup_steps", "ema_decay", "label_dropout", "data_seed"):
        assert getattr(b, attribute) == getattr(base, attribute), attribute
    assert torch.equal(b.samples, base.samples) and torch.equal(b.labels, base.labels)
    b.steps = base.steps = 2
    train(b, tmp_path / "b")
    train(base, tmp_path / "base")
    written = (tmp_path / "b" / "flux-photos-b", tmp_path / "base" / "flux-photos")
    for file in ("model.safetensors", "config.json"):
        assert (written[0] / file).read_bytes() == (written[1] / file).read_bytes(), file


@pytest.mark.parametrize("name", VALIDATION)
def test_committed_weights_match_their_manifest_with_a_quality_score(name):
    manifest = verify_manifest(name)
    assert manifest["name"] == name
    assert manifest["command"] == f"python -m diffaccel.zoo.train {name}"
    recipe = recipe_class(name)
    assert (manifest["seed"], manifest["steps"]) == (recipe.seed, recipe.steps)
    # nearest-photo accuracy at the default guidance scale (chance: 1/8)
    assert manifest["metrics"]["photo_accuracy"] >= 0.9


@pytest.mark.parametrize("name", VALIDATION)
def test_loads_and_is_deterministic(pipes, name):
    pipe = pipes[name]
    first = pipe(num_inference_steps=3, generator=_gen(0), output_type="np").images
    assert first.shape == (pipe.num_classes, 32, 32, 3)
    assert np.array_equal(first, pipe(num_inference_steps=3, generator=_gen(0), output_type="np").images)
    assert not np.array_equal(first, pipe(num_inference_steps=3, generator=_gen(1), output_type="np").images)
    fresh = zoo.load(name)
    fresh.set_progress_bar_config(disable=True)
    assert np.array_equal(fresh(num_inference_steps=3, generator=_gen(0), output_type="np").images, first)


def test_flux_photos_b_is_a_different_model_of_the_same_class(pipes):
    b = pipes["flux-photos-b"]
    assert type(b) is flux_photos.FluxPhotosPipeline
    a = zoo.load("flux-photos").transformer
    assert a.config == b.transformer.config
    assert not torch.equal(a.proj_out.weight, b.transformer.proj_out.weight)


def test_pixart_doubled_batch_guidance_matches_separate_calls(pipes):
    """One doubled batch ``[cond; uncond]`` per step (as ``PixArtAlphaPipeline``) equals two separate calls
    combined by hand with the scheduler stepped by hand."""
    from diffusers import DDIMScheduler

    pipe, steps, scale, labels = pipes["pixart-photos"], 4, 2.5, torch.tensor([1, 6])
    out = pipe(
        class_labels=labels, num_inference_steps=steps, guidance_scale=scale, generator=_gen(5), output_type="pt"
    ).images
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    x = torch.randn((2, 3, 32, 32), generator=_gen(5))
    null = torch.full_like(labels, pipe.num_classes)

    def predict(x, t, y):
        tokens, pooled = pipe.class_embedder(y)
        assert pooled is None  # PixArt has no pooled prompt vector
        return pipe.transformer(
            x, encoder_hidden_states=tokens, timestep=torch.full((2,), int(t)), added_cond_kwargs={}
        ).sample

    with torch.no_grad():
        for t in scheduler.timesteps:
            v_cond, v_uncond = predict(x, t, labels), predict(x, t, null)
            x = scheduler.step(v_uncond + scale * (v_cond - v_uncond), t, x).prev_sample
    torch.testing.assert_close(out, (x / 2 + 0.5).clamp(0, 1), atol=2e-5, rtol=0)


@pytest.mark.parametrize("granularity", ["stack", "modules"])
def test_pixart_adapter_attaches_every_step_is_bit_identical_and_interval_skips(pipes, granularity):
    pipe = pipes["pixart-photos"]
    kwargs = dict(class_labels=[0, 3], num_inference_steps=6, output_type="pt")
    reference = pipe(generator=_gen(2), **kwargs).images
    diffaccel.wrap(pipe, "taylorseer", interval=1, granularity=granularity)
    try:
        assert torch.equal(pipe(generator=_gen(2), **kwargs).images, reference)
        assert diffaccel.summary(pipe).computed_fraction == 1.0
    finally:
        diffaccel.unwrap(pipe)
    diffaccel.wrap(pipe, "taylorseer", interval=3, warmup=1, granularity=granularity)
    try:
        skipped = pipe(generator=_gen(2), **kwargs).images
        assert diffaccel.summary(pipe).full_steps < 6
        assert not torch.equal(skipped, reference)
    finally:
        diffaccel.unwrap(pipe)
    assert torch.equal(pipe(generator=_gen(2), **kwargs).images, reference)


def test_pixart_transformer_is_the_recipe_architecture(pipes):
    transformer = pipes["pixart-photos"].transformer
    assert {k: transformer.config[k] for k in pixart_photos.TRANSFORMER_CONFIG} == pixart_photos.TRANSFORMER_CONFIG
