"""exectrace._decode (the reader's decoder) against the core's decoder
(_tracecore.decode): the same columns, strings, tracks, errors and problems
on real calls and events traces, the corpus and every hostile file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from exectrace import _decode, _tracecore
from hostile import byte_files, events_files, make_trace

CORPUS = Path(__file__).resolve().parent.parent / "corpus"

ATTRIBUTES = ("strings", "tracks", "s_track", "s_ts", "s_dur", "s_depth", "s_name", "s_cat", "s_file",
              "s_line", "s_args", "args", "instants", "counters", "samples", "stacks", "clock_snapshots",
              "primary_clock", "error", "packets", "unfinished", "last_timestamp", "problems", "window_begin")


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to NaN (a damaged file's annotations)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_decoding(data: bytes, what: str) -> None:
    for metadata_only in (False, True):
        old = _tracecore.decode(data, metadata_only=metadata_only)
        new = _decode.decode(data, metadata_only=metadata_only)
        for name in ATTRIBUTES:
            a, b = getattr(old, name), getattr(new, name)
            if name.startswith("s_"):
                assert a.typecode == b.typecode, (what, name)
                a, b = a.tolist(), b.tolist()
            assert same(a, b), f"{what} (metadata_only={metadata_only}): {name} differs"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    return {
        "plain": make_trace(root / "plain.out", compress=False),
        "packed": make_trace(root / "packed.out"),
        "events": make_trace(root / "events.out", compress=False, mode="events"),
        "tiny-buffer": make_trace(root / "tiny.out", rounds=3000, buffer_size="64KiB"),
    }


def test_real_traces(real):
    for name, data in real.items():
        assert_same_decoding(data, name)
        assert len(_decode.decode(data).s_ts) > (1 if name == "events" else 100)  # events: the window, GC


def test_corpus():
    files = sorted(CORPUS.glob("*.out"))
    assert len(files) > 10
    for path in files:
        assert_same_decoding(path.read_bytes(), path.name)


def test_hostile_files(real):
    files = {**byte_files(real["plain"], real["packed"]), **events_files(real["events"])}
    for name, data in sorted(files.items()):
        assert_same_decoding(data, name)


def test_odd_clocks_and_sequences():
    """Packets on several sequences, clocks switching between incremental and
    absolute, a clock snapshot in the middle, timestamps near 2**62."""
    from hostile import ld, packet, vi

    def snapshot(*clocks: tuple[int, int, bool]) -> bytes:
        return ld(6, b"".join(ld(1, vi(1, c) + vi(2, t) + vi(3, int(inc))) for c, t, inc in clocks))

    def event(seq: int, ts: int, kind: int, *more: bytes, clock: int = 0) -> bytes:
        return packet(vi(8, ts), vi(10, seq), *([vi(58, clock)] if clock else []),
                      ld(11, vi(9, kind) + vi(11, 7) + ld(23, b"x")), *more)

    data = (packet(ld(60, vi(1, 7) + ld(4, vi(1, 1) + vi(2, 2)))) +
            packet(vi(10, 1), vi(13, 1), snapshot((6, 1000, False), (64, 500, True))) +
            event(1, 10, 1, clock=64) + event(1, 20, 1, clock=64) +
            event(2, 2**62 + 5, 2) + event(1, 5, 2, clock=64) +
            packet(vi(10, 1), snapshot((6, 5000, False), (64, 100, True))) +
            event(1, 1, 2, clock=64) + event(1, 7, 1, clock=65) + event(1, 2**63, 1, clock=64))
    assert_same_decoding(data, "odd clocks")
