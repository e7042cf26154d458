"""Check a Perfetto trace file the way trace_processor will read it.

Test-support module (tests import it as ``from perfetto_check import check_trace``).

``check_trace(path_or_bytes)`` parses a trace with Perfetto's own compiled schema
(``perfetto_trace_pb2`` from the ``perfetto`` PyPI package) and checks the
semantics trace_processor relies on but does not report loudly (it drops
packets, slices or whole sequences and only bumps a counter in its ``stats``
table).  On the first problem it raises :class:`TraceCheckError` naming the
packet, sequence, track or interned id involved; otherwise it returns a
:class:`TraceModel` with the resolved tracks, slices, instants and counters,
timestamps converted to the trace clock domain (absolute nanoseconds).

Rules (``TraceCheckError.rule`` holds the rule name):

``structure``  the bytes parse as ``perfetto.protos.Trace``; no field anywhere
               is unknown to the schema (wrong field number or wire type);
               ``compressed_packets`` chunks are zlib streams of a serialized
               ``Trace``, each < 512 KiB compressed, never nested, and the
               packet carrying one carries nothing else that matters.
``sequence``   packets with a track_event, interned_data, trace_packet_defaults
               or incremental-state flags have a non-zero
               trusted_packet_sequence_id; the first packet of every sequence
               sets SEQ_INCREMENTAL_STATE_CLEARED; no packet needs incremental
               state while the state is invalid (after previous_packet_dropped).
``interning``  every iid used is defined earlier or in the same packet on the
               same sequence, in the current incremental-state generation; an
               iid is never redefined with a different value in one generation.
``clock``      every timestamp converts to the trace clock (primary_trace_clock
               of the ClockSnapshots, else BOOTTIME) through the ClockSnapshots
               seen so far; sequence clocks (64..127) are used on a non-zero
               sequence that declared them in a snapshot; incremental clocks
               accumulate deltas; snapshots are consistent (units, incremental
               flag, no duplicates, trace clock in ns and monotonic); the trace
               clock does not change after it has been used.
``track``      descriptors have a uuid; a uuid described twice describes the
               same track (same kind, pid, tid, parent, counter-ness: only names
               may change); thread tracks have pid and tid, process tracks pid;
               parent_uuid and every TrackEvent track (explicit or from
               trace_packet_defaults) name a track described somewhere in the
               file; counter events are on counter tracks, slices/instants not.
``slice``      SLICE_END closes an open slice on its track; nothing is open at
               the end of the file; a slice begins no earlier than its parent.
``order``      on each track, event timestamps never decrease (in file order).
``event``      track-event packets have a timestamp; SLICE_BEGIN and INSTANT have
               a name; counters have a value; the type is BEGIN/END/INSTANT/COUNTER;
               debug annotations have names; extra counter values have tracks;
               no legacy timestamp fields.

A timestamp without any clock id (neither on the packet nor in the sequence's
trace_packet_defaults) is taken as already in the trace clock, as
trace_processor does.  The module is Python 3.9 compatible and linear in the
size of the trace.
"""

from __future__ import annotations

import gc
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, NoReturn, Optional, Union

try:
    from google.protobuf.message import DecodeError
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "perfetto_check needs the 'perfetto' package (its compiled "
        f"perfetto_trace_pb2) and protobuf >= 6.31.1: {exc}"
    ) from exc

try:
    from google.protobuf.unknown_fields import UnknownFieldSet as _UnknownFieldSet
except ImportError:  # pragma: no cover - older protobuf
    _UnknownFieldSet = None

__all__ = [
    "MAX_COMPRESSED_CHUNK",
    "ClockSnapshotInfo",
    "CounterValue",
    "Instant",
    "Slice",
    "SnapshotClock",
    "TraceCheckError",
    "TraceModel",
    "Track",
    "check_trace",
]

# --------------------------------------------------------------------------
# Constants (values from perfetto's protos)

SEQ_INCREMENTAL_STATE_CLEARED = 1
SEQ_NEEDS_INCREMENTAL_STATE = 2

TYPE_SLICE_BEGIN = 1
TYPE_SLICE_END = 2
TYPE_INSTANT = 3
TYPE_COUNTER = 4
_TYPE_NAMES = {
    0: "TYPE_UNSPECIFIED",
    1: "TYPE_SLICE_BEGIN",
    2: "TYPE_SLICE_END",
    3: "TYPE_INSTANT",
    4: "TYPE_COUNTER",
    5: "TYPE_STATE",
}

CLOCK_REALTIME = 1
CLOCK_MONOTONIC = 3
CLOCK_BOOTTIME = 6
_CLOCK_NAMES = {
    1: "REALTIME",
    2: "REALTIME_COARSE",
    3: "MONOTONIC",
    4: "MONOTONIC_COARSE",
    5: "MONOTONIC_RAW",
    6: "BOOTTIME",
    9: "TSC",
    10: "PERF",
    11: "TRACE_FILE",
}

MAX_COMPRESSED_CHUNK = 512 * 1024  # bytes; each compressed_packets must be smaller
_MAX_CLOCK_HOPS = 4  # as trace_processor's ClockSynchronizer::ClockPath::kMaxLen

# Fields a packet carrying compressed_packets may also have (set by the service).
_COMPRESSED_CARRIER_OK = {
    "compressed_packets",
    "trusted_uid",
    "trusted_pid",
    "trusted_packet_sequence_id",
}

_INF = float("inf")


def _is_seq_clock(clock_id: int) -> bool:
    return 64 <= clock_id < 128


def _clock_name(key: Any) -> str:
    if isinstance(key, tuple):
        seq, cid = key
        return f"sequence clock {cid} (seq {seq})"
    name = _CLOCK_NAMES.get(key)
    return f"{name} ({key})" if name else f"clock {key}"


def _type_name(typ: int) -> str:
    return _TYPE_NAMES.get(typ, f"type {typ}")


# --------------------------------------------------------------------------
# Public data model


