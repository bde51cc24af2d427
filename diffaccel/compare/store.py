"""Where results live: `results.jsonl` written atomically after every run, and on-disk arrays.

Data safety (brief, "long evaluation sweeps write each finished result at once (atomically) and can
resume"): every `put` rewrites the whole JSON-lines file into a temporary file in the same folder, fsyncs
it, and `os.replace`s it over the old one, so a reader or a resumed run sees either the old file or the
new one, never half a line. A run killed at any point therefore loses at most the run in progress, and
`--resume` skips every record already on disk (records are keyed, so nothing is duplicated).

Concurrent writers: every change is a read-merge-write of the file on disk under an exclusive lock on the
output folder (`folder_lock`), so any number of processes sharing one `--out` (two `--resume` runs started
side by side, say) lose and duplicate nothing.

Several processes (accelerate) each write their own shard, `shards/results.<i>-of-<n>.jsonl`; the main
process merges all shards into `results.jsonl` at the end. Loading reads the main file and every shard,
so a resume after a kill of a multi-process run also loses nothing.

JSON has no infinity: a PSNR of identical images is stored as the string "inf" and read back as a float.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import atomic_write, atomic_write_text
from .folder_lock import folder_lock

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
SHARD_DIR = "shards"
#: Fields every record carries (null when unavailable), as promised in the README.
RECORD_FIELDS = (
    "model",
    "strategy",
    "options",
    "seed",
    "steps",
    "full_steps",
    "computed_fraction",
    "wall_s",
    "psnr",
    "ssim",
    "lpips",
    "prompt",
    "class",
)
_FLOAT_FIELDS = ("psnr", "ssim", "lpips", "psnr_images", "ssim_images", "lpips_images", "temporal_error")


def record_key(record: dict[str, Any]) -> tuple:
    """Identity of a run: the same key means the same run (model, strategy tag, seed, condition, settings)."""
    return (
        record.get("model"),
        record.get("tag"),
        record.get("seed"),
        record.get("condition"),
        record.get("num_inference_steps"),
        record.get("guidance_scale"),
        record.get("scheduler"),
    )


def _encode(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return _encode(value.item())
    return value


def _decode_float(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_float(v) for v in value]
    if value in ("inf", "-inf"):
        return float(value)
    return value


def encode_record(record: dict[str, Any]) -> str:
    return json.dumps(_encode(record), allow_nan=False, sort_keys=False)


def decode_record(line: str) -> dict[str, Any]:
    record = json.loads(line)
    for name in _FLOAT_FIELDS:
        if name in record:
            record[name] = _decode_float(record[name])
    return record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(decode_record(line))
        except json.JSONDecodeError:
            logger.warning("%s:%d is not valid JSON; skipped", path, number)
    return records


def _prefer(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Between two records of one key keep a finished run over a failure/unsupported row, else the newer."""
    if old is None:
        return new
    if old.get("status") == "ok" and new.get("status") != "ok":
        return old
    return new


def merge_records(groups: Iterable[Iterable[dict[str, Any]]]) -> dict[tuple, dict[str, Any]]:
    merged: dict[tuple, dict[str, Any]] = {}
    for records in groups:
        for record in records:
            key = record_key(record)
            merged[key] = _prefer(merged.get(key), record)
    return merged


class ResultsStore:
    """The records of one output folder, with an atomic write per `put`.

    Args:
        out_dir: the `--out` folder.
        shard: None for a single process (writes `results.jsonl`); `"<i>-of-<n>"` for process i of n
            (writes `shards/results.<i>-of-<n>.jsonl`).
    """

    def __init__(self, out_dir: str | Path, shard: str | None = None):
        self.out_dir = Path(out_dir)
        self.shard = shard
        self.main_path = self.out_dir / RESULTS_NAME
        self.path = self.main_path if shard is None else self.out_dir / SHARD_DIR / f"results.{shard}.jsonl"
        self.all: dict[tuple, dict[str, Any]] = {}
        self.own: dict[tuple, dict[str, Any]] = {}

    def shard_paths(self) -> list[Path]:
        return sorted((self.out_dir / SHARD_DIR).glob("results.*.jsonl"))

    def load(self) -> ResultsStore:
        """Read the main file and every shard (all of a previous run, however many processes it had)."""
        self.all = merge_records([read_jsonl(self.main_path)] + [read_jsonl(p) for p in self.shard_paths()])
        self.own = merge_records([read_jsonl(self.path)])
        return self

    def exists(self) -> bool:
        return self.main_path.is_file() or bool(self.shard_paths())

    def get(self, key: tuple) -> dict[str, Any] | None:
        return self.all.get(key)

    def is_done(self, key: tuple) -> bool:
        record = self.all.get(key)
        return record is not None and record.get("status") == "ok"

    def put(self, record: dict[str, Any]) -> None:
        """Add (or replace, same key) one record and write the file atomically."""
        for name in RECORD_FIELDS:
            record.setdefault(name, None)
        key = record_key(record)
        with folder_lock(self.out_dir):
            self.own = merge_records([read_jsonl(self.path)])  # what other writers of this file added meanwhile
            self.own[key] = record
            self._write_own()

    def _write_own(self) -> None:
        """Rewrite this store's file from `own` (caller holds the folder lock) and fold it into `all`."""
        atomic_write_text(self.path, "".join(encode_record(r) + "\n" for r in self.own.values()))
        self.all.update(self.own)

    def remove(self, key: tuple) -> None:
        """Drop a record (a stale "unsupported"/"failed" row once the strategy ran) and rewrite atomically."""
        self.all.pop(key, None)
        with folder_lock(self.out_dir):
            self.own = merge_records([read_jsonl(self.path)])
            if self.own.pop(key, None) is not None:
                self._write_own()

    def records(self) -> list[dict[str, Any]]:
        return list(self.all.values())

    def merge_shards(self) -> Path:
        """Main process, after every process finished: fold all shards into `results.jsonl`, then remove them."""
        with folder_lock(self.out_dir):
            shards = self.shard_paths()
            merged = merge_records([read_jsonl(self.main_path)] + [read_jsonl(p) for p in shards])
            atomic_write_text(self.main_path, "".join(encode_record(r) + "\n" for r in merged.values()))
            for shard in shards:
                shard.unlink()
        try:
            (self.out_dir / SHARD_DIR).rmdir()
        except OSError:
            pass
        self.all = merged
        return self.main_path


def save_array(path: Path, array: np.ndarray) -> None:
    """`np.save` through a temporary file and `os.replace`, so a cached array is whole or absent."""
    atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(array), allow_pickle=False), mode="wb")


def load_array(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    return np.load(path, allow_pickle=False)


def to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)
