"""The parts of a trace file that are not calls: asyncio task tracks and their
flows, user tasks, regions of tasks and logs, and counter tracks.

They are few (thousands, where calls are millions), so they are encoded here
in Python as finished TracePackets that Capture.encode() appends after the
threads' sequences. They use one packet sequence of their own, with absolute
CLOCK_MONOTONIC timestamps, sorted by time.

Track layout (children of the process track):
  asyncio <task name> (<coroutine>)   one per task: its steps as slices
  task <name>                         one per user task: its span; a child
                                      track per thread for its regions
  <counter name>                      one per counter
  <thread> logs                       a child of the thread's track: its log
                                      entries as instants (on a track of their
                                      own so that every track's events stay in
                                      time order in the file)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from exectrace import _annotate, _tracecore
from exectrace import _perfetto as pf
from exectrace._protowire import (
    field_bytes,
    field_double,
    field_fixed64,
    field_str,
    field_varint,
)

#: The name of the instant that ends every file (on the exectrace track).
TRAILER = pf.TRAILER_NAME


def _event_head(type: int, track: int, name: str, categories: Sequence[str] = (),
                args: Optional[dict[str, Any]] = None) -> bytes:
    """A TrackEvent's type, track, name, categories and arguments."""
    body = field_varint(pf.EVENT_TYPE, type) + field_varint(pf.EVENT_TRACK_UUID, track)
    body += field_str(pf.EVENT_NAME, name)
    body += b"".join(field_str(pf.EVENT_CATEGORIES, c) for c in categories)
    return body + b"".join(pf.debug_annotation(k, v) for k, v in (args or {}).items())


@dataclass
class _Event:
    ts: int
    order: int  # at equal times: ends (0) before begins (1) before the rest (2)
    body: bytes  # the TrackEvent


@dataclass
class Extras:
    """Collects the extra tracks and events of one window, then encodes them."""

    pid: int
    sequence: int
    start_ns: int
    stop_ns: int
    descriptors: list[bytes] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)
    #: InternedData for packets that need incremental state (the samples')
    interned: bytes = b""
    #: (timestamp, TracePacket fields) of stack samples (PerfSample packets)
    samples: list[tuple[int, bytes]] = field(default_factory=list)
    _next_track: int = 0

    def new_track(self, name: str, parent: Optional[int] = None, counter_unit: str = "") -> int:
        uuid = pf.track_uuid(self.pid, "extra", self._next_track)
        self._next_track += 1
        body = field_varint(pf.TRACK_UUID, uuid) + field_str(pf.TRACK_NAME, name)
        body += field_varint(pf.TRACK_PARENT_UUID,
                             parent if parent is not None else pf.track_uuid(self.pid, "process"))
        if counter_unit:
            body += field_bytes(pf.TRACK_COUNTER,
                                field_varint(pf.COUNTER_UNIT, pf.COUNTER_UNITS[counter_unit]))
        self.descriptors.append(field_bytes(pf.PACKET_TRACK_DESCRIPTOR, body))
        return uuid

    def slice(self, track: int, start: int, end: int, name: str, categories: Sequence[str] = (),
              args: Optional[dict[str, Any]] = None, flows_out: Sequence[int] = (),
              flows_in: Sequence[int] = ()) -> None:
        begin = _event_head(pf.TYPE_SLICE_BEGIN, track, name, categories, args)
        begin += b"".join(field_fixed64(pf.EVENT_FLOW_IDS, f) for f in flows_out)
        begin += b"".join(field_fixed64(pf.EVENT_TERMINATING_FLOW_IDS, f) for f in flows_in)
        self.events.append(_Event(start, 1, begin))
        end_event = field_varint(pf.EVENT_TYPE, pf.TYPE_SLICE_END) + field_varint(pf.EVENT_TRACK_UUID, track)
        self.events.append(_Event(max(start, end), 0, end_event))

    def instant(self, track: int, ts: int, name: str, categories: Sequence[str] = (),
                args: Optional[dict[str, Any]] = None, flows_out: Sequence[int] = (),
                flows_in: Sequence[int] = ()) -> None:
        body = _event_head(pf.TYPE_INSTANT, track, name, categories, args)
        body += b"".join(field_fixed64(pf.EVENT_FLOW_IDS, f) for f in flows_out)
        body += b"".join(field_fixed64(pf.EVENT_TERMINATING_FLOW_IDS, f) for f in flows_in)
        self.events.append(_Event(ts, 2, body))

    def counter(self, track: int, ts: int, value: float) -> None:
        body = field_varint(pf.EVENT_TYPE, pf.TYPE_COUNTER) + field_varint(pf.EVENT_TRACK_UUID, track)
        self.events.append(_Event(ts, 2, body + field_double(pf.EVENT_DOUBLE_COUNTER_VALUE, float(value))))

    def packets(self) -> list[bytes]:
        """The encoded packets: the sequence's first packet, the tracks, the
        events by time (a track's events never go back in time), and last the
        trailer: an instant that tells a reader the file is whole."""
        self.events.sort(key=lambda e: (e.ts, e.order))
        self.events.append(_Event(self.stop_ns, 2, _event_head(
            pf.TYPE_INSTANT, pf.track_uuid(self.pid, "meta"), pf.TRAILER_NAME)))
        seq = field_varint(pf.PACKET_SEQUENCE_ID, self.sequence)
        out = [pf.sequence_header(self.sequence, self.start_ns)]
        out += [seq + field_varint(pf.PACKET_TIMESTAMP, self.start_ns) + d for d in self.descriptors]
        needs_state = field_varint(pf.PACKET_SEQUENCE_FLAGS, pf.SEQ_NEEDS_INCREMENTAL_STATE)
        if self.interned:
            out.append(seq + field_varint(pf.PACKET_TIMESTAMP, self.start_ns) + needs_state
                       + field_bytes(pf.PACKET_INTERNED_DATA, self.interned))
        trailer = self.events.pop()
        out += [seq + field_varint(pf.PACKET_TIMESTAMP, e.ts) + field_bytes(pf.PACKET_TRACK_EVENT, e.body)
                for e in self.events]
        out += [seq + field_varint(pf.PACKET_TIMESTAMP, ts) + needs_state + body for ts, body in self.samples]
        out.append(seq + field_varint(pf.PACKET_TIMESTAMP, trailer.ts)
                   + field_bytes(pf.PACKET_TRACK_EVENT, trailer.body))
        return out


