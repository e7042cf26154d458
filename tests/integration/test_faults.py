"""Disk faults under the controller: each gives one warning (rate-limited),
leaves no partial trace file, never touches the application, is retried at
the next window, and tracing resumes once the fault is gone.

test_controller.py covers the basic cases (RLIMIT_FSIZE, a read-only
directory as a non-root user, the directory removed between windows or
replaced by a file). These tests add faults injected into exectrace's own
file layer (so they also run as root, which bypasses chmod 0500, and land in
the middle of a write), the directory deleted again and again while windows
are written, and GC that cannot delete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import exectrace
from perfetto_check import check_trace

NAME = re.compile(r"^executiontrace\.\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3}\.(\d+)\.out$")
HANG = 90

# A busy application, a hang guard, and a way to wait for the controller
# (a handshake on its counters, not a sleep).
APP = f"""
import faulthandler, os, sys, time
faulthandler.dump_traceback_later({HANG}, exit=True)
import exectrace

def handle(i):
    return sum(range(i % 50))

def work(seconds):
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        handle(i)
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)

def wait_for(what, more, key):
    # works until status()[key] grew by `more`: the application goes on meanwhile
    start = exectrace.status()[key]
    deadline = time.monotonic() + 60
    while exectrace.status()[key] < start + more:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {{what}}: {{exectrace.status()}}")
        work(0.05)

def outs(directory):
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(".out"))
    except FileNotFoundError:
        return []
"""

# exectrace's file layer sees this instead of the os module: the test switches
# faults on and off. A failing write writes part of the data first, as a disk
# filling up does.
FAULTY_OS = """
import errno
import exectrace._files, exectrace.dumpstore

