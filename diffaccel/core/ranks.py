"""Data-dependent decisions made identically on every rank of a `torch.distributed` job.

Most schedules (TaylorSeer's, HyCa's at inference) depend only on the step index, so every rank decides
the same. Some decisions depend on the data a rank sees: TaoCache's "may the next steps be forecast" and
its rate κ (from the deltas of the denoiser output), the adaptive schedule's first-block test, HyCa's
profile (from the probe run) and BAC's schedule (from the calibration run). Under context parallelism
(diffusers' `enable_parallelism`, xDiT) each rank holds a shard of the sequence; under data parallelism
each rank has its own prompts. If ranks decided differently, one would skip a step another computes, and
the collective operations inside the model would wait forever (a hang) or pair up the wrong tensors.

So these decisions are made from statistics summed over all ranks (`agreed_sum`): dot products, squared
norms, absolute differences and token counts, from which every rank computes the same cosine, ratio or
mean as one process holding the whole tensor would (a context-parallel shard is part of the sequence; a
data-parallel rank's samples are part of a larger batch). Objects built from those statistics (a profile,
a schedule) are then taken from rank 0 (`from_rank_zero`), so that even a last-bit difference in a
rank's arithmetic cannot make two ranks disagree.

Outside an initialised process group (the usual single-process case) every function returns its input
and the callers keep their single-process arithmetic unchanged.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

T = TypeVar("T")


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
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


def agreed_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over all ranks, in float64 on the tensor's device (every rank must call this at the
    same point with the same shape)."""
    values = values.detach().to(torch.float64)
    if not distributed():
        return values
    tensor = values.to(_device()).contiguous().clone()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor.to(values.device)


def from_rank_zero(obj: T) -> T:
    """Rank 0's `obj` on every rank (picklable objects; every rank must call this at the same point)."""
    if not distributed():
        return obj
    box: list[Any] = [obj]
    torch.distributed.broadcast_object_list(box, src=0, device=_device())
    return box[0]