# ------------------------------------------------------------------ asyncio

def add_asyncio(extras: Extras, capture: Any, names: Sequence[tuple[str, str, int]],
                thread_names: Sequence[str], slow_step_ns: int) -> dict[str, int]:
    """A track per asyncio task with its steps; a flow from the step that
    created a task to the task's first step; steps of slow_step_ns or more
    are flagged (category "asyncio,slow", argument slow=true)."""
    records = capture.async_records()
    if not records:
        return {"tasks": 0, "steps": 0, "slow_steps": 0}
    tasks = capture.tasks()
    steps: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)  # task -> (start, end, thread, func)
    steps_by_thread: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # thread -> (start, end, task)
    creations: list[tuple[int, int, int]] = []  # (time, thread, created task)
    for kind, task, thread, func, start, end in records:
        if kind == "step":
            steps[task].append((start, end, thread, func))
            steps_by_thread[thread].append((start, end, task))
        else:
            creations.append((start, thread, task))
    for task_steps in steps.values():
        task_steps.sort()
    for thread_steps in steps_by_thread.values():
        thread_steps.sort()

    # flows: creator's step (same thread, containing the create_task call)
    # -> the created task's first step after it
    flows_out: dict[tuple[int, int], list[int]] = defaultdict(list)  # (task, step start) -> flow ids
    flows_in: dict[tuple[int, int], list[int]] = defaultdict(list)
    for when, thread, created in creations:
        creator = next((s for s in reversed(steps_by_thread.get(thread, ()))
                        if s[0] <= when <= s[1]), None)
        target = next((s for s in steps.get(created, ()) if s[0] >= when), None)
        if creator is None or target is None or creator[2] == created:
            continue
        flow = pf.track_uuid(extras.pid, "extra", 0x10000000 + created)
        flows_out[(creator[2], creator[0])].append(flow)
        flows_in[(created, target[0])].append(flow)

    n_steps = n_slow = 0
    for task_number in sorted(steps):
        task = tasks[task_number] if task_number < len(tasks) else None
        task_name, coro_name = _task_names(task)
        track = extras.new_track(f"asyncio {task_name} ({coro_name})" if coro_name else
                                 f"asyncio {task_name}")
        for start, end, thread, func in steps[task_number]:
            slow = end - start >= slow_step_ns > 0
            n_steps += 1
            n_slow += slow
            step_name = names[func][0] if 0 <= func < len(names) else coro_name
            args: dict[str, Any] = {"task": task_name,
                                    "thread": thread_names[thread] if 0 <= thread < len(thread_names) else ""}
            if slow:
                args["slow"] = True
            extras.slice(track, start, end, step_name,
                         categories=("asyncio", "slow") if slow else ("asyncio",), args=args,
                         flows_out=flows_out.get((task_number, start), ()),
                         flows_in=flows_in.get((task_number, start), ()))
    return {"tasks": len(steps), "steps": n_steps, "slow_steps": n_slow}


