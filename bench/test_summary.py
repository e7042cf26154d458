"""`exectrace summary` on a large trace: reading and analysing about 1.4M slices."""

from __future__ import annotations

from exectrace import read
from exectrace.analysis import summarize


def test_read_and_summarize(benchmark, big_trace_file):
    def run():
        return summarize(read(big_trace_file))

    summary = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["slices"] = summary["window"]["slices"]
    benchmark.extra_info["bytes"] = big_trace_file.stat().st_size
    benchmark.extra_info["compressor"] = "read + summarize"