class TraceCheckError(AssertionError):
    """A trace breaks a rule trace_processor relies on.

    Attributes: ``rule`` (see the module docstring), ``packet_index`` (index of
    the logical packet, counting packets inside compressed chunks, or None),
    ``sequence_id`` and ``track_uuid`` (or None).
    """

    def __init__(
        self,
        message: str,
        rule: str = "",
        packet_index: Optional[int] = None,
        sequence_id: Optional[int] = None,
        track_uuid: Optional[int] = None,
    ):
        super().__init__(message)
        self.rule = rule
        self.packet_index = packet_index
        self.sequence_id = sequence_id
        self.track_uuid = track_uuid


@dataclass
class Track:
    uuid: int
    name: Optional[str]
    kind: str  # 'thread' | 'process' | 'counter' | 'other'
    pid: Optional[int] = None
    tid: Optional[int] = None
    parent_uuid: Optional[int] = None


@dataclass
class Slice:
    track_uuid: int
    name: str
    categories: tuple[str, ...]
    ts: int  # absolute ns in the trace clock domain
    dur: int  # ns
    depth: int  # 0 = top level on its track
    args: dict[str, Any] = field(default_factory=dict)
    source_location: Optional[tuple[str, str, Optional[int]]] = None  # (file, function, line)
    flow_ids: tuple[int, ...] = ()
    terminating_flow_ids: tuple[int, ...] = ()
    index: int = 0  # position among its track's slices (begin order)

    @property
    def end(self) -> int:
        return self.ts + self.dur


@dataclass
class Instant:
    track_uuid: int
    name: str
    ts: int
    categories: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)
    log_message: Optional[str] = None  # LogMessage body, if the event has one
    source_location: Optional[tuple[str, str, Optional[int]]] = None
    flow_ids: tuple[int, ...] = ()


@dataclass
class CounterValue:
    track_uuid: int
    ts: int
    value: Union[int, float]


@dataclass
class SnapshotClock:
    clock_id: int
    timestamp: int  # raw value as written (in the clock's units)
    is_incremental: bool = False
    unit_multiplier_ns: int = 1


@dataclass
class ClockSnapshotInfo:
    packet_index: int
    sequence_id: int
    clocks: list[SnapshotClock]
    primary_trace_clock: Optional[int] = None

    def clock(self, clock_id: int) -> Optional[int]:
        """Raw timestamp of ``clock_id`` in this snapshot, or None."""
        for c in self.clocks:
            if c.clock_id == clock_id:
                return c.timestamp
        return None


@dataclass
class StackSample:
    """A PerfSample: frames are (function name, rel_pc), outermost first."""

    pid: int
    tid: int
    ts: int
    frames: tuple[tuple[str, int], ...]


@dataclass
class TraceModel:
    tracks: dict[int, Track] = field(default_factory=dict)
    slices: list[Slice] = field(default_factory=list)  # in order of their begin events
    instants: list[Instant] = field(default_factory=list)
    counters: list[CounterValue] = field(default_factory=list)
    packet_count: int = 0  # logical packets (inside chunks counted, chunk carriers not)
    sequence_ids: set[int] = field(default_factory=set)  # non-zero sequence ids used
    clock_snapshots: list[ClockSnapshotInfo] = field(default_factory=list)
    samples: list[StackSample] = field(default_factory=list)  # PerfSample packets
    trace_clock: int = CLOCK_BOOTTIME  # clock domain of every ts in the model
    compressed_chunks: int = 0
    _track_slices: dict[int, list[Slice]] = field(default_factory=dict, repr=False, compare=False)

    # -- helpers -----------------------------------------------------------
    def slices_named(self, name: str) -> list[Slice]:
        return [s for s in self.slices if s.name == name]

    def slices_on(self, track_uuid: int) -> list[Slice]:
        """Slices of one track, in begin order."""
        return list(self._track_slices.get(track_uuid, ()))

    def instants_named(self, name: str) -> list[Instant]:
        return [i for i in self.instants if i.name == name]

    def counters_on(self, track_uuid: int) -> list[CounterValue]:
        return [c for c in self.counters if c.track_uuid == track_uuid]

    def tracks_named(self, name: str) -> list[Track]:
        return [t for t in self.tracks.values() if t.name == name]

    def track_named(self, name: str) -> Track:
        """The one track called ``name`` (LookupError if none or several)."""
        found = self.tracks_named(name)
        if len(found) != 1:
            names = sorted({str(t.name) for t in self.tracks.values()})
            raise LookupError(f"{len(found)} tracks named {name!r} (names: {names})")
        return found[0]

    def thread_tracks(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.kind == "thread"]

    def process_tracks(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.kind == "process"]

    def counter_tracks(self) -> list[Track]:
        return [t for t in self.tracks.values() if t.kind == "counter"]

    def children(self, s: Slice) -> list[Slice]:
        """Direct children of ``s``: same track, depth + 1, inside its interval."""
        lst = self._track_slices.get(s.track_uuid, [])
        out = []
        for j in range(s.index + 1, len(lst)):
            c = lst[j]
            if c.depth <= s.depth:
                break
            if c.depth == s.depth + 1:
                out.append(c)
        return out

    def parent(self, s: Slice) -> Optional[Slice]:
        if s.depth == 0:
            return None
        lst = self._track_slices.get(s.track_uuid, [])
        for j in range(s.index - 1, -1, -1):
            if lst[j].depth == s.depth - 1:
                return lst[j]
        return None  # pragma: no cover - impossible for a checked trace

    def descendants(self, s: Slice) -> Iterator[Slice]:
        lst = self._track_slices.get(s.track_uuid, [])
        for j in range(s.index + 1, len(lst)):
            if lst[j].depth <= s.depth:
                break
            yield lst[j]


# --------------------------------------------------------------------------
# Clock conversion (a small model of trace_processor's ClockSynchronizer)


class _ClockError(Exception):
    pass


class _Domain:
    __slots__ = ("incremental", "last_ns", "last_snap_ns", "unit")

    def __init__(self, unit: int, incremental: bool):
        self.unit = unit
        self.incremental = incremental
        self.last_ns = 0
        self.last_snap_ns: Optional[int] = None


