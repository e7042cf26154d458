"""Several processes sharing one dump directory (gunicorn workers), with a
reader summarizing the newest files while they come and go.

What "no file is deleted while being read" means: a file is only ever
removed whole (GC unlinks it; it never shrinks or changes), and on POSIX a
reader that has opened it keeps all of its data after the unlink. So
`exectrace summary` either reads a whole file or, when GC removed it between
the listing and the open, fails cleanly: exit status 1 and one line on stderr
("cannot read ...: No such file or directory"), never a traceback and never a
half-read file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import exectrace
from exectrace import dumpstore
from perfetto_check import check_trace

NAME = re.compile(r"^executiontrace\.\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3}\.(\d+)\.out$")
#: How long the processes run (the issue asks for 30 s).
SECONDS = float(os.environ.get("SHARED_DIR_SECONDS", "30"))
PROCESSES = 8
#: Small, but above any one file (buffer_size 64KiB bounds a file's records).
LIMIT = 400_000

WORKER = """
import faulthandler, os, sys, time
faulthandler.dump_traceback_later({hang}, exit=True)
import exectrace

def handle(i):
    return sum(range(i % 50))

n = {n}
exectrace.start(interval=f"{{150 + 40 * n}}ms", duration=f"{{80 + 20 * n}}ms", dump_dir={dump!r},
                total_dump_size_limit={limit}, buffer_size="64KiB")
end = time.monotonic() + {seconds}
i = 0
while time.monotonic() < end:
    handle(i)
    i += 1
    if i % 20 == 0:
        time.sleep(0.001)
exectrace.stop()
status = exectrace.status()
print(status["windows_written"], status["windows_failed"], status["last_error"])
"""


def owned_sizes(directory) -> list[tuple[str, int]]:
    """(name, size) of the trace files in `directory`, oldest first: listed,
    then each one stat'ed (a file GC removed in between is left out)."""
    result = []
    for name in sorted(os.listdir(directory)):
        if NAME.match(name):
            try:
                result.append((name, os.stat(os.path.join(directory, name)).st_size))
            except FileNotFoundError:
                pass
    return result


def over_limit(directory) -> int:
    """Bytes of every file but the newest, past LIMIT (0: the limit holds)."""
    files = owned_sizes(directory)
    return max(0, sum(size for _, size in files[:-1]) - LIMIT)


