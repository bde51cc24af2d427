"""`diffaccel.generate`, the logic behind `pipelines/`: strategies, outputs, the zoo stand-ins and bad input.

Reference for the strategies: the same script with `--strategy none` (nothing wrapped) and the same seed.
`taylorseer:interval=1` computes every step, so its output must be bit-identical to it; the family preset
forecasts, so its output must differ (otherwise the equality would prove nothing). Reference for the zoo
stand-ins (`--tiny` of flux and wan): the zoo pipeline called directly with the same class, steps and seed, and
for a forecasting strategy the official TaylorSeer schedule worked out by hand.
"""

from __future__ import annotations

import importlib.util
import re

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from diffaccel.generate import GenerateError, OutputError, main, parse_args, run
from diffaccel.generate.models import MODELS
from diffaccel.generate.output import save_videos, to_uint8

from ..numerics import REORDERED_SUMS_ATOL, in_fresh_memory

STEPS = ["--steps", "4"]


def _run(model, tmp_path, *argv, name="out"):
    return run(parse_args(["--tiny-random", *STEPS, "--output", str(tmp_path / name), *argv], model=model))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_interval_one_is_bit_identical_to_none(model, tmp_path):
    baseline = _run(model, tmp_path, "--strategy", "none", name="none")
    exact = _run(model, tmp_path, "--strategy", "taylorseer:interval=1", name="exact")
    forecast = _run(model, tmp_path, "--strategy", "taylorseer:interval=3,warmup=1", name="forecast")
    assert baseline.summary is None and baseline.strategy == "none"
    assert np.array_equal(exact.array, baseline.array)
    assert exact.summary.steps == 4 and exact.summary.full_steps == 4
    assert [p.read_bytes() for p in exact.paths] == [p.read_bytes() for p in baseline.paths]  # the files too
    assert forecast.summary.full_steps == 2 and not np.array_equal(forecast.array, baseline.array)
    assert np.isfinite(forecast.array).all()


def test_composition_keeps_family_presets_and_is_exact_when_nothing_is_skipped(tmp_path):
    baseline = _run("wan", tmp_path, "--strategy", "none", name="none")
    composed = _run(
        "wan", tmp_path, "--strategy", "taylorseer:interval=1", "--strategy", "taocache:max_skips=0", name="composed"
    )
    assert np.array_equal(composed.array, baseline.array)
    assert "taylorseer" in composed.summary.strategy and "taocache" in composed.summary.strategy
    preset = _run("wan", tmp_path, "--strategy", "taylorseer:order=2", "--strategy", "taocache", name="preset")
    # Wan's TaylorSeer preset is interval 5, warm-up 1 (spec); order=2 is added on top of it, not instead of it
    assert "taylorseer:interval=5:order=2:warmup=1" in preset.summary.strategy
    assert preset.summary.full_steps < 4


def test_warmup_call_leaves_no_state_behind_and_lets_hyca_profile_first(tmp_path):
    plain = _run("cogvideox", tmp_path, "--strategy", "taylorseer:interval=3,warmup=1", name="a")
    warmed = _run("cogvideox", tmp_path, "--strategy", "taylorseer:interval=3,warmup=1", "--warmup", name="b")
    assert np.array_equal(warmed.array, plain.array) and warmed.summary.full_steps == plain.summary.full_steps == 2
    profiling = _run("cogvideox", tmp_path, "--strategy", "hyca:interval=3,warmup=1", name="c")
    profiled = _run("cogvideox", tmp_path, "--strategy", "hyca:interval=3,warmup=1", "--warmup", name="d")
    assert profiling.summary.computed_fraction == 1.0  # no profile given: the first call profiles
    assert profiled.summary.full_steps == 2 and profiled.summary.computed_fraction < 1.0


def test_video_as_gif_and_as_png_frames(tmp_path):
    gif = _run("wan", tmp_path, "--strategy", "none", "--format", "gif", name="clip.gif")
    frames = iio.imread(gif.paths[0], index=None)
    assert frames.shape[:3] == gif.array.shape[1:4]
    png = _run("wan", tmp_path, "--strategy", "none", "--format", "png", name="frames")
    assert len(png.paths) == gif.array.shape[1] and png.paths[0].parent == tmp_path / "frames"
    for path, frame in zip(png.paths, png.array[0]):
        assert np.array_equal(iio.imread(path), to_uint8(frame))


