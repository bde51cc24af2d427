"""An exclusive lock on an output folder, so that several `diffaccel compare` processes can share one `--out`.

Every change to `results.jsonl` is a read-merge-write: read what is on disk now, add or drop one record, and
replace the file atomically. Two processes doing that at the same time would each rewrite the file from their
own copy and the later one would drop the other's record; holding this lock around the whole read-merge-write
makes the updates one after another. The lock is `flock` on the folder itself (no lock file is left behind);
the kernel releases it when the holder exits, even on SIGKILL, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one writer per folder there
    fcntl = None

logger = logging.getLogger(__name__)
_warned = False


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (created if missing) for the duration of the block."""
    global _warned
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        if not _warned:
            logger.warning("no fcntl on this platform: concurrent writers to one output folder are not serialized")
            _warned = True
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
