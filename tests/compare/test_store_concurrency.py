"""Several processes writing one results.jsonl at once lose and duplicate nothing; files are 0666 - umask."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from diffaccel.compare.store import ResultsStore, read_jsonl, record_key


def _writer(out: str, writer: int, count: int, barrier) -> None:
    """A cheap stand-in for a compare process: the same store API, one record per "run", no model."""
    store = ResultsStore(out).load()
    barrier.wait()
    for seed in range(count):
        store.put({"model": "m", "tag": f"writer{writer}", "seed": seed, "condition": "all", "status": "ok"})


def _run_writers(out: Path, writers: int, count: int) -> None:
    context = multiprocessing.get_context("fork")  # real processes, without paying the import again
    barrier = context.Barrier(writers)
    procs = [context.Process(target=_writer, args=(str(out), w, count, barrier)) for w in range(writers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * writers


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_lose_nothing(tmp_path, writers):
    count = 30
    _run_writers(tmp_path, writers, count)
    records = read_jsonl(tmp_path / "results.jsonl")
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys)), "no record is duplicated"
    assert sorted((r["tag"], r["seed"]) for r in records) == sorted(
        (f"writer{w}", s) for w in range(writers) for s in range(count)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"], "no lock or temporary file left behind"


def test_a_store_sees_records_other_writers_added(tmp_path):
    first, second = ResultsStore(tmp_path).load(), ResultsStore(tmp_path).load()
    first.put({"model": "m", "tag": "a", "seed": 0, "status": "ok"})
    second.put({"model": "m", "tag": "b", "seed": 0, "status": "ok"})
    assert len(read_jsonl(tmp_path / "results.jsonl")) == 2
    second.remove(record_key({"model": "m", "tag": "a", "seed": 0}))
    assert [r["tag"] for r in read_jsonl(tmp_path / "results.jsonl")] == ["b"]


def test_files_get_the_mode_of_an_ordinary_write(tmp_path):
    umask = os.umask(0o022)
    try:
        store = ResultsStore(tmp_path).load()
        store.put({"model": "m", "tag": "a", "seed": 0, "status": "ok"})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "results.jsonl").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