def test_mp4_without_the_video_extra_is_a_clear_error_and_gif_still_works(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else real_find_spec(name, *a)
    )
    with pytest.raises(OutputError, match=r"diffaccel\[video\]"):
        _run("wan", tmp_path, "--strategy", "none")
    with pytest.raises(OutputError, match=r"diffaccel\[video\]"):
        _run("wan", tmp_path, "--strategy", "none", "--format", "mp4")
    assert not list(tmp_path.iterdir())  # failed before generating anything
    assert _run("wan", tmp_path, "--strategy", "none", "--format", "gif").paths[0].suffix == ".gif"


# ------------------------------------------------------------------- the checkpoint path, from a local folder
@pytest.mark.parametrize("model", sorted(MODELS))
def test_checkpoint_path_loads_a_saved_pipeline_folder(model, tmp_path, monkeypatch):
    """The non-tiny path (from_pretrained with the model's own loading recipe, VAE tiling, `.to(device)`), run on
    the CPU in float32 from a folder holding the tiny pipeline saved with save_pretrained. Reference: the same
    tiny pipeline run in memory (--tiny-random). The recipe computes the same function, so with the loaded
    weights copied into fresh memory (the in-memory pipeline's layout) the image
    is bit-identical; as loaded (memory-mapped weights) it differs only by reordered float32 sums (`tests/numerics.py`). Wan's recipe
    changes the computation on purpose (UniPC with flow_shift 3.0, as the diffusers example does)."""
    import importlib

    import diffaccel.generate.cli as generate_cli

    spec = MODELS[model]
    module, _, builder = spec.tiny.builder.partition(":")
    getattr(importlib.import_module(module), builder)().save_pretrained(tmp_path / "ckpt")
    tiny = spec.tiny.defaults
    settings = [
        "--prompt",
        tiny.prompt,
        "--height",
        str(tiny.height),
        "--width",
        str(tiny.width),
        "--max-sequence-length",
        "16",
        "--guidance",
        "3.0",
        *(["--frames", str(tiny.frames), "--fps", str(tiny.fps)] if tiny.frames else []),
        *(["--negative-prompt", "dark sky"] if spec.negative_prompt_supported else []),
    ]
    checkpoint = ["--model-id", str(tmp_path / "ckpt"), "--device", "cpu", "--dtype", "float32", *STEPS, *settings]
    loaded = run(parse_args([*checkpoint, "--strategy", "none", "-o", str(tmp_path / "a")], model=model))
    # the same loaded weights, wrapped with every step computed: the same computation, so bit-identical
    exact = run(
        parse_args([*checkpoint, "--strategy", "taylorseer:interval=1", "-o", str(tmp_path / "b")], model=model)
    )
    assert loaded.source == str(tmp_path / "ckpt")
    assert np.array_equal(exact.array, loaded.array)
    in_memory = _run(model, tmp_path, "--strategy", "none", *settings, name="c")
    load_pretrained = generate_cli.load_pretrained
    monkeypatch.setattr(generate_cli, "load_pretrained", lambda *a: in_fresh_memory(load_pretrained(*a)))
    copied = run(parse_args([*checkpoint, "--strategy", "none", "-o", str(tmp_path / "d")], model=model))
    if model == "wan":
        assert not np.allclose(copied.array, in_memory.array, rtol=0, atol=REORDERED_SUMS_ATOL)
    else:
        assert np.array_equal(copied.array, in_memory.array)
        np.testing.assert_allclose(loaded.array, in_memory.array, rtol=0, atol=REORDERED_SUMS_ATOL)


# ------------------------------------------------------------------------------- the zoo stand-in for FLUX
@pytest.fixture
def untrained_flux_photos(tmp_path, monkeypatch):
    """flux-photos files with freshly initialised weights, so the zoo path is tested whether or not the trained
    weights are committed yet."""
    from diffaccel.zoo import flux_photos
    from diffaccel.zoo.data import PHOTO_CLASS_NAMES
    from diffaccel.zoo.weights_io import model_config, save_state, write_json

    torch.manual_seed(0)
    components = flux_photos.build_components()
    folder = tmp_path / "zoo" / "flux-photos"
    save_state(folder / "model.safetensors", components)
    write_json(
        folder / "config.json",
        {
            "components": {name: model_config(module) for name, module in components.items()},
            "scheduler": {"class": "FlowMatchEulerDiscreteScheduler", "config": flux_photos.SCHEDULER_CONFIG},
            "pipeline": {
                "class_names": list(PHOTO_CLASS_NAMES),
                "image_size": flux_photos.IMAGE_SIZE,
                "pixel_patch": flux_photos.PIXEL_PATCH,
            },
        },
    )
    monkeypatch.setenv("DIFFACCEL_ZOO_WEIGHTS", str(tmp_path / "zoo"))
    return PHOTO_CLASS_NAMES


