"""`exectrace summary` on real traces: text, --json, damaged input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import exectrace
from exectrace.__main__ import main
from perfetto_check import check_trace


def sleeper():
    time.sleep(0.06)


def compute():
    return sum(i * i for i in range(2000))


def caller():
    for _ in range(20):
        compute()


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("summary") / "t.out"
    lock = threading.Lock()
    with exectrace.tracing(path):
        t = threading.Thread(target=sleeper, name="napper")
        t.start()
        caller()
        lock.acquire()
        holder = threading.Thread(target=lambda: (time.sleep(0.03), lock.release()), name="holder")
        holder.start()
        lock.acquire()  # waits ~30 ms for the holder
        lock.release()
        t.join()
        holder.join()
    check_trace(str(path))
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "exectrace", *args], capture_output=True, text=True,
                          timeout=120)


def test_text_names_threads_functions_and_blocking(trace_file):
    result = cli("summary", str(trace_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("MainThread", "napper", "holder", "compute", "caller", "time.sleep",
                     "sleeper -> time.sleep", "_thread.lock.acquire"):
        assert expected in out, expected


def test_json_has_the_keys_and_right_numbers(trace_file, capsys):
    assert main(["summary", str(trace_file), "--json", "--top", "50"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"threads", "functions", "blocking", "gc", "window"} <= set(summary)
    threads = {t["name"]: t for t in summary["threads"]}
    assert threads["napper"]["blocked_s"]["sleep"] >= 0.06
    assert threads["MainThread"]["blocked_s"]["lock"] >= 0.025
    functions = {f["name"]: f for f in summary["functions"]["by_inclusive"]}
    assert functions["compute"]["calls"] == 20
    assert functions["caller"]["calls"] == 1
    assert functions["caller"]["inclusive_s"] >= functions["compute"]["inclusive_s"]
    sites = {(b["caller"], b["function"]): b for b in summary["blocking"]}
    nap = sites[("sleeper", "time.sleep")]
    assert nap["reason"] == "sleep" and nap["count"] == 1
    assert 0.06 <= nap["total_s"] <= 0.06 * 1.5
    assert set(summary["blocking"][0]) >= {"reason", "caller", "function", "count", "total_s", "max_s"}


def test_truncated_trace_summarizes_what_is_readable(trace_file, tmp_path):
    data = trace_file.read_bytes()
    cut = tmp_path / "cut.out"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    result = cli("summary", str(cut))
    if result.returncode == 0:
        assert "damaged" in result.stdout
    else:  # the cut took the window's metadata with it
        assert result.returncode == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "cannot read"),
    (lambda p: p.write_text("hello, this is not a trace\n" * 10), "not a Perfetto trace"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: os.mkdir(p), "directory"),
])
def test_bad_input_is_one_line(tmp_path, make, message):
    path = tmp_path / "input.out"
    make(path)
    result = cli("summary", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]


def test_usage_error_exits_2():
    result = cli("summary", "--top")
    assert result.returncode == 2 and "Traceback" not in result.stderr
