"""Tests for tests/perfetto_check.py (the trace checker used by other tests)."""

from __future__ import annotations

import os
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

from perfetto_check import (  # noqa: E402
    MAX_COMPRESSED_CHUNK,
    TraceCheckError,
    TraceModel,
    check_trace,
)

BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4
CLEARED, NEEDS = 1, 2
REALTIME, MONOTONIC, BOOTTIME = 1, 3, 6
SEQ_CLOCK = 64


# --------------------------------------------------------------------------
# Builders


def tag(field_number: int, wire_type: int) -> bytes:
    v = (field_number << 3) | wire_type
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def serialize(packets) -> bytes:
    t = pb.Trace()
    for p in packets:
        t.packet.add().CopyFrom(p)
    return t.SerializeToString()


def packet(seq=0, ts=None, flags=0, clock=None):
    p = pb.TracePacket()
    if seq:
        p.trusted_packet_sequence_id = seq
    if ts is not None:
        p.timestamp = ts
    if flags:
        p.sequence_flags = flags
    if clock is not None:
        p.timestamp_clock_id = clock
    return p


def event(seq, ts, typ, flags=NEEDS, track=None, name=None, name_iid=None, clock=None, **kw):
    p = packet(seq, ts, flags, clock)
    te = p.track_event
    te.type = typ
    if track is not None:
        te.track_uuid = track
    if name is not None:
        te.name = name
    if name_iid is not None:
        te.name_iid = name_iid
    for k, v in kw.items():
        if isinstance(v, (list, tuple)):
            getattr(te, k).extend(v)
        else:
            setattr(te, k, v)
    return p


def intern(p, table, entries):
    """entries: {iid: value}; value is the 'name' (or a dict of fields)."""
    for iid, v in entries.items():
        e = getattr(p.interned_data, table).add()
        e.iid = iid
        if isinstance(v, dict):
            for k, x in v.items():
                setattr(e, k, x)
        elif table == "log_message_body":
            e.body = v
        elif table == "debug_annotation_string_values":
            e.str = v.encode()
        else:
            e.name = v
    return p


def seq_start(seq, track, base, mono):
    """First packet of a sequence: clears state, sets defaults, declares clock 64."""
    p = packet(seq, flags=CLEARED)
    p.trace_packet_defaults.timestamp_clock_id = SEQ_CLOCK
    p.trace_packet_defaults.track_event_defaults.track_uuid = track
    cs = p.clock_snapshot
    c = cs.clocks.add()
    c.clock_id, c.timestamp, c.is_incremental = SEQ_CLOCK, base, True
    c = cs.clocks.add()
    c.clock_id, c.timestamp = MONOTONIC, mono
    return p


def global_snapshot(
    boot=1_000_000_000, mono=500_000_000, real=1_700_000_000_000_000_000, primary=None
):
    p = packet()
    for cid, v in ((BOOTTIME, boot), (MONOTONIC, mono), (REALTIME, real)):
        c = p.clock_snapshot.clocks.add()
        c.clock_id, c.timestamp = cid, v
    if primary:
        p.clock_snapshot.primary_trace_clock = primary
    return p


def process_track(uuid, pid, name):
    p = packet()
    d = p.track_descriptor
    d.uuid = uuid
    d.process.pid = pid
    d.process.process_name = name
    return p


def thread_track(uuid, pid, tid, name, parent=None):
    p = packet()
    d = p.track_descriptor
    d.uuid = uuid
    d.thread.pid = pid
    d.thread.tid = tid
    d.thread.thread_name = name
    if parent is not None:
        d.parent_uuid = parent
    return p


def counter_track(uuid, name, parent=None):
    p = packet()
    d = p.track_descriptor
    d.uuid = uuid
    d.name = name
    d.counter.SetInParent()
    if parent is not None:
        d.parent_uuid = parent
    return p


def compressed(packets, level=6):
    p = pb.TracePacket()
    p.compressed_packets = zlib.compress(serialize(packets), level)
    return p


def descriptors():
    return [
        process_track(1, 42, "app"),
        thread_track(11, 42, 42, "MainThread", parent=1),
        thread_track(12, 42, 43, "worker", parent=1),
        counter_track(21, "rss", parent=1),
    ]


def add_annotation(te, name=None, name_iid=None, **value):
    a = te.debug_annotations.add()
    if name is not None:
        a.name = name
    if name_iid is not None:
        a.name_iid = name_iid
    for k, v in value.items():
        setattr(a, k, v)
    return a