def _zoo_run(tmp_path, *argv, name="zoo"):
    return run(parse_args(["--tiny", *STEPS, "--output", str(tmp_path / name), *argv], model="flux"))


def test_flux_tiny_maps_the_prompt_to_a_zoo_class(untrained_flux_photos, tmp_path):
    from diffaccel import zoo

    result = _zoo_run(tmp_path, "--strategy", "none", "--prompt", "A Coffee cup, then a rocket")
    assert result.source == "zoo:flux-photos" and result.array.shape == (1, 32, 32, 3)
    pipe = zoo.load("flux-photos")
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(
        class_labels=["coffee"], num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert np.array_equal(result.array, direct)  # the first class named in the prompt, the zoo's default guidance
    guided = _zoo_run(tmp_path, "--strategy", "none", "--prompt", "coffee", "--guidance", "1.0", name="g")
    unguided = pipe(
        class_labels=["coffee"],
        num_inference_steps=4,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert np.array_equal(guided.array, unguided) and not np.array_equal(guided.array, direct)

    every_class = _zoo_run(tmp_path, "--strategy", "none", "--prompt", "a lighthouse", name="all")
    assert every_class.array.shape[0] == len(untrained_flux_photos) == len(every_class.paths)
    direct = pipe(
        class_labels=None, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert np.array_equal(every_class.array, direct)  # a prompt naming no class: one image per class


def test_flux_tiny_zoo_interval_one_is_bit_identical(untrained_flux_photos, tmp_path):
    baseline = _zoo_run(tmp_path, "--strategy", "none", name="a")
    exact = _zoo_run(tmp_path, "--strategy", "taylorseer:interval=1", name="b")
    assert np.array_equal(exact.array, baseline.array)
    assert exact.summary.contexts == ["cond", "uncond"]


def test_flux_zoo_rejects_options_it_cannot_honour(untrained_flux_photos, tmp_path):
    for argv in (["--height", "64"], ["--negative-prompt", "blurry"], ["--max-sequence-length", "8"]):
        with pytest.raises(GenerateError, match="do not apply"):
            _zoo_run(tmp_path, *argv)


# -------------------------------------------------------------------------------- the zoo stand-in for Wan
WAN_CLIP_SHAPE = (8, 20, 20, 3)  # wan-clips: 8-frame 20x20 RGB pan clips (diffaccel/zoo/wan_clips.py)


@pytest.fixture(scope="module")
def wan_clips():
    """The committed wan-clips pipeline called directly, without diffaccel.generate: the reference."""
    from diffaccel import zoo

    pipe = zoo.load("wan-clips")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _wan_zoo_run(tmp_path, *argv, name="wan"):
    return run(parse_args(["--tiny", "--output", str(tmp_path / name), *argv], model="wan"))


def _clips(pipe, class_labels, steps, guidance_scale=None, seed=0):
    return pipe(
        class_labels=class_labels,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).frames


def test_every_zoo_stand_in_is_a_registered_model_of_the_same_kind():
    from diffaccel import zoo

    stand_ins = {name: spec.tiny.zoo for name, spec in MODELS.items() if spec.tiny.zoo}
    assert stand_ins == {"flux": "flux-photos", "wan": "wan-clips"}
    for name, zoo_name in stand_ins.items():
        spec = MODELS[name]
        assert zoo_name in zoo.names() and zoo.entry(zoo_name).kind == spec.kind  # .images or .frames
        fixed = spec.tiny.zoo_defaults
        assert fixed is not None and (fixed.height, fixed.width, fixed.frames) == (None, None, None)


def test_wan_tiny_runs_wan_clips_on_the_class_the_prompt_names(wan_clips, tmp_path):
    result = _wan_zoo_run(tmp_path, "--strategy", "none", "--steps", "4", "--prompt", "A Rocket, then coffee")
    assert result.source == "zoo:wan-clips" and result.array.shape == (1, *WAN_CLIP_SHAPE)
    direct = _clips(wan_clips, ["rocket"], 4)  # the first class named, the guidance stored with the weights
    assert np.array_equal(result.array, direct)
    assert result.paths == [tmp_path / "wan.mp4"]

    guided = _wan_zoo_run(
        tmp_path, "--strategy", "none", "--steps", "4", "--prompt", "rocket", "--guidance", "1.0", name="g"
    )
    assert np.array_equal(guided.array, _clips(wan_clips, ["rocket"], 4, guidance_scale=1.0))
    assert not np.array_equal(guided.array, direct)

    every_class = _wan_zoo_run(
        tmp_path, "--strategy", "none", "--steps", "2", "--prompt", "a lighthouse", "--format", "png", name="all"
    )  # PNG frames: lossless, so the files can be compared
    classes, frames = len(wan_clips.class_names), WAN_CLIP_SHAPE[0]
    assert every_class.array.shape == (classes, *WAN_CLIP_SHAPE)
    assert np.array_equal(every_class.array, _clips(wan_clips, None, 2))  # one clip per class
    assert every_class.paths == [
        tmp_path / f"all_{i}" / f"frame_{f:04d}.png" for i in range(classes) for f in range(frames)
    ]
    for path, frame in zip(every_class.paths, every_class.array.reshape(-1, *WAN_CLIP_SHAPE[1:])):
        assert np.array_equal(iio.imread(path), to_uint8(frame))


def test_wan_tiny_strategy_follows_the_hand_computed_taylorseer_schedule(wan_clips, tmp_path):
    """Wan's TaylorSeer preset is interval 5, warm-up 1 (official TaylorSeer-Wan2.1): a step n is full iff n < 1 or
    n % 5 == 0, so 12 steps compute at steps 0, 5 and 10 only: 3 of 12, a computed fraction of 0.25 (every
    cacheable unit follows the same schedule). Each of the 4 blocks has 3 units (attn, cross_attn, mlp), each
    called once per guidance branch (cond, uncond) per step."""
    argv = ["--steps", "12", "--prompt", "china"]
    baseline = _wan_zoo_run(tmp_path, "--strategy", "none", *argv, name="none")
    exact = _wan_zoo_run(tmp_path, "--strategy", "taylorseer:interval=1", *argv, name="exact")
    preset = _wan_zoo_run(tmp_path, "--strategy", "taylorseer", *argv, name="preset")
    assert np.array_equal(baseline.array, _clips(wan_clips, ["china"], 12))
    assert np.array_equal(exact.array, baseline.array) and exact.summary.full_steps == 12

    full_steps, steps, branches = [0, 5, 10], 12, 2
    summary = preset.summary
    assert summary.strategy == "taylorseer:interval=5:order=1:warmup=1"
    assert summary.steps == steps and summary.full_steps == len(full_steps)
    assert summary.computed_fraction == pytest.approx(len(full_steps) / steps, abs=1e-12)
    assert summary.contexts == ["cond", "uncond"]
    per_kind = {
        "units": 4,
        "computed": 4 * len(full_steps) * branches,
        "forecast": 4 * (steps - len(full_steps)) * branches,
    }
    assert summary.by_kind() == {"attn": per_kind, "cross_attn": per_kind, "mlp": per_kind}
    assert not np.array_equal(preset.array, baseline.array) and np.isfinite(preset.array).all()

    # the same wrap applied by hand to the zoo pipeline gives the same frames, and computes at those steps only
    import diffaccel

    transformer_calls, attn_computed_at = [], []
    watch_calls = wan_clips.transformer.register_forward_pre_hook(lambda *_: transformer_calls.append(None))
    watch_attn = wan_clips.transformer.blocks[0].attn1.to_q.register_forward_pre_hook(
        lambda *_: attn_computed_at.append((len(transformer_calls) - 1) // branches)
    )  # two calls per step
    diffaccel.wrap(wan_clips, "taylorseer")
    try:
        by_hand = _clips(wan_clips, ["china"], 12)
    finally:
        diffaccel.unwrap(wan_clips)
        watch_calls.remove()
        watch_attn.remove()
    assert np.array_equal(preset.array, by_hand)
    assert len(transformer_calls) == steps * branches
    assert attn_computed_at == [n for n in full_steps for _ in range(branches)]


def test_wan_zoo_rejects_options_it_cannot_honour_and_takes_fps(tmp_path):
    for argv in (
        ["--height", "64"],
        ["--width", "64"],
        ["--frames", "9"],
        ["--negative-prompt", "blurry"],
        ["--max-sequence-length", "8"],
    ):
        with pytest.raises(GenerateError, match="fixed size and frame count: .* do not apply.*--tiny-random"):
            _wan_zoo_run(tmp_path, *argv)
    assert not list(tmp_path.iterdir())
    result = _wan_zoo_run(tmp_path, "--strategy", "none", "--steps", "1", "--fps", "4", name="slow.mp4")
    assert result.settings.fps == 4
    with imageio.get_reader(result.paths[0], format="FFMPEG") as reader:
        assert reader.get_meta_data()["fps"] == 4


def test_several_videos_are_numbered_like_several_images(tmp_path):
    videos = np.random.default_rng(0).random((3, 2, 8, 8, 3), dtype=np.float32)
    paths = save_videos(videos, tmp_path / "clip.gif", "gif", fps=8)
    assert paths == [tmp_path / f"clip_{i}.gif" for i in range(3)]
    frames = save_videos(videos, tmp_path / "frames", "png", fps=8)
    assert frames == [tmp_path / f"frames_{i}" / f"frame_{f:04d}.png" for i in range(3) for f in range(2)]
    assert np.array_equal(iio.imread(frames[3]), to_uint8(videos[1, 1]))
    assert save_videos(videos[:1], tmp_path / "one.gif", "gif", fps=8) == [tmp_path / "one.gif"]


def test_a_dot_in_a_strategy_option_is_not_taken_for_an_extension(tmp_path):
    videos = np.random.default_rng(0).random((2, 2, 8, 8, 3), dtype=np.float32)
    name = "wan-tiny-taocache_error_threshold=0.05-seed0"
    frames = save_videos(videos, tmp_path / name, "png", fps=8)
    assert frames[0] == tmp_path / f"{name}_0" / "frame_0000.png"
    assert save_videos(videos[:1], tmp_path / name, "png", fps=8)[0] == tmp_path / name / "frame_0000.png"
    assert save_videos(videos[:1], tmp_path / f"{name}.png", "png", fps=8)[0] == tmp_path / name / "frame_0000.png"


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'nope'.*flux.*ltx-video"):
        main(["--tiny"], model="nope")
    with pytest.raises(SystemExit) as exit_info:
        main(["nope", "--tiny"])  # python -m diffaccel.generate nope
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "spec, message",
    [
        ("warpdrive", r"Unknown strategy 'warpdrive'\. Available: .*hyca, .*taocache, taylorseer"),
        ("ssd", r"'ssd' is a diffusion-language-model strategy.*use one of: bac, hyca, taocache, taylorseer$"),
        ("taylorseer:speed=3", r"Unknown option\(s\) \['speed'\].*interval"),
        ("taylorseer:interval=0", r"bad option value in 'taylorseer:interval=0'"),
        ("taylorseer:interval", r"not of the form key=value"),
        ("none:interval=2", r"takes no options"),
    ],
)
def test_bad_strategy_is_a_clear_error_before_any_model_loads(spec, message, tmp_path, capsys, monkeypatch):
    import diffaccel.generate.cli as cli

    monkeypatch.setattr(cli, "load_tiny", lambda *a: pytest.fail("a model was loaded"))
    assert main(["--tiny", "--strategy", spec, "--output", str(tmp_path / "x")], model="sd3") == 2
    assert re.search(message, capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def test_none_cannot_be_composed(tmp_path, capsys):
    assert main(["--tiny", "--strategy", "none", "--strategy", "taylorseer"], model="sd3") == 2
    assert "cannot be composed" in capsys.readouterr().err


def test_options_that_do_not_apply(tmp_path, capsys):
    with pytest.raises(SystemExit):  # image scripts have no --frames
        main(["--tiny", "--frames", "9"], model="sd3")
    assert main(["sd3", "--tiny", "--frames", "9"]) == 2
    assert "--frames and --fps do not apply" in capsys.readouterr().err
    assert main(["--tiny-random", "--negative-prompt", "blurry"], model="flux") == 2
    assert "--negative-prompt does not apply" in capsys.readouterr().err
    assert main(["--tiny", "--model-id", "some/repo"], model="sd3") == 2
    assert "apply to the real checkpoint" in capsys.readouterr().err
    assert main(["--tiny", "--format", "gif"], model="sd3") == 2
    assert "image output format must be one of png" in capsys.readouterr().err
    assert main(["--tiny", "--format", "gif", "--output", str(tmp_path / "a.mp4")], model="wan") == 2
    assert "contradicts" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_real_checkpoint_without_cuda_is_a_clear_error(capsys):
    assert main(["--strategy", "none"], model="wan") == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--tiny" in err