class _Clocks:
    """Clock keys: builtin ids are ints, sequence clocks are (seq_id, clock_id).

    Each hop of a conversion uses the latest snapshot (of the two clocks) whose
    source-clock value is not after the timestamp (else the first one), like
    trace_processor.  Results are cached per source clock with their validity
    range, so the common case is two comparisons and an addition.
    """

    def __init__(self) -> None:
        self.domains: dict[Any, _Domain] = {}
        # edges[a][b] = ([a_ns per snapshot], [b_ns per snapshot])
        self.edges: dict[Any, dict[Any, tuple[list[int], list[int]]]] = {}
        self.non_monotonic: set[Any] = set()
        self.cache: dict[Any, tuple[float, float, int]] = {}
        self.paths: dict[Any, Optional[list[Any]]] = {}
        self.primary: Optional[int] = None
        self.trace_clock: Optional[int] = None  # fixed by the first conversion

    def fix_trace_clock(self) -> int:
        if self.trace_clock is None:
            tc = self.primary or CLOCK_BOOTTIME
            d = self.domains.get(tc)
            if d is not None and d.unit != 1:
                raise _ClockError(
                    f"the trace clock {_clock_name(tc)} must use unit_multiplier_ns 1, "
                    f"snapshots declare {d.unit}"
                )
            self.trace_clock = tc
        return self.trace_clock

    def set_primary(self, clock_id: int) -> None:
        if _is_seq_clock(clock_id):
            raise _ClockError(f"primary_trace_clock {clock_id} is a sequence-scoped clock")
        if self.trace_clock is not None and clock_id != self.trace_clock:
            raise _ClockError(
                f"primary_trace_clock {_clock_name(clock_id)} arrives after timestamps were "
                f"already converted to {_clock_name(self.trace_clock)} (trace_processor "
                "refuses to switch: 'ClockSnapshot too late in trace?')"
            )
        self.primary = clock_id

    def add_snapshot(self, entries: list[tuple[Any, int, int, bool]]) -> None:
        seen: set[Any] = set()
        values = []
        for key, ts, unit, inc in entries:
            name = _clock_name(key)
            if key in seen:
                raise _ClockError(f"ClockSnapshot lists {name} twice")
            seen.add(key)
            if inc and not isinstance(key, tuple):
                raise _ClockError(
                    f"{name} is incremental, but only sequence-scoped clocks (64..127) "
                    "may be incremental"
                )
            d = self.domains.get(key)
            if d is None:
                d = _Domain(unit, inc)
                self.domains[key] = d
            elif d.unit != unit or d.incremental != inc:
                raise _ClockError(
                    f"{name} redeclared with unit_multiplier_ns={unit} is_incremental={inc}, "
                    f"was {d.unit}/{d.incremental}"
                )
            if key == (self.trace_clock or self.primary) and unit != 1:
                raise _ClockError(f"the trace clock {name} must use unit_multiplier_ns 1")
            ns = ts * unit
            d.last_ns = ns  # the base value of an incremental clock
            if d.last_snap_ns is not None and ns < d.last_snap_ns:
                if key == (self.trace_clock or self.primary or CLOCK_BOOTTIME):
                    raise _ClockError(
                        f"the trace clock {name} goes backwards across snapshots "
                        f"({ns} < {d.last_snap_ns})"
                    )
                # like trace_processor: never use it as a conversion source again
                self.non_monotonic.add(key)
                self.edges.pop(key, None)
            d.last_snap_ns = ns
            values.append((key, ns))
        for a, a_ns in values:
            if a in self.non_monotonic:
                continue
            out = self.edges.setdefault(a, {})
            for b, b_ns in values:
                if b == a:
                    continue
                lists = out.get(b)
                if lists is None:
                    lists = out[b] = ([], [])
                lists[0].append(a_ns)
                lists[1].append(b_ns)
        self.cache.clear()
        self.paths.clear()

    def to_trace(self, key: Any, raw: int) -> int:
        tc = self.trace_clock
        if tc is None:
            tc = self.fix_trace_clock()
        d = self.domains.get(key)
        if d is None:
            if key == tc:
                return raw
            raise _ClockError(
                f"timestamp in {_clock_name(key)} cannot be converted to the trace clock "
                f"{_clock_name(tc)}: no ClockSnapshot so far mentions {_clock_name(key)}"
            )
        if d.incremental:
            d.last_ns += raw * d.unit
            ns = d.last_ns
        else:
            ns = raw * d.unit
        if key == tc:
            return raw
        c = self.cache.get(key)
        if c is not None and c[0] <= ns < c[1]:
            return ns + c[2]
        return self._slow(key, ns, tc)

    def _find_path(self, src: Any, dst: Any) -> Optional[list[Any]]:
        if src in self.paths:
            return self.paths[src]
        path = None
        if dst in self.domains and src not in self.non_monotonic:
            prev = {src: None}
            queue = deque([(src, 0)])
            while queue and path is None:
                cur, depth = queue.popleft()
                if depth >= _MAX_CLOCK_HOPS:
                    continue
                for nxt in self.edges.get(cur, {}):
                    if nxt in prev:
                        continue
                    prev[nxt] = cur
                    if nxt == dst:
                        path = [nxt]
                        while prev[path[-1]] is not None:
                            path.append(prev[path[-1]])
                        path.reverse()
                        break
                    queue.append((nxt, depth + 1))
        self.paths[src] = path
        return path

    def _slow(self, key: Any, ns: int, tc: int) -> int:
        path = self._find_path(key, tc)
        if path is None:
            why = (
                f"no ClockSnapshot so far mentions {_clock_name(tc)} (include it in the "
                "snapshots or set primary_trace_clock)"
                if tc not in self.domains
                else "no chain of ClockSnapshots seen so far links them"
            )
            raise _ClockError(
                f"timestamp in {_clock_name(key)} cannot be converted to the trace clock "
                f"{_clock_name(tc)}: {why}"
            )
        lo, hi, total, cur = -_INF, _INF, 0, ns
        for a, b in zip(path, path[1:]):
            a_l, b_l = self.edges[a][b]
            i = bisect_right(a_l, cur) - 1
            if i < 0:
                i = 0
            tr = b_l[i] - a_l[i]
            # the range of source values for which this hop picks the same snapshot
            if i > 0:
                lo = max(lo, a_l[i] - total)
            if i + 1 < len(a_l):
                hi = min(hi, a_l[i + 1] - total)
            total += tr
            cur += tr
        self.cache[key] = (lo, hi, total)
        return cur


