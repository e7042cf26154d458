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
``sequence``   packets with a track_event, interned_data, trace_packet_defaults,
               incremental-state flags or a sequence-scoped clock have a non-zero
               trusted_packet_sequence_id; the first packet of every sequence
               sets SEQ_INCREMENTAL_STATE_CLEARED; no packet needs incremental
               state while the state is invalid (e.g. after
               previous_packet_dropped).
``interning``  every iid used is defined earlier or in the same packet on the
               same sequence, in the current incremental-state generation; an
               iid is never redefined with a different value in one generation.
``clock``      every timestamp converts to the trace clock (primary_trace_clock
               of the ClockSnapshots, else BOOTTIME) through ClockSnapshots seen
               so far; sequence clocks (64..127) are declared by a snapshot on
               their own sequence; incremental clocks accumulate deltas;
               snapshots are consistent (units, incremental flag, duplicates,
               trace clock monotonic and in ns); the trace clock does not change
               after it has been used.
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
               debug annotations have names; extra counter values match their
               track uuids.

The module is Python 3.9 compatible and linear in the size of the trace.
"""

from __future__ import annotations

import gc
import zlib
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Set, Tuple, Union

try:
    from google.protobuf.message import DecodeError
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "perfetto_check needs the 'perfetto' package (its compiled "
        "perfetto_trace_pb2) and protobuf >= 6.31.1: %s" % exc
    ) from exc

try:
    from google.protobuf.unknown_fields import UnknownFieldSet as _UnknownFieldSet
except ImportError:  # pragma: no cover - older protobuf
    _UnknownFieldSet = None

__all__ = [
    "check_trace",
    "TraceCheckError",
    "TraceModel",
    "Track",
    "Slice",
    "Instant",
    "CounterValue",
    "ClockSnapshotInfo",
    "SnapshotClock",
    "MAX_COMPRESSED_CHUNK",
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
_COMPRESSED_CARRIER_OK = {"compressed_packets", "trusted_uid", "trusted_pid",
                          "trusted_packet_sequence_id"}

_INF = float("inf")


def _is_seq_clock(clock_id: int) -> bool:
    return 64 <= clock_id < 128


def _clock_name(key: Any) -> str:
    if isinstance(key, tuple):
        seq, cid = key
        return "sequence clock %d (seq %d)" % (cid, seq)
    name = _CLOCK_NAMES.get(key)
    return "%s (%d)" % (name, key) if name else "clock %d" % key


# --------------------------------------------------------------------------
# Public data model


class TraceCheckError(AssertionError):
    """A trace breaks a rule trace_processor relies on.

    Attributes: ``rule`` (see the module docstring), ``packet_index`` (index of
    the logical packet, counting packets inside compressed chunks, or None),
    ``sequence_id`` and ``track_uuid`` (or None).
    """

    def __init__(self, message: str, rule: str = "", packet_index: Optional[int] = None,
                 sequence_id: Optional[int] = None, track_uuid: Optional[int] = None):
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
    categories: Tuple[str, ...]
    ts: int  # absolute ns in the trace clock domain
    dur: int  # ns
    depth: int  # 0 = top level on its track
    args: Dict[str, Any] = field(default_factory=dict)
    source_location: Optional[Tuple[str, str, Optional[int]]] = None  # (file, function, line)
    flow_ids: Tuple[int, ...] = ()
    terminating_flow_ids: Tuple[int, ...] = ()
    index: int = 0  # position among its track's slices (begin order)

    @property
    def end(self) -> int:
        return self.ts + self.dur


@dataclass
class Instant:
    track_uuid: int
    name: str
    ts: int
    categories: Tuple[str, ...] = ()
    args: Dict[str, Any] = field(default_factory=dict)
    log_message: Optional[str] = None  # LogMessage body, if the event has one
    source_location: Optional[Tuple[str, str, Optional[int]]] = None
    flow_ids: Tuple[int, ...] = ()


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
    clocks: List[SnapshotClock]
    primary_trace_clock: Optional[int] = None

    def clock(self, clock_id: int) -> Optional[int]:
        """Raw timestamp of ``clock_id`` in this snapshot, or None."""
        for c in self.clocks:
            if c.clock_id == clock_id:
                return c.timestamp
        return None


@dataclass
class TraceModel:
    tracks: Dict[int, Track] = field(default_factory=dict)
    slices: List[Slice] = field(default_factory=list)  # in order of their begin events
    instants: List[Instant] = field(default_factory=list)
    counters: List[CounterValue] = field(default_factory=list)
    packet_count: int = 0  # logical packets (inside compressed chunks counted, carriers not)
    sequence_ids: Set[int] = field(default_factory=set)  # non-zero sequence ids used
    clock_snapshots: List[ClockSnapshotInfo] = field(default_factory=list)
    trace_clock: int = CLOCK_BOOTTIME  # clock domain of every ts in the model
    compressed_chunks: int = 0
    _track_slices: Dict[int, List[Slice]] = field(default_factory=dict, repr=False, compare=False)

    # -- helpers -----------------------------------------------------------
    def slices_named(self, name: str) -> List[Slice]:
        return [s for s in self.slices if s.name == name]

    def slices_on(self, track_uuid: int) -> List[Slice]:
        """Slices of one track, in begin order."""
        return list(self._track_slices.get(track_uuid, ()))

    def instants_named(self, name: str) -> List[Instant]:
        return [i for i in self.instants if i.name == name]

    def counters_on(self, track_uuid: int) -> List[CounterValue]:
        return [c for c in self.counters if c.track_uuid == track_uuid]

    def tracks_named(self, name: str) -> List[Track]:
        return [t for t in self.tracks.values() if t.name == name]

    def track_named(self, name: str) -> Track:
        """The one track called ``name`` (LookupError if none or several)."""
        found = self.tracks_named(name)
        if len(found) != 1:
            raise LookupError("%d tracks named %r (names: %s)" % (
                len(found), name, sorted({str(t.name) for t in self.tracks.values()})))
        return found[0]

    def thread_tracks(self) -> List[Track]:
        return [t for t in self.tracks.values() if t.kind == "thread"]

    def process_tracks(self) -> List[Track]:
        return [t for t in self.tracks.values() if t.kind == "process"]

    def counter_tracks(self) -> List[Track]:
        return [t for t in self.tracks.values() if t.kind == "counter"]

    def children(self, s: Slice) -> List[Slice]:
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
    __slots__ = ("unit", "incremental", "last_ns", "last_snap_ns")

    def __init__(self, unit: int, incremental: bool):
        self.unit = unit
        self.incremental = incremental
        self.last_ns = 0
        self.last_snap_ns: Optional[int] = None


class _Clocks:
    """Clock keys: builtin ids are ints, sequence clocks are (seq_id, clock_id)."""

    def __init__(self) -> None:
        self.domains: Dict[Any, _Domain] = {}
        # edges[a][b] = ([a_ns per snapshot], [b_ns per snapshot])
        self.edges: Dict[Any, Dict[Any, Tuple[List[int], List[int]]]] = {}
        self.non_monotonic: Set[Any] = set()
        self.cache: Dict[Any, Tuple[float, float, int]] = {}
        self.paths: Dict[Any, Optional[List[Any]]] = {}
        self.primary: Optional[int] = None
        self.trace_clock: Optional[int] = None  # fixed by the first conversion

    def fix_trace_clock(self) -> int:
        if self.trace_clock is None:
            tc = self.primary or CLOCK_BOOTTIME
            d = self.domains.get(tc)
            if d is not None and d.unit != 1:
                raise _ClockError("the trace clock %s must use unit_multiplier_ns 1, "
                                  "snapshots declare %d" % (_clock_name(tc), d.unit))
            self.trace_clock = tc
        return self.trace_clock

    def set_primary(self, clock_id: int) -> None:
        if _is_seq_clock(clock_id):
            raise _ClockError("primary_trace_clock %d is a sequence-scoped clock" % clock_id)
        if self.trace_clock is not None and clock_id != self.trace_clock:
            raise _ClockError(
                "primary_trace_clock %s arrives after timestamps were already "
                "converted to %s (trace_processor refuses to switch: 'ClockSnapshot "
                "too late in trace?')" % (_clock_name(clock_id), _clock_name(self.trace_clock)))
        self.primary = clock_id

    def add_snapshot(self, entries: List[Tuple[Any, int, int, bool]]) -> None:
        seen: Set[Any] = set()
        values = []
        for key, ts, unit, inc in entries:
            if key in seen:
                raise _ClockError("ClockSnapshot lists %s twice" % _clock_name(key))
            seen.add(key)
            d = self.domains.get(key)
            if d is None:
                if inc and not isinstance(key, tuple):
                    raise _ClockError("%s is incremental, but only sequence-scoped clocks "
                                      "(64..127) may be incremental" % _clock_name(key))
                d = _Domain(unit, inc)
                self.domains[key] = d
            elif d.unit != unit or d.incremental != inc:
                raise _ClockError(
                    "%s redeclared with unit_multiplier_ns=%d is_incremental=%s, was %d/%s"
                    % (_clock_name(key), unit, inc, d.unit, d.incremental))
            if key == (self.trace_clock or self.primary) and unit != 1:
                raise _ClockError("the trace clock %s must use unit_multiplier_ns 1"
                                  % _clock_name(key))
            ns = ts * unit
            d.last_ns = ns  # base value of an incremental clock
            if d.last_snap_ns is not None and ns < d.last_snap_ns:
                if key == (self.trace_clock or self.primary or CLOCK_BOOTTIME):
                    raise _ClockError("the trace clock %s goes backwards across snapshots "
                                      "(%d < %d)" % (_clock_name(key), ns, d.last_snap_ns))
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
                if b is a or b == a:
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
                "timestamp in %s cannot be converted to the trace clock %s: no "
                "ClockSnapshot so far mentions %s" % (_clock_name(key), _clock_name(tc),
                                                       _clock_name(key)))
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

    def _find_path(self, src: Any, dst: Any) -> Optional[List[Any]]:
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
            raise _ClockError(
                "timestamp in %s cannot be converted to the trace clock %s: no chain "
                "of ClockSnapshots seen so far links them" % (_clock_name(key), _clock_name(tc)))
        lo, hi, total, cur = -_INF, _INF, 0, ns
        for a, b in zip(path, path[1:]):
            a_l, b_l = self.edges[a][b]
            i = bisect_right(a_l, cur) - 1
            if i < 0:
                i = 0
            tr = b_l[i] - a_l[i]
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
    __slots__ = ("seq_id", "valid", "generation", "tables", "default_clock",
                 "default_track", "default_extra", "default_extra_double")

    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.valid = False
        self.generation = 0
        self.tables: Dict[str, Dict[int, Any]] = {}
        self.default_clock = 0
        self.default_track: Optional[int] = None
        self.default_extra: Tuple[int, ...] = ()
        self.default_extra_double: Tuple[int, ...] = ()

    def clear(self) -> None:
        self.valid = True
        self.generation += 1
        self.tables = {}
        self.default_clock = 0
        self.default_track = None
        self.default_extra = ()
        self.default_extra_double = ()


class _TrackState:
    __slots__ = ("uuid", "last_ts", "stack", "slices", "first_use", "slice_use", "counter_use")

    def __init__(self, uuid: int, where: str):
        self.uuid = uuid
        self.last_ts: Optional[int] = None
        self.stack: List[Slice] = []
        self.slices: List[Slice] = []
        self.first_use = where
        self.slice_use: Optional[str] = None
        self.counter_use: Optional[str] = None


def _interned_value(table: str, e: Any) -> Any:
    if table in ("event_names", "event_categories", "debug_annotation_names",
                 "debug_annotation_value_type_names"):
        return e.name
    if table == "source_locations":
        return (e.file_name, e.function_name,
                e.line_number if e.HasField("line_number") else None)
    if table == "log_message_body":
        return e.body
    if table == "debug_annotation_string_values":
        return bytes(e.str).decode("utf-8", "replace")
    return e.SerializeToString(deterministic=True)


def _is_repeated(fd: Any) -> bool:
    rep = getattr(fd, "is_repeated", None)
    if rep is not None:
        return bool(rep)
    return fd.label == fd.LABEL_REPEATED  # pragma: no cover - older protobuf


def _unknown_fields(msg: Any) -> List[Tuple[int, int]]:
    if _UnknownFieldSet is not None:
        return [(f.field_number, f.wire_type) for f in _UnknownFieldSet(msg)]
    return [(f.field_number, f.wire_type) for f in msg.UnknownFields()]  # pragma: no cover


def _find_unknown(msg: Any, path: str) -> Optional[Tuple[str, List[Tuple[int, int]]]]:
    unk = _unknown_fields(msg)
    if unk:
        return path, unk
    for fd, val in msg.ListFields():
        if fd.message_type is None:
            continue
        if _is_repeated(fd):
            for i, m in enumerate(val):
                r = _find_unknown(m, "%s.%s[%d]" % (path, fd.name, i))
                if r:
                    return r
        else:
            r = _find_unknown(val, "%s.%s" % (path, fd.name))
            if r:
                return r
    return None


# --------------------------------------------------------------------------
# The checker


class _Checker:
    def __init__(self) -> None:
        self.model = TraceModel()
        self.clocks = _Clocks()
        self.seqs: Dict[int, _Seq] = {}
        self.track_states: Dict[int, _TrackState] = {}
        self.descriptors: Dict[int, Tuple[Any, str]] = {}  # uuid -> (identity, where)
        self.parent_refs: List[Tuple[int, int, str]] = []  # (uuid, parent, where)
        self.pidx = -1  # logical packet index
        self.top = -1  # top-level packet index
        self.chunk_entry: Optional[int] = None  # index inside the current compressed chunk
        self.seq = 0  # sequence id of the packet being processed

    # -- errors ------------------------------------------------------------
    def where(self) -> str:
        if self.chunk_entry is not None:
            loc = "packet #%d [entry %d of compressed_packets in top-level packet #%d]" % (
                self.pidx, self.chunk_entry, self.top)
        elif self.pidx != self.top:
            loc = "packet #%d [top-level packet #%d]" % (self.pidx, self.top)
        else:
            loc = "packet #%d" % self.pidx
        return "%s, seq %d" % (loc, self.seq)

    def fail(self, rule: str, msg: str, track: Optional[int] = None,
             where: Optional[str] = None) -> NoReturn:
        w = self.where() if where is None else where
        raise TraceCheckError("[%s] %s: %s" % (rule, w, msg), rule=rule,
                              packet_index=self.pidx if where is None else None,
                              sequence_id=self.seq if where is None else None,
                              track_uuid=track)

    # -- parsing -----------------------------------------------------------
    def parse(self, data: bytes, what: str) -> Any:
        try:
            trace = pb.Trace.FromString(data)
        except DecodeError as exc:
            self.fail("structure", "%s does not parse as perfetto.protos.Trace: %s"
                      % (what, exc), where=what)
        size = trace.ByteSize()
        trace.DiscardUnknownFields()
        if trace.ByteSize() != size:
            fresh = pb.Trace.FromString(data)
            for i, p in enumerate(fresh.packet):
                r = _find_unknown(p, "TracePacket")
                if r:
                    path, unk = r
                    self.fail("structure", "%s: packet %d: %s has field(s) unknown to the "
                              "schema: %s (wrong field number or wire type in the writer?)"
                              % (what, i, path, ", ".join("%d (wire type %d)" % u for u in unk)),
                              where=what)
            r = _find_unknown(fresh, "Trace")
            if r:
                self.fail("structure", "%s: %s has unknown field(s) %s" % (
                    what, r[0], ", ".join("%d (wire type %d)" % u for u in r[1])), where=what)
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
            self.fail("structure", "compressed_packets inside a compressed_packets chunk "
                      "(nesting is not allowed)")
        where = "top-level packet #%d (compressed_packets)" % self.top
        extra = [fd.name for fd, _ in pkt.ListFields() if fd.name not in _COMPRESSED_CARRIER_OK]
        if extra:
            self.fail("structure", "packet carrying compressed_packets also sets %s, which "
                      "trace_processor ignores" % ", ".join(extra), where=where)
        blob = pkt.compressed_packets
        if len(blob) >= MAX_COMPRESSED_CHUNK:
            self.fail("structure", "compressed chunk is %d bytes, must be < %d"
                      % (len(blob), MAX_COMPRESSED_CHUNK), where=where)
        try:
            raw = zlib.decompress(blob)
        except zlib.error as exc:
            self.fail("structure", "compressed_packets is not a zlib stream: %s" % exc,
                      where=where)
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

        if seq == 0:
            st = None
            if cleared:
                self.fail("sequence", "incremental state cleared without a "
                          "trusted_packet_sequence_id")
            if flags & SEQ_NEEDS_INCREMENTAL_STATE:
                self.fail("sequence", "SEQ_NEEDS_INCREMENTAL_STATE without a "
                          "trusted_packet_sequence_id")
            if has_interned:
                self.fail("sequence", "interned_data without a trusted_packet_sequence_id")
            if has_defaults:
                self.fail("sequence", "trace_packet_defaults without a "
                          "trusted_packet_sequence_id")
            if which == "track_event":
                self.fail("sequence", "track_event without a trusted_packet_sequence_id")
        else:
            st = self.seqs.get(seq)
            if st is None:
                if not cleared:
                    if flags & SEQ_NEEDS_INCREMENTAL_STATE:
                        self.fail("sequence", "packet has SEQ_NEEDS_INCREMENTAL_STATE but no "
                                  "earlier packet on seq %d set SEQ_INCREMENTAL_STATE_CLEARED "
                                  "(trace_processor drops it)" % seq)
                    self.fail("sequence", "first packet of seq %d does not set "
                              "SEQ_INCREMENTAL_STATE_CLEARED (sequence_flags=%d)" % (seq, flags))
                st = self.seqs[seq] = _Seq(seq)
                model.sequence_ids.add(seq)
            if cleared:
                st.clear()
            elif pkt.previous_packet_dropped:
                st.valid = False
            if flags & SEQ_NEEDS_INCREMENTAL_STATE and not st.valid:
                self.fail("sequence", "packet has SEQ_NEEDS_INCREMENTAL_STATE but the "
                          "incremental state of seq %d is invalid (previous_packet_dropped "
                          "since the last clear); trace_processor drops it" % seq)
            if has_defaults:
                self.defaults(pkt.trace_packet_defaults, st)
            if has_interned:
                if not st.valid:
                    self.fail("interning", "interned_data on seq %d while its incremental "
                              "state is invalid (trace_processor skips it)" % seq)
                self.interned(pkt.interned_data, st)

        if which == "clock_snapshot":
            # trace_processor reads nothing else of a ClockSnapshot packet.
            self.clock_snapshot(pkt.clock_snapshot, seq)
            return

        if pkt.HasField("timestamp"):
            raw = pkt.timestamp
            clock_id = pkt.timestamp_clock_id
            if not clock_id and st is not None:
                clock_id = st.default_clock
            ts = self.resolve(clock_id, raw, seq)
        else:
            ts = None

        if which == "track_event":
            if ts is None:
                self.fail("event", "track_event packet without a timestamp")
            self.track_event(pkt.track_event, st, ts)
        elif which == "track_descriptor":
            self.track_descriptor(pkt.track_descriptor)

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
                    self.fail("interning", "interned_data.%s iid %d redefined on seq %d as %r, "
                              "was %r in the same incremental-state generation"
                              % (name, iid, st.seq_id, val, old))

    def lookup(self, st: _Seq, table: str, iid: int, user: str) -> Any:
        t = st.tables.get(table)
        if t is not None:
            v = t.get(iid)
            if v is not None:
                return v
        self.fail("interning", "%s iid %d is not defined in interned_data.%s on seq %d "
                  "(%d entries defined since the last incremental-state clear)"
                  % (user, iid, table, st.seq_id, len(t) if t else 0))

    # -- clocks ---------------------------------------------------------------
    def clock_snapshot(self, cs: Any, seq: int) -> None:
        entries = []
        info = []
        for c in cs.clocks:
            cid = c.clock_id
            if _is_seq_clock(cid):
                if seq == 0:
                    self.fail("clock", "ClockSnapshot declares sequence-scoped clock %d on a "
                              "packet without trusted_packet_sequence_id" % cid)
                key: Any = (seq, cid)
            else:
                key = cid
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
            # No clock anywhere: trace_processor takes the value as trace time.
            return clocks.to_trace(clocks.trace_clock or clocks.fix_trace_clock(), raw)
        if 64 <= clock_id < 128:
            if seq == 0:
                self.fail("clock", "timestamp uses sequence-scoped clock %d on a packet "
                          "without trusted_packet_sequence_id" % clock_id)
            key: Any = (seq, clock_id)
            if key not in clocks.domains:
                self.fail("clock", "timestamp uses sequence clock %d but no ClockSnapshot on "
                          "seq %d declared it before this packet" % (clock_id, seq))
        else:
            key = clock_id
        try:
            return clocks.to_trace(key, raw)
        except _ClockError as exc:
            self.fail("clock", str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- tracks ----------------------------------------------------------------
    def track_descriptor(self, td: Any) -> None:
        if not td.HasField("uuid"):
            self.fail("track", "TrackDescriptor without uuid")
        uuid = td.uuid
        pid = tid = None
        if td.HasField("counter"):
            kind = "counter"
        elif td.HasField("thread"):
            kind = "thread"
        elif td.HasField("process"):
            kind = "process"
        else:
            kind = "other"
        if td.HasField("thread"):
            th = td.thread
            if not (th.HasField("pid") and th.HasField("tid")):
                self.fail("track", "thread TrackDescriptor uuid %d lacks pid or tid" % uuid,
                          track=uuid)
            pid, tid = th.pid, th.tid
        elif td.HasField("process"):
            if not td.process.HasField("pid"):
                self.fail("track", "process TrackDescriptor uuid %d lacks pid" % uuid,
                          track=uuid)
            pid = td.process.pid
        name_field = td.WhichOneof("static_or_dynamic_name")
        if name_field:
            name: Optional[str] = getattr(td, name_field)
        elif td.HasField("thread") and td.thread.HasField("thread_name"):
            name = td.thread.thread_name
        elif td.HasField("process") and td.process.HasField("process_name"):
            name = td.process.process_name
        else:
            name = None
        parent = td.parent_uuid if td.HasField("parent_uuid") else None
        identity = (kind, pid, tid, parent)
        prev = self.descriptors.get(uuid)
        if prev is not None:
            if prev[0] != identity:
                self.fail("track", "track uuid %d described again as %s, conflicting with the "
                          "descriptor at %s (%s); (kind, pid, tid, parent_uuid) differ"
                          % (uuid, identity, prev[1], prev[0]), track=uuid)
            self.model.tracks[uuid].name = name  # only names may change; last one wins
            return
        where = self.where()
        self.descriptors[uuid] = (identity, where)
        if parent is not None:
            self.parent_refs.append((uuid, parent, where))
        self.model.tracks[uuid] = Track(uuid, name, kind, pid, tid, parent)

    def track_state(self, uuid: int) -> _TrackState:
        ts = self.track_states.get(uuid)
        if ts is None:
            ts = self.track_states[uuid] = _TrackState(uuid, self.where())
            self.model._track_slices[uuid] = ts.slices
        return ts

    # -- track events ---------------------------------------------------------
    def track_event(self, te: Any, st: _Seq, ts: int) -> None:
        # One ListFields() call instead of a dozen presence checks: most events
        # only carry type and name_iid.
        typ = 0
        uuid = None
        name = None
        name_iid = None
        rest: Optional[Dict[str, Any]] = None
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
                self.fail("track", "TrackEvent has no track_uuid and seq %d has no "
                          "trace_packet_defaults.track_event_defaults.track_uuid" % st.seq_id)
        tst = self.track_states.get(uuid)
        if tst is None:
            tst = self.track_state(uuid)
        last = tst.last_ts
        if last is not None and ts < last:
            self.fail("order", "%s at ts %d on track %d is earlier than the previous event "
                      "on that track (ts %d)" % (_TYPE_NAMES.get(typ, typ), ts, uuid, last),
                      track=uuid)
        tst.last_ts = ts

        cats: Tuple[str, ...] = ()
        args: Dict[str, Any] = {}
        loc = None
        flows: Tuple[int, ...] = ()
        term: Tuple[int, ...] = ()
        log = None
        if rest is not None:
            for legacy in ("timestamp_delta_us", "timestamp_absolute_us", "legacy_event"):
                if legacy in rest:
                    self.fail("event", "TrackEvent.%s is a legacy field this project must "
                              "not write" % legacy, track=uuid)
            if "category_iids" in rest:
                cats = tuple(self.lookup(st, "event_categories", i, "TrackEvent.category_iids")
                             for i in rest["category_iids"])
            if "categories" in rest:
                cats = cats + tuple(rest["categories"])
            if "debug_annotations" in rest:
                args = self.annotations(rest["debug_annotations"], st)
            if "source_location_iid" in rest:
                loc = self.lookup(st, "source_locations", rest["source_location_iid"],
                                  "TrackEvent.source_location_iid")
            elif "source_location" in rest:
                s_ = rest["source_location"]
                loc = (s_.file_name, s_.function_name,
                       s_.line_number if s_.HasField("line_number") else None)
            flows = tuple(rest.get("flow_ids", ())) + tuple(rest.get("flow_ids_old", ()))
            term = (tuple(rest.get("terminating_flow_ids", ()))
                    + tuple(rest.get("terminating_flow_ids_old", ())))
            if "log_message" in rest:
                log = self.log_message(rest["log_message"], st)
                if loc is None:
                    loc = log[1]
            if ("extra_counter_values" in rest or "extra_double_counter_values" in rest
                    or "extra_counter_track_uuids" in rest
                    or "extra_double_counter_track_uuids" in rest):
                self.extra_counters(rest, st, ts)

        if typ == TYPE_SLICE_END:
            stack = tst.stack
            if not stack:
                self.fail("slice", "TYPE_SLICE_END at ts %d on track %d with no open slice"
                          % (ts, uuid), track=uuid)
            s = stack.pop()
            s.dur = ts - s.ts
            if rest is not None:
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
                self.fail("event", "TYPE_SLICE_BEGIN on track %d has neither name nor name_iid"
                          % uuid, track=uuid)
            if tst.slice_use is None:
                tst.slice_use = self.where()
            stack = tst.stack
            if stack and ts < stack[-1].ts:
                self.fail("slice", "slice %r begins at %d before its parent %r (%d) on "
                          "track %d" % (name, ts, stack[-1].name, stack[-1].ts, uuid),
                          track=uuid)
            s = Slice(uuid, name, cats, ts, -1, len(stack), args, loc, flows, term,
                      len(tst.slices))
            stack.append(s)
            tst.slices.append(s)
            self.model.slices.append(s)
        elif typ == TYPE_INSTANT:
            if name is None:
                self.fail("event", "TYPE_INSTANT on track %d has neither name nor name_iid"
                          % uuid, track=uuid)
            if tst.slice_use is None:
                tst.slice_use = self.where()
            self.model.instants.append(Instant(uuid, name, ts, cats, args,
                                               log[0] if log else None, loc, flows))
        elif typ == TYPE_COUNTER:
            value = None
            if rest is not None:
                value = rest.get("counter_value", rest.get("double_counter_value"))
            if value is None:
                self.fail("event", "TYPE_COUNTER on track %d has neither counter_value nor "
                          "double_counter_value" % uuid, track=uuid)
            if tst.counter_use is None:
                tst.counter_use = self.where()
            self.model.counters.append(CounterValue(uuid, ts, value))
        else:
            self.fail("event", "TrackEvent type %s is not supported (expected SLICE_BEGIN, "
                      "SLICE_END, INSTANT or COUNTER)" % _TYPE_NAMES.get(typ, typ), track=uuid)

    def extra_counters(self, rest: Dict[str, Any], st: _Seq, ts: int) -> None:
        for label, dflt in (("extra_counter", st.default_extra),
                            ("extra_double_counter", st.default_extra_double)):
            vals = rest.get(label + "_values", ())
            uuids = rest.get(label + "_track_uuids", ())
            if not len(vals):
                if len(uuids):
                    self.fail("event", "TrackEvent has %s_track_uuids but no %s_values"
                              % (label, label))
                continue
            tracks = tuple(uuids) if len(uuids) else dflt
            if len(tracks) < len(vals):
                self.fail("event", "%d %s_values but only %d track uuids (from the event or "
                          "trace_packet_defaults)" % (len(vals), label, len(tracks)))
            for uuid, v in zip(tracks, vals):
                tst = self.track_states.get(uuid)
                if tst is None:
                    tst = self.track_state(uuid)
                if tst.last_ts is not None and ts < tst.last_ts:
                    self.fail("order", "extra counter value at ts %d on track %d is earlier "
                              "than the previous event on that track (ts %d)"
                              % (ts, uuid, tst.last_ts), track=uuid)
                tst.last_ts = ts
                if tst.counter_use is None:
                    tst.counter_use = self.where()
                self.model.counters.append(CounterValue(uuid, ts, v))

    def log_message(self, lm: Any, st: _Seq) -> Tuple[Optional[str], Any]:
        body = None
        loc = None
        if lm.HasField("body_iid"):
            body = self.lookup(st, "log_message_body", lm.body_iid, "LogMessage.body_iid")
        if lm.HasField("source_location_iid"):
            loc = self.lookup(st, "source_locations", lm.source_location_iid,
                              "LogMessage.source_location_iid")
        return body, loc

    def annotations(self, anns: Any, st: _Seq) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for a in anns:
            nf = a.WhichOneof("name_field")
            if nf == "name_iid":
                name = self.lookup(st, "debug_annotation_names", a.name_iid,
                                   "DebugAnnotation.name_iid")
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
                    self.lookup(st, "debug_annotation_value_type_names",
                                a.proto_type_name_iid, "DebugAnnotation.proto_type_name_iid")
                return bytes(a.proto_value)
            return None
        if vf == "string_value_iid":
            return self.lookup(st, "debug_annotation_string_values", a.string_value_iid,
                               "DebugAnnotation.string_value_iid")
        if vf == "nested_value":
            return _nested_value(a.nested_value)
        return getattr(a, vf)

    # -- end of file -------------------------------------------------------------
    def finish(self) -> None:
        tracks = self.model.tracks
        for uuid, parent, where in self.parent_refs:
            if parent not in tracks:
                self.fail("track", "track %d has parent_uuid %d, which no TrackDescriptor "
                          "defines" % (uuid, parent), track=uuid, where=where)
        for uuid, tst in self.track_states.items():
            t = tracks.get(uuid)
            if t is None:
                self.fail("track", "TrackEvent uses track uuid %d, which no TrackDescriptor "
                          "in the file defines (first use)" % uuid, track=uuid,
                          where=tst.first_use)
            if tst.counter_use is not None and t.kind != "counter":
                self.fail("track", "counter value on track %d (%r, kind %s), which is not a "
                          "counter track (TrackDescriptor.counter unset)" % (uuid, t.name, t.kind),
                          track=uuid, where=tst.counter_use)
            if tst.slice_use is not None and t.kind == "counter":
                self.fail("track", "slice or instant on counter track %d (%r)" % (uuid, t.name),
                          track=uuid, where=tst.slice_use)
            if tst.stack:
                s = tst.stack[-1]
                self.fail("slice", "%d slice(s) still open at end of file on track %d (%r); "
                          "innermost %r began at ts %d"
                          % (len(tst.stack), uuid, t.name, s.name, s.ts),
                          track=uuid, where="end of file")
        self.model.trace_clock = self.clocks.trace_clock or self.clocks.primary or CLOCK_BOOTTIME


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


def check_trace(path_or_bytes: Union[str, "PathLike[str]", bytes, bytearray, memoryview]
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
