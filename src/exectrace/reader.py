"""Reading trace files back: ``exectrace.read(path)``.

    trace = exectrace.read("executiontrace.2026-11-29T18_41_22.216.4242.out")
    trace.metadata["python.version"]
    for event in trace:              # Metadata, Thread, then events by time
        if isinstance(event, exectrace.Slice) and event.name == "time.sleep":
            print(event.thread, event.dur_ns)

The decoding is done natively into columns (``trace.columns``, by
exectrace._decode: the same columns as the core's decoder, with its per-event
path in C), which the analysis commands use directly; typed events are made
on demand.

When the recorder's ring overflowed, the calls kept cover only the end of the
window: ``trace.coverage`` is that span, and the slices of frames already open
where it begins carry ``args["began_before_coverage"] = True``.
"""

from __future__ import annotations

import array
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from exectrace import _decode, _perfetto, _summarize
from exectrace.blocking import reason_of_slice
from exectrace.errors import ExectraceError

#: The slice on the "exectrace" track that spans the window and carries the metadata.
WINDOW_SLICE = _perfetto.WINDOW_SLICE_NAME
GC_TRACK = _perfetto.GC_TRACK_NAME
META_TRACK = _perfetto.META_TRACK_NAME
#: read_metadata() looks no further: the window slice comes in the first
#: compressed chunk (at most 512 KiB) of an exectrace file.
METADATA_READ_BYTES = 1024 * 1024
#: Files larger than this are refused rather than read into memory.
MAX_FILE_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class Thread:
    """A thread of the traced process."""

    tid: int
    pid: int
    name: str
    track_uuid: int


@dataclass(frozen=True)
class Slice:
    """A call (or other span) on a thread: a Python function, a C function."""

    name: str
    thread: str
    tid: int
    start_ns: int
    dur_ns: int
    depth: int
    #: "" for Python functions, "c" for C functions, "region" for user regions;
    #: a blocking C function adds its reason: "c,io", "c,lock", "c,sleep", ...
    category: str
    file: str
    line: int
    args: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.dur_ns

    @property
    def is_c_function(self) -> bool:
        return "c" in self.category.split(",")

    @property
    def blocking(self) -> Optional[str]:
        """Why the call waited ("sleep", "io", "lock", "subprocess"), or None."""
        return reason_of_slice(self.name, self.category)

    @property
    def stack(self) -> tuple[Frame, ...]:
        """The Python callstack a wait began at, outermost frame first
        (`events` files; empty where the file has none)."""
        text = self.args.get("stack")
        return parse_stack(text) if isinstance(text, str) else ()


@dataclass(frozen=True)
class Frame:
    """A frame of a callstack: a Python function and the line it was at."""

    function: str
    file: str
    line: int


def parse_stack(text: str) -> tuple[Frame, ...]:
    """A wait's `stack` argument (innermost frame first, one per line, as
    "function (file:line)") as Frames, outermost first."""
    frames = []
    for entry in text.splitlines():
        name, sep, where = entry.rpartition(" (")
        if sep and where.endswith(")"):
            file, _, line = where[:-1].rpartition(":")
            frames.append(Frame(name, file, int(line) if line.isdigit() else 0))
        else:
            frames.append(Frame(entry, "", 0))
    frames.reverse()
    return tuple(frames)


@dataclass(frozen=True)
class Sample:
    """A stack sample of a thread (`events` files): where it was at ts_ns,
    outermost frame first."""

    thread: str
    tid: int
    ts_ns: int
    stack: tuple[Frame, ...]


@dataclass(frozen=True)
class GCEvent:
    """One garbage collection (all threads wait while it runs)."""

    start_ns: int
    dur_ns: int
    generation: int
    collected: int
    uncollectable: int
    thread: str

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.dur_ns


@dataclass(frozen=True)
class Instant:
    """A point event (user log entries, 'records lost', ...)."""

    name: str
    track: str
    ts_ns: int
    category: str
    args: dict[str, Any] = field(default_factory=dict, compare=False)
    message: Optional[str] = None


@dataclass(frozen=True)
class Counter:
    """One sample of a counter track."""

    name: str
    ts_ns: int
    value: float