class FaultyOS:
    def __init__(self):
        self.faults = {}  # os function name -> errno it fails with

    def __getattr__(self, name):
        return getattr(os, name)

    def _fail(self, name, *filename):
        code = self.faults.get(name)
        if code is not None:
            raise OSError(code, os.strerror(code), *filename)

    def open(self, path, flags, mode=0o777, **kw):
        self._fail("open", path)
        return os.open(path, flags, mode, **kw)

    def write(self, fd, data):
        code = self.faults.get("write")
        if code is not None:
            os.write(fd, bytes(memoryview(data)[: len(data) // 2]))
            raise OSError(code, os.strerror(code))
        return os.write(fd, data)

    def fsync(self, fd):
        self._fail("fsync")
        return os.fsync(fd)

    def replace(self, src, dst):
        self._fail("replace", dst)
        return os.replace(src, dst)

    def unlink(self, path):
        self._fail("unlink", path)
        return os.unlink(path)

FS = FaultyOS()
exectrace._files.os = FS
exectrace.dumpstore.os = FS
"""


def run(code: str, *, faulty: bool = False, timeout: float = HANG + 30) -> subprocess.CompletedProcess[str]:
    """Runs the application `code` (with the fault-injecting file layer if
    `faulty`); it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    env["PYTHONFAULTHANDLER"] = "1"
    program = APP + (FAULTY_OS if faulty else "") + textwrap.dedent(code)
    result = subprocess.run([sys.executable, "-c", program], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def assert_clean(directory, *, min_files: int = 1) -> list[str]:
    """Only whole, valid trace files (and the GC lock) in `directory`."""
    names = sorted(os.listdir(directory))
    files = [os.path.join(directory, n) for n in names if n.endswith(".out")]
    assert [n for n in names if n not in {os.path.basename(f) for f in files}] in ([], [".executiontrace.lock"]), names
    assert len(files) >= min_files, names
    for f in files:
        assert NAME.match(os.path.basename(f)), f
        exectrace.read(f)  # raises on a truncated or damaged file
    for f in (files[0], files[-1]):
        check_trace(f)
    return files


# Each fault: the os function that fails, its errno, and the strerror the
# warning must carry.
FAULTS = [
    ("write", "ENOSPC", "No space left on device"),  # disk full in the middle of a file
    ("write", "EDQUOT", "Disk quota exceeded"),
    ("fsync", "EIO", "Input/output error"),
    ("open", "EACCES", "Permission denied"),  # a read-only directory (what chmod 0500 does, even as root)
    ("open", "EROFS", "Read-only file system"),
    ("replace", "ENOENT", "No such file or directory"),  # the directory went away before the rename
]


def test_injected_faults_warn_once_leave_nothing_and_tracing_resumes(tmp_path):
    """One process goes through every fault in turn: at least two windows fail
    under each, one warning per fault (the same fault is not repeated at every
    window), no file appears while it lasts, and files appear again once it
    is gone."""
    dump = tmp_path / "dump"
    result = run(faulty=True, code=f"""
        DUMP = {str(dump)!r}
        exectrace.start(interval="150ms", duration="100ms", dump_dir=DUMP)
        wait_for("a first file", 1, "windows_written")
        for name, code in {[(f, e) for f, e, _ in FAULTS]!r}:
            FS.faults[name] = getattr(errno, code)
            wait_for(name + " failures", 1, "windows_failed")   # a write under way may still succeed
            before = outs(DUMP)
            wait_for(name + " failures", 2, "windows_failed")
            assert outs(DUMP) == before, (name, before, outs(DUMP))
            assert exectrace.status()["last_error"].startswith("could not write"), exectrace.status()
            del FS.faults[name]
            wait_for("recovery from " + name, 2, "windows_written")
            assert exectrace.status()["last_error"] is None, exectrace.status()
            print(name, code, "recovered", flush=True)
        exectrace.stop()
        print("failed", exectrace.status()["windows_failed"])
    """)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{f} {e} recovered" for f, e, _ in FAULTS]
    assert int(lines[-1].split()[1]) >= 2 * len(FAULTS)
    warnings = result.stderr.splitlines()
    assert len(warnings) == len(FAULTS), result.stderr  # one per fault, rate-limited
    for warning, (_, _, message) in zip(warnings, FAULTS):
        assert warning.startswith("exectrace: warning: could not write a trace to "), warning
        assert message in warning, warning
    assert_clean(dump, min_files=len(FAULTS) * 2)


def test_gc_that_cannot_delete_warns_and_writing_goes_on(tmp_path):
    """Old files that cannot be deleted (EACCES, then EPERM): one warning for
    each, windows are still written, and the limit holds again once deleting
    works."""
    dump = tmp_path / "dump"
    result = run(faulty=True, code=f"""
        DUMP = {str(dump)!r}
        exectrace.start(interval="150ms", duration="100ms", dump_dir=DUMP)
        wait_for("files", 2, "windows_written")
        FS.faults["unlink"] = errno.EACCES
        exectrace.configure(total_dump_size_limit=1)   # only the newest file may stay
        wait_for("writes without GC", 3, "windows_written")
        FS.faults["unlink"] = errno.EPERM
        wait_for("writes without GC", 2, "windows_written")
        print(len(outs(DUMP)) >= 4, flush=True)
        del FS.faults["unlink"]
        wait_for("GC", 2, "windows_written")
        exectrace.stop()
        print(len(outs(DUMP)), exectrace.status()["windows_failed"], exectrace.status()["last_error"])
    """)
    assert result.stdout.split() == ["True", "1", "0", "None"], result.stdout
    # one warning per fault, however many windows it lasted
    eacces, eperm = result.stderr.splitlines()
    for warning in (eacces, eperm):
        assert warning.startswith("exectrace: warning: could not collect old traces in"), warning
    assert "Permission denied" in eacces and "Operation not permitted" in eperm
    assert_clean(dump)


def test_dump_dir_deleted_again_and_again_while_windows_are_written(tmp_path):
    """A thread removes the dump directory every few milliseconds for a second
    and a half, while back-to-back windows are written: writes that lose the
    race fail (one warning), nothing partial is left, and once the deleting
    stops files appear again."""
    dump = tmp_path / "dump"
    result = run(f"""
        import shutil, threading
        DUMP = {str(dump)!r}
        exectrace.start(interval="100ms", duration="100ms", dump_dir=DUMP)
        wait_for("a first file", 1, "windows_written")
        stop = threading.Event()
        def deleter():
            while not stop.is_set():
                shutil.rmtree(DUMP, ignore_errors=True)
                time.sleep(0.002)
        t = threading.Thread(target=deleter)
        t.start()
        work(1.5)
        stop.set()
        t.join()
        shutil.rmtree(DUMP, ignore_errors=True)
        wait_for("files again", 3, "windows_written")
        exectrace.stop()
        status = exectrace.status()
        print(len(outs(DUMP)) >= 3, status["last_error"])
    """)
    assert result.stdout.split() == ["True", "None"], result.stdout
    # at most one warning (a write can lose the race: its directory or its
    # temporary file vanished under it); rate-limited
    assert len(result.stderr.splitlines()) <= 1, result.stderr
    assert all(w.startswith("exectrace: warning: could not write a trace") for w in result.stderr.splitlines())
    assert_clean(dump, min_files=3)
