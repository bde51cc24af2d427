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

    kind: str  # "tensor", "tuple" or "list"
    length: int = 1

    def rebuild(self, leaves: list[torch.Tensor | None]) -> Any:
        if self.kind == "tensor":
            return leaves[0]
        return tuple(leaves) if self.kind == "tuple" else list(leaves)


def flatten_output(output: Any) -> tuple[list[torch.Tensor | None], OutputStructure]:
    """Return the tensor leaves of `output` and the structure needed to rebuild it.

    Only a tensor or a flat tuple/list of tensors (or None) is accepted: anything else cannot be
    forecast element-wise and is rejected loudly rather than cached wrongly.
    """
    if isinstance(output, torch.Tensor):
        return [output], OutputStructure("tensor")
    if isinstance(output, (tuple, list)) and all(x is None or isinstance(x, torch.Tensor) for x in output):
        kind = "tuple" if isinstance(output, tuple) else "list"
        return list(output), OutputStructure(kind, len(output))
    raise TypeError(
        f"diffaccel can cache only modules returning a tensor or a flat tuple of tensors; got {type(output).__name__}. "
        "Describe a different cache unit in the model's adapter."
    )


def tensor_bytes(leaves) -> int:
    """Bytes held by the tensors in an iterable (None entries count zero)."""
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
