"""Attacks on the trace reader: exectrace.read() and the native decoder.

Real traces are made once per module; the tests then feed the reader missing
and odd files, truncations, bit flips, spliced junk, hostile wire values
(huge varints and lengths, deep nesting, zlib bombs, nested compression) and
check that it fails with a clear ExectraceError -- or, with
allow_damaged=True, returns well-formed slices -- never crashes, hangs or
blows up memory.  Where the file is intact, its slices must be exactly those
Perfetto's own schema sees (tests/perfetto_check.py).
"""

from __future__ import annotations

import collections
import gc
import json
import os
import random
import sys
import threading
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

import exectrace
from exectrace import _tracecore
from exectrace.errors import ExectraceError
from exectrace.reader import Trace
from hostile import ld, packet, read_varint, tag, varint, vi
from perfetto_check import check_trace

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Any one decode of a small hostile input must be quicker than this.
QUICK_S = 2.0
#: Rounds of the workload in the big trace: enough for 3 compressed chunks.
BIG_ROUNDS = 1000

# ------------------------------------------------------------- wire helpers


def compressed(inner: bytes) -> bytes:
    """A packet carrying `inner` (serialized packets) as compressed_packets."""
    return packet(ld(50, zlib.compress(inner)))


def packet_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each top-level field of a well-formed trace."""
    spans, pos = [], 0
    while pos < len(data):
        start = pos
        key, pos = read_varint(data, pos)
        assert key & 7 == 2
        size, pos = read_varint(data, pos)
        pos += size
        spans.append((start, pos))
    assert pos == len(data)
    return spans


# --------------------------------------------------------- the real traces


def leaf(i):
    return len(str(i))  # two C calls (len, str)


def middle(n):
    return sum(leaf(i) for i in range(n))


def workload(rounds):
    for _ in range(rounds):
        middle(3)


def make_trace(path, rounds, **options):
    with exectrace.tracing(path, **options):
        worker = threading.Thread(target=workload, args=(rounds,), name="worker")
        worker.start()
        workload(rounds)
        gc.collect()
        worker.join()
    return path


class Source:
    """One real trace file: its path, bytes and decoded form."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            self.data = f.read()
        self.trace = exectrace.read(self.path)
        self.slices = slice_keys(self.trace)
        #: (track, ts, depth, name) -> the longest such slice's duration
        self.longest: dict = {}
        for track, ts, dur, depth, name in self.slices:
            key = (track, ts, depth, name)
            self.longest[key] = max(dur, self.longest.get(key, 0))
        self.meta_uuid = next(u for u, t in self.trace.tracks.items() if t["name"] == "exectrace")

    def packet_on_meta_track(self, *event_fields: bytes) -> bytes:
        """A packet on sequence 1 with a track event on the 'exectrace' track."""
        event = b"".join((vi(11, self.meta_uuid),) + event_fields)
        return packet(vi(8, self.trace.metadata.end_ns), vi(10, 1), ld(11, event))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("reader")


@pytest.fixture(scope="module")
def plain(workdir):
    return Source(make_trace(workdir / "plain.out", 40, compress=False))


@pytest.fixture(scope="module")
def packed(workdir):
    return Source(make_trace(workdir / "packed.out", 40))


@pytest.fixture(scope="module")
def big(workdir):
    """Compressed, large enough for several compressed_packets chunks."""
    return Source(make_trace(workdir / "big.out", BIG_ROUNDS))


@pytest.fixture(scope="module")
def scratch(workdir):
    """A file path the tests overwrite at will."""
    return str(workdir / "scratch.out")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def slice_keys(trace):
    c, s = trace.columns, trace.strings
    return collections.Counter(
        (c.s_track[i], c.s_ts[i], c.s_dur[i], c.s_depth[i], s[c.s_name[i]]) for i in range(len(c.s_ts))
    )


def is_unfinished(trace, i):
    c = trace.columns
    return c.s_args[i] >= 0 and c.args[c.s_args[i]].get("unfinished") is True


def assert_well_formed(trace, *, exact_unfinished=True):
    """The columns line up and every slice, event and typed view is sane."""
    c = trace.columns
    n = len(c.s_ts)
    for column in (c.s_track, c.s_dur, c.s_depth, c.s_name, c.s_cat, c.s_file, c.s_line, c.s_args):
        assert len(column) == n
    assert all(d >= 0 for d in c.s_dur)
    assert all(d >= 0 for d in c.s_depth)
    assert all(t >= 0 for t in c.s_ts)
    strings = len(trace.strings)
    assert all(0 <= i < strings for i in c.s_name)
    assert all(-1 <= i < strings for i in c.s_cat)
    assert all(-1 <= i < strings for i in c.s_file)
    assert all(-1 <= i < len(c.args) for i in c.s_args)
    unfinished = sum(is_unfinished(trace, i) for i in range(n))
    if exact_unfinished:
        assert unfinished == trace.unfinished
    else:
        assert unfinished >= trace.unfinished
    # the typed views build without error
    events = list(trace)
    assert isinstance(events[0], exectrace.Metadata)
    trace.gc_events()
    trace.instants()
    trace.counters()
    assert isinstance(trace.metadata.settings, dict)
    assert isinstance(trace.metadata.records_lost, int)
    for s in trace.slices():
        assert s.end_ns >= s.start_ns