# --------------------------------------------------------------------------
# Per-sequence and per-track state


class _Seq:
    __slots__ = (
        "default_clock",
        "default_extra",
        "default_extra_double",
        "default_track",
        "generation",
        "seq_id",
        "tables",
        "valid",
    )

    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.valid = False
        self.generation = 0
        self.tables: dict[str, dict[int, Any]] = {}
        self.default_clock = 0
        self.default_track: Optional[int] = None
        self.default_extra: tuple[int, ...] = ()
        self.default_extra_double: tuple[int, ...] = ()

    def clear(self) -> None:
        """SEQ_INCREMENTAL_STATE_CLEARED: interned data and defaults are dropped."""
        self.valid = True
        self.generation += 1
        self.tables = {}
        self.default_clock = 0
        self.default_track = None
        self.default_extra = ()
        self.default_extra_double = ()


class _TrackState:
    __slots__ = ("counter_use", "first_use", "last_ts", "slice_use", "slices", "stack", "uuid")

    def __init__(self, uuid: int, where: str):
        self.uuid = uuid
        self.last_ts: Optional[int] = None
        self.stack: list[Slice] = []
        self.slices: list[Slice] = []
        self.first_use = where
        self.slice_use: Optional[str] = None
        self.counter_use: Optional[str] = None


def _interned_value(table: str, e: Any) -> Any:
    if table in (
        "event_names",
        "event_categories",
        "debug_annotation_names",
        "debug_annotation_value_type_names",
    ):
        return e.name
    if table == "source_locations":
        return (e.file_name, e.function_name, e.line_number if e.HasField("line_number") else None)
    if table == "log_message_body":
        return e.body
    if table == "debug_annotation_string_values":
        return bytes(e.str).decode("utf-8", "replace")
    return e.SerializeToString(deterministic=True)


def _is_repeated(fd: Any) -> bool:
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return bool(fd.label == fd.LABEL_REPEATED)  # pragma: no cover - older protobuf


def _unknown_fields(msg: Any) -> list[tuple[int, int]]:
    if _UnknownFieldSet is not None:
        return [(f.field_number, f.wire_type) for f in _UnknownFieldSet(msg)]
    return [(f.field_number, f.wire_type) for f in msg.UnknownFields()]  # pragma: no cover


def _find_unknown(msg: Any, path: str) -> Optional[tuple[str, list[tuple[int, int]]]]:
    unk = _unknown_fields(msg)
    if unk:
        return path, unk
    for fd, val in msg.ListFields():
        if fd.message_type is None:
            continue
        if _is_repeated(fd):
            for i, m in enumerate(val):
                r = _find_unknown(m, f"{path}.{fd.name}[{i}]")
                if r:
                    return r
        else:
            r = _find_unknown(val, f"{path}.{fd.name}")
            if r:
                return r
    return None


def _describe_unknown(unk: list[tuple[int, int]]) -> str:
    return ", ".join(f"{number} (wire type {wire})" for number, wire in unk)


def _nested_value(nv: Any) -> Any:
    t = nv.nested_type
    if t == 1:  # DICT
        return {k: _nested_value(v) for k, v in zip(nv.dict_keys, nv.dict_values)}
    if t == 2:  # ARRAY
        return [_nested_value(v) for v in nv.array_values]
    for f in ("int_value", "double_value", "bool_value", "string_value"):
        if nv.HasField(f):
            return getattr(nv, f)
    return None


# --------------------------------------------------------------------------
# The checker