@dataclass(frozen=True)
class Step:
    """One step of an asyncio task: a resumption of its coroutine by the event
    loop, from its task's track. `slow`: it held the loop for at least the
    slow_step setting."""

    task: str
    name: str  # the coroutine
    thread: str
    start_ns: int
    dur_ns: int
    slow: bool
    args: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.dur_ns


@dataclass(frozen=True)
class Span:
    """A span on a track of its own: a user task (exectrace.task), or a region
    of a user task on that task's track."""

    name: str
    track: str
    start_ns: int
    dur_ns: int
    category: str
    args: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.dur_ns


@dataclass(frozen=True)
class Metadata:
    """How and when the window was captured: versions, process, settings, losses."""

    values: dict[str, Any]
    start_ns: int
    end_ns: int

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    @property
    def settings(self) -> dict[str, Any]:
        return {k[len("settings."):]: v for k, v in self.values.items() if k.startswith("settings.")}

    @property
    def records_lost(self) -> int:
        return _as_int(self.values.get("records.lost"), 0)


Event = Union[Metadata, Thread, Slice, GCEvent, Instant, Counter, Step, Span, Sample]


class Trace:
    """A decoded trace file. Iterating yields Metadata, the Threads, then the
    Slices, GC events, Instants and Counters in order of their timestamps."""

    def __init__(self, path: str, columns: Any) -> None:
        self.path = path
        self.columns = columns
        self.strings: list[str] = columns.strings
        #: Slices that were still open where the file ended.
        self.unfinished: int = columns.unfinished
        self.tracks: dict[int, dict[str, Any]] = columns.tracks
        self._track_index: Optional[tuple[Any, list[int], Any]] = None
        self._other: Optional[Any] = None
        self._coverage: Optional[tuple[int, int]] = None
        self._meta_index = self._find_window_slice()
        self.metadata = self._metadata()
        self.threads = self._threads()
        #: Why reading stopped early or what is missing (a damaged or
        #: truncated file), else None.
        self.damage: Optional[str] = columns.error or self._missing()

    def _missing(self) -> Optional[str]:
        """A file cut between two packets decodes without error: what it lacks."""
        if self.unfinished:
            return f"it ends inside {self.unfinished} unfinished slice(s) (truncated?)"
        if not self.is_exectrace:
            return None
        # Every call kept in the recorder's ring is written as one thread slice.
        kept = _as_int(self.metadata.get("records.kept"), -1)
        _slot, uuids, counts = self.track_index()
        calls = sum(n for t, n in zip(uuids, counts) if (self.tracks.get(t) or {}).get("kind") == "thread")
        if calls < kept:
            return f"it holds {calls} of the {kept} calls its metadata records (truncated?)"
        trailer = self.metadata.get("file.trailer")
        if isinstance(trailer, str) and not any(
            self.strings[name] == trailer for _t, _ts, name, _c, _a, _l in self.columns.instants
        ):
            return f"its last packet (the '{trailer}' instant) is missing (truncated?)"
        return None

    # -- structure
    def track_index(self) -> tuple[Any, list[int], Any]:
        """(track index of each slice, track uuid of each index, slices per
        index), made natively once."""
        if self._track_index is None:
            c = self.columns
            if hasattr(c, "s_slot"):  # exectrace._decode's columns
                uuids = c.slot_uuids
                self._track_index = (c.s_slot, uuids, _summarize.count(c.s_slot, len(uuids)))
            else:
                self._track_index = _summarize.tracks(c.s_track)
        return self._track_index

    def slice_keys(self) -> tuple[Any, list[tuple[int, int, int, int]]]:
        """(key of each slice, (name, category, file, line) of each key)."""
        c = self.columns
        if hasattr(c, "s_key"):
            return c.s_key, c.key_quads
        return _summarize.keys(c.s_name, c.s_cat, c.s_file, c.s_line)

    def _slice_track(self, i: int) -> int:
        """The track uuid of slice i (without making the s_track column)."""
        slot, uuids, _counts = self.track_index()
        return int(uuids[slot[i]])

    def thread_mask(self) -> Any:
        """Per track index: 1 for a thread's track."""
        _slot, uuids, _counts = self.track_index()
        return array.array("b", [(self.tracks.get(u) or {}).get("kind") == "thread" for u in uuids])

    def thread_slots(self) -> tuple[Any, list[int]]:
        """(thread index of each track index, -1 for tracks not a thread's;
        the uuid of each thread index)."""
        _slot, uuids, _counts = self.track_index()
        mask = self.thread_mask()
        thread_of_slot = array.array("i", [-1] * len(uuids))
        thread_uuids: list[int] = []
        for index, (u, m) in enumerate(zip(uuids, mask)):
            if m:
                thread_of_slot[index] = len(thread_uuids)
                thread_uuids.append(u)
        return thread_of_slot, thread_uuids

    def _other_slices(self) -> Any:
        """Indices of the slices not on a thread's track (GC, asyncio
        tasks, user tasks, the window): few, found natively."""
        if self._other is None:
            slot = self.track_index()[0]
            self._other = _summarize.select(slot, array.array("b", [not m for m in self.thread_mask()]))
        return self._other

    @property
    def coverage(self) -> tuple[int, int]:
        """(from, until) in ns: the span of the window the kept records
        cover. The recorder's ring keeps the newest calls: when records were
        lost, the calls kept are exactly those that ended after the earliest
        end among them, so every thread's stack is known from that point on
        (a frame open there is kept, and began before coverage). A damaged
        file covers no further than its last complete slice."""
        if self._coverage is None:
            meta = self.metadata
            start, end = meta.start_ns, max(meta.end_ns, meta.start_ns)
            span = _summarize.end_span(self.track_index()[0], self.thread_mask(),
                                       self.columns.s_ts, self.columns.s_dur)
            begin = start
            if span is not None and meta.records_lost > 0:
                begin = min(max(start, span[0]), end)
            if self.damage and span is not None:
                end = max(begin, min(end, span[1]))
            self._coverage = (begin, end)
        return self._coverage

    def _track_name(self, uuid: int) -> str:
        track = self.tracks.get(uuid)
        return (track or {}).get("name") or f"track {uuid}"

    def _find_window_slice(self) -> Optional[int]:
        try:
            name = self.strings.index(WINDOW_SLICE)
        except ValueError:
            return None
        key, quads = self.slice_keys()
        wanted = array.array("b", [q[0] == name for q in quads])
        for i in _summarize.select(key, wanted):
            if self._track_name(self._slice_track(i)) == META_TRACK:
                return i
        return None

    def _metadata(self) -> Metadata:
        c = self.columns
        i = self._meta_index
        if i is None:
            return Metadata({}, 0, 0)
        args = c.args[c.s_args[i]] if c.s_args[i] >= 0 else {}
        return Metadata(dict(args), c.s_ts[i], c.s_ts[i] + c.s_dur[i])

    def _threads(self) -> list[Thread]:
        return [
            Thread(t.get("tid") or 0, t.get("pid") or 0, t.get("name") or "", uuid)
            for uuid, t in self.tracks.items()
            if t.get("kind") == "thread"
        ]

    @property
    def is_exectrace(self) -> bool:
        return self._meta_index is not None

    @property
    def mode(self) -> str:
        """What the window recorded: "events" or "calls" (files from before
        the events mode are calls files)."""
        mode = self.metadata.get("recorder.mode")
        return mode if mode in ("events", "calls") else "calls"

    def samples(self) -> list[Sample]:
        """The stack samples (`events` files), by time."""
        c = self.columns
        s = self.strings
        names = {(t.get("pid"), t.get("tid")): t.get("name") or "" for t in self.tracks.values()
                 if t.get("kind") == "thread"}
        stacks = [tuple(Frame(s[f], s[file], line) for f, file, line in frames)
                  for frames in c.stacks]
        out = [Sample(names.get((pid, tid), f"thread-{tid}"), tid, ts, stacks[stack])
               for ts, pid, tid, stack in c.samples]
        out.sort(key=lambda e: e.ts_ns)
        return out

    @property
    def slice_count(self) -> int:
        return len(self.columns.s_ts)

    # -- events
    def slices(self) -> Iterator[Slice]:
        """Calls on threads, by start time (outer calls before inner ones)."""
        c = self.columns
        s = self.strings
        covered_from = self.coverage[0]
        order = sorted(range(len(c.s_ts)), key=lambda i: (c.s_ts[i], c.s_depth[i]))
        for i in order:
            track = self.tracks.get(c.s_track[i]) or {}
            if track.get("kind") != "thread":
                continue
            category = s[c.s_cat[i]] if c.s_cat[i] >= 0 else ""
            args = c.args[c.s_args[i]] if c.s_args[i] >= 0 else {}
            if c.s_ts[i] < covered_from:  # its start is in time the file does not cover
                args = {**args, "began_before_coverage": True}
            yield Slice(
                name=s[c.s_name[i]],
                thread=track.get("name") or "",
                tid=track.get("tid") or 0,
                start_ns=c.s_ts[i],
                dur_ns=c.s_dur[i],
                depth=c.s_depth[i],
                category=category,
                file=s[c.s_file[i]] if c.s_file[i] >= 0 else "",
                line=c.s_line[i],
                args=args,
            )

    def gc_events(self) -> list[GCEvent]:
        c = self.columns
        events = []
        for i in self._other_slices():
            if self._track_name(self._slice_track(i)) != GC_TRACK:
                continue
            args = c.args[c.s_args[i]] if c.s_args[i] >= 0 else {}
            events.append(
                GCEvent(
                    start_ns=c.s_ts[i],
                    dur_ns=c.s_dur[i],
                    generation=_as_int(args.get("generation"), -1),
                    collected=_as_int(args.get("collected"), -1),
                    uncollectable=_as_int(args.get("uncollectable"), -1),
                    thread=str(args.get("thread", "")),
                )
            )
        events.sort(key=lambda e: e.start_ns)
        return events

    def instants(self) -> list[Instant]:
        s = self.strings
        return sorted(
            (
                Instant(
                    name=s[name],
                    track=self._track_name(track),
                    ts_ns=ts,
                    category=s[cat] if cat >= 0 else "",
                    args=args or {},
                    message=log,
                )
                for track, ts, name, cat, args, log in self.columns.instants
            ),
            key=lambda e: e.ts_ns,
        )

    def _track_slices(self, category: str) -> Iterator[tuple[int, dict[str, Any], str, str]]:
        """(index, args, name, track name) of slices of `category` on tracks
        that are not threads'."""
        c = self.columns
        s = self.strings
        key, quads = self.slice_keys()
        for i in self._other_slices():
            name, cat_index, _file, _line = quads[key[i]]
            cat = s[cat_index] if cat_index >= 0 else ""
            if category not in cat.split(","):
                continue
            args = c.args[c.s_args[i]] if c.s_args[i] >= 0 else {}
            yield i, args, s[name], self._track_name(self._slice_track(i))

    def steps(self) -> list[Step]:
        """asyncio task steps, by start time."""
        c = self.columns
        steps = [
            Step(task=str(args.get("task", track)), name=name, thread=str(args.get("thread", "")),
                 start_ns=c.s_ts[i], dur_ns=c.s_dur[i], slow=bool(args.get("slow", False)),
                 args=args)
            for i, args, name, track in self._track_slices("asyncio")
        ]
        steps.sort(key=lambda e: e.start_ns)
        return steps

    def spans(self) -> list[Span]:
        """User tasks (category "task") and the regions of user tasks drawn on
        their task's track (category "region"), by start time."""
        c = self.columns
        s = self.strings
        key, quads = self.slice_keys()
        spans = [
            Span(name=name, track=track, start_ns=c.s_ts[i], dur_ns=c.s_dur[i],
                 category=s[quads[key[i]][1]], args=args)
            for category in ("task", "region")
            for i, args, name, track in self._track_slices(category)
        ]
        spans.sort(key=lambda e: e.start_ns)
        return spans

    def logs(self) -> list[Instant]:
        """User log entries (exectrace.log): instants whose name is the message
        and whose category is the log's category."""
        return [e for e in self.instants() if "message" in e.args and "category" in e.args]

    def counters(self) -> list[Counter]:
        return sorted(
            (Counter(self._track_name(track), ts, value) for track, ts, value in self.columns.counters),
            key=lambda e: e.ts_ns,
        )

    def __iter__(self) -> Iterator[Event]:
        yield self.metadata
        yield from self.threads
        timed: list[Union[Slice, GCEvent, Instant, Counter, Step, Span, Sample]] = []
        timed.extend(self.slices())
        timed.extend(self.gc_events())
        timed.extend(self.instants())
        timed.extend(self.counters())
        timed.extend(self.steps())
        timed.extend(self.spans())
        timed.extend(self.samples())
        timed.sort(key=_event_time)
        yield from timed