def read_outcome(path, **kw):
    """exectrace.read's result, or the ExectraceError it raised (anything else fails)."""
    try:
        return exectrace.read(path, **kw)
    except ExectraceError as e:
        assert str(path) in str(e), e
        return e


# ------------------------------------------------------------ the sources


@pytest.mark.parametrize("name", ["plain", "packed", "big"])
def test_real_traces_read_back_whole(request, name):
    src = request.getfixturevalue(name)
    trace = src.trace
    assert trace.damage is None and trace.unfinished == 0
    assert trace.is_exectrace
    assert {t.name for t in trace.threads} >= {"MainThread", "worker"}
    slices = list(trace.slices())
    names = collections.Counter(s.name for s in slices)
    rounds = BIG_ROUNDS if name == "big" else 40
    assert names["leaf"] == 2 * 3 * rounds  # two threads
    assert names["len"] >= names["leaf"]
    assert names["middle"] == 2 * rounds
    assert all(s.is_c_function for s in slices if s.name == "len")
    assert all(s.file.endswith("test_reader.py") and s.line > 0 for s in slices if s.name == "leaf")
    assert trace.gc_events(), "gc.collect() inside the window"
    assert trace.metadata["records.kept"] == len(slices)
    assert_well_formed(trace)


def test_sources_have_the_expected_shape(plain, packed, big):
    assert b"exectrace window" in plain.data  # not compressed
    assert b"exectrace window" not in packed.data
    assert len(packet_spans(packed.data)) == 1  # one compressed chunk
    assert len(packet_spans(big.data)) >= 3  # several


@pytest.mark.parametrize("name", ["plain", "packed", "big"])
def test_slices_match_perfetto_schema_reading(request, name):
    src = request.getfixturevalue(name)
    model = check_trace(src.path)
    assert len(model.slices) == src.trace.slice_count
    assert collections.Counter(s.name for s in model.slices) == collections.Counter(
        s[-1] for s in src.slices.elements()
    )
    theirs = collections.Counter((s.track_uuid, s.ts, s.dur, s.depth, s.name) for s in model.slices)
    assert theirs == src.slices
    assert {u: t.name for u, t in model.tracks.items()} == {u: t["name"] for u, t in src.trace.tracks.items()}


def test_decode_accepts_bytes_bytearray_and_memoryview(plain):
    for data in (plain.data, bytearray(plain.data), memoryview(plain.data)):
        d = _tracecore.decode(data)
        assert d.error is None
        assert len(d.s_ts) == plain.trace.slice_count
    d = _tracecore.decode(b"")
    assert d.error is None and d.packets == 0


def test_read_accepts_pathlike(plain):
    import pathlib

    assert exectrace.read(pathlib.Path(plain.path)).slice_count == plain.trace.slice_count


def test_ring_overflow_is_not_damage(workdir):
    """Records lost to the ring are announced in the metadata, not missing data."""
    path = make_trace(workdir / "small-ring.out", 3000, buffer_size="64KiB")
    trace = exectrace.read(path)
    assert trace.metadata.records_lost > 0
    assert trace.damage is None
    assert trace.metadata["records.kept"] == sum(1 for _ in trace.slices())


# ------------------------------------------------------------ bad files


def assert_error(path, *fragments, **kw):
    with pytest.raises(ExectraceError) as info:
        exectrace.read(path, **kw)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    assert_error(tmp_path / "nope.out", "cannot read", "No such file")


def test_directory(tmp_path):
    assert_error(tmp_path, "directory")


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.out"
    os.mkfifo(fifo)
    outcome = {}

    def reader():
        try:
            exectrace.read(fifo)
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome["error"] = e

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # releases the reader
        thread.join(5)
        pytest.fail("exectrace.read() blocked opening a FIFO")
    assert isinstance(outcome["error"], ExectraceError)
    assert str(fifo) in str(outcome["error"]) and "not a regular file" in str(outcome["error"])