def test_eight_processes_share_a_dir_under_a_small_limit(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    env["PYTHONFAULTHANDLER"] = "1"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER.format(n=n, dump=str(dump), limit=LIMIT, seconds=SECONDS,
                                                 hang=SECONDS + 60)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for n in range(PROCESSES)
    ]
    observations = violations = 0
    summaries, vanished = 0, 0   # summaries that read a whole file, or found it gone
    try:
        deadline = time.monotonic() + SECONDS + 90
        while any(w.poll() is None for w in workers):
            assert time.monotonic() < deadline, "the workers did not finish"
            files = owned_sizes(dump)
            if not files:
                time.sleep(0.05)
                continue
            # the newest file, or the oldest: the next one GC deletes, often
            # while its summary starts or reads it
            target = os.path.join(dump, files[-1 if summaries % 2 else 0][0])
            reader = subprocess.Popen([sys.executable, "-m", "exectrace", "summary", target], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while reader.poll() is None:  # observe the limit while the summary runs
                observations += 1
                violations += over_limit(dump) > 0
                time.sleep(0.05)
            out, err = reader.communicate(timeout=60)
            summaries += 1
            if reader.returncode == 0:
                assert out.startswith("trace "), out
                assert "\ndamaged " not in out, out  # a half-read file would say so
                assert err == "", err
            else:
                # GC removed it between the listing and the open: one clean line
                vanished += 1
                assert reader.returncode == 1, err
                assert re.fullmatch(r"exectrace summary: cannot read .*: No such file or directory\n", err), err
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        results = [w.communicate(timeout=60) for w in workers]
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err
        assert err == "", err  # no warning
        written, failed, error = out.split(maxsplit=2)
        assert int(written) >= 5 and failed == "0" and error.strip() == "None", out
    assert summaries - vanished >= 5
    assert observations >= 20
    assert violations == 0, f"{violations} of {observations} observations over the limit"
    assert over_limit(dump) == 0
    files = owned_sizes(dump)
    pids = {int(NAME.match(name).group(1)) for name, _ in files}
    assert len(pids) >= 2  # the files kept come from several processes
    for name, _ in files:
        exectrace.read(os.path.join(dump, name))
    for name, _ in (files[0], files[-1]):
        check_trace(os.path.join(dump, name))
    assert not [n for n in os.listdir(dump) if n.endswith(".tmp")]
    print(f"{observations} observations, {summaries} summaries, {vanished} files gone before "
          f"their summary opened them, {len(files)} files kept")


def test_summary_of_a_file_that_is_gone_is_one_line(tmp_path):
    """The case the reader above can only hit by chance: the file named on the
    command line no longer exists (GC removed it after it was listed)."""
    gone = tmp_path / "executiontrace.2026-11-29T18_41_22.216.4242.out"
    result = subprocess.run([sys.executable, "-m", "exectrace", "summary", str(gone)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"exectrace summary: cannot read {gone}: No such file or directory\n"


def test_summary_keeps_reading_a_file_unlinked_under_it(tmp_path):
    """On POSIX an opened file keeps its data after GC unlinks it: the reader
    (exectrace.read, what summary uses) gets the whole file."""
    path = tmp_path / "t.out"
    with exectrace.tracing(path):
        sum(range(10))
    original = exectrace.read(path).slice_count
    code = textwrap.dedent(f"""
        import builtins, os, exectrace
        real_open = builtins.open
        def open_then_unlink(name, *args, **kwargs):
            f = real_open(name, *args, **kwargs)
            os.unlink(name)       # GC deletes it right after the reader opened it
            return f
        builtins.open = open_then_unlink
        trace = exectrace.read({str(path)!r})
        print(trace.slice_count, trace.damage, os.path.exists({str(path)!r}))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(original), "None", "False"]


# ------------------------------------------------ the write + GC step itself

def _name(ms: int, pid: int = 1) -> str:
    return dumpstore.file_name(1_800_000_000_000_000_000 + ms * 1_000_000, pid)


def test_write_collects_before_the_new_file_appears(tmp_path):
    """write(limit=...) deletes what the new file pushes past the limit before
    renaming it, so the directory never holds more than the limit besides its
    newest file, not even for a moment."""
    directory = str(tmp_path)
    for ms in range(5):
        dumpstore.write(directory, _name(ms), b"x" * 100, limit=250)
        sizes = [f.size for f in dumpstore.owned_files(directory)]
        assert sum(sizes[:-1]) <= 250 and sum(sizes) <= 250
    assert [f.name for f in dumpstore.owned_files(directory)] == [_name(3), _name(4)]


def test_write_drops_a_late_file_older_than_what_fills_the_limit(tmp_path):
    """A slow writer (another process) renaming a window older than files that
    already fill the limit: the file is collected at once, never shown."""
    directory = str(tmp_path)
    dumpstore.write(directory, _name(10, pid=2), b"x" * 100, limit=250)
    dumpstore.write(directory, _name(11, pid=2), b"x" * 100, limit=250)
    dumpstore.write(directory, _name(5, pid=3), b"x" * 100, limit=250)
    assert [f.name for f in dumpstore.owned_files(directory)] == [_name(10, pid=2), _name(11, pid=2)]
    assert not [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_write_reports_a_failed_collection_but_keeps_the_file(tmp_path, monkeypatch):
    directory = str(tmp_path)
    dumpstore.write(directory, _name(1), b"x" * 100, limit=150)

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(dumpstore.os, "unlink", refuse)
    with pytest.raises(dumpstore.CollectError) as info:
        dumpstore.write(directory, _name(2), b"y" * 100, limit=150)
    assert isinstance(info.value.cause, PermissionError)
    assert os.path.basename(info.value.path) == _name(2)
    assert [f.name for f in dumpstore.owned_files(directory)] == [_name(1), _name(2)]
