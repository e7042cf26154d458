"""Exporting a trace file to other tools' formats.

``to_chrome_json(trace, out)`` writes Chrome's Trace Event Format (JSON), which
chrome://tracing, the Perfetto UI and speedscope open: one complete event
(``"ph": "X"``) per slice, timestamps in microseconds with the nanoseconds kept
as three decimals, thread and process names as metadata events. Tracks that
are not threads (``GC``, ``exectrace``) become pseudo threads of the process
with the smallest thread ids no real thread uses (``GC`` is usually tid 1:
trace_processor would merge a tid 0 into the main thread).
The JSON is written as it is made, a few thousand events at a time.

``to_pprof(trace, out)`` writes a gzipped pprof ``profile.proto`` (``go tool
pprof``, pprof-compatible viewers) with two sample types, ``wall`` (the self
time of each call stack) and ``blocked`` (the self time of C calls that block:
sleeps, I/O, locks, waiting for a child process), in nanoseconds. A call's
stack is the chain of calls enclosing it on its thread; each sample carries
``thread`` (name) and ``tid`` labels: there is one sample per (thread, stack).
GC pauses are not samples of their own: their time is in the calls they
interrupted.

Both read ``trace.columns`` directly: a file of a million slices converts in a
few seconds. When the trace is large and stderr is a terminal, a percentage is
shown on stderr while the slices are converted.
"""

from __future__ import annotations

import array
import gzip
import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Optional, Union

from exectrace import _summarize
from exectrace._files import is_tty
from exectrace._protowire import field_bytes, field_varint, varint
from exectrace.blocking import REASONS, reason_of_slice
from exectrace.reader import Trace

PathOrStream = Union[str, "os.PathLike[str]", IO[str], IO[bytes]]

#: A progress line is shown for traces with at least this many slices.
PROGRESS_MIN_SLICES = 200_000
#: Events written to the output per write() call.
_CHUNK = 4096
#: Slices converted between two looks at the progress line (pprof).
_PROGRESS_STEP = 65536
#: Category of Python function calls (the file leaves it empty).
PYTHON_CATEGORY = "python"


# --------------------------------------------------------------------------
# shared


