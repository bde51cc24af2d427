"""`diffaccel.core.atomic`: the target holds its old or its whole new content, never a partial write."""

from __future__ import annotations

import pytest

from diffaccel.core.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write(tmp_path / "c.txt", lambda tmp: tmp.write_text("by path"))
    assert path.read_text() == "two" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "c.txt").read_text() == "by path"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.bin", "c.txt", "sub"]


def test_a_failing_writer_leaves_the_old_content(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def fail(handle):
        handle.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail, mode="w")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_the_temporary_name_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    seen = []
    atomic_write(tmp_path / "grid.png", lambda tmp: (seen.append(tmp.suffix), tmp.write_bytes(b"x")))
    assert seen == [".png"]