def test_symlink_to_fifo_and_device(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.out"
    link.symlink_to(fifo)
    assert_error(link, "not a regular file")
    assert_error("/dev/zero", "not a regular file")  # would never end if read


def test_symlink_loop(tmp_path):
    loop = tmp_path / "loop.out"
    loop.symlink_to(loop)
    assert_error(loop, "cannot read")


def test_empty_file(tmp_path):
    assert_error(write(tmp_path / "empty.out", b""), "is empty")


def test_text_file(tmp_path):
    path = write(tmp_path / "notes.txt", b"hello, this is not a trace\nsecond line\n")
    assert_error(path, "is not a Perfetto trace")


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    rnd = random.Random(seed)
    data = bytes(rnd.getrandbits(8) for _ in range(4096))
    if data[0] == 0x0A:  # would start like a packet
        data = b"\xff" + data[1:]
    assert_error(write(tmp_path / "random.out", data), "is not a Perfetto trace")


def foreign_trace() -> bytes:
    """A valid Perfetto trace by some other program: a thread track and a slice."""
    trace = pb.Trace()
    p = trace.packet.add()
    p.trusted_packet_sequence_id = 7
    p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    p.track_descriptor.uuid = 99
    p.track_descriptor.thread.pid = 1
    p.track_descriptor.thread.tid = 2
    p.track_descriptor.thread.thread_name = "main"
    for ts, kind in ((1000, pb.TrackEvent.TYPE_SLICE_BEGIN), (2000, pb.TrackEvent.TYPE_SLICE_END)):
        p = trace.packet.add()
        p.trusted_packet_sequence_id = 7
        p.timestamp = ts
        p.track_event.type = kind
        p.track_event.track_uuid = 99
        if kind == pb.TrackEvent.TYPE_SLICE_BEGIN:
            p.track_event.name = "doWork"
    return trace.SerializeToString()


def test_foreign_perfetto_trace(tmp_path):
    data = foreign_trace()
    check_trace(data)  # it is a good Perfetto trace
    assert _tracecore.decode(data).error is None
    assert_error(write(tmp_path / "foreign.out", data), "was not written by exectrace", "exectrace window")


def test_valid_protobuf_without_packets(tmp_path):
    assert_error(write(tmp_path / "noise.out", vi(2, 5) + ld(3, b"x")), "was not written by exectrace")


def test_undefined_name_iid_in_a_foreign_trace(tmp_path):
    trace = pb.Trace()
    p = trace.packet.add()
    p.trusted_packet_sequence_id = 9
    p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
    p.timestamp = 10
    p.track_event.type = pb.TrackEvent.TYPE_INSTANT
    p.track_event.track_uuid = 5
    p.track_event.name_iid = 12345
    data = trace.SerializeToString()
    d = _tracecore.decode(data)
    assert "event name iid 12345 is not defined on sequence 9" in d.error
    assert_error(write(tmp_path / "iid.out", data), "iid 12345 is not defined on sequence 9")


def test_undefined_name_iid_in_an_exectrace_file(plain, scratch):
    bad = plain.packet_on_meta_track(vi(9, 3), vi(10, 4242))
    write(scratch, plain.data + bad + plain.packet_on_meta_track(vi(9, 3), ld(23, b"after")))
    assert_error(scratch, "is damaged", "iid 4242 is not defined on sequence 1")
    trace = exectrace.read(scratch, allow_damaged=True)
    assert "4242" in trace.damage
    assert slice_keys(trace) == plain.slices  # everything before the bad packet
    assert not [i for i in trace.instants() if i.name == "after"]  # nothing after it
    assert_well_formed(trace)


def test_trailing_garbage_is_damage_but_keeps_everything(plain, scratch):
    write(scratch, plain.data + b"\x0a\x05abc")
    assert_error(scratch, "is damaged", "malformed or truncated data at byte")
    trace = exectrace.read(scratch, allow_damaged=True)
    assert slice_keys(trace) == plain.slices
    assert trace.unfinished == 0


# ------------------------------------------------------------ truncation


def truncation_points(size):
    points = {1 + (size - 2) * k // 199 for k in range(200)}
    points.update(range(max(1, size - 50), size))
    return sorted(points)


def window_packet_end(src) -> int:
    """Where the packet holding the window slice's begin ends."""
    at = src.data.find(b"exectrace window")
    spans = packet_spans(src.data)
    if at < 0:  # compressed: it is in the first chunk
        return spans[0][1]
    return next(end for start, end in spans if start <= at < end)


def check_truncated(src, path, cut):
    strict = read_outcome(path)
    assert isinstance(strict, ExectraceError), f"a file cut at {cut} of {len(src.data)} read as whole"
    damaged = read_outcome(path, allow_damaged=True)
    if cut < window_packet_end(src):
        assert isinstance(damaged, ExectraceError), cut
        return None
    assert isinstance(damaged, Trace), f"cut at {cut}: {damaged}"
    assert damaged.damage, cut
    assert_well_formed(damaged)
    # finished slices are slices of the whole file; unfinished ones end early
    finished = collections.Counter()
    c = damaged.columns
    for i in range(damaged.slice_count):
        track, ts, dur, depth, name = c.s_track[i], c.s_ts[i], c.s_dur[i], c.s_depth[i], c.s_name[i]
        if is_unfinished(damaged, i):
            assert dur <= src.longest[track, ts, depth, damaged.strings[name]]
        else:
            finished[track, ts, dur, depth, damaged.strings[name]] += 1
    assert not finished - src.slices
    values = dict(damaged.metadata.values)
    if values.pop("unfinished", False):  # the window slice itself was cut
        assert damaged.unfinished
    assert values == src.trace.metadata.values
    return damaged


@pytest.mark.parametrize("name", ["plain", "packed"])
def test_truncated_files(request, scratch, name):
    src = request.getfixturevalue(name)
    seen_damaged = 0
    for cut in truncation_points(len(src.data)):
        write(scratch, src.data[:cut])
        if check_truncated(src, scratch, cut) is not None:
            seen_damaged += 1
    # one compressed chunk: a cut anywhere loses the window slice
    assert seen_damaged > 0 if name == "plain" else seen_damaged == 0


def test_plain_file_cut_between_packets_is_damaged(plain, scratch):
    """A cut exactly between two packets decodes cleanly: the reader must still
    see that calls are missing (open slices, or fewer calls than recorded)."""
    spans = packet_spans(plain.data)
    # slices open after each packet, counted by Perfetto's own parser
    parsed = pb.Trace()
    parsed.ParseFromString(plain.data)
    assert len(parsed.packet) == len(spans)
    open_after, n_open = {}, 0
    for (_, end), p in zip(spans, parsed.packet):
        if p.HasField("track_event"):
            n_open += {pb.TrackEvent.TYPE_SLICE_BEGIN: 1, pb.TrackEvent.TYPE_SLICE_END: -1}.get(
                p.track_event.type, 0
            )
        open_after[end] = n_open
    assert n_open == 0
    start = window_packet_end(plain)
    ends = [end for _, end in spans if end >= start][:-1]
    step = max(1, len(ends) // 100)
    nothing_open = [end for end in ends if open_after[end] == 0]  # between two root calls
    assert nothing_open
    for end in ends[::step] + ends[-20:] + nothing_open:
        write(scratch, plain.data[:end])
        trace = check_truncated(plain, scratch, end)
        assert trace is not None
        assert trace.columns.error is None
        assert trace.unfinished == open_after[end]
        assert "truncated?" in trace.damage
        if trace.unfinished == 0:  # only the call count or the missing trailer shows it
            assert ("calls its metadata records" in trace.damage
                    or "'exectrace end of file' instant) is missing" in trace.damage)


def test_big_compressed_cut_at_chunk_boundaries(big, scratch):
    spans = packet_spans(big.data)
    for _, end in spans[:-1]:
        write(scratch, big.data[:end])
        trace = check_truncated(big, scratch, end)
        assert trace is not None
        assert trace.columns.error is None and "truncated?" in trace.damage
    for cut in truncation_points(len(big.data))[::25]:
        write(scratch, big.data[:cut])
        check_truncated(big, scratch, cut)


def test_truncated_inside_a_compressed_chunk(big):
    """The chunk's zlib stream itself cut short (its packet lengths adjusted),
    or whole but holding packets cut short."""
    chunk = zlib.decompress(_payload_of_first_chunk(big.data))
    z = zlib.compress(chunk)
    for cut in (1, 2, len(z) // 2, len(z) - 1):
        d = check_decode(compressed_chunk(z[:cut]))
        assert "truncated compressed chunk" in d.error
    inner_spans = packet_spans(chunk)
    start, end = inner_spans[len(inner_spans) // 2]
    assert end - start > 3
    d = check_decode(compressed_chunk(zlib.compress(chunk[: start + 3])))  # a packet cut short
    assert "inside a compressed chunk" in d.error


def _payload_of_first_chunk(data):
    _, pos = read_varint(data, 0)
    _, pos = read_varint(data, pos)
    key, pos = read_varint(data, pos)
    assert key == 50 << 3 | 2
    size, pos = read_varint(data, pos)
    return data[pos : pos + size]


# ------------------------------------------------------------ fuzzing


def check_decode(data: bytes):
    """decode() returns (never raises), quickly, with well-formed columns."""
    start = time.perf_counter()
    d = _tracecore.decode(data)
    assert time.perf_counter() - start < QUICK_S
    assert d.error is None or (isinstance(d.error, str) and d.error)
    trace = Trace("fuzz", d)
    assert_well_formed(trace, exact_unfinished=False)
    return d


def check_read(path):
    outcome = read_outcome(path)
    damaged = read_outcome(path, allow_damaged=True)
    if isinstance(damaged, Trace):
        assert_well_formed(damaged, exact_unfinished=False)
    return outcome


def mutate(data: bytes, draw) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(b) - 1))
        action = draw(st.sampled_from(["flip", "flip", "byte", "splice", "delete"]))
        if action == "flip":
            b[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "byte":
            b[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12]))
        elif action == "splice":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=24))
        else:
            del b[pos : pos + draw(st.integers(1, 16))]
            if not b:
                b = bytearray(b"\x00")
    return bytes(b)