def good_packets():
    """A correct trace: two threads on two sequences (one inside a compressed
    chunk), interned names, an incremental sequence clock converted through
    MONOTONIC to BOOTTIME, nested slices, an instant with a log message and a
    counter track."""
    # Global snapshot: MONOTONIC + 500ms = BOOTTIME.
    pkts = [global_snapshot()] + descriptors()
    # seq 1: clock 64 starts at MONOTONIC 600_000_000.
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    p = event(1, 1000, BEGIN, name_iid=1, category_iids=[1], source_location_iid=1)
    intern(p, "event_names", {1: "outer", 2: "inner"})
    intern(p, "event_categories", {1: "py"})
    intern(p, "debug_annotation_names", {1: "arg"})
    intern(
        p,
        "source_locations",
        {1: {"file_name": "app.py", "function_name": "outer", "line_number": 10}},
    )
    pkts.append(p)
    p = event(1, 500, BEGIN, name_iid=2)
    add_annotation(p.track_event, name_iid=1, int_value=7)
    d = add_annotation(p.track_event, name="d")
    e = d.dict_entries.add()
    e.name, e.string_value = "k", "v"
    arr = add_annotation(p.track_event, name="l")
    arr.array_values.add().int_value = 1
    arr.array_values.add().int_value = 2
    pkts.append(p)

    # seq 2 (thread 12), all inside one compressed chunk; iid 1 means "work" here.
    chunk = [seq_start(2, 12, 700_000_000, 700_000_000)]
    p = event(2, 100, BEGIN, name_iid=1)
    intern(p, "event_names", {1: "work"})
    intern(p, "log_message_body", {1: "hello"})
    chunk.append(p)
    p = event(2, 10, INSTANT, name="tick")
    p.track_event.log_message.body_iid = 1
    chunk.append(p)
    chunk.append(event(2, 40, END))
    pkts.append(compressed(chunk))

    pkts.append(event(1, 250, END))
    pkts.append(event(1, 0, BEGIN, name="inner2"))  # an explicit delta of 0
    pkts.append(event(1, 100, END))
    pkts.append(event(1, 150, END))

    # seq 3: counters, absolute BOOTTIME timestamps (no clock id).
    pkts.append(event(3, 1_100_000_000, COUNTER, flags=CLEARED, track=21, double_counter_value=1.5))
    pkts.append(event(3, 1_100_000_500, COUNTER, track=21, counter_value=2))
    return pkts


def rejected(packets_or_bytes, rule, *fragments):
    data = packets_or_bytes if isinstance(packets_or_bytes, bytes) else serialize(packets_or_bytes)
    with pytest.raises(TraceCheckError) as ei:
        check_trace(data)
    msg = str(ei.value)
    assert ei.value.rule == rule, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return ei.value


# --------------------------------------------------------------------------
# A correct trace


def test_good_trace_model():
    m = check_trace(serialize(good_packets()))
    assert isinstance(m, TraceModel)
    got = [(s.name, s.track_uuid, s.ts, s.dur, s.depth) for s in m.slices]
    assert got == [
        ("outer", 11, 1_100_001_000, 1000, 0),
        ("inner", 11, 1_100_001_500, 250, 1),
        ("work", 12, 1_200_000_100, 50, 0),
        ("inner2", 11, 1_100_001_750, 100, 1),
    ]
    outer, inner, work, inner2 = m.slices
    assert outer.categories == ("py",)
    assert outer.source_location == ("app.py", "outer", 10)
    assert inner.args == {"arg": 7, "d": {"k": "v"}, "l": [1, 2]}
    assert inner.source_location is None
    assert outer.end == 1_100_002_000
    assert m.children(outer) == [inner, inner2]
    assert m.children(inner) == []
    assert m.parent(inner2) is outer and m.parent(outer) is None
    assert m.slices_named("work") == [work]
    assert [s.name for s in m.slices_on(11)] == ["outer", "inner", "inner2"]

    assert [(i.name, i.track_uuid, i.ts, i.log_message) for i in m.instants] == [
        ("tick", 12, 1_200_000_110, "hello")
    ]
    assert [(c.track_uuid, c.ts, c.value) for c in m.counters] == [
        (21, 1_100_000_000, 1.5),
        (21, 1_100_000_500, 2),
    ]

    assert m.track_named("worker").tid == 43
    assert m.track_named("worker").pid == 42
    assert m.track_named("worker").parent_uuid == 1
    assert m.track_named("app").kind == "process"
    assert m.track_named("rss").kind == "counter"
    assert sorted(t.uuid for t in m.thread_tracks()) == [11, 12]
    with pytest.raises(LookupError):
        m.track_named("nope")

    assert m.sequence_ids == {1, 2, 3}
    assert m.compressed_chunks == 1
    assert m.packet_count == len(good_packets()) - 1 + 4  # chunk carrier replaced by 4
    assert m.trace_clock == BOOTTIME
    assert len(m.clock_snapshots) == 3
    assert m.clock_snapshots[0].clock(MONOTONIC) == 500_000_000
    assert m.clock_snapshots[1].sequence_id == 1


