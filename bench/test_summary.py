"""`exectrace summary` on a large trace: reading and analysing about 1.4M slices."""

from __future__ import annotations

import pytest
import workloads

from exectrace import capture, read, settings
from exectrace.analysis import summarize


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory):
    window = capture.Window.open(settings.defaults())
    for _ in range(4):
        workloads.call_heavy()
        workloads.scheduler()
    closed = window.close()
    path = tmp_path_factory.mktemp("summary") / "big.out"
    path.write_bytes(closed.encode())
    closed.release()
    return path


def test_read_and_summarize(benchmark, big_trace):
    def run():
        return summarize(read(big_trace))

    summary = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["slices"] = summary["window"]["slices"]
    benchmark.extra_info["bytes"] = big_trace.stat().st_size
    benchmark.extra_info["compressor"] = "read + summarize"
