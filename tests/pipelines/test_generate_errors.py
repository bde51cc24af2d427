"""Every user error of the generation command line (`python -m diffaccel.generate`, `pipelines/*.py`) is one line
on stderr with exit code 2 and no traceback, found before a model loads where the arguments alone decide it;
Ctrl-C is one line too (a generation is one call: there is nothing to resume)."""

from __future__ import annotations

import pytest
import torch

import diffaccel.generate.cli as cli
from diffaccel.generate import main
from tests.pipelines.helpers import run_script


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def no_model_loads(monkeypatch):
    monkeypatch.setattr(cli, "load_tiny", lambda *a: pytest.fail("a model was loaded"))
    monkeypatch.setattr(cli, "load_pretrained", lambda *a: pytest.fail("a model was loaded"))


def _door_error(capsys, argv, model="sd3") -> str:
    assert main(argv, model=model) == 2
    return _one_line(capsys)


def test_output_is_an_existing_folder(tmp_path, capsys, no_model_loads):
    (tmp_path / "shots.png").mkdir()
    err = _door_error(capsys, ["--tiny-random", "--output", str(tmp_path / "shots.png")])
    assert "is a folder; give a file name" in err


def test_output_below_a_file(tmp_path, capsys, no_model_loads):
    (tmp_path / "f").write_text("x")
    err = _door_error(capsys, ["--tiny-random", "--output", str(tmp_path / "f" / "x.png")])
    assert "is a file, so" in err


def test_output_where_nothing_can_be_written(capsys, no_model_loads):
    # /proc refuses new files even for root (whose permission bits are never checked)
    assert "cannot write to /proc" in _door_error(capsys, ["--tiny-random", "--output", "/proc/diffaccel-x.png"])


def test_video_frames_folder_that_is_a_file(tmp_path, capsys, no_model_loads):
    (tmp_path / "clip").write_text("x")
    err = _door_error(capsys, ["--tiny-random", "--format", "png", "--output", str(tmp_path / "clip")], model="wan")
    assert "PNG frames go into a folder" in err


@pytest.mark.parametrize("device", ["cud", "cuda:x", "gpu"])
def test_device_that_is_not_a_torch_device(device, tmp_path, capsys, no_model_loads):
    err = _door_error(capsys, ["--tiny-random", "--device", device, "--output", str(tmp_path / "x")])
    assert "is not a torch device; use cpu, cuda" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("tiny", [["--tiny-random"], []])
def test_cuda_without_a_gpu(tiny, tmp_path, capsys, no_model_loads):
    err = _door_error(capsys, [*tiny, "--device", "cuda", "--output", str(tmp_path / "x")])
    assert "no CUDA device" in err and "--device cpu" in err


@pytest.mark.parametrize("argv", [["--height", "0"], ["--width", "-16"], ["--steps", "0"], ["--dtype", "float8"]])
def test_bad_numbers_and_choices_are_one_line(argv, capsys, no_model_loads):
    with pytest.raises(SystemExit) as exit_info:
        main(["--tiny-random", *argv], model="sd3")
    assert exit_info.value.code == 2
    assert "(see --help)" in _one_line(capsys)


def test_size_the_pipeline_refuses_is_one_line(tmp_path, capsys):
    """Wan's latent grid needs sizes divisible by 16; diffusers' own check says so, on one line, before denoising."""
    err = _door_error(
        capsys, ["--tiny-random", "--height", "24", "--steps", "1", "--output", str(tmp_path / "x")], "wan"
    )
    assert "divisible by 16" in err
    assert not list(tmp_path.iterdir())


def test_size_on_a_fixed_size_zoo_model_is_one_line(tmp_path, capsys, no_model_loads):
    err = _door_error(capsys, ["--tiny", "--height", "64", "--output", str(tmp_path / "x")], "flux")
    assert "--height" in err and "do not apply" in err


@pytest.mark.parametrize(
    "spec", ["warpdrive", "ssd", "taylorseer:speed=3", "taylorseer:interval=0", "hyca:solvers=", "taocache:nope"]
)
def test_bad_strategy_specs_are_one_line(spec, tmp_path, capsys, no_model_loads):
    err = _door_error(capsys, ["--tiny-random", "--strategy", spec, "--output", str(tmp_path / "x")])
    assert err.startswith("error: ")


def test_model_id_that_is_a_missing_folder(tmp_path, capsys, no_model_loads):
    argv = ["--device", "cpu", "--model-id", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]
    assert "no such folder" in _door_error(capsys, argv)


def test_ctrl_c_is_one_line_and_saves_nothing(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run", interrupted)
    assert main(["--tiny-random", "--output", str(tmp_path / "x")], model="sd3") == 130
    assert "interrupted: nothing was saved" in _one_line(capsys)
    assert not list(tmp_path.iterdir())


def test_a_script_reports_the_same_one_line_errors(tmp_path, capsys, monkeypatch, no_model_loads):
    assert (
        run_script("flux.py", ["--tiny-random", "--device", "cud", "--output", str(tmp_path / "x")], monkeypatch) == 2
    )
    assert "is not a torch device" in _one_line(capsys)
    assert run_script("wan.py", ["--steps", "zero"], monkeypatch) == 2
    assert "must be a positive integer, got 'zero'" in _one_line(capsys)
