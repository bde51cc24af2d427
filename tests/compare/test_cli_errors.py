"""Every user error of `diffaccel compare` is one line on stderr with exit code 2 (no traceback), found
before a model loads; Ctrl-C is one line naming the exact command that resumes."""

from __future__ import annotations

import pytest
import torch

from diffaccel.cli import main
from diffaccel.cli_checks import resume_command


def _error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("x")
    assert "is a file, not a folder" in _error_line(
        capsys, ["compare", "--model", "testing:tiny-flux", "--out", str(target)]
    )


def test_out_below_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert "is a file" in _error_line(
        capsys, ["compare", "--model", "testing:tiny-flux", "--out", str(tmp_path / "f" / "run")]
    )


def test_out_where_nothing_can_be_written(capsys):
    # /proc refuses new folders even for root (whose permission bits are never checked)
    err = _error_line(capsys, ["compare", "--model", "testing:tiny-flux", "--out", "/proc/diffaccel-compare-out"])
    assert "/proc" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path, capsys):
    assert "no CUDA device" in _error_line(capsys, ["compare", "--device", "cuda", "--out", str(tmp_path)])


def test_height_on_a_fixed_size_zoo_model(tmp_path, capsys):
    err = _error_line(capsys, ["compare", "--model", "flux-photos", "--height", "64", "--out", str(tmp_path)])
    assert "--height/--width" in err and "flux-photos" in err


def test_prompts_for_a_dllm_model(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a cat\n")
    err = _error_line(
        capsys,
        ["compare", "--model", "llada-addition", "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "o")],
    )
    assert "--prompts" in err


@pytest.mark.parametrize("value", ["", " "])
def test_empty_strategies(tmp_path, capsys, value):
    assert "--strategies is empty" in _error_line(capsys, ["compare", "--strategies", value, "--out", str(tmp_path)])


@pytest.mark.parametrize("argv", [["compare", "--steps", "zero"], ["compare", "--grid-seeds", "0"], ["nope"]])
def test_bad_arguments_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("(see --help)"), err


def test_ctrl_c_names_the_resume_command(tmp_path, capsys, monkeypatch):
    from diffaccel import compare

    def interrupted(settings, console=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_compare", interrupted)
    out = str(tmp_path / "run")
    assert main(["compare", "--model", "testing:tiny-flux", "--steps", "3", "--out", out, "--overwrite"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.endswith(f"diffaccel compare --model testing:tiny-flux --steps 3 --out {out} --resume")


def test_resume_command_adds_the_folder_when_it_was_chosen_automatically():
    assert (
        resume_command(["compare", "--steps", "3"], "diffaccel-compare/x/1")
        == "diffaccel compare --steps 3 --out diffaccel-compare/x/1 --resume"
    )