def test_accepts_a_path(tmp_path):
    f = tmp_path / "t.out"
    f.write_bytes(serialize(good_packets()))
    assert len(check_trace(f).slices) == 4
    assert len(check_trace(str(f)).slices) == 4


def test_primary_trace_clock_domain():
    # Trace clock MONOTONIC: the same events land 500ms earlier.
    pkts = good_packets()
    pkts[0] = global_snapshot(primary=MONOTONIC)
    # the counters carry no clock id: taken as trace time (MONOTONIC) now
    m = check_trace(serialize(pkts))
    assert m.trace_clock == MONOTONIC
    assert m.slices_named("outer")[0].ts == 600_001_000
    assert m.counters[0].ts == 1_100_000_000


def test_clock_units_and_closest_snapshot():
    # A microsecond sequence clock; then two global snapshots with different
    # MONOTONIC->BOOTTIME offsets (a suspend in between): each MONOTONIC value
    # converts through the latest snapshot not after it.
    pkts = [global_snapshot(boot=1_000_000_000, mono=500_000_000)] + descriptors()
    p = seq_start(1, 11, 600_000, 600_000_000)
    p.clock_snapshot.clocks[0].unit_multiplier_ns = 1000
    pkts.append(p)
    pkts.append(event(1, 5, INSTANT, name="us"))
    pkts.append(
        global_snapshot(boot=3_000_000_000, mono=2_000_000_000, real=1_800_000_000_000_000_000)
    )
    pkts.append(
        event(3, 1_000_000_000, INSTANT, flags=CLEARED, name="a", track=12, clock=MONOTONIC)
    )
    pkts.append(event(3, 2_500_000_000, INSTANT, name="b", track=12, clock=MONOTONIC))
    m = check_trace(serialize(pkts))
    assert [(i.name, i.ts) for i in m.instants] == [
        ("us", 1_100_005_000),
        ("a", 1_500_000_000),
        ("b", 3_500_000_000),
    ]


def test_incremental_state_clear_starts_a_new_generation():
    # After a second clear, iid 1 may mean something else.
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    pkts.append(intern(event(1, 10, INSTANT, name_iid=1), "event_names", {1: "a"}))
    p = intern(
        event(1, 10, INSTANT, flags=CLEARED, name_iid=1, clock=SEQ_CLOCK, track=11),
        "event_names",
        {1: "b"},
    )
    pkts.append(p)
    m = check_trace(serialize(pkts))
    assert [i.name for i in m.instants] == ["a", "b"]


def test_interned_string_values_and_nested_annotations():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    p = event(1, 10, INSTANT, name="i")
    intern(p, "debug_annotation_string_values", {5: "interned"})
    add_annotation(p.track_event, name="s", string_value_iid=5)
    add_annotation(p.track_event, name="b", bool_value=True)
    add_annotation(p.track_event, name="f", double_value=0.5)
    pkts.append(p)
    m = check_trace(serialize(pkts))
    assert m.instants[0].args == {"s": "interned", "b": True, "f": 0.5}


# --------------------------------------------------------------------------
# Broken traces, one per rule


def test_missing_incremental_state_cleared():
    pkts = good_packets()
    i = next(k for k, p in enumerate(pkts) if p.trusted_packet_sequence_id == 1)
    pkts[i].sequence_flags = 0
    e = rejected(pkts, "sequence", "first packet of seq 1", "SEQ_INCREMENTAL_STATE_CLEARED")
    assert e.sequence_id == 1 and e.packet_index == i


def test_needs_incremental_state_before_cleared():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(event(1, 10, INSTANT, name="x", track=11))
    rejected(pkts, "sequence", "SEQ_NEEDS_INCREMENTAL_STATE", "seq 1")


