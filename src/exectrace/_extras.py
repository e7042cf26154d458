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

import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from exectrace import _annotate, _tracecore
from exectrace._protowire import field_bytes, field_varint, varint

# TracePacket / TrackEvent / TrackDescriptor field numbers
_TIMESTAMP = 8
_SEQUENCE_ID = 10
_TRACK_EVENT = 11
_SEQUENCE_FLAGS = 13
_TIMESTAMP_CLOCK_ID = 58
_PACKET_DEFAULTS = 59
_TRACK_DESCRIPTOR = 60
_SLICE_BEGIN, _SLICE_END, _INSTANT, _COUNTER = 1, 2, 3, 4
_CLOCK_MONOTONIC = 3
_UNIT = {"ns": 1, "count": 2, "bytes": 3}
#: The name of the instant that ends every file (on the exectrace track).
TRAILER = "exectrace end of file"


def _str(number: int, value: str) -> bytes:
    # valid UTF-8 whatever the string holds: a lone surrogate is written as \udcxx
    return field_bytes(number, value.encode("utf-8", "backslashreplace"))


def _fixed64(number: int, value: int) -> bytes:
    return varint((number << 3) | 1) + struct.pack("<Q", value & ((1 << 64) - 1))


def _double(number: int, value: float) -> bytes:
    return varint((number << 3) | 1) + struct.pack("<d", value)


def _annotation(name: str, value: Any) -> bytes:
    body = _str(10, name)
    if isinstance(value, bool):
        body += field_varint(2, int(value))
    elif isinstance(value, int):
        body += field_varint(3 if value >= 0 else 4, value)
    elif isinstance(value, float):
        body += _double(5, value)
    else:
        body += _str(6, str(value))
    return field_bytes(4, body)


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
    _next_track: int = 0

    def new_track(self, name: str, parent: Optional[int] = None, counter_unit: str = "") -> int:
        uuid = _tracecore.track_uuid(self.pid, "extra", self._next_track)
        self._next_track += 1
        body = field_varint(1, uuid) + _str(2, name)
        body += field_varint(5, parent if parent is not None else _tracecore.track_uuid(self.pid, "process"))
        if counter_unit:
            body += field_bytes(8, field_varint(3, _UNIT[counter_unit]))
        self.descriptors.append(field_bytes(_TRACK_DESCRIPTOR, body))
        return uuid

    def slice(self, track: int, start: int, end: int, name: str, categories: Sequence[str] = (),
              args: Optional[dict[str, Any]] = None, flows_out: Sequence[int] = (),
              flows_in: Sequence[int] = ()) -> None:
        begin = field_varint(9, _SLICE_BEGIN) + field_varint(11, track) + _str(23, name)
        begin += b"".join(_str(22, c) for c in categories)
        begin += b"".join(_annotation(k, v) for k, v in (args or {}).items())
        begin += b"".join(_fixed64(47, f) for f in flows_out)
        begin += b"".join(_fixed64(48, f) for f in flows_in)
        self.events.append(_Event(start, 1, begin))
        self.events.append(_Event(max(start, end), 0, field_varint(9, _SLICE_END) + field_varint(11, track)))

    def instant(self, track: int, ts: int, name: str, categories: Sequence[str] = (),
                args: Optional[dict[str, Any]] = None) -> None:
        body = field_varint(9, _INSTANT) + field_varint(11, track) + _str(23, name)
        body += b"".join(_str(22, c) for c in categories)
        body += b"".join(_annotation(k, v) for k, v in (args or {}).items())
        self.events.append(_Event(ts, 2, body))

    def counter(self, track: int, ts: int, value: float) -> None:
        self.events.append(_Event(ts, 2, field_varint(9, _COUNTER) + field_varint(11, track) + _double(44, float(value))))

    def packets(self) -> list[bytes]:
        """The encoded packets: the sequence's first packet, the tracks, the
        events by time (a track's events never go back in time), and last the
        trailer: an instant that tells a reader the file is whole."""
        self.events.sort(key=lambda e: (e.ts, e.order))
        self.events.append(_Event(self.stop_ns, 2, field_varint(9, _INSTANT) + field_varint(
            11, _tracecore.track_uuid(self.pid, "meta")) + _str(23, TRAILER)))
        seq = field_varint(_SEQUENCE_ID, self.sequence)
        first = seq + field_varint(_SEQUENCE_FLAGS, 1) + field_varint(_TIMESTAMP, self.start_ns)
        first += field_varint(_TIMESTAMP_CLOCK_ID, _CLOCK_MONOTONIC)
        first += field_bytes(_PACKET_DEFAULTS, field_varint(_TIMESTAMP_CLOCK_ID, _CLOCK_MONOTONIC))
        out = [first]
        out += [seq + field_varint(_TIMESTAMP, self.start_ns) + d for d in self.descriptors]
        out += [seq + field_varint(_TIMESTAMP, e.ts) + field_bytes(_TRACK_EVENT, e.body) for e in self.events]
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
        flow = _tracecore.track_uuid(extras.pid, "extra", 0x10000000 + created)
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
                    parent=_tracecore.track_uuid(extras.pid, "thread", thread))
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
