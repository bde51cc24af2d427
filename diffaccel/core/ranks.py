"""Data-dependent decisions made identically on every rank of a `torch.distributed` job.

Most schedules (TaylorSeer's, HyCa's at inference) depend only on the step index, so every rank decides
the same. Two decisions depend on the data a rank sees: TaoCache's "may the next steps be forecast"
(from the deltas of the rank's own output) and HyCa's profile (from the rank's probe run). Under context
parallelism (diffusers' `enable_parallelism`, xDiT) each rank holds a shard of the sequence; under data
parallelism each rank has its own prompts. If ranks decided differently, one would skip a step another
computes, and the collective operations inside the model would wait forever (a hang) or pair up the
wrong tensors. So these decisions are made once for all ranks here: a scalar signal is all-reduced (the
maximum expected error: the most cautious rank decides), and a profile is broadcast from rank 0.

Outside an initialised process group (the usual single-process case) every function returns its input.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

T = TypeVar("T")


def _active() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def _device() -> torch.device:
    """The device collectives of the default group run on (NCCL needs CUDA tensors; gloo takes CPU ones)."""
    backend = torch.distributed.get_backend()
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agreed_max(value: float) -> float:
    """The largest `value` over all ranks (every rank must call this at the same point)."""
    if not _active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return float(tensor.item())


def from_rank_zero(obj: T) -> T:
    """Rank 0's `obj` on every rank (picklable objects; every rank must call this at the same point)."""
    if not _active():
        return obj
    box: list[Any] = [obj]
    torch.distributed.broadcast_object_list(box, src=0, device=_device())
    return box[0]
