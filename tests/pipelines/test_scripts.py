"""Every script in `pipelines/` runs with `--tiny` on the CPU, writes its file, and reports summary and time.

The scripts are executed as `__main__` (runpy), exactly as `python pipelines/<script> ...` runs them, in this
process to spare the shared CPU the interpreter start-up. The independent reference for what a file holds is
the in-memory array of the same run through `diffaccel.generate.run`: PNGs must hold exactly its quantised
pixels; MP4s (lossy) the right number of frames of the right size.
"""

from __future__ import annotations

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest

from diffaccel.generate import parse_args, run
from diffaccel.generate.models import MODELS
from diffaccel.generate.output import to_uint8

from .helpers import SCRIPTS, SCRIPTS_DIR, flux_photos_weights_present, run_script

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
    if model == "flux" and not flux_photos_weights_present():
        pytest.skip("flux-photos zoo weights are not committed yet (--tiny uses them; --tiny-random is tested below)")
    target = tmp_path / ("out.png" if spec.kind == "image" else "out.mp4")
    argv = ["--tiny", "--steps", STEPS, "--strategy", "taylorseer", "--output", str(target)]
    assert run_script(script, argv, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "diffaccel summary: taylorseer" in printed and "wall time:" in printed and str(target) in printed

    reference = run(parse_args(argv[:-1] + [str(tmp_path / "again")], model=model))
    _check_file(spec.kind, target, reference.array)


def test_flux_script_runs_tiny_random(tmp_path, monkeypatch, capsys):
    target = tmp_path / "flux.png"
    argv = ["--tiny-random", "--steps", STEPS, "--strategy", "none", "--output", str(target)]
    assert run_script("flux.py", argv, monkeypatch) == 0
    assert "tiny-random:FluxPipeline" in capsys.readouterr().out
    _check_file("image", target, run(parse_args(argv[:-1] + [str(tmp_path / "again")], model="flux")).array)


def test_flux_script_tiny_without_zoo_weights_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFACCEL_ZOO_WEIGHTS", str(tmp_path / "empty"))
    assert run_script("flux.py", ["--tiny", "--output", str(tmp_path / "x.png")], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "flux-photos" in err and "--tiny-random" in err
    assert not (tmp_path / "x.png").exists()


def _check_file(kind, path, array):
    assert path.is_file()
    if kind == "image":
        assert np.array_equal(iio.imread(path), to_uint8(array[0]))
    else:
        frames = np.stack(imageio.mimread(path, format="FFMPEG"))
        assert frames.shape == to_uint8(array[0]).shape  # (F, H, W, 3)
