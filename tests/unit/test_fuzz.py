"""Structure-aware fuzzing of the reader and of everything downstream of it.

tests/unit/test_reader.py fuzzes the decoder with byte-level mutations and
protobuf-shaped random messages. Here the inputs are built from Perfetto's
grammar -- packets with interned data, defaults, clock snapshots, track
descriptors and track events with annotations, flows, counters, in and out
of compressed chunks, optionally framed as an exectrace window with its
metadata -- and from packet-level edits of real traces (drop, duplicate,
reorder, splice packets of two traces, replace a metadata value). Each input
goes through everything a command does with a file:

    _tracecore.decode (whole and metadata_only), exectrace.read (strict and
    allow_damaged), reader.read_metadata, then summarize + format_text +
    json.dumps (exectrace summary), to_chrome_json and build_pprof
    (exectrace convert), iterating the typed events, and ls's row

and must come out as a result or an ExectraceError, never another
exception. Bounded for CI: a few hundred examples, well under 30 s.
"""

from __future__ import annotations

import math
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import exercise, ld, make_trace, packet, packet_ends, read_varint, tag, varint, vi

#: FUZZ_SCALE=20 runs 20 times the examples (a longer hunt than CI's).
SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))
FUZZ = settings(
    max_examples=60 * SCALE,
    deadline=None,
    database=None,  # nothing written into the source tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)

# -------------------------------------------------------------- grammar

U64 = st.one_of(
    st.integers(0, 300),
    st.integers(0, 2**64 - 1),
    st.sampled_from([2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]),
)
IDS = st.integers(0, 6)  # iids, uuids, sequence ids: small, so that they collide
NAMES = st.one_of(
    st.sampled_from(["exectrace window", "exectrace", "GC", "MainThread", "worker", "time.sleep",
                     "_thread.lock.acquire", "select.epoll.poll", "f", "", "records lost"]),
    st.text(max_size=8),
)
TEXT = st.one_of(NAMES.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=8))
DOUBLES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e300]))
META_KEYS = st.sampled_from([
    "records.kept", "records.lost", "window.duration_ns", "window.start", "window.end", "window.truncated",
    "window.closed_by", "window.start_realtime_ns", "process.pid", "process.argv", "python.version",
    "recorder.hook", "exectrace.version", "gc.collections", "settings.total_dump_size_limit",
    "settings.interval", "generation", "collected", "uncollectable", "thread", "unfinished", "flows",
])


def opt(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.just(b""), strategy)