@FUZZ
@given(data=st.data())
def test_fuzz_plain_trace(plain, scratch, data):
    mutated = mutate(plain.data, data.draw)
    check_decode(mutated)
    check_read(write(scratch, mutated))


@FUZZ
@given(data=st.data())
def test_fuzz_compressed_file(packed, scratch, data):
    mutated = mutate(packed.data, data.draw)
    check_decode(mutated)
    check_read(write(scratch, mutated))


@FUZZ
@given(data=st.data())
def test_fuzz_inside_compressed_chunk(packed, scratch, data):
    """Damage the packets inside the chunk, then compress them again."""
    inner = zlib.decompress(_payload_of_first_chunk(packed.data))
    mutated = packet(ld(50, zlib.compress(mutate(inner, data.draw))))
    check_decode(mutated)
    check_read(write(scratch, mutated))


@settings(FUZZ, max_examples=200)
@given(junk=st.binary(min_size=1, max_size=3000))
def test_fuzz_random_bytes(scratch, junk):
    check_decode(junk)
    assert isinstance(check_read(write(scratch, junk)), ExectraceError)


# Protobuf-shaped random input: valid wire format, field numbers the decoder
# looks at, so that it gets past the wire layer into the semantics.
NUMBERS = st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 21, 22, 23, 30, 34, 41, 44, 47, 48, 50, 58, 59, 60])
VALUES = st.one_of(st.integers(0, 130), st.integers(0, 2**64 - 1), st.sampled_from([2**63 - 1, 2**63, 2**31]))
SCALARS = st.one_of(
    st.tuples(NUMBERS, st.just(0), VALUES),
    st.tuples(NUMBERS, st.just(1), st.binary(min_size=8, max_size=8)),
    st.tuples(NUMBERS, st.just(5), st.binary(min_size=4, max_size=4)),
    st.tuples(NUMBERS, st.just(2), st.binary(max_size=6)),
)