def _as_int(value: Any, default: int) -> int:
    """An integer argument of a (possibly damaged) file, else `default`."""
    if not isinstance(value, (int, float)):
        return default
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


def _event_time(event: Union[Slice, GCEvent, Instant, Counter, Step, Span, Sample]) -> int:
    return event.ts_ns if isinstance(event, (Instant, Counter, Sample)) else event.start_ns


def read(path: Union[str, os.PathLike[str]], *, allow_damaged: bool = False) -> Trace:
    """Reads a trace file written by exectrace.

    Raises ExectraceError naming the problem when the file is missing, not a
    regular file, not a trace, or not written by exectrace; a damaged
    (e.g. truncated) trace raises too unless allow_damaged=True, in which
    case what is readable is returned and `trace.damage` says what is wrong.
    """
    name = os.fspath(path)
    data = _read_bytes(name)
    columns = _decode.decode(data)
    if columns.error and not (columns.tracks or columns.s_ts or columns.instants or columns.counters):
        # nothing decoded before the error: random bytes, a text file, a bomb
        raise ExectraceError(f"{name} is not a Perfetto trace ({columns.error})")
    trace = Trace(name, columns)
    if not trace.is_exectrace:
        detail = f"; it is damaged: {columns.error}" if columns.error else ""
        raise ExectraceError(
            f"{name} was not written by exectrace (it has no '{WINDOW_SLICE}' slice){detail}"
        )
    if trace.damage and not allow_damaged:
        raise ExectraceError(f"{name} is damaged: {trace.damage}")
    return trace


