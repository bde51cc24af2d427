"""Crash-safe file writes: a reader, or a resumed run, sees a file's old content or its whole new content,
never a partial write.

The protocol: write a temporary file beside the target (same folder, so the rename stays on one file
system), flush and fsync it, `os.replace` it over the target, then fsync the folder so that the rename itself
survives a crash. On any failure the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: permissions of written files before the umask (a bare temporary file would be private to its owner)
FILE_MODE = 0o666


@functools.cache
def _file_mode() -> int:
    """FILE_MODE minus the process umask: what `open(path, "w")` (and so every image library) creates.
    Read once: reading the umask means setting it, which is not thread-safe."""
    umask = os.umask(0o022)
    os.umask(umask)
    return FILE_MODE & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], Any], mode: str | None = None) -> None:
    """Write `path` atomically. With `mode` ("w", "wb"), `write` gets an open handle of the temporary file;
    without, it gets the temporary file's path (for writers that take a file name, such as safetensors'
    `save_file` or an image's `save`; the temporary name ends with the target's suffix so formats are inferred)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    try:
        if mode is None:
            os.close(fd)
            write(Path(tmp))
            _fsync_file(tmp)
        else:
            with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` so that `path` always holds either its old or its new content."""
    atomic_write(path, lambda handle: handle.write(text), mode="w")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data), mode="wb")


def _fsync_file(name: str) -> None:
    with open(name, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["FILE_MODE", "atomic_write", "atomic_write_bytes", "atomic_write_text"]