class _Checker:
    def __init__(self) -> None:
        self.model = TraceModel()
        self.clocks = _Clocks()
        self.seqs: dict[int, _Seq] = {}
        self.track_states: dict[int, _TrackState] = {}
        self.descriptors: dict[int, tuple[Any, str]] = {}  # uuid -> (identity, where)
        self.parent_refs: list[tuple[int, int, str]] = []  # (uuid, parent, where)
        self.pidx = -1  # logical packet index
        self.top = -1  # top-level packet index
        self.chunk_entry: Optional[int] = None  # index inside the current compressed chunk
        self.seq = 0  # sequence id of the packet being processed

    # -- errors ------------------------------------------------------------
    def where(self) -> str:
        if self.chunk_entry is not None:
            loc = (
                f"packet #{self.pidx} [entry {self.chunk_entry} of compressed_packets "
                f"in top-level packet #{self.top}]"
            )
        elif self.pidx != self.top:
            loc = f"packet #{self.pidx} [top-level packet #{self.top}]"
        else:
            loc = f"packet #{self.pidx}"
        return f"{loc}, seq {self.seq}"

    def fail(
        self, rule: str, msg: str, track: Optional[int] = None, where: Optional[str] = None
    ) -> NoReturn:
        here = where is None
        raise TraceCheckError(
            f"[{rule}] {self.where() if here else where}: {msg}",
            rule=rule,
            packet_index=self.pidx if here else None,
            sequence_id=self.seq if here else None,
            track_uuid=track,
        )

    # -- parsing -----------------------------------------------------------
    def parse(self, data: bytes, what: str) -> Any:
        try:
            trace = pb.Trace.FromString(data)
        except DecodeError as exc:
            self.fail("structure", f"does not parse as perfetto.protos.Trace: {exc}", where=what)
        # Cheap whole-trace test; the slow walk only runs to locate a problem.
        size = trace.ByteSize()
        trace.DiscardUnknownFields()
        if trace.ByteSize() != size:
            fresh = pb.Trace.FromString(data)
            for i, p in enumerate(fresh.packet):
                r = _find_unknown(p, "TracePacket")
                if r:
                    loc = f"top-level packet #{i}" if what == "trace file" else f"{what}, entry {i}"
                    self.fail(
                        "structure",
                        f"{r[0]} has field(s) unknown to the schema: {_describe_unknown(r[1])} "
                        "(wrong field number or wire type in the writer?)",
                        where=loc,
                    )
            r = _find_unknown(fresh, "Trace")
            if r:
                self.fail(
                    "structure",
                    f"{r[0]} has unknown field(s) {_describe_unknown(r[1])}",
                    where=what,
                )
        return trace

    def run(self, data: bytes) -> TraceModel:
        trace = self.parse(data, "trace file")
        if not len(trace.packet):
            self.fail("structure", "the trace has no packets", where="trace file")
        for pkt in trace.packet:
            self.top += 1
            self.packet(pkt)
        self.seq = 0
        self.finish()
        return self.model

    def compressed(self, pkt: Any) -> None:
        if self.chunk_entry is not None:
            self.pidx += 1
            self.seq = pkt.trusted_packet_sequence_id
            self.fail(
                "structure",
                "compressed_packets inside a compressed_packets chunk (nesting is not allowed)",
            )
        where = f"top-level packet #{self.top} (compressed_packets)"
        extra = [fd.name for fd, _ in pkt.ListFields() if fd.name not in _COMPRESSED_CARRIER_OK]
        if extra:
            self.fail(
                "structure",
                f"packet carrying compressed_packets also sets {', '.join(extra)}, which "
                "trace_processor ignores",
                where=where,
            )
        blob = pkt.compressed_packets
        if len(blob) >= MAX_COMPRESSED_CHUNK:
            self.fail(
                "structure",
                f"compressed chunk is {len(blob)} bytes, must be < {MAX_COMPRESSED_CHUNK}",
                where=where,
            )
        try:
            raw = zlib.decompress(blob)
        except zlib.error as exc:
            self.fail("structure", f"compressed_packets is not a zlib stream: {exc}", where=where)
        inner = self.parse(raw, where)
        self.model.compressed_chunks += 1
        for k, ip in enumerate(inner.packet):
            self.chunk_entry = k
            self.packet(ip)
        self.chunk_entry = None

    def packet(self, pkt: Any) -> None:
        which = pkt.WhichOneof("data")
        if which == "compressed_packets":
            self.compressed(pkt)
            return
        self.pidx += 1
        model = self.model
        model.packet_count += 1
        seq = self.seq = pkt.trusted_packet_sequence_id
        flags = pkt.sequence_flags
        cleared = bool(flags & SEQ_INCREMENTAL_STATE_CLEARED) or pkt.incremental_state_cleared
        has_defaults = pkt.HasField("trace_packet_defaults")
        has_interned = pkt.HasField("interned_data")

        st: Optional[_Seq]
        if seq == 0:
            st = None
            without = "without a trusted_packet_sequence_id"
            if cleared:
                self.fail("sequence", f"incremental state cleared {without}")
            if flags & SEQ_NEEDS_INCREMENTAL_STATE:
                self.fail("sequence", f"SEQ_NEEDS_INCREMENTAL_STATE {without}")
            if has_interned:
                self.fail("sequence", f"interned_data {without}")
            if has_defaults:
                self.fail("sequence", f"trace_packet_defaults {without}")
            if which == "track_event":
                self.fail("sequence", f"track_event {without}")
        else:
            st = self.seqs.get(seq)
            if st is None:
                if not cleared:
                    if flags & SEQ_NEEDS_INCREMENTAL_STATE:
                        self.fail(
                            "sequence",
                            "packet has SEQ_NEEDS_INCREMENTAL_STATE but no earlier packet on "
                            f"seq {seq} set SEQ_INCREMENTAL_STATE_CLEARED "
                            "(trace_processor drops it)",
                        )
                    self.fail(
                        "sequence",
                        f"first packet of seq {seq} does not set SEQ_INCREMENTAL_STATE_CLEARED "
                        f"(sequence_flags={flags})",
                    )
                st = self.seqs[seq] = _Seq(seq)
                model.sequence_ids.add(seq)
            if cleared:
                st.clear()
            elif pkt.previous_packet_dropped:
                st.valid = False
            if flags & SEQ_NEEDS_INCREMENTAL_STATE and not st.valid:
                self.fail(
                    "sequence",
                    f"packet has SEQ_NEEDS_INCREMENTAL_STATE but the incremental state of "
                    f"seq {seq} is invalid (previous_packet_dropped since the last clear); "
                    "trace_processor drops it",
                )
            if has_defaults:
                self.defaults(pkt.trace_packet_defaults, st)
            if has_interned:
                if not st.valid:
                    self.fail(
                        "interning",
                        f"interned_data on seq {seq} while its incremental state is invalid "
                        "(trace_processor skips it)",
                    )
                self.interned(pkt.interned_data, st)

        if which == "clock_snapshot":
            # trace_processor reads nothing else of a ClockSnapshot packet.
            self.clock_snapshot(pkt.clock_snapshot, seq)
            return

        ts: Optional[int] = None
        if pkt.HasField("timestamp"):
            clock_id = pkt.timestamp_clock_id
            if not clock_id and st is not None:
                clock_id = st.default_clock
            ts = self.resolve(clock_id, pkt.timestamp, seq)

        if which == "track_event":
            if ts is None:
                self.fail("event", "track_event packet without a timestamp")
            assert st is not None
            self.track_event(pkt.track_event, st, ts)
        elif which == "track_descriptor":
            self.track_descriptor(pkt.track_descriptor)
        elif which == "perf_sample":
            if ts is None:
                self.fail("event", "perf_sample packet without a timestamp")
            assert st is not None
            self.perf_sample(pkt.perf_sample, st, ts)

    # -- stack samples ---------------------------------------------------------
    def perf_sample(self, ps: Any, st: _Seq, ts: int) -> None:
        """What trace_processor needs to put a PerfSample in its perf_sample
        table and the UI's flame graph: its callstack, every frame of it and
        every frame's function name and mapping interned on the sequence (or
        the sample is dropped), and a pid/tid (the thread the UI shows it on)."""
        if not (ps.HasField("pid") and ps.HasField("tid")):
            self.fail("event", "perf_sample without pid and tid")
        raw = self.lookup(st, "callstacks", ps.callstack_iid, "PerfSample.callstack_iid")
        callstack = pb.Callstack()
        callstack.ParseFromString(raw)
        frames = []
        for frame_iid in callstack.frame_ids:
            frame = pb.Frame()
            frame.ParseFromString(self.lookup(st, "frames", frame_iid, "Callstack.frame_ids"))
            function = pb.InternedString()
            function.ParseFromString(self.lookup(st, "function_names", frame.function_name_id,
                                                 "Frame.function_name_id"))
            self.lookup(st, "mappings", frame.mapping_id, "Frame.mapping_id")
            frames.append((bytes(function.str).decode("utf-8", "replace"), frame.rel_pc))
        self.model.samples.append(StackSample(ps.pid, ps.tid, ts, tuple(frames)))

    # -- incremental state ---------------------------------------------------
    def defaults(self, d: Any, st: _Seq) -> None:
        st.default_clock = d.timestamp_clock_id
        if d.HasField("track_event_defaults"):
            ted = d.track_event_defaults
            st.default_track = ted.track_uuid if ted.HasField("track_uuid") else None
            st.default_extra = tuple(ted.extra_counter_track_uuids)
            st.default_extra_double = tuple(ted.extra_double_counter_track_uuids)
        else:
            st.default_track = None
            st.default_extra = ()
            st.default_extra_double = ()

    def interned(self, idata: Any, st: _Seq) -> None:
        tables = st.tables
        for fd, entries in idata.ListFields():
            name = fd.name
            table = tables.get(name)
            if table is None:
                table = tables[name] = {}
            for e in entries:
                iid = e.iid
                val = _interned_value(name, e)
                old = table.get(iid)
                if old is None:
                    table[iid] = val
                elif old != val:
                    self.fail(
                        "interning",
                        f"interned_data.{name} iid {iid} redefined on seq {st.seq_id} as "
                        f"{val!r}, was {old!r} in the same incremental-state generation",
                    )

    def lookup(self, st: _Seq, table: str, iid: int, user: str) -> Any:
        t = st.tables.get(table)
        if t is not None:
            v = t.get(iid)
            if v is not None:
                return v
        self.fail(
            "interning",
            f"{user} iid {iid} is not defined in interned_data.{table} on seq {st.seq_id} "
            f"({len(t) if t else 0} entries defined since the last incremental-state clear)",
        )

    # -- clocks ---------------------------------------------------------------
    def clock_snapshot(self, cs: Any, seq: int) -> None:
        entries = []
        info = []
        for c in cs.clocks:
            cid = c.clock_id
            key: Any = cid
            if _is_seq_clock(cid):
                if seq == 0:
                    self.fail(
                        "clock",
                        f"ClockSnapshot declares sequence-scoped clock {cid} on a packet "
                        "without trusted_packet_sequence_id",
                    )
                key = (seq, cid)
            unit = c.unit_multiplier_ns or 1
            entries.append((key, c.timestamp, unit, bool(c.is_incremental)))
            info.append(SnapshotClock(cid, c.timestamp, bool(c.is_incremental), unit))
        primary = cs.primary_trace_clock or None
        try:
            if primary:
                self.clocks.set_primary(primary)
            self.clocks.add_snapshot(entries)
        except _ClockError as exc:
            self.fail("clock", str(exc))
        self.model.clock_snapshots.append(ClockSnapshotInfo(self.pidx, seq, info, primary))

    def resolve(self, clock_id: int, raw: int, seq: int) -> int:
        clocks = self.clocks
        if not clock_id:
            # No clock id anywhere: trace_processor takes the value as trace time.
            return clocks.to_trace(clocks.trace_clock or clocks.fix_trace_clock(), raw)
        key: Any = clock_id
        if 64 <= clock_id < 128:
            if seq == 0:
                self.fail(
                    "clock",
                    f"timestamp uses sequence-scoped clock {clock_id} on a packet without "
                    "trusted_packet_sequence_id",
                )
            key = (seq, clock_id)
            if key not in clocks.domains:
                self.fail(
                    "clock",
                    f"timestamp uses sequence clock {clock_id} but no ClockSnapshot on "
                    f"seq {seq} declared it before this packet",
                )
        try:
            return clocks.to_trace(key, raw)
        except _ClockError as exc:
            self.fail("clock", str(exc))

    # -- tracks ----------------------------------------------------------------
    def track_descriptor(self, td: Any) -> None:
        if not td.HasField("uuid"):
            self.fail("track", "TrackDescriptor without uuid")
        uuid = td.uuid
        has_thread = td.HasField("thread")
        has_process = td.HasField("process")
        pid = tid = None
        if td.HasField("counter"):
            kind = "counter"
        elif has_thread:
            kind = "thread"
        elif has_process:
            kind = "process"
        else:
            kind = "other"
        if has_thread:
            th = td.thread
            if not (th.HasField("pid") and th.HasField("tid")):
                self.fail("track", f"thread TrackDescriptor uuid {uuid} lacks pid or tid", uuid)
            pid, tid = th.pid, th.tid
        elif has_process:
            if not td.process.HasField("pid"):
                self.fail("track", f"process TrackDescriptor uuid {uuid} lacks pid", uuid)
            pid = td.process.pid
        name_field = td.WhichOneof("static_or_dynamic_name")
        name: Optional[str] = None
        if name_field:
            name = getattr(td, name_field)
        elif has_thread and td.thread.HasField("thread_name"):
            name = td.thread.thread_name
        elif has_process and td.process.HasField("process_name"):
            name = td.process.process_name
        parent = td.parent_uuid if td.HasField("parent_uuid") else None
        identity = (kind, pid, tid, parent)
        prev = self.descriptors.get(uuid)
        if prev is not None:
            if prev[0] != identity:
                self.fail(
                    "track",
                    f"track uuid {uuid} described again as {identity}, conflicting with the "
                    f"descriptor at {prev[1]} ({prev[0]}); (kind, pid, tid, parent_uuid) differ",
                    uuid,
                )
            self.model.tracks[uuid].name = name  # only names may change; the last one wins
            return
        where = self.where()
        self.descriptors[uuid] = (identity, where)
        if parent is not None:
            self.parent_refs.append((uuid, parent, where))
        self.model.tracks[uuid] = Track(uuid, name, kind, pid, tid, parent)

    def track_state(self, uuid: int) -> _TrackState:
        tst = self.track_states.get(uuid)
        if tst is None:
            tst = self.track_states[uuid] = _TrackState(uuid, self.where())
            self.model._track_slices[uuid] = tst.slices
        return tst

    # -- track events ---------------------------------------------------------
    def track_event(self, te: Any, st: _Seq, ts: int) -> None:
        # One ListFields() call instead of a dozen presence checks: most events
        # carry only type and name_iid.
        typ = 0
        uuid = None
        name = None
        name_iid = None
        rest: Optional[dict[str, Any]] = None
        for fd, v in te.ListFields():
            n = fd.number
            if n == 9:
                typ = v
            elif n == 10:
                name_iid = v
            elif n == 11:
                uuid = v
            elif n == 23:
                name = v
            else:
                if rest is None:
                    rest = {}
                rest[fd.name] = v
        if uuid is None:
            uuid = st.default_track
            if uuid is None:
                self.fail(
                    "track",
                    f"TrackEvent has no track_uuid and seq {st.seq_id} has no "
                    "trace_packet_defaults.track_event_defaults.track_uuid",
                )
        tst = self.track_states.get(uuid)
        if tst is None:
            tst = self.track_state(uuid)
        last = tst.last_ts
        if last is not None and ts < last:
            self.fail(
                "order",
                f"{_type_name(typ)} at ts {ts} on track {uuid} is earlier than the previous "
                f"event on that track (ts {last})",
                uuid,
            )
        tst.last_ts = ts

        cats: tuple[str, ...] = ()
        args: dict[str, Any] = {}
        loc = None
        flows: tuple[int, ...] = ()
        term: tuple[int, ...] = ()
        log = None
        if rest is not None:
            for legacy in ("timestamp_delta_us", "timestamp_absolute_us", "legacy_event"):
                if legacy in rest:
                    self.fail("event", f"TrackEvent.{legacy} is a legacy field", uuid)
            if "category_iids" in rest:
                cats = tuple(
                    self.lookup(st, "event_categories", i, "TrackEvent.category_iids")
                    for i in rest["category_iids"]
                )
            if "categories" in rest:
                cats = cats + tuple(rest["categories"])
            if "debug_annotations" in rest:
                args = self.annotations(rest["debug_annotations"], st)
            if "source_location_iid" in rest:
                loc = self.lookup(
                    st,
                    "source_locations",
                    rest["source_location_iid"],
                    "TrackEvent.source_location_iid",
                )
            elif "source_location" in rest:
                sl = rest["source_location"]
                line = sl.line_number if sl.HasField("line_number") else None
                loc = (sl.file_name, sl.function_name, line)
            flows = tuple(rest.get("flow_ids", ())) + tuple(rest.get("flow_ids_old", ()))
            term = tuple(rest.get("terminating_flow_ids", ())) + tuple(
                rest.get("terminating_flow_ids_old", ())
            )
            if "log_message" in rest:
                log = self.log_message(rest["log_message"], st)
                if loc is None:
                    loc = log[1]
            if any(
                k in rest
                for k in (
                    "extra_counter_values",
                    "extra_double_counter_values",
                    "extra_counter_track_uuids",
                    "extra_double_counter_track_uuids",
                )
            ):
                self.extra_counters(rest, st, ts)

        if typ == TYPE_SLICE_END:
            stack = tst.stack
            if not stack:
                self.fail(
                    "slice", f"TYPE_SLICE_END at ts {ts} on track {uuid} with no open slice", uuid
                )
            s = stack.pop()
            s.dur = ts - s.ts
            # trace_processor merges an END's args and flows into its slice
            if args:
                s.args.update(args)
            if flows:
                s.flow_ids = s.flow_ids + flows
            if term:
                s.terminating_flow_ids = s.terminating_flow_ids + term
            return

        if name_iid is not None:
            name = self.lookup(st, "event_names", name_iid, "TrackEvent.name_iid")

        if typ == TYPE_SLICE_BEGIN:
            if name is None:
                self.fail(
                    "event", f"TYPE_SLICE_BEGIN on track {uuid} has neither name nor name_iid", uuid
                )
            if tst.slice_use is None:
                tst.slice_use = self.where()
            stack = tst.stack
            if stack and ts < stack[-1].ts:
                p = stack[-1]
                self.fail(
                    "slice",
                    f"slice {name!r} begins at {ts} before its parent {p.name!r} ({p.ts}) on "
                    f"track {uuid}",
                    uuid,
                )
            s = Slice(uuid, name, cats, ts, -1, len(stack), args, loc, flows, term, len(tst.slices))
            stack.append(s)
            tst.slices.append(s)
            self.model.slices.append(s)
        elif typ == TYPE_INSTANT:
            if name is None:
                self.fail(
                    "event", f"TYPE_INSTANT on track {uuid} has neither name nor name_iid", uuid
                )
            if tst.slice_use is None:
                tst.slice_use = self.where()
            body = log[0] if log else None
            self.model.instants.append(Instant(uuid, name, ts, cats, args, body, loc, flows))
        elif typ == TYPE_COUNTER:
            value = None
            if rest is not None:
                value = rest.get("counter_value", rest.get("double_counter_value"))
            if value is None:
                self.fail(
                    "event",
                    f"TYPE_COUNTER on track {uuid} has neither counter_value nor "
                    "double_counter_value",
                    uuid,
                )
            if tst.counter_use is None:
                tst.counter_use = self.where()
            self.model.counters.append(CounterValue(uuid, ts, value))
        else:
            self.fail(
                "event",
                f"TrackEvent {_type_name(typ)} is not supported (expected SLICE_BEGIN, "
                "SLICE_END, INSTANT or COUNTER)",
                uuid,
            )

    def extra_counters(self, rest: dict[str, Any], st: _Seq, ts: int) -> None:
        for label, dflt in (
            ("extra_counter", st.default_extra),
            ("extra_double_counter", st.default_extra_double),
        ):
            vals = rest.get(label + "_values", ())
            uuids = rest.get(label + "_track_uuids", ())
            if not len(vals):
                if len(uuids):
                    self.fail("event", f"TrackEvent has {label}_track_uuids but no {label}_values")
                continue
            tracks = tuple(uuids) if len(uuids) else dflt
            if len(tracks) < len(vals):
                self.fail(
                    "event",
                    f"{len(vals)} {label}_values but only {len(tracks)} track uuids (from the "
                    "event or trace_packet_defaults)",
                )
            for uuid, v in zip(tracks, vals):
                tst = self.track_states.get(uuid)
                if tst is None:
                    tst = self.track_state(uuid)
                if tst.last_ts is not None and ts < tst.last_ts:
                    self.fail(
                        "order",
                        f"extra counter value at ts {ts} on track {uuid} is earlier than the "
                        f"previous event on that track (ts {tst.last_ts})",
                        uuid,
                    )
                tst.last_ts = ts
                if tst.counter_use is None:
                    tst.counter_use = self.where()
                self.model.counters.append(CounterValue(uuid, ts, v))

    def log_message(self, lm: Any, st: _Seq) -> tuple[Optional[str], Any]:
        body = None
        loc = None
        if lm.HasField("body_iid"):
            body = self.lookup(st, "log_message_body", lm.body_iid, "LogMessage.body_iid")
        if lm.HasField("source_location_iid"):
            loc = self.lookup(
                st, "source_locations", lm.source_location_iid, "LogMessage.source_location_iid"
            )
        return body, loc

    def annotations(self, anns: Any, st: _Seq) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in anns:
            nf = a.WhichOneof("name_field")
            if nf == "name_iid":
                name = self.lookup(
                    st, "debug_annotation_names", a.name_iid, "DebugAnnotation.name_iid"
                )
            elif nf == "name":
                name = a.name
            else:
                self.fail("event", "DebugAnnotation without name or name_iid")
            out[name] = self.annotation_value(a, st)
        return out

    def annotation_value(self, a: Any, st: _Seq) -> Any:
        if len(a.dict_entries):
            return self.annotations(a.dict_entries, st)
        if len(a.array_values):
            return [self.annotation_value(v, st) for v in a.array_values]
        vf = a.WhichOneof("value")
        if vf is None:
            if a.HasField("proto_value"):
                if a.WhichOneof("proto_type_descriptor") == "proto_type_name_iid":
                    self.lookup(
                        st,
                        "debug_annotation_value_type_names",
                        a.proto_type_name_iid,
                        "DebugAnnotation.proto_type_name_iid",
                    )
                return bytes(a.proto_value)
            return None
        if vf == "string_value_iid":
            return self.lookup(
                st,
                "debug_annotation_string_values",
                a.string_value_iid,
                "DebugAnnotation.string_value_iid",
            )
        if vf == "nested_value":
            return _nested_value(a.nested_value)
        return getattr(a, vf)

    # -- end of file -------------------------------------------------------------
    def finish(self) -> None:
        tracks = self.model.tracks
        threads = {(t.pid, t.tid) for t in tracks.values() if t.kind == "thread"}
        for sample in self.model.samples:
            if (sample.pid, sample.tid) not in threads:
                self.fail("track", f"perf_sample of pid {sample.pid} tid {sample.tid}, which no "
                                   "thread TrackDescriptor describes (the UI shows it on no thread)",
                          where="perf_sample")
        for uuid, parent, where in self.parent_refs:
            if parent not in tracks:
                self.fail(
                    "track",
                    f"track {uuid} has parent_uuid {parent}, which no TrackDescriptor defines",
                    uuid,
                    where=where,
                )
        for uuid, tst in self.track_states.items():
            t = tracks.get(uuid)
            if t is None:
                self.fail(
                    "track",
                    f"TrackEvent uses track uuid {uuid}, which no TrackDescriptor in the file "
                    "defines (first use)",
                    uuid,
                    where=tst.first_use,
                )
            if tst.counter_use is not None and t.kind != "counter":
                self.fail(
                    "track",
                    f"counter value on track {uuid} ({t.name!r}, kind {t.kind}), which is not "
                    "a counter track (TrackDescriptor.counter unset)",
                    uuid,
                    where=tst.counter_use,
                )
            if tst.slice_use is not None and t.kind == "counter":
                self.fail(
                    "track",
                    f"slice or instant on counter track {uuid} ({t.name!r})",
                    uuid,
                    where=tst.slice_use,
                )
            if tst.stack:
                s = tst.stack[-1]
                self.fail(
                    "slice",
                    f"{len(tst.stack)} slice(s) still open at end of file on track {uuid} "
                    f"({t.name!r}); innermost {s.name!r} began at ts {s.ts}",
                    uuid,
                    where="end of file",
                )
        clocks = self.clocks
        self.model.trace_clock = clocks.trace_clock or clocks.primary or CLOCK_BOOTTIME


def check_trace(
    path_or_bytes: Union[str, PathLike[str], bytes, bytearray, memoryview],
) -> TraceModel:
    """Check a Perfetto trace (file path or the file's bytes); return its model.

    Raises TraceCheckError (an AssertionError) on the first rule broken.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        data = Path(path_or_bytes).read_bytes()
    # The model is hundreds of thousands of small acyclic objects: pausing the
    # cyclic GC while building it saves a large share of the run time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Checker().run(data)
    finally:
        if gc_was_enabled:
            gc.enable()