def _task_names(task: Any) -> tuple[str, str]:
    """(task name, coroutine qualname) of an asyncio task; never raises."""
    try:
        name = str(task.get_name())
    except Exception:
        name = "task"
    try:
        coro = task.get_coro()
        coro_name = str(getattr(coro, "__qualname__", "") or getattr(coro, "__name__", ""))
    except Exception:
        coro_name = ""
    return name, coro_name


# -------------------------------------------------------- user annotations

def add_annotations(extras: Extras, capture: Any, thread_names: Sequence[str]) -> dict[str, int]:
    """Logs as instants on their thread's track; user tasks as spans on a
    track of their own (clipped to the window); a task's regions on a child
    track per thread."""
    events = capture.events()
    if not events:
        _annotate.take_task_args((), (), extras.start_ns)  # drops arguments no window claimed
        return {"logs": 0, "tasks": 0}
    task_tracks: dict[int, int] = {}
    task_spans: dict[int, list[Any]] = {}  # id -> [name, begin or None, end or None]
    region_tracks: dict[tuple[int, int], int] = {}
    log_tracks: dict[int, int] = {}
    open_regions: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    logs = 0

    def thread_name(index: int) -> str:
        return thread_names[index] if 0 <= index < len(thread_names) else ""

    def task_track(task: int, name: str) -> int:
        if task not in task_tracks:
            task_tracks[task] = extras.new_track(f"task {name}")
            task_spans[task] = [name, None, None]
        return task_tracks[task]

    names_by_task = {task: a for kind, _ts, _t, task, a, _b in events if kind == "task_begin"}
    # arguments set after a task began (exectrace.middleware, exectrace.otel)
    late_args = _annotate.take_task_args((t for k, _ts, _t, t, _a, _b in events if k == "task_end"),
                                         (t for k, _ts, _t, t, _a, _b in events if k.startswith("task")),
                                         extras.start_ns)
    for kind, ts, thread, task, a, b in events:
        if kind == "log":
            if thread < 0:
                continue
            logs += 1
            args: dict[str, Any] = {"category": a, "message": b, "thread": thread_name(thread)}
            if task and task in names_by_task:
                args["task"] = names_by_task[task]
            if thread not in log_tracks:
                log_tracks[thread] = extras.new_track(
                    f"{thread_name(thread)} logs",
                    parent=pf.track_uuid(extras.pid, "thread", thread))
            extras.instant(log_tracks[thread], ts, str(b), categories=(str(a),), args=args)
        elif kind in ("task_begin", "task_end"):
            task_track(task, str(a))
            task_spans[task][1 if kind == "task_begin" else 2] = ts
        elif kind in ("region_begin", "region_end") and thread >= 0:
            name = names_by_task.get(task, f"#{task}")
            parent = task_track(task, name)
            key = (task, thread)
            if key not in region_tracks:
                region_tracks[key] = extras.new_track(thread_name(thread), parent=parent)
            if kind == "region_begin":
                open_regions[key].append((ts, str(a)))
            elif open_regions[key]:
                start, region = open_regions[key].pop()
                region_args = {"task": name, "thread": thread_name(thread)}
                region_args.update((k, v) for k, v in late_args.get(task, {}).items()
                                   if k in _annotate.REGION_KEYS)
                extras.slice(region_tracks[key], start, ts, region, categories=("region",),
                             args=region_args)
    for key, stack in open_regions.items():  # still open when the window closed
        while stack:
            start, region = stack.pop()
            extras.slice(region_tracks[key], start, extras.stop_ns, region, categories=("region",),
                         args={"task": names_by_task.get(key[0], ""), "unfinished": True})
    for task, (name, begin, end) in task_spans.items():
        args = {"id": task, **late_args.get(task, {})}
        if begin is None:
            args["began_before_window"] = True
        if end is None:
            args["unfinished"] = True
        extras.slice(task_tracks[task], extras.start_ns if begin is None else begin,
                     extras.stop_ns if end is None else end, str(name), categories=("task",), args=args)
    return {"logs": logs, "tasks": len(task_spans)}


