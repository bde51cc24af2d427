"""Reading and writing zoo weights: safetensors only, plus a JSON config and a provenance manifest.

Layout of ``diffaccel/zoo/weights/<name>/`` (shipped as package data):

- ``model.safetensors``: the state dicts of all trained components, keys prefixed ``<component>.``;
- ``config.json``: ``{"components": {component: {"class": ..., "config": {...}}}, "scheduler": {...}, "pipeline": {...}}``
  so a loader can rebuild the exact architecture without importing the training code;
- ``manifest.json``: how the files were produced (command, seed, wall time, steps, final loss, sha256 of each file,
  library versions) so a reader can check them and reproduce them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..core.atomic import atomic_write, atomic_write_bytes
from ..core.extras import require

WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"
# Optional override of WEIGHTS_ROOT, e.g. to load weights retrained with ``--out`` without touching the package.
WEIGHTS_ROOT_ENV = "DIFFACCEL_ZOO_WEIGHTS"


def weights_root() -> Path:
    override = os.environ.get(WEIGHTS_ROOT_ENV)
    return Path(override) if override else WEIGHTS_ROOT


def weights_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """Folder holding the files of zoo model ``name``: ``<root>/<name>``, where ``root`` defaults to
    ``$DIFFACCEL_ZOO_WEIGHTS`` or the packaged ``diffaccel/zoo/weights``."""
    return Path(root if root is not None else weights_root()) / name


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def save_state(path: str | os.PathLike, modules: dict[str, torch.nn.Module]) -> None:
    """Save the state dicts of ``modules`` into one safetensors file, keys prefixed ``<component>.`` (atomic)."""
    tensors = {}
    for component, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{component}.{key}"] = value.detach().to("cpu").contiguous().clone()
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


def load_state_into(path: str | os.PathLike, modules: dict[str, torch.nn.Module]) -> None:
    """Load a file written by :func:`save_state` into ``modules``; every key must match exactly (strict)."""
    tensors = load_file(str(path))
    for component, module in modules.items():
        prefix = f"{component}."
        state = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
        if not state:
            raise KeyError(f"{path} holds no tensors for component {component!r}")
        module.load_state_dict(state, strict=True)
    known = tuple(f"{component}." for component in modules)
    extra = sorted(key for key in tensors if not key.startswith(known))
    if extra:
        raise KeyError(f"{path} holds tensors for no known component: {extra[:5]}")


def model_config(model: torch.nn.Module) -> dict[str, Any]:
    """JSON-ready ``{"class", "config"}`` of a diffusers ``ConfigMixin`` object (model or scheduler)."""
    config = {key: value for key, value in dict(model.config).items() if not key.startswith("_")}
    return {"class": type(model).__name__, "config": json.loads(json.dumps(config, default=list))}


def library_versions() -> dict[str, str]:
    import diffusers
    import numpy
    import safetensors
    import sklearn

    skimage = require("skimage", "zoo")

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
        "scikit-image": skimage.__version__,
        "scikit-learn": sklearn.__version__,
    }


def verify_manifest(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check every file listed in ``manifest.json`` against its recorded sha256; returns the manifest.

    Raises ``ValueError`` naming the file whose content changed since training (for example a Git LFS pointer
    or a partial copy), which would otherwise surface later as a confusing shape or key error.
    """
    folder = weights_dir(name, root)
    manifest = read_json(folder / "manifest.json")
    for filename, expected in manifest.get("sha256", {}).items():
        actual = sha256_of(folder / filename)
        if actual != expected:
            raise ValueError(f"{folder / filename}: sha256 {actual} does not match the manifest ({expected})")
    return manifest
