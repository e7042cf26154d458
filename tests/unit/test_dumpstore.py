"""Dump directory: names, atomic writes, garbage collection."""

from __future__ import annotations

import errno
import os
import stat
from datetime import datetime, timezone

import pytest

from exectrace import dumpstore


def make(directory, second, pid=100, size=1000):
    name = dumpstore.file_name(int(datetime(2026, 11, 29, 18, 41, second, tzinfo=timezone.utc).timestamp() * 1e9) + 216_000_000, pid)
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(b"x" * size)
    return path


def test_file_name_scheme_sorts_chronologically():
    ns = int(datetime(2026, 11, 29, 18, 41, 22, tzinfo=timezone.utc).timestamp()) * 10**9 + 216_999_999
    assert dumpstore.file_name(ns, 4242) == "executiontrace.2026-11-29T18_41_22.216.4242.out"
    names = [dumpstore.file_name(ns + d, 7) for d in (0, 10**6, 10**9, 3600 * 10**9)]
    assert names == sorted(names) and len(set(names)) == 4
    when, pid = dumpstore.parse_name(names[0])
    assert pid == 7 and when.year == 2026 and when.microsecond == 216_000


@pytest.mark.parametrize("name", [
    "executiontrace.2026-11-29T18_41_22.216.4242.out.bak",
    "xexecutiontrace.2026-11-29T18_41_22.216.4242.out",
    "executiontrace.2026-11-29T18_41_22.4242.out",
    "executiontrace.latest.out",
    "executiontrace.2026-13-45T18_41_22.216.4242.out",
])
def test_foreign_names_are_not_owned(name):
    assert dumpstore.parse_name(name) is None


def test_write_is_atomic_with_private_modes(tmp_path):
    old = os.umask(0)
    try:
        directory = str(tmp_path / "dump")
        path = dumpstore.write(directory, "executiontrace.2026-11-29T18_41_22.216.1.out", b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "rb") as f:
        assert f.read() == b"data"
    assert os.listdir(directory) == [os.path.basename(path)]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    directory = str(tmp_path)

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dumpstore.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        dumpstore.write(directory, "executiontrace.2026-11-29T18_41_22.216.1.out", b"data" * 1000)
    assert os.listdir(directory) == []


def test_write_refuses_names_that_are_not_trace_files(tmp_path):
    for bad in ("../escape.out", "executiontrace.x.out", "a/executiontrace.2026-11-29T18_41_22.216.1.out"):
        with pytest.raises(ValueError):
            dumpstore.write(str(tmp_path), bad, b"")


def test_collect_keeps_newest_files_under_the_limit(tmp_path):
    d = str(tmp_path)
    paths = [make(d, s, size=1000) for s in range(10)]
    result = dumpstore.collect(d, limit=3500)
    assert [f.path for f in result.kept] == paths[-3:]
    assert [f.path for f in result.deleted] == paths[:-3]
    assert set(os.listdir(d)) == {os.path.basename(p) for p in paths[-3:]} | {dumpstore.LOCK_NAME}
    assert result.kept_bytes <= 3500


def test_newest_file_always_stays(tmp_path):
    d = str(tmp_path)
    make(d, 1, size=5000)
    newest = make(d, 2, size=5000)
    result = dumpstore.collect(d, limit=10)
    assert [f.path for f in result.kept] == [newest]


def test_foreign_entries_survive(tmp_path):
    d = tmp_path / "dump"
    d.mkdir()
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious" * 1000)
    link = d / "executiontrace.2026-01-01T00_00_00.000.1.out"
    link.symlink_to(outside)
    as_dir = d / "executiontrace.2026-01-01T00_00_01.000.1.out"
    as_dir.mkdir()
    foreign = d / "notes.txt"
    foreign.write_bytes(b"x" * 10000)
    old = make(str(d), 1, size=2000)
    new = make(str(d), 2, size=2000)
    result = dumpstore.collect(str(d), limit=2500)
    assert [f.path for f in result.deleted] == [old]
    assert link.is_symlink() and outside.read_bytes() == b"precious" * 1000
    assert as_dir.is_dir() and foreign.exists() and os.path.exists(new)


def test_file_deleted_by_a_neighbour_is_not_an_error(tmp_path, monkeypatch):
    d = str(tmp_path)
    for s in range(4):
        make(d, s, size=1000)
    real_unlink = os.unlink

    def neighbour_got_there_first(path, *a, **k):
        real_unlink(path)
        raise FileNotFoundError(errno.ENOENT, "gone", path)

    monkeypatch.setattr(dumpstore.os, "unlink", neighbour_got_there_first)
    result = dumpstore.collect(d, limit=1500)
    assert len(result.deleted) == 3


def test_stale_temporary_files_are_removed(tmp_path):
    d = str(tmp_path)
    stale = tmp_path / "executiontrace.2026-11-29T18_41_22.216.9.123.tmp"
    fresh = tmp_path / "executiontrace.2026-11-29T18_41_23.216.9.124.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    old = os.path.getmtime(stale) - 2 * dumpstore.STALE_TMP_SECONDS
    os.utime(stale, (old, old))
    dumpstore.collect(d, limit=10**9)
    assert not stale.exists() and fresh.exists()


def test_usage_counts_owned_files_only(tmp_path):
    d = str(tmp_path)
    make(d, 1, size=100)
    make(d, 2, size=200)
    (tmp_path / "other.out").write_bytes(b"z" * 999)
    assert dumpstore.usage(d) == (2, 300)
    assert dumpstore.usage(str(tmp_path / "missing")) == (0, 0)