# ------------------------------------------------------------------ counters

def add_counters(extras: Extras, samples: Sequence[tuple[str, str, Sequence[tuple[int, float]]]]) -> int:
    """Counter tracks: samples is [(name, unit, [(ts_ns, value), ...])]."""
    count = 0
    for name, unit, values in samples:
        inside = [(ts, v) for ts, v in values if extras.start_ns <= ts <= extras.stop_ns]
        if not inside:
            continue
        track = extras.new_track(name, counter_unit=unit)
        for ts, value in inside:
            extras.counter(track, ts, value)
        count += len(inside)
    return count


# ------------------------------------------------------------- callstacks


class Callstacks:
    """The interned callstacks of an `events` window, named: each frame is a
    function with its file and the line its bytecode offset is on."""

    def __init__(self, capture: Any, names: Sequence[tuple[str, str, int]]) -> None:
        frames, self.nodes = capture.callstacks()
        functions = capture.functions()
        self.block_ids: set[int] = capture.block_callstacks()
        # per frame id - 1: (function name, file, line)
        self.frames: list[tuple[str, str, int]] = []
        for func, offset in frames:
            name, file, line = names[func] if 0 <= func < len(names) else ("?", "", 0)
            entry = functions[func] if 0 <= func < len(functions) else None
            if entry is not None and entry[0] == "py":
                line = _tracecore.line_of(entry[1], offset)
            self.frames.append((name, file or "", line or 0))

    def frame_ids(self, stack: int) -> list[int]:
        """The frame ids of a callstack, outermost first."""
        out: list[int] = []
        while 0 < stack <= len(self.nodes):
            parent, frame = self.nodes[stack - 1]
            out.append(frame)
            stack = parent
        out.reverse()
        return out

    def text(self, stack: int) -> str:
        """A callstack as text, innermost frame first, one per line."""
        lines = []
        for frame in reversed(self.frame_ids(stack)):
            name, file, line = self.frames[frame - 1]
            lines.append(f"{name} ({file}:{line})" if file else name)
        return "\n".join(lines)

    def texts(self) -> list[str]:
        """Per callstack id - 1: its text when a kept wait names it, else ""."""
        return [self.text(i) if i in self.block_ids else "" for i in range(1, len(self.nodes) + 1)]


