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


IDLE_SCRIPT = """
import json, statistics, sys, time
sys.path.insert(0, {bench!r})
import workloads
if sys.argv[1] == "idle-controller":
    import exectrace
    exectrace.start(interval="1h", duration="10ms", dump_dir={dump!r})
    while exectrace.status()["windows_written"] < 1:
        time.sleep(0.01)
server = workloads.LoopbackServer()
times = []
for i in range(27):
    t = time.perf_counter()
    workloads.server_round(server.address)
    if i >= 2:
        times.append(time.perf_counter() - t)
print(json.dumps({{"median": statistics.median(times), "imported": "exectrace" in sys.modules}}))
"""


@pytest.mark.parametrize("mode", ["no-package", "idle-controller"])
def test_server_in_a_fresh_process(benchmark, mode, tmp_path):
    """The server workload in a fresh interpreter that never imports exectrace,
    against one with an idle controller (interval 1h, after its first window)."""
    import json
    import subprocess
    import sys

    script = IDLE_SCRIPT.format(bench=str(Path(__file__).resolve().parent), dump=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}

    def run():
        out = subprocess.run([sys.executable, "-c", script, mode], env=env, capture_output=True,
                             text=True, timeout=300, check=True).stdout
        return json.loads(out)

    result = benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    assert result["imported"] == (mode == "idle-controller")
    benchmark.group = "fresh process: threaded server"
    benchmark.extra_info["process_median_s"] = result["median"]
    benchmark.extra_info["fresh_process_mode"] = mode
