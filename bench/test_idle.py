"""Cost between windows: an idle controller (interval 1h, its first window
closed) on the server workload, and the autostart check a .pth file runs at
every interpreter start when no EXECTRACE_* variable is set."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import exectrace
import workloads


@pytest.fixture(scope="module")
def loopback_server():
    server = workloads.LoopbackServer()
    yield server
    server.close()


@pytest.mark.parametrize("mode", ["untraced", "idle-controller"])
def test_server_between_windows(benchmark, mode, loopback_server, tmp_path):
    benchmark.group = "between windows: threaded server"
    benchmark.extra_info["mode"] = mode
    if mode == "idle-controller":
        exectrace.start(interval="1h", duration="10ms", dump_dir=str(tmp_path))
        deadline = time.time() + 10
        while exectrace.status()["windows_written"] < 1 and time.time() < deadline:
            time.sleep(0.01)
        assert not exectrace.status()["window_open"]
    try:
        result = benchmark.pedantic(workloads.server_round, args=(loopback_server.address,),
                                    rounds=25, warmup_rounds=2)
    finally:
        if mode == "idle-controller":
            exectrace.stop()
    assert result == 600


def test_autostart_check_without_variables(benchmark, monkeypatch):
    """The .pth line as the interpreter runs it at start-up (no EXECTRACE_* set)."""
    for name in list(os.environ):
        if name.startswith("EXECTRACE_"):
            monkeypatch.delenv(name)
    line = (Path(__file__).resolve().parents[1] / "src" / "exectrace-autostart.pth").read_text().strip()
    code = compile(line, "exectrace-autostart.pth", "exec")
    benchmark.group = "autostart check"
    benchmark.extra_info["environment_variables"] = len(os.environ)
    benchmark(exec, code, {})