def encode(fields) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        if wire == 0:
            out += vi(number, value)
        elif wire == 2:
            out += ld(number, value)
        else:
            out += tag(number, wire) + value
    return bytes(out)


MESSAGES = st.recursive(
    st.lists(SCALARS, max_size=4).map(encode),
    lambda inner: st.lists(st.one_of(SCALARS, st.tuples(NUMBERS, st.just(2), inner)), max_size=6).map(encode),
    max_leaves=30,
)
PACKETS = st.one_of(
    MESSAGES.map(lambda m: (1, 2, m)),
    st.lists(MESSAGES, max_size=3).map(lambda ms: (1, 2, ld(50, zlib.compress(b"".join(ld(1, m) for m in ms))))),
)


@settings(FUZZ, max_examples=200)
@given(packets=st.lists(PACKETS, min_size=1, max_size=12))
def test_fuzz_protobuf_shaped(scratch, packets):
    data = encode(packets)
    check_decode(data)
    check_read(write(scratch, data))


@settings(FUZZ, max_examples=40)
@given(extra=st.lists(MESSAGES, min_size=1, max_size=5), data=st.data())
def test_fuzz_packets_appended_to_real_trace(plain, scratch, extra, data):
    """Odd packets on the real sequences after a real trace: nothing is lost."""
    seq = data.draw(st.sampled_from([1, 2, 3]))
    tail = b"".join(packet(vi(10, seq), m) for m in extra)
    check_decode(plain.data + tail)
    check_read(write(scratch, plain.data + tail))
    damaged = exectrace.read(scratch, allow_damaged=True)
    kept = collections.Counter(k for k in slice_keys(damaged).elements() if k in plain.slices)
    assert kept == plain.slices


# ------------------------------------------------------- hostile wire values


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x0a" + b"\xff" * 10 + b"\x01", id="11-byte length varint"),
        pytest.param(b"\xff" * 10 + b"\x01", id="11-byte tag varint"),
        pytest.param(b"\x0a" + b"\xff" * 9 + b"\x01", id="length 2**64-1"),
        pytest.param(b"\x0a" + varint(2**63) + b"abc", id="length 2**63"),
        pytest.param(b"\x0a" + varint(2**32 + 3) + b"abc", id="length 2**32+3"),
        pytest.param(b"\x0a\x04abc", id="length one past the end"),
        pytest.param(b"\x0a" + b"\x80" * 9, id="unterminated varint"),
        pytest.param(tag(2**29, 0) + b"\x00", id="field number 2**29"),
        pytest.param(b"\x0b\x0c", id="group wire type"),
        pytest.param(b"\x09\x01\x02", id="fixed64 cut short"),
        pytest.param(b"\x00\x00", id="field number 0"),
    ],
)
def test_bad_varints_and_lengths_at_top_level(tmp_path, data):
    d = check_decode(data)
    assert d.error.startswith("malformed or truncated data at byte ")
    assert d.packets == 0
    assert_error(write(tmp_path / "bad.out", data), "is not a Perfetto trace", "malformed or truncated")


