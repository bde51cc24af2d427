"""Under torch.distributed, data-dependent decisions are the same on every rank: two gloo processes on loopback,
fed different data (as data-parallel ranks, or context-parallel ranks holding different shards of a sequence),
skip the same TaoCache steps with the same rate κ, take the same adaptive-schedule steps, build the same HyCa
profile and the same BAC schedule, and nothing hangs. The statistics behind them are sums over the ranks: on
shards of one tensor they equal those of one process holding the whole tensor."""

from __future__ import annotations

import multiprocessing
import os
import socket

import pytest
import torch

import diffaccel
from diffaccel.forecast.fixed_point import cosine_and_ratios, delta_cosine, delta_ratio, delta_sums
from diffaccel.forecast.schedules import l1_change_sums, relative_l1_change
from diffaccel.forecast.step_selection import (
    cosine_similarity_matrix,
    distance_matrix,
    matrices_from_pair_sums,
    pair_sums,
    reuse_error,
    reuse_error_from_pair_sums,
)
from diffaccel.testing.sequences import Run, denoise
from diffaccel.testing.tiny_models import build_tiny

FLUX = "FluxTransformer2DModel"
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _engine(model):
    return diffaccel.api.engines(model)[""]


def _decisions(rank: int) -> dict:
    """Every data-dependent decision of one rank, fed data of its own (seed = rank)."""
    run = Run(steps=12, batch=1, side=3, guidance="contexts", seed=rank)
    out = {}
    model = diffaccel.wrap(build_tiny(FLUX), "taocache", start_step=2, error_threshold=0.3, max_skips=3)
    denoise(model, run, wrapped=True)
    out["taocache skipped"] = sorted(_engine(model).stats.steps_with_forecast)
    out["taocache kappa"] = {c: s.anchor_rho for c, s in _engine(model).unit_hooks[0].states.items()}
    diffaccel.unwrap(model)

    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1, schedule="adaptive", threshold=0.3)
    denoise(model, run, wrapped=True)
    out["adaptive forecast"] = sorted(_engine(model).stats.steps_with_forecast)
    diffaccel.unwrap(model)

    hyca_model = build_tiny(FLUX)
    profile = diffaccel.hyca.profile(
        hyca_model, run=lambda: denoise(hyca_model, run, wrapped=True), options=dict(interval=3, warmup=1)
    )
    out["hyca profile"] = {
        name: [None if leaf is None else (leaf.labels.tolist(), list(leaf.solvers)) for leaf in leaves]
        for name, leaves in profile.units.items()
    }

    model = diffaccel.wrap(build_tiny(FLUX), "bac", num_updates=3, top_blocks=2)
    denoise(model, run, wrapped=True)  # the first run calibrates
    denoise(model, run, wrapped=True)
    out["bac schedule"] = _engine(model).strategies[0].schedule.updates
    out["bac forecast"] = sorted(_engine(model).stats.steps_with_forecast)
    diffaccel.unwrap(model)
    return out


def _shard_statistics(rank: int, world: int) -> dict:
    """The pooled statistics of this rank's shard (a slice of the tokens) of fixed tensors."""
    gen = torch.Generator().manual_seed(7)
    d_new, d_old, base = (torch.randn(2, 12, 5, generator=gen) for _ in range(3))
    features = torch.randn(6, 2, 12, 5, generator=gen)  # steps x batch x tokens x channels
    part = slice(rank * 12 // world, (rank + 1) * 12 // world)
    tao = cosine_and_ratios(diffaccel.core.ranks.agreed_sum(delta_sums(d_new[:, part], d_old[:, part], base[:, part])))
    moved, size = diffaccel.core.ranks.agreed_sum(l1_change_sums(d_new[:, part], d_old[:, part])).tolist()
    sums = diffaccel.core.ranks.agreed_sum(pair_sums(features[:, :, part]))
    return {
        "tao": tao,
        "l1 change": moved / size,
        "cosine": matrices_from_pair_sums(sums, "cosine").tolist(),  # (plain lists cross the queue safely)
        "mse": matrices_from_pair_sums(sums, "mse").tolist(),
        "reuse": reuse_error_from_pair_sums(sums),
    }


def _rank_main(rank: int, world: int, port: int, distributed: bool, queue) -> None:
    try:
        torch.set_num_threads(1)
        if distributed:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
        shards = _shard_statistics(rank, world) if distributed else None
        queue.put((rank, _decisions(rank), shards, None))
    except BaseException as error:  # noqa: BLE001 - handed to the test
        queue.put((rank, None, None, repr(error)))
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
        rank, decisions, shards, error = queue.get(timeout=300)  # a hang fails here instead of blocking CI
        assert error is None, error
        results[rank] = (decisions, shards)
    for p in procs:
        p.join(timeout=60)
    return results


def test_ranks_with_different_data_decide_alike():
    alone = _run_ranks(distributed=False)
    for what in set(alone[0][0]) - {"bac forecast"}:  # (any step but the forced ones may reuse, on both)
        assert alone[0][0][what] != alone[1][0][what], f"alone, the two data sets must lead to different {what}"
    together = _run_ranks(distributed=True)
    for what in together[0][0]:
        assert together[0][0][what] == together[1][0][what], f"{what} differs between the two ranks"
    assert together[0][0]["taocache skipped"], "TaoCache forecast some steps together"
    assert together[0][0]["bac forecast"], "BAC cached some steps together"

    # the pooled statistics of the two shards are those of the whole tensors, on both ranks
    gen = torch.Generator().manual_seed(7)
    d_new, d_old, base = (torch.randn(2, 12, 5, generator=gen) for _ in range(3))
    features = torch.randn(6, 2, 12, 5, generator=gen)
    whole = (delta_cosine(d_new, d_old), delta_ratio(d_new, d_old), delta_ratio(d_new, base))
    for rank in (0, 1):
        shards = together[rank][1]
        assert shards["tao"] == pytest.approx(whole, rel=1e-12)
        assert shards["l1 change"] == pytest.approx(relative_l1_change(d_new, d_old), rel=1e-6)
        cosine, mse = (torch.tensor(shards[k], dtype=torch.float64) for k in ("cosine", "mse"))
        torch.testing.assert_close(cosine, cosine_similarity_matrix(features), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mse, distance_matrix(features, "mse"), rtol=1e-9, atol=1e-12)
        assert shards["reuse"] == pytest.approx(reuse_error(features), rel=1e-9)
    assert together[0][1]["cosine"] == together[1][1]["cosine"]