def add_samples(extras: Extras, capture: Any, stacks: Callstacks, pid: int,
                threads: Sequence[tuple[int, int, int, Any]]) -> tuple[int, int]:
    """The stack samples as PerfSample packets (thread, callstack), with the
    frames and callstacks they name interned on the extras' sequence: the
    Perfetto UI draws them per thread and shows a flame graph of a selected
    range. Returns the number of samples kept in the ring (each is one of its
    records) and the number written (those with a callstack)."""
    samples = capture.samples()
    if not samples:
        return 0, 0
    tids = [native_id or (ident & 0x7FFFFFFF) for _index, ident, native_id, _thread in threads]
    used = sorted({stack for _t, _ts, stack in samples if stack})
    # interned: function names, mapping paths (files), mappings, frames, callstacks
    strings: dict[str, int] = {}
    files: dict[str, int] = {}
    frames_used: set[int] = set()
    callstack_frames: dict[int, list[int]] = {}
    for stack in used:
        ids = stacks.frame_ids(stack)
        callstack_frames[stack] = ids
        frames_used.update(ids)
    interned = bytearray()

    def entry(table: int, iid: int, body: bytes) -> bytes:
        return field_bytes(table, field_varint(pf.INTERNED_IID, iid) + body)

    for frame in sorted(frames_used):
        name, file, line = stacks.frames[frame - 1]
        if name not in strings:
            strings[name] = len(strings) + 1
            interned += entry(pf.INTERNED_FUNCTION_NAMES, strings[name], field_str(pf.INTERNED_STRING, name))
        if file not in files:
            files[file] = len(files) + 1
            interned += entry(pf.INTERNED_MAPPING_PATHS, files[file], field_str(pf.INTERNED_STRING, file or "?"))
            interned += entry(pf.INTERNED_MAPPINGS, files[file],
                              field_varint(pf.MAPPING_PATH_STRING_IDS, files[file]))
        interned += entry(pf.INTERNED_FRAMES, frame, field_varint(pf.FRAME_FUNCTION_NAME_ID, strings[name])
                          + field_varint(pf.FRAME_MAPPING_ID, files[file])
                          + field_varint(pf.FRAME_REL_PC, max(line, 0)))
    for stack in used:
        interned += entry(pf.INTERNED_CALLSTACKS, stack, b"".join(
            field_varint(pf.CALLSTACK_FRAME_IDS, f) for f in callstack_frames[stack]))
    extras.interned = bytes(interned)
    n = 0
    for thread, ts, stack in samples:
        if not stack or not 0 <= thread < len(tids):
            continue
        body = (field_varint(pf.PERF_SAMPLE_PID, pid) + field_varint(pf.PERF_SAMPLE_TID, tids[thread])
                + field_varint(pf.PERF_SAMPLE_CALLSTACK_IID, stack))
        extras.samples.append((ts, field_bytes(pf.PACKET_PERF_SAMPLE, body)))
        n += 1
    return len(samples), n


def add_handoffs(extras: Extras, capture: Any, thread_names: Sequence[str],
                 stacks: Optional[Callstacks]) -> int:
    """Traced locks' hand-offs (`events` mode): an instant where a thread
    released a lock others waited for (with its callstack), one where the
    waiter it woke got the lock, and a flow from the first to the second, on
    a "<thread> lock hand-offs" child track of each thread. Returns how many
    hand-offs reached a waiter."""
    releases: dict[int, tuple[int, int, int]] = {}  # flow -> (ts, thread, stack)
    acquires: list[tuple[int, int, int]] = []  # (ts, thread, flow)
    for kind, ts, thread, value, _a, _b in capture.events():
        if kind == "handoff_release" and thread >= 0:
            releases[value >> 24] = (ts, thread, value & 0xFFFFFF)
        elif kind == "handoff_acquire" and thread >= 0:
            acquires.append((ts, thread, value))
    tracks: dict[int, int] = {}

    def track(thread: int) -> int:
        if thread not in tracks:
            name = thread_names[thread] if 0 <= thread < len(thread_names) else f"thread {thread}"
            tracks[thread] = extras.new_track(f"{name} lock hand-offs",
                                              parent=pf.track_uuid(extras.pid, "thread", thread))
        return tracks[thread]

    n = 0
    for ts, thread, flow in acquires:
        release = releases.get(flow)
        if release is None:
            continue
        r_ts, r_thread, r_stack = release
        flow_id = pf.track_uuid(extras.pid, "extra", 0x20000000 + flow)
        to = thread_names[thread] if 0 <= thread < len(thread_names) else ""
        args: dict[str, Any] = {"to": to}
        if stacks is not None and r_stack:
            args["stack"] = stacks.text(r_stack)
        extras.instant(track(r_thread), r_ts, "lock released", categories=("lock",), args=args,
                       flows_out=(flow_id,))
        frm = thread_names[r_thread] if 0 <= r_thread < len(thread_names) else ""
        extras.instant(track(thread), max(ts, r_ts), "lock acquired", categories=("lock",),
                       args={"from": frm}, flows_in=(flow_id,))
        n += 1
    return n
