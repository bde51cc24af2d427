"""Real diffusers pipelines (FLUX, Wan, Stable Diffusion) assembled from tiny local components,
generating with `wrap(..., "taylorseer")`. Reference: the same pipeline unwrapped."""

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline, tiny_sd_pipeline, tiny_wan_pipeline

CASES = {
    "flux": (tiny_flux_pipeline, dict(height=16, width=16, max_sequence_length=16, guidance_scale=3.5), "images"),
    "flux-true-cfg": (
        tiny_flux_pipeline,
        dict(height=16, width=16, max_sequence_length=16, true_cfg_scale=2.0, negative_prompt="dark sky"),
        "images",
    ),
    "wan": (
        tiny_wan_pipeline,
        dict(height=16, width=16, num_frames=5, max_sequence_length=16, guidance_scale=4.0),
        "frames",
    ),
    "sd": (tiny_sd_pipeline, dict(height=16, width=16, guidance_scale=7.5), "images"),
}
EXPECTED_CONTEXTS = {
    "flux": ["cond"],
    "flux-true-cfg": ["cond", "uncond"],
    "wan": ["cond", "uncond"],
    "sd": ["default"],
}
STEPS = 10


def _generate(pipe, kwargs, field, steps=STEPS):
    out = pipe(
        "a photo of a red house",
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **kwargs,
    )
    return getattr(out, field)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pipeline_generates_with_taylorseer(case):
    build, kwargs, field = CASES[case]
    pipe = build()
    reference = _generate(pipe, kwargs, field)
    diffaccel.wrap(pipe, "taylorseer", interval=3, warmup=2)
    first = _generate(pipe, kwargs, field)
    stats = diffaccel.summary(pipe)
    second = _generate(pipe, kwargs, field)  # the scheduler's set_timesteps starts a new run
    assert torch.equal(first, second)
    assert first.shape == reference.shape and torch.isfinite(first).all()
    assert not torch.equal(first, reference)  # forecasts were used ...
    assert (first - reference).abs().max() < 0.5  # ... and stay close to the full computation
    assert stats.steps == STEPS and stats.full_steps == 4  # 0, 1, 4, 7
    assert stats.contexts == EXPECTED_CONTEXTS[case]
    diffaccel.unwrap(pipe)
    assert torch.equal(_generate(pipe, kwargs, field), reference)


@pytest.mark.parametrize("case", ["flux", "sd"])
def test_pipeline_interval_one_is_bit_identical(case):
    build, kwargs, field = CASES[case]
    pipe = build()
    reference = _generate(pipe, kwargs, field, steps=4)
    diffaccel.wrap(pipe, "taylorseer", interval=1)
    assert torch.equal(_generate(pipe, kwargs, field, steps=4), reference)


def test_pipeline_with_unsupported_components():
    class FakePipe:
        components = {"text_encoder": torch.nn.Linear(2, 2)}

    with pytest.raises(diffaccel.UnsupportedModelError, match="No component of FakePipe"):
        diffaccel.wrap(FakePipe(), "taylorseer")


def test_pipeline_default_preset_runs_official_flux_schedule():
    build, kwargs, field = CASES["flux"]
    pipe = diffaccel.wrap(build(), "taylorseer")
    _generate(pipe, kwargs, field, steps=20)
    assert diffaccel.summary(pipe).full_steps == 5  # official FLUX 6/1/3: 0, 1, 2, 8, 14
