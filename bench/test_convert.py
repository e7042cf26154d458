"""exectrace convert: a trace of about a million slices to Chrome JSON and to
pprof (the decoding of the file is not timed). Reported as slices per second
and output bytes per slice."""

from __future__ import annotations

import io

import pytest

from exectrace import export, reader


@pytest.fixture(scope="module")
def big_trace(big_trace_file):
    return reader.read(big_trace_file)


class _Counting(io.RawIOBase):
    """A binary sink that only counts what is written to it."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.size += len(b)
        return len(b)


@pytest.mark.parametrize("to", ["chrome-json", "pprof"])
def test_convert(benchmark, big_trace, to):
    def run() -> int:
        sink = _Counting()
        if to == "pprof":
            export.to_pprof(big_trace, sink, progress=False)
        else:
            export.to_chrome_json(big_trace, sink, progress=False)
        return sink.size

    size = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["slices"] = big_trace.slice_count
    benchmark.extra_info["bytes"] = size
    benchmark.extra_info["compressor"] = to