def read_metadata(path: Union[str, os.PathLike[str]]) -> Metadata:
    """Only the metadata of an exectrace file (versions, pid, window, records
    kept and lost, settings), reading no further than the window slice: fast
    enough to list a directory of large traces. Raises ExectraceError like read()."""
    name = os.fspath(path)
    data = _read_bytes(name, limit=METADATA_READ_BYTES)
    columns = _decode.decode(data, metadata_only=True)
    if columns.window_begin is None:
        if columns.error and columns.packets == 0:
            raise ExectraceError(f"{name} is not a Perfetto trace ({columns.error})")
        raise ExectraceError(
            f"{name} was not written by exectrace (no '{WINDOW_SLICE}' slice"
            f"{' in its first ' + str(METADATA_READ_BYTES // 1024) + ' KiB' if len(data) >= METADATA_READ_BYTES else ''})"
        )
    start, values = columns.window_begin
    duration = _as_int(values.get("window.duration_ns"), 0)
    return Metadata(dict(values), start, start + duration)


def _read_bytes(name: str, limit: Optional[int] = None) -> bytes:
    try:
        info = os.stat(name)
    except OSError as e:
        raise ExectraceError(f"cannot read {name}: {e.strerror or e}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ExectraceError(f"cannot read {name}: it is a directory, not a trace file")
    if not stat.S_ISREG(info.st_mode):
        raise ExectraceError(f"cannot read {name}: not a regular file")
    if info.st_size == 0:
        raise ExectraceError(f"{name} is empty")
    if info.st_size > MAX_FILE_BYTES:
        raise ExectraceError(f"{name} is too large to read ({info.st_size} bytes)")
    try:
        with open(name, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as e:
        raise ExectraceError(f"cannot read {name}: {e.strerror or e}") from None