@pytest.mark.parametrize(
    "field",
    [
        pytest.param(b"\x5a" + b"\xff" * 10 + b"\x01", id="11-byte varint"),
        pytest.param(b"\x5a" + varint(2**63), id="length 2**63"),
        pytest.param(b"\x5a" + varint(2**64 - 1), id="length 2**64-1"),
        pytest.param(b"\x5a\x05\x48", id="length past the packet"),
    ],
)
def test_bad_lengths_inside_a_packet(plain, scratch, field):
    data = plain.data + packet(field)
    d = check_decode(data)
    assert d.error.startswith("malformed packet #")
    assert_error(write(scratch, data), "is damaged", "malformed packet")
    assert slice_keys(exectrace.read(scratch, allow_damaged=True)) == plain.slices


def test_bad_length_inside_track_event_is_ignored_quietly(plain):
    """Inner messages with a broken field end where the break is (no crash)."""
    event = vi(9, 3) + ld(23, b"odd") + b"\x22" + varint(2**63)  # debug annotation of length 2**63
    d = check_decode(plain.data + plain.packet_on_meta_track(event))
    assert d.error is None or "malformed" in d.error


def nested_annotation(depth: int, kind: int = 11) -> bytes:
    """A DebugAnnotation nesting `depth` dict_entries (11) or array_values (12),
    built front to back (no quadratic re-copying)."""
    leaf_bytes = ld(10, b"leaf") + vi(3, 7)
    sizes = [len(leaf_bytes)]
    head = ld(10, b"k") + tag(kind, 2)
    for _ in range(depth):
        sizes.append(len(head) + len(varint(sizes[-1])) + sizes[-1])
    parts = [head + varint(size) for size in reversed(sizes[:-1])]
    return b"".join(parts) + leaf_bytes


def test_nested_annotation_builder():
    msg = nested_annotation(3)
    d = pb.DebugAnnotation()
    d.ParseFromString(msg)
    assert d.dict_entries[0].dict_entries[0].dict_entries[0].uint_value == 7


@pytest.mark.parametrize("kind", [11, 12])
def test_moderately_nested_annotations_decode(plain, kind):
    event = vi(9, 3) + ld(23, b"nested") + ld(4, nested_annotation(10, kind))
    d = check_decode(plain.data + plain.packet_on_meta_track(event))
    assert d.error is None
    (instant,) = [i for i in d.instants if d.strings[i[2]] == "nested"]
    value, levels = instant[4]["k"], 0
    while not isinstance(value, int):
        value = value[0] if isinstance(value, list) else value.get("k", value.get("leaf"))
        levels += 1
    assert (value, levels) == (7, 10)


@pytest.mark.parametrize("kind", [11, 12])
def test_deeply_nested_annotations(plain, scratch, kind):
    event = vi(9, 3) + ld(23, b"deep") + ld(4, nested_annotation(10_000, kind))
    data = plain.data + plain.packet_on_meta_track(event)
    start = time.perf_counter()
    d = check_decode(data)
    assert time.perf_counter() - start < 1
    assert "nested too deeply" in d.error
    assert_error(write(scratch, data), "is damaged", "nested too deeply")
    assert slice_keys(exectrace.read(scratch, allow_damaged=True)) == plain.slices


@pytest.fixture(scope="module")
def zlib_bomb():
    """200 MiB of zeros, zlib-compressed (about 200 KB)."""
    co = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    data = b"".join(co.compress(zeros) for _ in range(200)) + co.flush()
    assert len(data) < 300_000
    return data


def child_decode(python, path, expect_error):
    """Decodes `path` in a fresh interpreter; its peak memory and time."""
    result = python(
        f"""
        import json, resource, time
        from exectrace import _tracecore
        data = open({str(path)!r}, "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        d = _tracecore.decode(data)
        print(json.dumps(dict(
            secs=time.perf_counter() - start,
            grew_mb=(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
            error=d.error, problems=len(d.problems), packets=d.packets)))
        """
    )
    outcome = json.loads(result.stdout)
    if expect_error is None:
        assert outcome["error"] is None
    else:
        assert expect_error in outcome["error"]
    return outcome


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB")
def test_zlib_bomb_is_refused_with_bounded_memory(zlib_bomb, tmp_path, python):
    path = write(tmp_path / "bomb.out", compressed_chunk(zlib_bomb))
    outcome = child_decode(python, path, "inflates past 64 MiB")
    assert outcome["grew_mb"] < 200, outcome
    assert outcome["secs"] < 5, outcome
    assert_error(path, "is not a Perfetto trace", "inflates past 64 MiB")


