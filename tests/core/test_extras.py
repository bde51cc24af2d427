"""Optional dependencies: a missing one is an ImportError that names the extra installing it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from diffaccel.core.extras import EXTRAS, require

tomllib = pytest.importorskip("tomllib")
PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def test_a_missing_module_names_its_extra():
    with pytest.raises(ImportError, match=r"'compare' extra .*pip install \"diffaccel\[compare\]\""):
        require("surely_not_installed_module.sub", "compare")
    assert require("json", "compare") is sys.modules["json"]


def test_metrics_say_which_extra_when_scikit_image_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.metrics", None)  # makes `import skimage.metrics` fail
    monkeypatch.delitem(sys.modules, "diffaccel.metrics", raising=False)
    with pytest.raises(ImportError, match=r"diffaccel\[compare\]"):
        import diffaccel.metrics  # noqa: F401


def test_extras_exist_and_the_test_extra_installs_what_compare_needs():
    optional = PYPROJECT["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    assert "diffaccel[compare]" in optional["test"] and "diffaccel[zoo]" in optional["compare"]
    core = " ".join(PYPROJECT["project"]["dependencies"])
    for package in ("matplotlib", "scikit-image", "rich", "imageio"):
        assert package not in core