def test_needs_incremental_state_after_packet_loss():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    p = event(1, 10, INSTANT, name="x")
    p.previous_packet_dropped = 1
    pkts.append(p)
    rejected(pkts, "sequence", "invalid", "seq 1")


def test_error_is_an_assertion_error():
    pkts = good_packets()
    pkts.append(event(1, 10, END))
    with pytest.raises(AssertionError):
        check_trace(serialize(pkts))


def test_interned_data_after_packet_loss():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    p = intern(event(1, 10, INSTANT, flags=0, name_iid=1), "event_names", {1: "a"})
    p.previous_packet_dropped = 1
    pkts.append(p)
    rejected(pkts, "interning", "invalid")


def test_extra_counter_values():
    pkts = good_packets()
    pkts.append(counter_track(22, "threads", parent=1))
    p = event(3, 1_300_000_000, INSTANT, name="sample", track=11)
    p.track_event.extra_counter_track_uuids.extend([21, 22])
    p.track_event.extra_counter_values.extend([5, 6])
    pkts.append(p)
    m = check_trace(serialize(pkts))
    assert [(c.track_uuid, c.ts, c.value) for c in m.counters[-2:]] == [
        (21, 1_300_000_000, 5),
        (22, 1_300_000_000, 6),
    ]
    p.track_event.ClearField("extra_counter_track_uuids")
    rejected(pkts, "event", "extra_counter_values", "0 track uuids")


def test_undefined_iid():
    pkts = good_packets()
    pkts.append(event(1, 1, INSTANT, name_iid=9))
    rejected(pkts, "interning", "TrackEvent.name_iid iid 9", "event_names", "seq 1")


def test_iid_from_another_sequence_is_undefined():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    pkts.append(intern(event(1, 10, INSTANT, name_iid=1), "event_names", {1: "a"}))
    pkts.append(seq_start(2, 12, 600_000_000, 600_000_000))
    pkts.append(event(2, 10, INSTANT, name_iid=1))
    rejected(pkts, "interning", "iid 1", "seq 2")


def test_iid_cleared_by_incremental_state_clear():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    pkts.append(intern(event(1, 10, INSTANT, name_iid=1), "event_names", {1: "a"}))
    pkts.append(event(1, 10, INSTANT, flags=CLEARED, name_iid=1, clock=SEQ_CLOCK, track=11))
    rejected(pkts, "interning", "iid 1", "event_names")


def test_iid_redefined_with_another_value():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(seq_start(1, 11, 600_000_000, 600_000_000))
    pkts.append(intern(event(1, 10, INSTANT, name_iid=1), "event_names", {1: "a"}))
    pkts.append(intern(event(1, 10, INSTANT, name_iid=1), "event_names", {1: "b"}))
    rejected(pkts, "interning", "iid 1 redefined", "'b'", "'a'")


def test_undefined_debug_annotation_name_iid():
    pkts = good_packets()
    p = event(1, 1, INSTANT, name="x")
    add_annotation(p.track_event, name_iid=77, int_value=1)
    pkts.append(p)
    rejected(pkts, "interning", "DebugAnnotation.name_iid iid 77", "debug_annotation_names")


def test_unbalanced_end():
    pkts = good_packets()
    pkts.append(event(1, 10, END))
    rejected(pkts, "slice", "TYPE_SLICE_END", "no open slice", "track 11")


def test_slice_open_at_end_of_file():
    pkts = good_packets()
    del pkts[-3]  # the END of "outer"
    rejected(pkts, "slice", "still open at end of file", "track 11", "'outer'")


def test_decreasing_timestamp_on_a_track():
    pkts = good_packets()
    # counters on track 21: make the second one earlier than the first
    pkts[-1].timestamp = 1_000_000_000
    e = rejected(pkts, "order", "track 21", "1000000000", "1100000000")
    assert e.track_uuid == 21


def test_decreasing_timestamp_across_sequences_on_one_track():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(event(3, 2_000, INSTANT, flags=CLEARED, name="a", track=11, clock=BOOTTIME))
    pkts.append(event(4, 1_000, INSTANT, flags=CLEARED, name="b", track=11, clock=BOOTTIME))
    rejected(pkts, "order", "track 11")


