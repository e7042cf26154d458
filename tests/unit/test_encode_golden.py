"""The writer's bytes for a fixed record set, compared with golden files.

The golden files in tests/golden/ were produced by the code of commit 8e0aae9
(before the native core was split by concern, issue 10) with only the
test-only entry point `_tracecore._capture_for_tests` added to it (then
taking the records and collections as lists of tuples), by running this file
as a script there (with `_tracecore` for `_perfetto`, which then held
track_uuid and first_free_sequence):

    python tests/unit/test_encode_golden.py --write

Any change to the bytes a window is written as shows here. A deliberate
format change regenerates them the same way, and says so in its commit.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest

from exectrace import _extras, _perfetto, _tracecore

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")
PID = 4242
START_NS = 1_000_000
STOP_NS = 1_010_000
REALTIME_NS = 1_764_000_000_000_000_000


def _main() -> None:
    pass


def _child() -> None:
    pass


def _grandchild() -> None:
    pass


# (kind, object), (name, file, first line), blocking reason
FUNCTIONS = [
    (("py", _main.__code__), ("main", "/app/main.py", 10), ""),
    (("py", _child.__code__), ("child", "/app/lib.py", 20), ""),
    (("py", _grandchild.__code__), ("grand\udcffchild", "/app/\u00e9t\u00e9.py", 0), ""),
    (("c", len), ("time.sleep", "", 0), "sleep"),
    (("c", abs), ("socket.recv", "", 0), "io"),
    (("region", "checkout"), ("checkout", "", 0), ""),
]
MAIN, CHILD, GRANDCHILD, SLEEP, RECV, REGION = range(len(FUNCTIONS))

# (start, end, function, thread, depth, flags), in the order the calls returned
RECORDS = [
    (1_001_000, 1_002_000, CHILD, 0, 1, 0),
    (1_001_500, 1_002_500, GRANDCHILD, 1, 0, 0),
    (1_003_500, 1_005_000, SLEEP, 0, 1, 0),
    (1_004_000, 1_004_000, GRANDCHILD, 1, 1, 0),
    (1_004_000, 1_008_000, CHILD, 1, 0, 0),
    (1_006_100, 1_006_500, GRANDCHILD, 0, 2, 0),
    (1_006_600, 1_006_900, RECV, 0, 2, 0),
    (1_006_000, 1_007_000, REGION, 0, 1, 0),
    (1_000_000, 1_009_000, MAIN, 0, 0, 0),
    (1_008_500, 1_010_000, RECV, 1, 0, 0),
]
THREADS = [(140_001, 11), (140_002, 0)]
THREAD_NAMES = ["MainThread", "worker-\udcff"]
GC = [(1_005_000, 1_005_200, 0, 1, 10, 0), (1_007_000, 1_006_900, 0xFFFFFFFF, 2, 0, 3)]
METADATA = [("exectrace_version", "0.0-golden"), ("pid", PID), ("truncated", False),
            ("negative", -5), ("ratio", 0.25), ("setting.duration", "10s")]


def _extra_packets(n_threads: int) -> list[bytes]:
    extras = _extras.Extras(pid=PID, sequence=_perfetto.first_free_sequence(n_threads),
                            start_ns=START_NS, stop_ns=STOP_NS)
    steps = extras.new_track("asyncio Task-1 (main)")
    extras.slice(steps, 1_002_000, 1_003_000, "step", categories=("asyncio", "slow"),
                 args={"task": "Task-1", "slow": True, "count": 3, "neg": -1, "x": 1.5},
                 flows_out=(7,), flows_in=(9,))
    logs = extras.new_track("MainThread logs", parent=_perfetto.track_uuid(PID, "thread", 0))
    extras.instant(logs, 1_004_000, "hello", categories=("app",), args={"message": "hello"})
    _extras.add_counters(extras, [("rss", "bytes", [(1_000_500, 1 << 20), (1_009_500, 3 << 20)]),
                                  ("cpu", "ns", [(1_005_000, 12.5), (2_000_000, 1.0)])])
    return extras.packets()


def encode(capacity: int) -> bytes:
    capture = _tracecore._capture_for_tests(
        threads=THREADS, functions=[f[0] for f in FUNCTIONS],
        records=b"".join(struct.pack("=qqIIII", *r) for r in RECORDS),
        gc=b"".join(struct.pack("=qqIiqq", *g) for g in GC),
        start_ns=START_NS, stop_ns=STOP_NS, start_realtime_ns=REALTIME_NS,
        stop_realtime_ns=REALTIME_NS + STOP_NS - START_NS, capacity=capacity)
    try:
        return capture.encode(
            names=[f[1] for f in FUNCTIONS], thread_names=THREAD_NAMES, pid=PID,
            process_name="golden", metadata=METADATA, compress_level=0,
            blocking=[f[2] for f in FUNCTIONS], extra_packets=_extra_packets(len(THREADS)))
    finally:
        capture.release()


# the whole record set, and a ring of 6 records that kept only the last 6 (records lost)
CASES = {"window.out": 0, "window-wrapped.out": 6}


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoding_matches_golden(name: str) -> None:
    with open(os.path.join(GOLDEN, name), "rb") as f:
        golden = f.read()
    assert encode(CASES[name]) == golden


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    os.makedirs(GOLDEN, exist_ok=True)
    for name, capacity in CASES.items():
        with open(os.path.join(GOLDEN, name), "wb") as f:
            f.write(encode(capacity))