class _Progress:
    """'exectrace convert: 42%' on stderr, only when it is a terminal."""

    def __init__(self, total: int, label: str, enabled: Optional[bool]) -> None:
        if enabled is None:
            enabled = total >= PROGRESS_MIN_SLICES and is_tty(sys.stderr)
        self.enabled = enabled and total > 0
        self.total = total
        self.label = label
        self.shown = -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        percent = min(100, done * 100 // self.total)
        if percent != self.shown:
            self.shown = percent
            sys.stderr.write(f"\r{self.label}: {percent:3d}%")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.shown >= 0:
            sys.stderr.write("\r" + " " * (len(self.label) + 6) + "\r")
            sys.stderr.flush()


def slice_order(trace: Trace) -> list[int]:
    """Indices of all slices in (timestamp, depth) order: on every track an
    enclosing call comes before the calls it encloses, even at the same ns.
    (The commands use _summarize.time_order, the same order natively.)"""
    c = trace.columns
    n = len(c.s_ts)
    if n == 0:
        return []
    ts, depth = c.s_ts, c.s_depth
    t0, d0 = min(ts), min(depth)
    span = max(depth) - d0 + 1
    # one integer key per slice sorts about twice as fast as (ts, depth) tuples
    keys = [(t - t0) * span + (d - d0) for t, d in zip(ts, depth)]
    return sorted(range(n), key=keys.__getitem__)


def _default_pid(trace: Trace) -> int:
    pid = trace.metadata.get("process.pid")
    if isinstance(pid, int) and not isinstance(pid, bool):
        return pid
    for t in trace.tracks.values():
        if t.get("pid"):
            return int(t["pid"])
    return 0


# --------------------------------------------------------------------------
# Chrome JSON


def _us(ns: int) -> str:
    """Nanoseconds as a JSON number of microseconds, exactly (three decimals)."""
    if ns < 0:
        return "-" + _us(-ns)
    q, r = divmod(ns, 1000)
    return f"{q}.{r:03d}"


def _json(value: Any) -> str:
    # ASCII only: a lone surrogate (an undecodable file name) cannot break the output
    return json.dumps(value, default=str, allow_nan=False, separators=(",", ":"))


def _clean(value: Any) -> Any:
    """`value` with non-finite floats (not JSON) as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class _ChromeThreads:
    """(pid, tid) of every track that holds events, and the metadata events naming them."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.default_pid = _default_pid(trace)
        self.where: dict[int, tuple[int, int]] = {}
        self.meta: list[str] = []
        self.used: dict[int, set[int]] = {}  # pid -> tids taken
        self.next_pseudo: dict[int, int] = {}
        self.processes: dict[int, str] = {}
        tracks = trace.tracks
        for t in tracks.values():
            if t.get("kind") == "process" and t.get("pid") is not None:
                self.processes.setdefault(int(t["pid"]), t.get("name") or "")
        threads = sorted(
            (uuid for uuid, t in tracks.items() if t.get("kind") == "thread"),
            key=lambda u: (tracks[u].get("tid") is None, tracks[u].get("tid") or 0, u),
        )
        for uuid in threads:
            t = tracks[uuid]
            pid = int(t["pid"]) if t.get("pid") is not None else self.default_pid
            tid = t.get("tid")
            taken = self.used.setdefault(pid, set())
            if tid is None or int(tid) in taken:
                # a thread id reused within the window (or none): its own tid
                tid = self._free_tid(pid, start=1 << 30)
            tid = int(tid)
            taken.add(tid)
            self._name(uuid, pid, tid, t.get("name") or f"thread {tid}", sort_index=0)

    def _free_tid(self, pid: int, start: int = 1) -> int:
        # never 0: trace_processor's JSON importer puts tid 0 on the process's
        # main thread; never the pid, the main thread's tid
        taken = self.used.setdefault(pid, set())
        taken.update((0, pid))
        tid = max(start, self.next_pseudo.get(pid, 1))
        while tid in taken:
            tid += 1
        self.next_pseudo[pid] = tid + 1
        return tid

    def _name(self, uuid: int, pid: int, tid: int, name: str, sort_index: int) -> None:
        self.where[uuid] = (pid, tid)
        if pid not in self.processes:
            self.processes[pid] = ""
        self.meta.append(
            f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_name","args":{{"name":{_json(name)}}}}}'
        )
        self.meta.append(
            f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_sort_index",'
            f'"args":{{"sort_index":{sort_index}}}}}'
        )

    def pid_of(self, uuid: int) -> int:
        """The process of a track: its own pid, else its ancestors'."""
        seen = set()
        at: Optional[int] = uuid
        t = self.trace.tracks.get(uuid)
        while t is not None and at not in seen:
            seen.add(at)
            if t.get("pid") is not None:
                return int(t["pid"])
            at = t.get("parent")
            t = self.trace.tracks.get(at) if at is not None else None
        return self.default_pid

    def thread_of(self, uuid: int) -> tuple[int, int]:
        """(pid, tid) of a track; a track that is not a thread gets a pseudo thread."""
        found = self.where.get(uuid)
        if found is None:
            pid = self.pid_of(uuid)
            tid = self._free_tid(pid)
            self.used[pid].add(tid)
            name = (self.trace.tracks.get(uuid) or {}).get("name") or f"track {uuid}"
            self._name(uuid, pid, tid, name, sort_index=1_000_000 + tid)
            found = self.where[uuid]
        return found

    def process_events(self) -> list[str]:
        out = []
        for pid, name in sorted(self.processes.items()):
            label = name or str(self.trace.metadata.get("process.argv", "")) or "python"
            out.append(
                f'{{"ph":"M","pid":{pid},"tid":0,"name":"process_name","args":{{"name":{_json(label)}}}}}'
            )
        return out


@contextmanager
def _text_output(out: PathOrStream, compress: Optional[bool]) -> Iterator[Callable[[str], Any]]:
    """The write() of `out`: a path (gzipped when `compress`, or when it is
    None and the name ends in .gz), a text or a binary stream (left open)."""
    if isinstance(out, (str, os.PathLike)):
        name = os.fspath(out)
        if compress or (compress is None and name.endswith(".gz")):
            with gzip.open(name, "wt", encoding="utf-8", compresslevel=6) as z:
                yield z.write
        else:
            with open(name, "w", encoding="utf-8", buffering=1 << 20) as f:
                yield f.write
    elif isinstance(out, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(out, "mode", ""):
        binary: Any = out
        yield lambda text: binary.write(text.encode("utf-8", "surrogatepass"))
        binary.flush()
    else:
        text: Any = out
        yield text.write
        text.flush()


def to_chrome_json(trace: Trace, out: PathOrStream, *, compress: Optional[bool] = None,
                   progress: Optional[bool] = None) -> int:
    """Writes `trace` as Chrome Trace Event Format JSON to a path or stream.

    Returns the number of complete ("X") events written (one per slice).
    `compress`: gzip a path's contents (None: when the name ends in .gz).
    `progress`: True/False forces the progress line on/off; None shows it for
    large traces when stderr is a terminal.
    """
    c = trace.columns
    strings = trace.strings
    tracks = trace.tracks
    slot, uuids, counts = trace.track_index()
    key, quads = trace.slice_keys()
    order = _summarize.time_order(c.s_ts, c.s_depth)
    threads = _ChromeThreads(trace)
    enc = [_json(s) for s in strings]
    meter = _Progress(len(order), "exectrace convert", progress)

    # per-track event prefix; the tracks that are not threads get their
    # pseudo threads first (GC, then the others by name)
    slice_tracks = {u for u, n in zip(uuids, counts) if n}
    used = slice_tracks | {inst[0] for inst in c.instants}
    for uuid in sorted(used, key=lambda u: ((tracks.get(u) or {}).get("name") != "GC",
                                             str((tracks.get(u) or {}).get("name")), u)):
        threads.thread_of(uuid)
    prefixes: list[bytes] = []  # by track index
    thread_track: list[bool] = []
    for uuid in uuids:
        if uuid in slice_tracks:
            pid, tid = threads.thread_of(uuid)
            prefixes.append(f'{{"ph":"X","pid":{pid},"tid":{tid},"ts":'.encode("ascii"))
        else:
            prefixes.append(b"")
        thread_track.append((tracks.get(uuid) or {}).get("kind") == "thread")

    with _text_output(out, compress) as write:
        write('{"traceEvents":[\n')
        head = threads.process_events() + threads.meta
        if head:
            write(",\n".join(head))
        first = not head
        # The text of each slice but its times: one string per function
        # (name, category, file, line) shared by all its calls, and one of
        # its own for the few slices with arguments or not on a thread.
        python_cat = _json(PYTHON_CATEGORY)
        tails = [_slice_tail(q, enc, python_cat, None).encode("ascii") for q in quads]
        overrides: dict[int, bytes] = {}
        for i in sorted(set(_summarize.nonnegative(c.s_args)) | set(trace._other_slices())):
            args_i = c.s_args[i]
            track_index = slot[i]
            default = python_cat if thread_track[track_index] else _json(
                ((tracks.get(uuids[track_index]) or {}).get("name") or "track").lower())
            overrides[i] = _slice_tail(quads[key[i]], enc, default,
                                       c.args[args_i] if args_i >= 0 else None).encode("ascii")
        covered_from = trace.coverage[0]
        if covered_from > trace.metadata.start_ns:  # records were lost: mark the frames open at the cut
            for i in _summarize.below(c.s_ts, covered_from):
                if thread_track[slot[i]]:
                    extra = dict(c.args[c.s_args[i]]) if c.s_args[i] >= 0 else {}
                    extra["began_before_coverage"] = True
                    overrides[i] = _slice_tail(quads[key[i]], enc, python_cat, extra).encode("ascii")
        step = _CHUNK * 4
        for start in range(0, len(order), step):
            # ns as µs with three decimals, natively
            text = _summarize.chrome_x(order, start, start + step, slot, key, c.s_ts, c.s_dur, prefixes,
                                       tails, overrides)
            write(("\n" if first else ",\n") + text)
            first = False
            meter.update(min(start + step, len(order)))
        count = len(order)
        del tails, overrides, order

        rest: list[str] = []
        for inst in c.instants:
            track, when, name, cat, iargs, message = inst
            pid, tid = threads.thread_of(track)
            args = dict(iargs or {})
            if message is not None:
                args["message"] = message
            category = strings[cat] if cat >= 0 else ((tracks.get(track) or {}).get("name") or "").lower()
            rest.append(
                f'{{"ph":"i","s":"t","pid":{pid},"tid":{tid},"ts":{_us(when)},"name":{_name(enc, name)},'
                f'"cat":{_json(category)},"args":{_json(_clean(args))}}}'
            )
        for track, when, value in c.counters:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            pid = threads.pid_of(track)
            name = (tracks.get(track) or {}).get("name") or f"counter {track}"
            rest.append(
                f'{{"ph":"C","pid":{pid},"tid":0,"ts":{_us(when)},"name":{_json(name)},'
                f'"args":{{"value":{_json(value)}}}}}'
            )
        if rest:
            write(("\n" if first else ",\n") + ",\n".join(rest))
        meta = dict(trace.metadata.values)
        meta["exectrace.converted_from"] = os.path.basename(trace.path)
        meta["exectrace.covered_from_ns"], meta["exectrace.covered_until_ns"] = trace.coverage
        meta["exectrace.unrecorded_ns"] = max(0, (trace.metadata.end_ns - trace.metadata.start_ns)
                                              - (trace.coverage[1] - trace.coverage[0]))
        if trace.damage:
            meta["exectrace.damage"] = trace.damage
        write('\n],\n"displayTimeUnit":"ns",\n"metadata":' + _json(_clean(meta)) + "}\n")
    meter.done()
    return count


def _slice_tail(key: tuple[int, int, int, int], enc: list[str], default_cat: str,
                extra: Optional[dict[str, Any]]) -> str:
    """The end of an X event: name, category and args."""
    name, cat, file, line = key
    args: dict[str, Any] = {}
    parts = []
    if file >= 0:
        parts.append(f'"file":{enc[file]},"line":{line}')
    if extra:
        args = {k: v for k, v in _clean(extra).items() if k not in ("file", "line")}
        if args:
            parts.append(_json(args)[1:-1])
    category = enc[cat] if cat >= 0 else default_cat
    return f'"name":{_name(enc, name)},"cat":{category},"args":{{{",".join(parts)}}}}}'


def _name(enc: list[str], index: int) -> str:
    return enc[index] if index >= 0 else '"?"'


# --------------------------------------------------------------------------
# pprof (profile.proto, hand-encoded)


def _uint(field: int, value: int) -> bytes:
    """A varint field (omitted when 0, as proto3 does)."""
    return field_varint(field, value) if value else b""


def _packed(field: int, values: list[int]) -> bytes:
    return field_bytes(field, b"".join(varint(v) for v in values)) if values else b""


class _Strings:
    """A pprof string table: index 0 is ""."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}
        self.table: list[str] = [""]

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def _reasons(reason: Optional[str]) -> Optional[tuple[str, ...]]:
    """--reason's value as the reasons it selects (None: no selection)."""
    if reason is None:
        return None
    if reason == "all":
        return REASONS
    if reason not in REASONS:
        raise ValueError(f"unknown blocking reason {reason!r}; use one of {', '.join(REASONS)} or all")
    return (reason,)


def build_pprof(trace: Trace, *, progress: Optional[bool] = None, reason: Optional[str] = None) -> bytes:
    """The (uncompressed) serialized pprof Profile of `trace`.

    reason: "io", "lock", "sleep", "subprocess" or "all": a blocking profile
    instead, one sample type per reason selected (nanoseconds blocked).
    Times are clipped to the span the records cover (trace.coverage): a
    frame open when coverage began counts only its covered part."""
    selected = _reasons(reason)
    strings = trace.strings
    tracks = trace.tracks
    c = trace.columns
    thread_of_slot, thread_uuids = trace.thread_slots()
    slot = trace.track_index()[0]
    key, quads = trace.slice_keys()
    # each key's location id (one per (name, file, line)) and blocking reason
    locations: dict[tuple[int, int, int], int] = {}  # (name, file, line) -> location id
    loc_of_key = array.array("i", bytes(4 * len(quads)))
    reason_of_key = array.array("b", bytes(len(quads)))
    for k, (name, cat, file, line) in enumerate(quads):
        loc = locations.get((name, file, line))
        if loc is None:
            loc = locations[(name, file, line)] = len(locations) + 1
        loc_of_key[k] = loc
        why = reason_of_slice(strings[name] if name >= 0 else "", strings[cat] if cat >= 0 else "")
        reason_of_key[k] = REASONS.index(why) if why is not None else -1
    covered_from = trace.coverage[0]
    if covered_from <= trace.metadata.start_ns:
        covered_from = -(2**63)  # nothing lost: no clipping
    # the merged call tree, natively (exectrace._summarize)
    parent_of, loc_of_node, wall, blocked, node_reason = _summarize.call_tree(
        slot, thread_of_slot, c.s_ts, c.s_dur, c.s_depth, key, loc_of_key, reason_of_key,
        len(thread_uuids), covered_from)
    root_thread: dict[int, tuple[str, int]] = {}  # root node -> (thread name, tid)
    for root, uuid in enumerate(thread_uuids):
        t = tracks[uuid]
        root_thread[root] = (t.get("name") or f"thread {t.get('tid') or uuid}", int(t.get("tid") or 0))

    st = _Strings()
    out = bytearray()
    # sample_type = 1, period_type = 11: ValueType{type = 1, unit = 2}
    types = ("wall", "blocked") if selected is None else selected
    for type_name in types:
        out += field_bytes(1, _uint(1, st(type_name)) + _uint(2, st("nanoseconds")))
    thread_key, tid_key = st("thread"), st("tid")
    for node in range(len(parent_of)):
        if loc_of_node[node] == 0:
            continue
        w, b = max(wall[node], 0), max(blocked[node], 0)
        if selected is None:
            values = [w, b]
        else:
            values = [b if node_reason[node] == REASONS.index(r) else 0 for r in selected]
        if not any(values):
            continue
        frames: list[int] = []  # leaf first
        n = node
        while loc_of_node[n]:
            frames.append(loc_of_node[n])
            n = parent_of[n]
        thread, tid = root_thread[n]
        # Sample{location_id = 1, value = 2, label = 3: Label{key = 1, str = 2, num = 3}}
        out += field_bytes(2, _packed(1, frames) + field_bytes(2, b"".join(varint(v) for v in values))
                    + field_bytes(3, _uint(1, thread_key) + _uint(2, st(thread)))
                    + field_bytes(3, _uint(1, tid_key) + _uint(3, tid)))
    # mapping = 3: one for everything, already symbolized
    # Mapping{id = 1, filename = 5, has_functions = 7, has_filenames = 8, has_line_numbers = 9}
    out += field_bytes(3, _uint(1, 1) + _uint(5, st("python")) + _uint(7, 1) + _uint(8, 1) + _uint(9, 1))
    functions = bytearray()
    for (name, file, line), loc in locations.items():
        fname = st(strings[name] if name >= 0 else "?")
        ffile = st(strings[file]) if file >= 0 else 0
        line = max(line, 0)
        # Location{id = 1, mapping_id = 2, line = 4: Line{function_id = 1, line = 2}}
        out += field_bytes(4, _uint(1, loc) + _uint(2, 1) + field_bytes(4, _uint(1, loc) + _uint(2, line)))
        # Function{id = 1, name = 2, filename = 4, start_line = 5}; no system_name
        # = 3: pprof would "demangle" it into the name, and a name like <module>
        # looks like a C++ template to it (it would show as "")
        functions += field_bytes(5, _uint(1, loc) + _uint(2, fname) + _uint(4, ffile) + _uint(5, line))
    out += functions
    meta = trace.metadata
    start_realtime = meta.get("window.start_realtime_ns")
    duration = meta.get("window.duration_ns", meta.end_ns - meta.start_ns)
    comments = [f"exectrace {meta.get('exectrace.version', '?')}: {os.path.basename(trace.path)}",
                _coverage_comment(trace)]
    if trace.damage:
        comments.append(f"damaged: {trace.damage}")
    comment_ids = [st(s) for s in comments]
    default_type = st(types[0])
    tail = bytearray()
    if isinstance(start_realtime, int) and start_realtime > 0:
        tail += _uint(9, start_realtime)  # time_nanos
    if isinstance(duration, int) and duration > 0:
        tail += _uint(10, duration)  # duration_nanos
    tail += field_bytes(11, _uint(1, st(types[0])) + _uint(2, st("nanoseconds")))  # period_type
    tail += _uint(12, 1)  # period
    tail += _packed(13, comment_ids)  # comment
    tail += _uint(14, default_type)  # default_sample_type
    # valid UTF-8 (protobuf checks): a lone surrogate is written as \udcxx
    out += b"".join(field_bytes(6, s.encode("utf-8", "backslashreplace")) for s in st.table)
    out += tail
    return bytes(out)


def _coverage_comment(trace: Trace) -> str:
    begin, end = trace.coverage
    window = max(0, trace.metadata.end_ns - trace.metadata.start_ns)
    return (f"covers {(end - begin) / 1e9:.3f} s of the {window / 1e9:.3f} s window; "
            f"{max(0, window - (end - begin)) / 1e9:.3f} s unrecorded")


def build_events_pprof(trace: Trace, *, reason: Optional[str] = None) -> bytes:
    """The (uncompressed) pprof Profile of an `events` file: sample types
    samples (count) and cpu (samples x the sample interval, nanoseconds),
    from the stack samples; and one per blocking reason (sleep, io, lock,
    subprocess: nanoseconds waited, Go's -pprof=sync|net|syscall), from the
    waits, each at its callstack with the blocking function as the leaf.
    reason ("io", "lock", "sleep", "subprocess", "all"): only the sample
    types of the reasons selected, only waits for them."""
    selected = _reasons(reason)
    meta = trace.metadata
    interval = meta.get("samples.interval_ns")
    interval = interval if isinstance(interval, int) and interval > 0 else 0
    if selected is None:
        types = ["samples", "cpu", *REASONS]
        column = {r: 2 + i for i, r in enumerate(REASONS)}
    else:
        types = list(selected)
        column = {r: i for i, r in enumerate(selected)}
    locations: dict[tuple[str, str, int], int] = {}

    def loc(name: str, file: str, line: int) -> int:
        key = (name, file, line)
        found = locations.get(key)
        if found is None:
            found = locations[key] = len(locations) + 1
        return found

    # (leaf-first location ids, thread, tid) -> values
    values: dict[tuple[tuple[int, ...], str, int], list[int]] = {}
    for sample in trace.samples() if selected is None else ():
        frames = tuple(loc(f.function, f.file, f.line) for f in reversed(sample.stack))
        v = values.setdefault((frames, sample.thread, sample.tid), [0] * len(types))
        v[0] += 1
        v[1] += interval
    for slice_ in trace.slices():
        why = slice_.blocking
        if why is None or why not in column:
            continue
        frames = (loc(slice_.name, "", 0),) + tuple(
            loc(f.function, f.file, f.line) for f in reversed(slice_.stack))
        v = values.setdefault((frames, slice_.thread, slice_.tid), [0] * len(types))
        v[column[why]] += slice_.dur_ns

    st = _Strings()
    out = bytearray()
    units = (["count", "nanoseconds"] if selected is None else []) + ["nanoseconds"] * len(column)
    for name, unit in zip(types, units):
        out += field_bytes(1, _uint(1, st(name)) + _uint(2, st(unit)))
    thread_key, tid_key = st("thread"), st("tid")
    for (frames, thread, tid), v in values.items():
        out += field_bytes(2, _packed(1, list(frames)) + field_bytes(2, b"".join(varint(x) for x in v))
                           + field_bytes(3, _uint(1, thread_key) + _uint(2, st(thread)))
                           + field_bytes(3, _uint(1, tid_key) + _uint(3, tid)))
    out += field_bytes(3, _uint(1, 1) + _uint(5, st("python")) + _uint(7, 1) + _uint(8, 1) + _uint(9, 1))
    functions = bytearray()
    for (name, file, line), lid in locations.items():
        out += field_bytes(4, _uint(1, lid) + _uint(2, 1) + field_bytes(4, _uint(1, lid) + _uint(2, max(line, 0))))
        functions += field_bytes(5, _uint(1, lid) + _uint(2, st(name or "?")) + _uint(4, st(file) if file else 0)
                                 + _uint(5, max(line, 0)))
    out += functions
    start_realtime = meta.get("window.start_realtime_ns")
    duration = meta.get("window.duration_ns", meta.end_ns - meta.start_ns)
    comments = [f"exectrace {meta.get('exectrace.version', '?')} (events): {os.path.basename(trace.path)}",
                _coverage_comment(trace)]
    if trace.damage:
        comments.append(f"damaged: {trace.damage}")
    comment_ids = [st(c) for c in comments]
    tail = bytearray()
    if isinstance(start_realtime, int) and start_realtime > 0:
        tail += _uint(9, start_realtime)
    if isinstance(duration, int) and duration > 0:
        tail += _uint(10, duration)
    default = "cpu" if selected is None else types[0]
    tail += field_bytes(11, _uint(1, st(default)) + _uint(2, st("nanoseconds")))
    tail += _uint(12, (interval or 1) if selected is None else 1)
    tail += _packed(13, comment_ids)
    tail += _uint(14, st(default))
    out += b"".join(field_bytes(6, s.encode("utf-8", "backslashreplace")) for s in st.table)
    out += tail
    return bytes(out)


def to_pprof(trace: Trace, out: Union[str, os.PathLike[str], IO[bytes]], *,
             progress: Optional[bool] = None, reason: Optional[str] = None) -> int:
    """Writes `trace` as a gzipped pprof profile to a path or binary stream:
    for a `calls` file, wall and blocked time per call stack; for an `events`
    file, samples and waits by reason (see build_events_pprof).

    Returns the number of bytes written (compressed).
    """
    profile = (build_events_pprof(trace, reason=reason) if trace.mode == "events"
               else build_pprof(trace, progress=progress, reason=reason))
    data = gzip.compress(profile, compresslevel=6, mtime=0)
    if isinstance(out, (str, os.PathLike)):
        with open(out, "wb") as f:
            f.write(data)
    else:
        out.write(data)
        out.flush()
    return len(data)
