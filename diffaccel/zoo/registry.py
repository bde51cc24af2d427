"""The zoo registry: a name -> loader table that any part of diffaccel can add to.

A loader is either a callable ``loader(device=..., dtype=...) -> pipeline`` or, to keep ``import diffaccel.zoo``
cheap, a string ``"package.module:function"`` imported only when that model is loaded. Registering a model::

    from diffaccel.zoo.registry import register_zoo_model

    register_zoo_model(
        "llada-addition",
        "diffaccel.dllm.zoo:load_llada_addition",    # called as load_llada_addition(device=..., dtype=...)
        "tiny LLaDA-style masked-diffusion LM on synthetic addition",
        kind="dllm",
    )

Built-in models are registered in :mod:`diffaccel.zoo` (``__init__.py``); a model that lives elsewhere in the
package adds one ``register_zoo_model`` line there (string loader), so ``names()`` lists it without importing it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ZooEntry:
    """One registered model: ``loader`` (callable or ``"module:function"``), a one-line ``description`` and a
    ``kind`` telling callers what the pipeline produces (``"image"``: ``.images``; ``"dllm"``: text)."""

    name: str
    loader: Callable[..., Any] | str
    description: str
    kind: str = "image"

    def resolve_loader(self) -> Callable[..., Any]:
        if callable(self.loader):
            return self.loader
        module_name, _, attribute = self.loader.partition(":")
        if not module_name or not attribute:
            raise ValueError(f"zoo model {self.name!r}: loader {self.loader!r} is not of the form 'module:function'")
        return getattr(importlib.import_module(module_name), attribute)


_REGISTRY: dict[str, ZooEntry] = {}


def register_zoo_model(
    name: str, loader: Callable[..., Any] | str, description: str, kind: str = "image", overwrite: bool = False
) -> ZooEntry:
    """Add a model to the zoo. Re-registering an existing name is an error unless ``overwrite=True``."""
    if not isinstance(name, str) or not name:
        raise ValueError("zoo model name must be a non-empty string")
    if not (callable(loader) or (isinstance(loader, str) and ":" in loader)):
        raise TypeError(f"zoo model {name!r}: loader must be callable or 'module:function', got {loader!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"zoo model {name!r} is already registered (pass overwrite=True to replace it)")
    entry = ZooEntry(name=name, loader=loader, description=description, kind=kind)
    _REGISTRY[name] = entry
    return entry


def unregister_zoo_model(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """Registered zoo model names, in registration order."""
    return list(_REGISTRY)


def entry(name: str) -> ZooEntry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown zoo model {name!r}; available: {', '.join(_REGISTRY) or '(none)'}")
    return _REGISTRY[name]


def load(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Build the ready pipeline of zoo model ``name`` from its committed safetensors."""
    return entry(name).resolve_loader()(device=device, dtype=dtype)