def test_undefined_track_uuid():
    pkts = good_packets()
    pkts.append(event(3, 1_100_000_600, INSTANT, name="x", track=999))
    e = rejected(pkts, "track", "track uuid 999", "no TrackDescriptor")
    assert e.track_uuid == 999


def test_track_defined_after_use_is_accepted():
    pkts = good_packets()
    pkts.append(event(3, 1_100_000_600, INSTANT, name="x", track=999))
    pkts.append(thread_track(999, 42, 44, "late"))
    m = check_trace(serialize(pkts))
    assert m.instants[-1].track_uuid == 999


def test_event_without_track():
    pkts = [global_snapshot()] + descriptors()
    pkts.append(event(3, 10, INSTANT, flags=CLEARED, name="x"))
    rejected(pkts, "track", "no track_uuid", "seq 3")


def test_conflicting_track_descriptor():
    pkts = good_packets()
    pkts.append(thread_track(11, 42, 99, "MainThread"))
    rejected(pkts, "track", "track uuid 11 described again")


def test_repeated_identical_descriptor_and_rename_are_accepted():
    pkts = good_packets()
    pkts.append(thread_track(12, 42, 43, "renamed", parent=1))
    m = check_trace(serialize(pkts))
    assert m.tracks[12].name == "renamed"


def test_thread_track_needs_pid_and_tid():
    pkts = good_packets()
    p = packet()
    p.track_descriptor.uuid = 50
    p.track_descriptor.thread.tid = 5
    pkts.append(p)
    rejected(pkts, "track", "lacks pid or tid")


def test_counter_on_a_thread_track():
    pkts = good_packets()
    pkts.append(event(3, 1_100_003_000, COUNTER, track=11, counter_value=1))
    rejected(pkts, "track", "not a counter track", "track 11")


def test_counter_without_value():
    pkts = good_packets()
    pkts.append(event(3, 1_100_000_600, COUNTER, track=21))
    rejected(pkts, "event", "TYPE_COUNTER", "counter_value")


def test_begin_without_name():
    pkts = good_packets()
    pkts.insert(-2, event(1, 1, BEGIN))
    pkts.insert(-2, event(1, 1, END))
    rejected(pkts, "event", "TYPE_SLICE_BEGIN", "neither name nor name_iid")


def test_sequence_clock_on_sequence_zero():
    # (A track event on seq 0 is an error of its own, so use a descriptor packet.)
    pkts = good_packets()
    p = thread_track(60, 42, 60, "t")
    p.timestamp = 5
    p.timestamp_clock_id = SEQ_CLOCK
    pkts.append(p)
    rejected(pkts, "clock", "sequence-scoped clock 64", "without trusted_packet_sequence_id")


def test_sequence_clock_snapshot_on_sequence_zero():
    pkts = good_packets()
    p = packet()
    c = p.clock_snapshot.clocks.add()
    c.clock_id, c.timestamp, c.is_incremental = SEQ_CLOCK, 1, True
    c = p.clock_snapshot.clocks.add()
    c.clock_id, c.timestamp = MONOTONIC, 1
    pkts.append(p)
    rejected(pkts, "clock", "sequence-scoped clock 64")


def test_track_event_on_sequence_zero():
    pkts = good_packets()
    pkts.append(event(0, 1_100_000_600, INSTANT, flags=0, name="x", track=11, clock=BOOTTIME))
    rejected(pkts, "sequence", "track_event without a trusted_packet_sequence_id")


def test_sequence_clock_not_declared_on_its_sequence():
    pkts = good_packets()
    pkts.append(event(5, 10, INSTANT, flags=CLEARED, name="x", track=11, clock=SEQ_CLOCK))
    rejected(pkts, "clock", "sequence clock 64", "seq 5")


def test_clock_without_path_to_trace_clock():
    # MONOTONIC only relates to the sequence clock: nothing links it to BOOTTIME.
    pkts = descriptors() + [
        seq_start(1, 11, 600_000_000, 600_000_000),
        event(1, 10, INSTANT, name="x"),
    ]
    rejected(pkts, "clock", "cannot be converted", "no ClockSnapshot so far mentions BOOTTIME (6)")


def test_clock_without_path_between_snapshotted_clocks():
    # BOOTTIME is known, but only alongside REALTIME: MONOTONIC has no path to it.
    p = packet()
    for cid, v in ((BOOTTIME, 10), (REALTIME, 20)):
        c = p.clock_snapshot.clocks.add()
        c.clock_id, c.timestamp = cid, v
    pkts = (
        [p]
        + descriptors()
        + [seq_start(1, 11, 600_000_000, 600_000_000), event(1, 10, INSTANT, name="x")]
    )
    rejected(pkts, "clock", "cannot be converted", "no chain of ClockSnapshots")


