"""Every script in `pipelines/` runs with `--tiny` on the CPU, writes its file, and reports summary and time.

The scripts are executed as `__main__` (runpy), exactly as `python pipelines/<script> ...` runs them, in this
process to spare the shared CPU the interpreter start-up. The independent reference for what a file holds is
the in-memory array of the same run through `diffaccel.generate.run`: PNGs must hold exactly its quantised
pixels; MP4s (lossy) the right number of frames of the right size. For `wan.py --tiny` (the wan-clips zoo model)
the reference is independent of `diffaccel.generate`: the zoo pipeline loaded and wrapped by hand, and the
TaylorSeer schedule worked out by hand.
"""

from __future__ import annotations

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from diffaccel.generate import parse_args, run
from diffaccel.generate.models import MODELS
from diffaccel.generate.output import to_uint8

from .helpers import SCRIPTS, SCRIPTS_DIR, run_script, zoo_weights_present

STEPS = "3"


def test_one_script_per_model_and_each_is_thin():
    assert sorted(SCRIPTS.values()) == sorted(MODELS)
    assert sorted(p.name for p in SCRIPTS_DIR.glob("*.py")) == sorted(SCRIPTS)
    for script, model in SCRIPTS.items():
        text = (SCRIPTS_DIR / script).read_text()
        assert f'main(model="{model}")' in text and len(text.splitlines()) < 15  # no second copy of the logic


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs_tiny_and_writes_its_output(script, tmp_path, monkeypatch, capsys):
    model = SCRIPTS[script]
    spec = MODELS[model]
    if spec.tiny.zoo and not zoo_weights_present(spec.tiny.zoo):
        pytest.skip(f"{spec.tiny.zoo} zoo weights are not here (--tiny uses them; --tiny-random is tested below)")
    target = tmp_path / ("out.png" if spec.kind == "image" else "out.mp4")
    argv = ["--tiny", "--steps", STEPS, "--strategy", "taylorseer", "--output", str(target)]
    assert run_script(script, argv, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "diffaccel summary: taylorseer" in printed and "wall time:" in printed and str(target) in printed

    reference = run(parse_args(argv[:-1] + [str(tmp_path / "again")], model=model))
    _check_file(spec.kind, target, reference.array)


@pytest.mark.skipif(not zoo_weights_present("wan-clips"), reason="wan-clips zoo weights are not here")
def test_wan_script_tiny_runs_wan_clips_and_writes_its_mp4(tmp_path, monkeypatch, capsys):
    """`pipelines/wan.py --tiny` with its defaults: wan-clips, the class the default prompt names (rocket), 20 steps,
    the Wan TaylorSeer preset (interval 5, warm-up 1: full at steps 0, 5, 10, 15, so 4 of 20 and a computed
    fraction of 0.200), an 8 fps MP4 of 8 frames of 20x20."""
    import diffaccel
    from diffaccel import zoo

    target = tmp_path / "clip.mp4"
    assert run_script("wan.py", ["--tiny", "--output", str(target)], monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "model: wan (zoo:wan-clips)" in printed
    assert "diffaccel summary: taylorseer:interval=5:order=1:warmup=1" in printed
    assert "steps 20, full steps 4, computed fraction 0.200" in printed and f"saved: {target}" in printed

    with imageio.get_reader(target, format="FFMPEG") as reader:
        assert reader.get_meta_data()["fps"] == 8
    frames = np.stack(imageio.mimread(target, format="FFMPEG"))
    assert frames.shape == (8, 20, 20, 3)

    pipe = zoo.load("wan-clips")
    pipe.set_progress_bar_config(disable=True)
    diffaccel.wrap(pipe, "taylorseer")
    reference = pipe(
        class_labels=["rocket"],
        num_inference_steps=20,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).frames[0]
    assert diffaccel.summary(pipe).full_steps == 4
    error = np.abs(frames.astype(np.int16) - to_uint8(reference).astype(np.int16))
    # H.264 with 4:2:0 chroma is lossy: 2.2 of 255 on average here; seed 1 of the same class is 11.5 away, another
    # class about 70
    assert error.mean() < 4


@pytest.mark.parametrize(
    "script, kind, pipeline_class, shape",
    [
        ("flux.py", "image", "FluxPipeline", (16, 16, 3)),
        ("wan.py", "video", "WanPipeline", (5, 16, 16, 3)),  # the tiny random WanPipeline's defaults: 5 frames, 16x16
    ],
)
def test_script_runs_tiny_random(script, kind, pipeline_class, shape, tmp_path, monkeypatch, capsys):
    target = tmp_path / ("out.png" if kind == "image" else "out.mp4")
    argv = ["--tiny-random", "--steps", STEPS, "--strategy", "none", "--output", str(target)]
    assert run_script(script, argv, monkeypatch) == 0
    assert f"tiny-random:{pipeline_class}" in capsys.readouterr().out
    reference = run(parse_args(argv[:-1] + [str(tmp_path / "again")], model=SCRIPTS[script])).array
    assert reference.shape[1:] == shape
    _check_file(kind, target, reference)


@pytest.mark.parametrize(
    "script, zoo_name, output", [("flux.py", "flux-photos", "x.png"), ("wan.py", "wan-clips", "x.mp4")]
)
def test_script_tiny_without_zoo_weights_is_a_clear_error(script, zoo_name, output, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFACCEL_ZOO_WEIGHTS", str(tmp_path / "empty"))
    assert run_script(script, ["--tiny", "--output", str(tmp_path / output)], monkeypatch) == 2
    err = capsys.readouterr().err
    assert zoo_name in err and "--tiny-random" in err
    assert not (tmp_path / output).exists()


def _check_file(kind, path, array):
    assert path.is_file()
    if kind == "image":
        assert np.array_equal(iio.imread(path), to_uint8(array[0]))
    else:
        frames = np.stack(imageio.mimread(path, format="FFMPEG"))
        assert frames.shape == to_uint8(array[0]).shape  # (F, H, W, 3)
