"""Flush: records to Perfetto bytes, the work done off the application's threads
when a window closes. Reported as slices per second and bytes per slice."""

from __future__ import annotations

import pytest

import workloads
from exectrace import capture, settings


@pytest.fixture(scope="module")
def closed_window():
    """A window of the call-heavy and scheduler workloads (about 1M slices)."""
    window = capture.Window.open(settings.resolve(settings.defaults(), mode="calls"))
    for _ in range(4):
        workloads.call_heavy()
        workloads.scheduler()
    closed = window.close()
    yield closed
    closed.release()


@pytest.mark.parametrize("compressor", ["isal", "zlib", "none"])
def test_flush(benchmark, closed_window, compressor, monkeypatch):
    if compressor == "isal":
        pytest.importorskip("isal")
    else:
        monkeypatch.setattr(capture, "_chunk_compressor", lambda: None)
    if compressor == "none":
        closed_window.settings = closed_window.settings.replace(compress=False)
    else:
        closed_window.settings = closed_window.settings.replace(compress=True)
    data = benchmark.pedantic(closed_window.encode, rounds=5, warmup_rounds=1)
    benchmark.extra_info["slices"] = closed_window.capture.stats["records_kept"]
    benchmark.extra_info["bytes"] = len(data)
    benchmark.extra_info["compressor"] = compressor
