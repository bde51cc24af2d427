"""``wan-clips``: loads from its committed safetensors, samples like ``WanPipeline``, and is exact under TaylorSeer
with ``interval=1``.

The guidance reference below is a hand Euler loop on hand-computed Wan sigmas with separate cond / uncond calls,
written independently of the pipeline, so a wrong schedule, timestep scale, null class or guidance formula fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffaccel
from diffaccel import zoo
from diffaccel.zoo import wan_clips
from diffaccel.zoo.weights_io import read_json, verify_manifest, weights_dir

NAME = "wan-clips"
FRAMES, SIZE = wan_clips.NUM_FRAMES, wan_clips.FRAME_SIZE


def _gen(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


def _load():
    pipe = zoo.load(NAME)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return _load()


def test_registered_as_a_video_model_with_weights_matching_the_manifest():
    assert NAME in zoo.names() and zoo.entry(NAME).kind == "video"
    manifest = verify_manifest(NAME)
    assert manifest["command"] == "python -m diffaccel.zoo.train wan-clips" and manifest["seed"] == 0
    assert {"model.safetensors", "config.json"} <= set(manifest["sha256"])
    files = [p for p in weights_dir(NAME).iterdir() if p.is_file()]
    assert all(p.suffix in (".safetensors", ".json") for p in files)
    assert sum(p.stat().st_size for p in files) < 4 * 2**20  # the whole zoo's budget: tests/zoo/test_zoo_pipelines.py


def test_default_call_is_one_clip_per_class_and_deterministic(pipe):
    first = pipe(num_inference_steps=2, generator=_gen(0)).frames
    assert isinstance(first, np.ndarray) and first.dtype == np.float32
    assert first.shape == (pipe.num_classes, FRAMES, SIZE, SIZE, 3)  # WanPipeline's (B, F, H, W, C)
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.array_equal(pipe(num_inference_steps=2, generator=_gen(0)).frames, first)
    assert not np.array_equal(pipe(num_inference_steps=2, generator=_gen(1)).frames, first)
    assert np.array_equal(_load()(num_inference_steps=2, generator=_gen(0)).frames, first)
    # no guidance_scale: the one stored with the weights
    assert (
        pipe.default_guidance_scale
        == read_json(weights_dir(NAME) / "config.json")["pipeline"]["default_guidance_scale"]
    )
    explicit = pipe(num_inference_steps=2, guidance_scale=pipe.default_guidance_scale, generator=_gen(0)).frames
    assert np.array_equal(explicit, first)


def test_output_types_and_class_names_agree(pipe):
    labels = [3, 0]
    as_np = pipe(class_labels=labels, num_inference_steps=2, generator=_gen(3), output_type="np").frames
    as_pt = pipe(class_labels=labels, num_inference_steps=2, generator=_gen(3), output_type="pt").frames
    names = [pipe.class_names[i] for i in labels]
    as_pil = pipe(class_labels=names, num_inference_steps=2, generator=_gen(3), output_type="pil").frames
    assert as_pt.shape == (2, FRAMES, 3, SIZE, SIZE)  # WanPipeline's "pt" layout (B, F, C, H, W)
    assert torch.equal(as_pt.permute(0, 1, 3, 4, 2), torch.from_numpy(as_np))
    assert len(as_pil) == 2 and all(len(clip) == FRAMES for clip in as_pil)
    pil_array = np.stack([np.stack([np.asarray(frame) for frame in clip]) for clip in as_pil])
    assert np.array_equal(pil_array, (as_np * 255).round().astype(np.uint8))
    with pytest.raises(ValueError, match="unknown class name"):
        pipe(class_labels="nope", num_inference_steps=1)
    with pytest.raises(ValueError, match="out of range"):
        pipe(class_labels=[pipe.num_classes], num_inference_steps=1)
    with pytest.raises(ValueError, match="output_type"):
        pipe(class_labels=[0], num_inference_steps=1, output_type="latent")


def test_set_timesteps_is_called_once_per_call(pipe, monkeypatch):
    calls = []
    original = pipe.scheduler.set_timesteps
    monkeypatch.setattr(pipe.scheduler, "set_timesteps", lambda *a, **k: (calls.append(a or k), original(*a, **k))[1])
    pipe(class_labels=[0], num_inference_steps=3, generator=_gen())
    pipe(class_labels=[0], num_inference_steps=2, generator=_gen())
    assert len(calls) == 2


def _wan_sigmas(steps: int, shift: float) -> list[float]:
    """FlowMatchEulerDiscreteScheduler.set_timesteps(N) with num_train_timesteps=1000, static shift: N sigmas evenly
    spaced from 1 to the smallest training sigma (1/1000, itself shifted at construction), time-shifted
    s -> shift s / (1 + (shift - 1) s), then a final 0."""
    shifted = lambda s: shift * s / (1 + (shift - 1) * s)  # noqa: E731
    low = shifted(1 / 1000)
    return [shifted(1 - i * (1 - low) / (steps - 1)) for i in range(steps)] + [0.0]


def test_two_call_guidance_matches_hand_euler_and_uses_cache_contexts(pipe, monkeypatch):
    steps, scale, labels = 3, 2.5, torch.tensor([1, 6])
    contexts = []
    original = pipe.transformer.cache_context

    def recording(name, **step_keywords):
        contexts.append((name, step_keywords["step_index"]))
        return original(name, **step_keywords)

    monkeypatch.setattr(pipe.transformer, "cache_context", recording)
    out = pipe(
        class_labels=labels, num_inference_steps=steps, guidance_scale=scale, generator=_gen(11), output_type="pt"
    ).frames
    assert contexts == [(name, i) for i in range(steps) for name in ("cond", "uncond")]
    contexts.clear()
    pipe(class_labels=labels, num_inference_steps=2, guidance_scale=1.0, generator=_gen(11))
    assert contexts == [("cond", 0), ("cond", 1)]

    transformer, embedder = pipe.transformer, pipe.class_embedder
    x = torch.randn((2, 3, FRAMES, SIZE, SIZE), generator=_gen(11))
    sigmas = _wan_sigmas(steps, pipe.scheduler.config.shift)

    def velocity(x, sigma, y):
        return transformer(
            hidden_states=x, timestep=torch.full((2,), sigma * 1000), encoder_hidden_states=embedder(y)
        ).sample

    with torch.no_grad():
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            v_cond, v_uncond = velocity(x, sigma, labels), velocity(x, sigma, torch.full_like(labels, pipe.num_classes))
            x = x + (sigma_next - sigma) * (v_uncond + scale * (v_cond - v_uncond))
    expected = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_taylorseer_interval_one_is_bit_identical_and_sees_both_guidance_contexts():
    pipe = _load()
    kwargs = dict(class_labels=[0, 5], num_inference_steps=4, guidance_scale=3.0, output_type="pt")
    reference = pipe(generator=_gen(5), **kwargs).frames
    diffaccel.wrap(pipe, "taylorseer", interval=1)
    try:
        wrapped = pipe(generator=_gen(5), **kwargs).frames
        summary = diffaccel.summary(pipe)
    finally:
        diffaccel.unwrap(pipe)
    assert torch.equal(wrapped, reference)
    assert summary.contexts == ["cond", "uncond"]
    assert summary.steps == 4 and summary.full_steps == 4 and summary.computed_fraction == 1.0


def test_pan_clips_move_by_one_pixel_per_frame_in_their_direction():
    names = ("camera", "china")
    clips, labels, directions = wan_clips.pan_clip_bank(names, clips_per_class=12, seed=3)
    again = wan_clips.pan_clip_bank(names, clips_per_class=12, seed=3)
    assert clips.shape == (24, 3, FRAMES, SIZE, SIZE) and torch.equal(clips, again[0])
    assert labels.tolist() == [0] * 12 + [1] * 12 and torch.equal(directions, again[2])
    assert 0.0 <= clips.min() and clips.max() <= 1.0
    assert torch.equal(clips[:12, 0], clips[:12, 1])  # camera is greyscale
    steps = list(wan_clips.PAN_DIRECTIONS.values())
    for clip, direction in zip(clips, directions.tolist()):
        dy, dx = steps[direction]
        now, later = clip[:, :-1], clip[:, 1:]
        # content at (r, c) in frame f is at (r - dy, c - dx) in frame f + 1
        rows_now = slice(max(dy, 0), SIZE + min(dy, 0))
        cols_now = slice(max(dx, 0), SIZE + min(dx, 0))
        rows_later = slice(max(-dy, 0), SIZE + min(-dy, 0))
        cols_later = slice(max(-dx, 0), SIZE + min(-dx, 0))
        assert torch.equal(now[..., rows_now, cols_now], later[..., rows_later, cols_later])
        assert not torch.equal(now, later)