def test_late_primary_trace_clock():
    pkts = good_packets()
    pkts.append(
        global_snapshot(
            boot=2_000_000_000,
            mono=1_500_000_000,
            real=1_800_000_000_000_000_000,
            primary=MONOTONIC,
        )
    )
    rejected(pkts, "clock", "primary_trace_clock")


def test_incremental_builtin_clock_is_rejected():
    pkts = good_packets()
    p = packet(1)
    c = p.clock_snapshot.clocks.add()
    c.clock_id, c.timestamp, c.is_incremental = MONOTONIC, 1, True
    pkts.insert(6, p)
    rejected(pkts, "clock", "MONOTONIC (3) is incremental", "only sequence-scoped")


def test_unknown_field_in_track_event():
    pkts = good_packets()
    p = pkts[6]  # first BEGIN on seq 1
    assert p.HasField("track_event")
    raw = p.track_event.SerializeToString() + tag(9999, 0) + b"\x01"
    p.track_event.ParseFromString(raw)
    rejected(pkts, "structure", "unknown", "9999", "track_event")


def test_wrong_wire_type_is_an_unknown_field():
    pkts = good_packets()
    p = pkts[6]
    # name_iid (field 10) written length-delimited instead of varint
    raw = p.track_event.SerializeToString() + tag(10, 2) + b"\x01x"
    p.track_event.ParseFromString(raw)
    rejected(pkts, "structure", "10 (wire type 2)")


def test_unknown_field_inside_compressed_chunk():
    pkts = good_packets()
    inner = event(2, 1, INSTANT, name="x")
    raw = inner.track_event.SerializeToString() + tag(9999, 0) + b"\x01"
    inner.track_event.ParseFromString(raw)
    pkts.append(compressed([inner]))
    rejected(pkts, "structure", "9999", "compressed_packets")


def test_garbage_is_not_a_trace():
    rejected(b"\xff\xff\xff\xff", "structure", "does not parse")


def test_nested_compressed_packets():
    pkts = good_packets()
    pkts.append(compressed([compressed([event(1, 1, INSTANT, name="x")])]))
    rejected(pkts, "structure", "compressed_packets inside a compressed_packets chunk")


def test_compressed_chunk_too_large():
    pkts = good_packets()
    p = packet(1, flags=NEEDS)
    intern(
        p,
        "debug_annotation_string_values",
        {1: os.urandom(MAX_COMPRESSED_CHUNK).hex()[:MAX_COMPRESSED_CHUNK]},
    )
    pkts.append(compressed([p], level=0))
    rejected(pkts, "structure", "compressed chunk is", "must be < 524288")


def test_compressed_chunk_not_zlib():
    pkts = good_packets()
    p = pb.TracePacket()
    p.compressed_packets = b"not zlib"
    pkts.append(p)
    rejected(pkts, "structure", "not a zlib stream")


# --------------------------------------------------------------------------
# Scale: linear time


def test_many_events_check_quickly():
    n = 50_000
    t = pb.Trace()
    t.packet.add().CopyFrom(global_snapshot())
    for p in descriptors():
        t.packet.add().CopyFrom(p)
    t.packet.add().CopyFrom(seq_start(1, 11, 600_000_000, 600_000_000))
    p = t.packet.add()
    p.CopyFrom(
        intern(event(1, 1, BEGIN, name_iid=1), "event_names", {i: f"f{i}" for i in range(1, 101)})
    )
    for i in range(n):
        p = t.packet.add()
        p.trusted_packet_sequence_id = 1
        p.sequence_flags = NEEDS
        p.timestamp = 3
        p.track_event.type = BEGIN if i % 2 == 0 else END
        if i % 2 == 0:
            p.track_event.name_iid = i % 100 + 1
    p = t.packet.add()
    p.CopyFrom(event(1, 1, END))
    data = t.SerializeToString()
    start = time.perf_counter()
    m = check_trace(data)
    elapsed = time.perf_counter() - start
    assert len(m.slices) == n // 2 + 1
    assert m.slices[0].dur == 3 * n + 1
    assert len(m.children(m.slices[0])) == n // 2
    assert elapsed < 20, elapsed
