"""Flatten module outputs into a list of tensors and back.

Cache units return a tensor or a tuple of tensors (FLUX's joint attention returns `(img, txt)`);
strategies keep one state per tensor element, so outputs are flattened once on the way in and
rebuilt on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class OutputStructure:
    """How a flat list of tensors is rebuilt into the module's original output."""

    kind: str  # "tensor", "tuple", "list" or "output" (a diffusers BaseOutput dataclass)
    length: int = 1
    output_cls: type | None = None
    keys: tuple[str, ...] = ()

    def rebuild(self, leaves: list[torch.Tensor | None]) -> Any:
        if self.kind == "tensor":
            return leaves[0]
        if self.kind == "output":
            return self.output_cls(**dict(zip(self.keys, leaves)))
        return tuple(leaves) if self.kind == "tuple" else list(leaves)


def flatten_output(output: Any) -> tuple[list[torch.Tensor | None], OutputStructure]:
    """Return the tensor leaves of `output` and the structure needed to rebuild it.

    Only a tensor or a flat tuple/list of tensors (or None) is accepted: anything else cannot be
    forecast element-wise and is rejected loudly rather than cached wrongly.
    """
    if isinstance(output, torch.Tensor):
        return [output], OutputStructure("tensor")
    if _is_base_output(output) and all(v is None or isinstance(v, torch.Tensor) for v in output.values()):
        keys = tuple(output.keys())
        return [output[k] for k in keys], OutputStructure("output", len(keys), type(output), keys)
    if isinstance(output, (tuple, list)) and all(x is None or isinstance(x, torch.Tensor) for x in output):
        kind = "tuple" if isinstance(output, tuple) else "list"
        return list(output), OutputStructure(kind, len(output))
    raise TypeError(
        f"diffaccel can cache only modules returning a tensor or a flat tuple of tensors; got {type(output).__name__}. "
        "Describe a different cache unit in the model's adapter."
    )


def _is_base_output(output: Any) -> bool:
    from diffusers.utils import BaseOutput

    return isinstance(output, BaseOutput)


def tensor_bytes(leaves) -> int:
    """Bytes held by the tensors in an iterable (None entries count zero)."""
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
