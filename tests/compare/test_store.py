"""results.jsonl: atomic rewrites, keyed records, shards merged, JSON-safe infinity."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from diffaccel.compare import store as store_module
from diffaccel.compare.store import ResultsStore, load_array, read_jsonl, record_key, save_array
from diffaccel.core import atomic as atomic_module


def _record(seed, tag="taylorseer:interval=2", **extra):
    record = {
        "model": "m",
        "tag": tag,
        "strategy": tag.split(":")[0],
        "seed": seed,
        "condition": "all",
        "num_inference_steps": 4,
        "guidance_scale": None,
        "status": "ok",
        "psnr": 30.0 + seed,
    }
    record.update(extra)
    return record


def test_every_put_leaves_a_complete_file(tmp_path):
    store = ResultsStore(tmp_path).load()
    for seed in range(3):
        store.put(_record(seed))
        lines = (tmp_path / "results.jsonl").read_text().splitlines()
        assert len(lines) == seed + 1
        assert [json.loads(line)["seed"] for line in lines] == list(range(seed + 1))
    # every record carries the documented fields, null when not given
    first = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    for name in store_module.RECORD_FIELDS:
        assert name in first
    assert first["lpips"] is None and first["wall_s"] is None


def test_same_key_replaces_instead_of_duplicating(tmp_path):
    store = ResultsStore(tmp_path).load()
    store.put(_record(0, status="failed"))
    store.put(_record(0, psnr=99.0))
    records = read_jsonl(tmp_path / "results.jsonl")
    assert len(records) == 1 and records[0]["psnr"] == 99.0


def test_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path).load()
    store.put(_record(0))
    store.put(_record(1))
    before = (tmp_path / "results.jsonl").read_bytes()

    written = []
    real_fdopen = os.fdopen

    class ExplodingHandle:
        """Writes half of the text, then fails, as a full disk or a kill would."""

        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            self.handle.write(text[: len(text) // 2])
            written.append(True)
            raise OSError("disk full")

    monkeypatch.setattr(atomic_module.os, "fdopen", lambda fd, *a, **k: ExplodingHandle(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError, match="disk full"):
        store.put(_record(2))
    monkeypatch.undo()
    assert written, "the failing write was exercised"
    assert (tmp_path / "results.jsonl").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"], "no temporary file left behind"
    assert [r["seed"] for r in read_jsonl(tmp_path / "results.jsonl")] == [0, 1]


def test_failure_at_replace_keeps_the_old_file(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path).load()
    store.put(_record(0))
    before = (tmp_path / "results.jsonl").read_bytes()
    monkeypatch.setattr(atomic_module.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        store.put(_record(1))
    monkeypatch.undo()
    assert (tmp_path / "results.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]


def test_infinite_psnr_round_trips_as_strict_json(tmp_path):
    store = ResultsStore(tmp_path).load()
    store.put(_record(0, psnr=math.inf, psnr_images=[math.inf, 20.5]))
    text = (tmp_path / "results.jsonl").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    record = ResultsStore(tmp_path).load().records()[0]
    assert record["psnr"] == math.inf and record["psnr_images"] == [math.inf, 20.5]


def test_shards_merge_into_one_file_and_a_finished_run_wins(tmp_path):
    a = ResultsStore(tmp_path, shard="0-of-2").load()
    b = ResultsStore(tmp_path, shard="1-of-2").load()
    a.put(_record(0))
    a.put(_record(2, status="failed"))
    b.put(_record(1))
    b.put(_record(2))  # the same run finished in the other process
    assert not (tmp_path / "results.jsonl").exists()
    merged = ResultsStore(tmp_path).load()
    assert sorted(r["seed"] for r in merged.records()) == [0, 1, 2]
    assert merged.is_done(record_key(_record(2)))
    merged.merge_shards()
    assert not (tmp_path / "shards").exists()
    records = read_jsonl(tmp_path / "results.jsonl")
    assert sorted((r["seed"], r["status"]) for r in records) == [(0, "ok"), (1, "ok"), (2, "ok")]


def test_arrays_are_saved_whole(tmp_path):
    array = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    save_array(tmp_path / "x.npy", array)
    assert np.array_equal(load_array(tmp_path / "x.npy"), array)
    assert load_array(tmp_path / "missing.npy") is None
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]