def compressed_chunk(z: bytes) -> bytes:
    return packet(ld(50, z))


def test_zlib_bomb_after_a_real_trace(plain, zlib_bomb, scratch):
    write(scratch, plain.data + compressed_chunk(zlib_bomb))
    assert_error(scratch, "is damaged", "inflates past 64 MiB")
    assert slice_keys(exectrace.read(scratch, allow_damaged=True)) == plain.slices


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB")
def test_flood_of_odd_events_has_bounded_memory(tmp_path, python):
    """Millions of events without a track (each one a 'problem') from a small
    compressed chunk: what is kept about them must stay small."""
    one = packet(ld(11, vi(9, 2)))  # SLICE_END with no track
    inner = one * ((24 << 20) // len(one))
    path = write(tmp_path / "flood.out", compressed_chunk(zlib.compress(inner, 9)))
    del inner
    outcome = child_decode(python, path, None)
    assert outcome["packets"] > 4_000_000
    assert outcome["problems"] <= 1001
    assert outcome["grew_mb"] < 150, outcome


def test_nested_compressed_chunks(plain, scratch):
    innermost = plain.packet_on_meta_track(vi(9, 3), ld(23, b"inner"))
    nested = compressed(compressed(innermost))
    d = check_decode(nested)
    assert "compressed packets nested inside compressed packets" in d.error
    write(scratch, plain.data + nested)
    assert_error(scratch, "is damaged", "nested inside compressed")
    # one level is fine
    d = check_decode(plain.data + compressed(innermost))
    assert d.error is None
    assert [i for i in d.instants if d.strings[i[2]] == "inner"]


def test_corrupt_and_truncated_zlib(plain, scratch):
    good = zlib.compress(plain.packet_on_meta_track(vi(9, 3), ld(23, b"x")))
    for z, problem in (
        (b"\x78\x9c" + bytes(range(40)), "corrupt compressed chunk"),
        (b"not zlib at all", "corrupt compressed chunk"),
        (good[:-1], "truncated compressed chunk"),  # adler32 cut
        (good[: len(good) // 2], "truncated compressed chunk"),
        (b"", "truncated compressed chunk"),
    ):
        data = plain.data + compressed_chunk(z)
        assert problem in check_decode(data).error
        write(scratch, data)
        assert_error(scratch, "is damaged", problem)


# ------------------------------------------------------------ odd values


def begin_end(track: int, begin_ts: int, end_ts: int, name: bytes = b"x", seq: int = 1) -> bytes:
    return packet(vi(8, begin_ts), vi(10, seq), ld(11, vi(9, 1) + vi(11, track) + ld(23, name))) + packet(
        vi(8, end_ts), vi(10, seq), ld(11, vi(9, 2) + vi(11, track))
    )


def test_track_uuids_above_int64(tmp_path):
    """uint64 uuids (Perfetto SDK ones often have the top bit set)."""
    uuid = 2**64 - 5
    data = packet(ld(60, vi(1, uuid) + ld(2, b"t"))) + begin_end(uuid, 10, 20)
    d = check_decode(data)
    assert d.error is None and list(d.s_track) == [uuid] and list(d.s_dur) == [10]
    # and the same track still open at the end
    d = check_decode(data + packet(vi(8, 30), vi(10, 1), ld(11, vi(9, 1) + vi(11, uuid) + ld(23, b"y"))))
    assert d.unfinished == 1
    assert_error(write(tmp_path / "sdk.out", data), "was not written by exectrace")


@pytest.mark.parametrize("ts", [2**63, 2**64 - 1])
def test_timestamps_beyond_int64(tmp_path, ts):
    data = begin_end(5, 100, ts)
    d = check_decode(data)
    assert "out of range" in d.error
    assert d.unfinished == 1 and list(d.s_dur) == [0]
    d = check_decode(begin_end(5, ts, ts + 1 if ts < 2**64 - 1 else ts))
    assert "out of range" in d.error and len(d.s_ts) == 0
    assert_error(write(tmp_path / "ts.out", data), str(tmp_path))


def test_huge_incremental_clock_deltas():
    """Deltas on an incremental clock that add up past int64."""
    snapshot = ld(6, ld(1, vi(1, 3) + vi(2, 0)) + ld(1, vi(1, 64) + vi(2, 0) + vi(3, 1)))
    defaults = ld(59, vi(58, 64) + ld(11, vi(11, 5)))
    first = packet(vi(10, 2), vi(13, 1), snapshot, defaults)
    events = b"".join(
        packet(vi(8, 2**62), vi(10, 2), ld(11, vi(9, 1) + ld(23, b"s%d" % i))) for i in range(4)
    )
    d = check_decode(first + events)
    assert "out of range" in d.error
    assert d.unfinished == 1  # the begins before the overflow (ts 2**62) are closed


def test_source_line_beyond_int32():
    interned = ld(12, ld(4, vi(1, 1) + ld(2, b"f.py") + ld(3, b"f") + vi(4, 2**40)) + ld(2, vi(1, 1) + ld(2, b"f")))
    data = packet(vi(8, 1), vi(10, 3), vi(13, 1), interned, ld(11, vi(9, 1) + vi(11, 5) + vi(10, 1) + vi(34, 1)))
    data += packet(vi(8, 2), vi(10, 3), ld(11, vi(9, 2) + vi(11, 5)))
    d = check_decode(data)
    assert d.error is None
    assert list(d.s_line) == [0] and d.strings[d.s_file[0]] == "f.py"


def test_clock_entries_with_wrong_wire_types_are_ignored():
    """ClockSnapshot.Clock fields of the wrong wire type carry no value."""
    clock = vi(2, 5) + ld(1, b"ab")  # timestamp 5, clock_id as bytes
    d = check_decode(packet(vi(10, 1), ld(6, ld(1, clock))))
    assert d.clock_snapshots == []
    assert d.primary_clock is None


def test_unnamed_and_odd_metadata_values(plain, scratch):
    """Debug annotations without a name, and GC arguments that are not numbers."""
    gc_uuid = next(u for u, t in plain.trace.tracks.items() if t["name"] == "GC")
    end_ns = plain.trace.metadata.end_ns
    odd_gc = (
        packet(vi(8, end_ns), vi(10, 1), ld(11, vi(9, 1) + vi(11, gc_uuid) + ld(23, b"GC gen9")
                                           + ld(4, ld(10, b"generation") + ld(6, b"many"))
                                           + ld(4, ld(10, b"collected") + tag(5, 1) + b"\x00" * 6 + b"\xf8\x7f")  # NaN
                                           + ld(4, ld(10, b"uncollectable"))
                                           + ld(4, vi(3, 1))))  # no name at all
        + packet(vi(8, end_ns), vi(10, 1), ld(11, vi(9, 2) + vi(11, gc_uuid)))
    )
    d = check_decode(plain.data + odd_gc)
    assert d.error is None
    trace = Trace("x", d)
    (event,) = [e for e in trace.gc_events() if e.start_ns == end_ns]
    assert (event.generation, event.collected, event.uncollectable) == (-1, -1, -1)
    assert all(isinstance(k, str) for args in d.args for k in args)
    assert_well_formed(trace)


def test_metadata_without_name_does_not_break_settings(plain):
    """The window slice's own annotations, one without a name."""
    data = bytearray(plain.data)
    at = data.find(b"\x52\x10window.truncated")  # name field of one annotation
    assert at > 0
    data[at] = 0x7A  # field 15: not a name any more
    d = check_decode(bytes(data))
    trace = Trace("x", d)
    assert "" in trace.metadata.values
    assert trace.metadata.settings
    assert trace.metadata.records_lost == 0


def test_records_lost_not_a_number(plain):
    trace = Trace("x", _tracecore.decode(plain.data))
    for odd in (float("inf"), float("nan"), "12", None, {"a": 1}):
        trace.metadata.values["records.lost"] = odd
        assert trace.metadata.records_lost == 0


def test_flood_of_problems_is_capped():
    one = packet(vi(8, 1), vi(10, 1), ld(11, vi(9, 2) + vi(11, 5)))  # END with nothing open
    d = check_decode(one * 5000)
    assert d.error is None
    assert len(d.problems) == 1001 and "further problems" in d.problems[-1]


def test_empty_and_odd_packets_are_harmless():
    d = check_decode(b"\x0a\x00" * 1000 + vi(2, 1) + ld(3, b"xyz") + b"\x0a\x00")
    assert d.error is None and d.packets == 1001


def test_all_wire_types_everywhere_quickly():
    """Every field number the decoder knows, with every wire type, nested."""
    numbers = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 21, 22, 23, 30, 34, 41, 44, 47, 48, 50, 58, 59, 60]
    scalars = [vi(n, 2**64 - 1) + tag(n, 1) + b"\xff" * 8 + tag(n, 5) + b"\xff" * 4 + ld(n, b"\xff") for n in numbers]
    body = b"".join(scalars)
    for _ in range(3):
        body = b"".join(ld(n, body[:2000]) for n in numbers) + body[:500]
    check_decode(packet(body) + packet(vi(10, 1), body))


def test_many_small_bombs_hit_the_total_inflate_budget():
    """Each chunk is under the per-chunk limit, together they are a bomb: the
    total inflated size is bounded by the file's size."""
    chunk = zlib.compress(b"\x0a\x00" * (512 * 1024), 9)  # 1 MiB of empty packets
    data = packet(ld(50, chunk)) * 400  # ~400 MiB inflated from a few hundred KiB
    started = time.monotonic()
    decoded = _tracecore.decode(data)
    assert time.monotonic() - started < 10
    assert decoded.error is not None and "inflate" in decoded.error
