"""Helpers for the `pipelines/` tests: run a script or `diffaccel.generate` on the tiny CPU models."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from diffaccel.zoo.weights_io import weights_dir

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO / "pipelines"

#: script file -> model name in diffaccel.generate.MODELS
SCRIPTS = {
    "flux.py": "flux",
    "sd3.py": "sd3",
    "qwen_image.py": "qwen-image",
    "wan.py": "wan",
    "hunyuan_video.py": "hunyuan-video",
    "cogvideox.py": "cogvideox",
    "ltx_video.py": "ltx-video",
}


def zoo_weights_present(name: str) -> bool:
    """Whether the committed weights of zoo model ``name`` (what ``--tiny`` runs for flux and wan) are here."""
    return (weights_dir(name) / "model.safetensors").is_file()


def run_script(script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Execute `pipelines/<script>` as `__main__` in this process (as `python pipelines/<script> ...` would);
    returns its exit code."""
    path = SCRIPTS_DIR / script
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(path), run_name="__main__")
    return exit_info.value.code
