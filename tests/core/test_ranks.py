"""Under torch.distributed, data-dependent decisions are the same on every rank: two gloo processes on
loopback, fed different data, skip the same TaoCache steps and build the same HyCa profile."""

from __future__ import annotations

import multiprocessing
import os
import socket

import pytest
import torch

import diffaccel
from diffaccel.testing.sequences import Run, denoise
from diffaccel.testing.tiny_models import build_tiny

FLUX = "FluxTransformer2DModel"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, distributed: bool, queue) -> None:
    try:
        torch.set_num_threads(1)
        if distributed:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
        # each rank has its own data (as under data parallelism, or a shard under context parallelism)
        run = Run(steps=12, batch=1, side=3, guidance="contexts", seed=rank)
        model = diffaccel.wrap(build_tiny(FLUX), "taocache", start_step=2, error_threshold=0.3, max_skips=3)
        denoise(model, run, wrapped=True)
        computed = sorted(diffaccel.api.engines(model)[""].stats.steps_with_forecast)  # the steps it skipped
        diffaccel.unwrap(model)
        hyca_model = build_tiny(FLUX)
        profile = diffaccel.hyca.profile(
            hyca_model,
            run=lambda: denoise(hyca_model, run, wrapped=True),
            options=dict(interval=3, warmup=1, num_clusters=2),
        )
        labels = {
            name: [None if leaf is None else (leaf.labels.tolist(), list(leaf.solvers)) for leaf in leaves]
            for name, leaves in profile.units.items()
        }
        queue.put((rank, computed, None, labels))
    except BaseException as error:  # noqa: BLE001 - handed to the test
        queue.put((rank, "error", repr(error), None))
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run_ranks(distributed: bool) -> dict:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_rank_main, args=(r, 2, port, distributed, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        rank, computed, error, labels = queue.get(timeout=300)
        assert computed != "error", error
        results[rank] = (computed, labels)
    for p in procs:
        p.join(timeout=60)
    return results


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")
def test_ranks_with_different_data_decide_alike():
    alone = _run_ranks(distributed=False)
    assert alone[0][0] != alone[1][0], "alone, the two data sets must lead to different TaoCache decisions"
    assert alone[0][1] != alone[1][1], "alone, the two data sets must lead to different HyCa profiles"
    together = _run_ranks(distributed=True)
    assert together[0][0] == together[1][0], "TaoCache computed different steps on the two ranks"
    assert together[0][1] == together[1][1], "HyCa built different profiles on the two ranks"
    assert together[0][1] == alone[0][1], "the shared profile is rank 0's"
