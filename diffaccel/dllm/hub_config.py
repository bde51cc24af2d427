"""Hub-format ``config.json`` for dLLM checkpoint folders, zoo models included.

A zoo dLLM folder is laid out like a downloaded checkpoint: ``model.safetensors`` under the official
parameter names and a ``config.json`` with the fields of the official config class (LLaDA's
``LLaDAConfig`` / Dream's ``DreamConfig``), so :func:`diffaccel.dllm.load_llada` /
:func:`~diffaccel.dllm.load_dream` / :func:`diffaccel.dllm.loading.load_dllm` read both, and the official model classes
build the same architecture from it. Zoo folders add one key, ``diffaccel_task``, describing the
synthetic task the model was trained on (extra keys are kept, and ignored, by ``PretrainedConfig``).

Folders written before this layout (``{"architecture", "model", "task"}``) are still read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..zoo.weights_io import read_json, write_json
from .config import DreamConfig, LLaDAConfig

logger = logging.getLogger(__name__)

TASK_KEY = "diffaccel_task"
FAMILIES = {"llada": LLaDAConfig, "dream": DreamConfig}


def write_hub_config(
    folder: str | Path,
    config: LLaDAConfig | DreamConfig,
    task: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``<folder>/config.json`` (atomic) and return its path; ``dtype`` (the weights' dtype) is recorded
    as ``torch_dtype``, as hub checkpoints do (``from_pretrained(torch_dtype="auto")`` reads it)."""
    payload = config.to_hf_dict()
    if dtype is not None:
        payload["torch_dtype"] = str(dtype).removeprefix("torch.")
    if task is not None:
        payload[TASK_KEY] = task
    path = Path(folder) / "config.json"
    write_json(path, payload)
    return path


def family_of(raw: dict[str, Any]) -> str:
    """``"llada"`` or ``"dream"`` from a config dict (hub or legacy zoo layout)."""
    if "model" in raw and "architecture" in raw:  # legacy zoo layout
        return "llada" if raw["architecture"].lower().startswith("llada") else "dream"
    model_type = str(raw.get("model_type", "")).lower()
    if model_type in FAMILIES:
        return model_type
    raise ValueError(f"config.json has model_type={raw.get('model_type')!r}; dLLM families: 'llada', 'Dream'")


def read_model_config(folder: str | Path, family: str | None = None) -> LLaDAConfig | DreamConfig:
    """The architecture config of a checkpoint or zoo folder; ``family`` (if given) must match."""
    path = Path(folder) / "config.json"
    raw = read_json(path)
    # a config without model_type is taken to be of the family the caller asks for
    found = family if family is not None and "model_type" not in raw and "architecture" not in raw else family_of(raw)
    if family is not None and found != family:
        raise ValueError(f"{path} describes a {found!r} model, not {family!r}")
    if "model" in raw and "architecture" in raw:
        logger.info("%s uses the old zoo layout; rewrite it with write_hub_config for the official classes", path)
        return FAMILIES[found].from_dict(raw["model"])
    return FAMILIES[found].from_hf_dict(raw)


def read_task(folder: str | Path) -> dict[str, Any]:
    """The ``diffaccel_task`` entry of a zoo folder (``task`` in the old layout)."""
    raw = read_json(Path(folder) / "config.json")
    task = raw.get(TASK_KEY, raw.get("task"))
    if task is None:
        raise KeyError(f"{folder}/config.json has no {TASK_KEY!r}: not a diffaccel zoo model")
    return task
