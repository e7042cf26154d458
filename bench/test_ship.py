"""Shipping to object storage (pytest bench/test_ship.py --benchmark-only):

  window bytes    the size of a 10 s window's file in `calls` mode (default
                  settings: 64 MiB ring, zlib/ISA-L) for each bench workload
                  run without pause: the bytes/s docs/fleet.md scales up
  upload          the sidecar's upload throughput to a local S3 server
                  (moto's standalone server over loopback HTTP, SigV4
                  signed), files of the window-bytes run, index off
  sidecar CPU     CPU seconds (user + system) of an `exectrace ship --once`
                  process per shipped MiB, with and without the fleet index
                  rows (summary + Parquet), less the cost of a run that
                  ships nothing (interpreter, boto3 import, one LIST)

The numbers are printed at the end of the run. moto is a Python server:
it, not the sidecar, bounds the throughput measured here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3")
pytest.importorskip("duckdb")
pytest.importorskip("moto.server")
if tuple(int(x) for x in __import__("moto").__version__.split(".")[:2]) < (5, 2):
    pytest.skip("moto < 5.2 rejects valid SigV4 signatures of some listings", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exectrace  # noqa: E402
import workloads  # noqa: E402
from exectrace import dumpstore  # noqa: E402
from exectrace.fleet import layout, ship  # noqa: E402
from exectrace.reader import read_metadata  # noqa: E402
from s3server import MotoServer  # noqa: E402

WINDOW_S = 10.0
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server():
    s = MotoServer().start()
    s.make_bucket("bench")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def loopback_server():
    srv = workloads.LoopbackServer()
    yield srv
    srv.close()


def _run_for(fn: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        fn()


@pytest.fixture(scope="module")
def windows(tmp_path_factory, loopback_server):
    return tmp_path_factory.mktemp("windows")


@pytest.mark.parametrize("workload", ["call_heavy", "scheduler", "server"])
def test_bytes_per_10s_window(benchmark, workload, windows, loopback_server):
    fn = {"call_heavy": workloads.call_heavy, "scheduler": lambda: workloads.scheduler(800),
          "server": lambda: workloads.server_round(loopback_server.address)}[workload]
    path = windows / f"{workload}.out"

    def window() -> None:
        with exectrace.tracing(path):
            _run_for(fn, WINDOW_S)

    benchmark.pedantic(window, rounds=1, iterations=1)
    meta = read_metadata(path).values
    size, seconds = path.stat().st_size, meta["window.duration_ns"] / 1e9
    benchmark.extra_info.update(
        bytes=size, seconds=seconds, kept=meta["records.kept"], lost=meta["records.lost"],
        summary_line=f"10 s window in calls mode, {workload}: {size / MiB:.2f} MiB ({size / seconds / 1024:.1f} KiB/s), "
                     f"{meta['records.kept']} records kept, {meta['records.lost']} lost")


def _dump(windows: Path, target: Path, copies: int) -> int:
    """`copies` trace files (the window files, round robin) under trace names."""
    sources = sorted(windows.glob("*.out"))
    assert sources, "run the window benchmarks first (same module)"
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(copies):
        name = dumpstore.file_name(1_796_000_000_000_000_000 + i * 1_000_000_000, 77)
        shutil.copyfile(sources[i % len(sources)], target / name)
        total += (target / name).stat().st_size
    return total


def test_upload_throughput(benchmark, server, windows, tmp_path):
    dump = tmp_path / "dump"
    total = _dump(windows, dump, 12)
    counter = iter(range(1000))
    client = server.client()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        n = next(counter)
        shipper = ship.Shipper([str(dump)], layout.S3Url("bench", f"upload-{n}"), "bench-host", client,
                               state_path=str(tmp_path / f"state-{n}.json"), with_index=False,
                               out=lambda line: None)
        return (shipper,), {}

    def upload(shipper: ship.Shipper) -> None:
        assert shipper.run(poll=1, stop=threading.Event(), once=True) == 0
        assert shipper.stats.shipped == 12

    benchmark.pedantic(upload, setup=setup, rounds=5, iterations=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(
        mib_s=total / MiB / seconds, files=12, mib=total / MiB,
        summary_line=f"upload to moto over loopback: {total / MiB / seconds:.1f} MiB/s (12 files, "
                     f"{total / MiB:.1f} MiB a round, median of 5; index off)")


def _cpu_of(argv: list[str], env: dict[str, str]) -> float:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read() if proc.stderr else b""
    proc.stderr.close() if proc.stderr else None
    assert os.waitstatus_to_exitcode(status) == 0 if hasattr(os, "waitstatus_to_exitcode") else status == 0, err
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("index", [False, True], ids=["traces only", "with index"])
def test_sidecar_cpu_per_mib(benchmark, server, windows, tmp_path, index):
    dump = tmp_path / "dump"
    total = _dump(windows, dump, 3 if index else 12)  # the index rows cost ~100x more CPU
    empty = tmp_path / "empty"
    empty.mkdir()
    env = server.env()
    tag = "index" if index else "plain"

    def argv(d: Path, prefix: str) -> list[str]:
        return [sys.executable, "-m", "exectrace", "ship", str(d), "--to", f"s3://bench/{prefix}", "--once",
                "--quiet", "--host", "cpu", "--state", str(tmp_path / f"{prefix}.json")] + ([] if index else ["--no-index"])

    result: dict[str, float] = {}

    def measure() -> None:
        result["base"] = _cpu_of(argv(empty, f"empty-{tag}"), env)
        result["full"] = _cpu_of(argv(dump, f"cpu-{tag}"), env)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    cpu = max(0.0, result["full"] - result["base"])
    mib = total / MiB
    benchmark.extra_info.update(
        cpu_s=cpu, mib=mib, cpu_s_per_mib=cpu / mib, base_s=result["base"],
        summary_line=f"sidecar CPU, {'with index rows' if index else 'traces only'}: {cpu / mib:.3f} s per shipped MiB "
                     f"({cpu:.2f} s for {mib:.1f} MiB; {result['base']:.2f} s for a run shipping nothing)")