def fields(*parts: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Each part present or not, in a random order."""
    return st.lists(st.one_of(*parts), max_size=len(parts) + 2).map(b"".join)


def fixed64(number: int, value: float) -> bytes:
    return tag(number, 1) + struct.pack("<d", value)


def annotation_value(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, 1).map(lambda v: vi(2, v)),
        U64.map(lambda v: vi(3, v)),
        U64.map(lambda v: vi(4, v)),
        DOUBLES.map(lambda v: fixed64(5, v)),
        TEXT.map(lambda t: ld(6, t)),
        st.lists(inner, max_size=3).map(lambda xs: b"".join(ld(11, x) for x in xs)),
        st.lists(inner, max_size=3).map(lambda xs: b"".join(ld(12, x) for x in xs)),
    )


def _annotation(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    name = st.one_of(META_KEYS.map(lambda k: ld(10, k.encode())), TEXT.map(lambda t: ld(10, t)),
                     IDS.map(lambda i: vi(1, i)))
    return st.tuples(opt(name), annotation_value(inner)).map(b"".join)


ANNOTATIONS = st.recursive(
    st.tuples(opt(META_KEYS.map(lambda k: ld(10, k.encode()))), U64.map(lambda v: vi(3, v))).map(b"".join),
    _annotation,
    max_leaves=8,
)

INTERNED = fields(
    st.tuples(IDS, TEXT).map(lambda x: ld(1, vi(1, x[0]) + ld(2, x[1]))),            # categories
    st.tuples(IDS, TEXT).map(lambda x: ld(2, vi(1, x[0]) + ld(2, x[1]))),            # event names
    st.tuples(IDS, TEXT).map(lambda x: ld(3, vi(1, x[0]) + ld(2, x[1]))),            # annotation names
    st.tuples(IDS, TEXT, TEXT, U64).map(                                              # source locations
        lambda x: ld(4, vi(1, x[0]) + ld(2, x[1]) + ld(3, x[2]) + vi(4, x[3]))),
    st.tuples(IDS, TEXT).map(lambda x: ld(20, vi(1, x[0]) + ld(2, x[1]))),           # log bodies
)
CLOCK = st.tuples(st.sampled_from([1, 3, 6, 64, 65, 127, 128]), U64, st.integers(0, 1)).map(
    lambda c: ld(1, vi(1, c[0]) + vi(2, c[1]) + vi(3, c[2])))
SNAPSHOT = st.tuples(st.lists(CLOCK, max_size=3), opt(st.sampled_from([1, 3, 6, 64]).map(lambda v: vi(2, v))))
DEFAULTS = fields(st.sampled_from([1, 3, 6, 64, 65]).map(lambda v: vi(58, v)),
                  IDS.map(lambda u: ld(11, vi(11, u))))
DESCRIPTOR = fields(
    IDS.map(lambda u: vi(1, u)),
    IDS.map(lambda u: vi(5, u)),
    TEXT.map(lambda t: ld(2, t)),
    st.tuples(U64, TEXT).map(lambda x: ld(3, vi(1, x[0]) + ld(6, x[1]))),
    st.tuples(U64, U64, TEXT).map(lambda x: ld(4, vi(1, x[0]) + vi(2, x[1]) + ld(5, x[2]))),
    st.just(ld(8, b"")),
)
EVENT = fields(
    st.integers(0, 5).map(lambda t: vi(9, t)),
    st.integers(0, 5).map(lambda t: vi(9, t)),
    IDS.map(lambda i: vi(10, i)),
    TEXT.map(lambda t: ld(23, t)),
    IDS.map(lambda u: vi(11, u)),
    IDS.map(lambda i: vi(3, i)),
    IDS.map(lambda i: ld(3, varint(i))),
    TEXT.map(lambda t: ld(22, t)),
    IDS.map(lambda i: vi(34, i)),
    ANNOTATIONS.map(lambda a: ld(4, a)),
    ANNOTATIONS.map(lambda a: ld(4, a)),
    IDS.map(lambda i: ld(21, vi(2, i))),
    U64.map(lambda v: vi(30, v)),
    DOUBLES.map(lambda v: fixed64(44, v)),
    U64.map(lambda v: tag(47, 1) + (v & (2**64 - 1)).to_bytes(8, "little")),
    U64.map(lambda v: vi(48, v)),
)
PACKET_FIELDS = fields(
    U64.map(lambda v: vi(8, v)),
    st.integers(0, 400).map(lambda v: vi(8, v)),
    st.sampled_from([1, 3, 6, 64, 65]).map(lambda v: vi(58, v)),
    IDS.map(lambda v: vi(10, v)),
    st.integers(0, 3).map(lambda v: vi(13, v)),
    st.integers(0, 1).map(lambda v: vi(41, v)),
    INTERNED.map(lambda m: ld(12, m)),
    DEFAULTS.map(lambda m: ld(59, m)),
    SNAPSHOT.map(lambda s: ld(6, b"".join(s[0]) + s[1])),
    DESCRIPTOR.map(lambda m: ld(60, m)),
    EVENT.map(lambda m: ld(11, m)),
    EVENT.map(lambda m: ld(11, m)),
)
PACKETS = st.lists(PACKET_FIELDS.map(lambda f: ld(1, f)), max_size=8).map(b"".join)
STREAM = st.lists(st.one_of(PACKETS, PACKETS.map(lambda p: packet(ld(50, zlib.compress(p))))),
                  min_size=1, max_size=4).map(b"".join)


def window_frame(seq: int, meta: bytes, ts: tuple[int, int]) -> tuple[bytes, bytes]:
    """An exectrace-like opening (the 'exectrace', 'GC' and a thread track,
    the window slice's begin with `meta` annotations) and closing."""
    head = (packet(ld(60, vi(1, 1) + ld(2, b"exectrace")))
            + packet(ld(60, vi(1, 2) + ld(2, b"GC")))
            + packet(ld(60, vi(1, 3) + ld(4, vi(1, 42) + vi(2, 43) + ld(5, b"MainThread"))))
            + packet(vi(8, ts[0]), vi(10, seq), vi(13, 1),
                     ld(11, vi(9, 1) + vi(11, 1) + ld(23, b"exectrace window") + meta)))
    tail = packet(vi(8, ts[1]), vi(10, seq), ld(11, vi(9, 2) + vi(11, 1)))
    return head, tail


EXECTRACE_LIKE = st.tuples(
    IDS,
    st.lists(st.tuples(META_KEYS, annotation_value(ANNOTATIONS)).map(
        lambda kv: ld(4, ld(10, kv[0].encode()) + kv[1])), max_size=8).map(b"".join),
    st.tuples(U64, U64),
    STREAM,
    st.booleans(),
).map(lambda x: (lambda frame: frame[0] + x[3] + (frame[1] if x[4] else b""))(window_frame(x[0], x[1], x[2])))


@FUZZ
@given(data=STREAM)
def test_fuzz_perfetto_grammar(tmp_path, data):
    exercise(data, tmp_path / "g.out")


@settings(FUZZ, max_examples=100 * SCALE)
@given(data=EXECTRACE_LIKE)
def test_fuzz_exectrace_like_windows(tmp_path, data):
    exercise(data, tmp_path / "w.out")


# --------------------------------------------------------- real traces


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The packets of two real traces (uncompressed, so packets are visible):
    a `calls` one, and an `events` one whose samples and callstacks get
    spliced into the first."""
    d = tmp_path_factory.mktemp("fuzz")
    traces = []
    for name, rounds, mode in (("a", 20, "calls"), ("b", 8, "events")):
        data = make_trace(d / f"{name}.out", rounds, compress=False, mode=mode)
        ends = packet_ends(data)
        traces.append([data[s:e] for s, e in zip([0, *ends], ends)])
    return traces


@settings(FUZZ, max_examples=50 * SCALE)
@given(data=st.data())
def test_fuzz_packet_edits_of_real_traces(real, tmp_path, data):
    a, b = real
    packets = list(a)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["drop", "dup", "swap", "splice", "tail", "meta"]))
        i = data.draw(st.integers(0, len(packets) - 1))
        if op == "drop" and len(packets) > 1:
            del packets[i]
        elif op == "dup":
            packets.insert(data.draw(st.integers(0, len(packets))), packets[i])
        elif op == "swap":
            j = data.draw(st.integers(0, len(packets) - 1))
            packets[i], packets[j] = packets[j], packets[i]
        elif op == "splice":
            packets[i:i] = b[data.draw(st.integers(0, len(b) - 1)):][: data.draw(st.integers(1, 5))]
        elif op == "tail":
            packets.append(data.draw(PACKETS))
        else:  # one metadata value of the window slice replaced by any annotation value
            key = data.draw(META_KEYS).encode()
            at = [k for k, p in enumerate(packets) if b"exectrace window" in p]
            if at:
                k = at[0]
                value = ld(4, ld(10, key) + data.draw(annotation_value(ANNOTATIONS)))
                # appended inside the packet's track event: the outer lengths grow
                packets[k] = _append_to_track_event(packets[k], value)
    mutated = b"".join(packets)
    if data.draw(st.booleans()):
        mutated = packet(ld(50, zlib.compress(mutated)))
    exercise(mutated, tmp_path / "e.out")


def _append_to_track_event(pkt: bytes, extra: bytes) -> bytes:
    """The packet with `extra` appended to its track event (field 11)."""
    body = _strip_ld(pkt)
    out, pos = bytearray(), 0
    while pos < len(body):
        start = pos
        key, pos = read_varint(body, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(body, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            size, pos = read_varint(body, pos)
            if key >> 3 == 11:
                out += ld(11, body[pos:pos + size] + extra)
                pos += size
                continue
            pos += size
        out += body[start:pos]
    return ld(1, bytes(out))


def _strip_ld(field: bytes) -> bytes:
    _, pos = read_varint(field, 0)
    size, pos = read_varint(field, pos)
    return field[pos:pos + size]



def test_metadata_values_of_every_type_downstream(real, tmp_path):
    """Every known metadata key at once with each odd value type, deterministically."""
    a, _ = real
    at = next(k for k, p in enumerate(a) if b"exectrace window" in p)
    odd_values = [vi(2, 1), vi(3, 2**64 - 1), vi(4, 2**64 - 1), fixed64(5, math.inf), fixed64(5, -math.inf),
                  fixed64(5, math.nan), fixed64(5, 1e300), fixed64(5, -5.5), ld(6, b"\xff\xfe"), ld(6, b"12"),
                  ld(11, ld(10, b"k") + vi(3, 1)), ld(12, vi(3, 1)), b""]
    keys = ["records.kept", "records.lost", "window.duration_ns", "window.start_realtime_ns", "process.pid",
            "gc.collections", "settings.total_dump_size_limit", "window.truncated", "window.start",
            "window.end", "window.closed_by", "python.version", "recorder.hook", "process.argv",
            "exectrace.version"]
    for value in odd_values:
        packets = list(a)
        packets[at] = _append_to_track_event(packets[at], b"".join(ld(4, ld(10, k.encode()) + value) for k in keys))
        exercise(b"".join(packets), tmp_path / "m.out")
