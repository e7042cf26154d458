"""What a trace says, in numbers: the `go tool trace` counterpart.

summarize(trace) walks every thread's calls once and returns a plain dict
(the JSON of ``exectrace summary --json``):

  window     when, how long, how it was captured, records lost
  threads    per thread: time running Python, in C, blocked (by reason), in GC
  functions  per function: calls, inclusive time (recursion counted once), self time
  blocking   blocking call sites (caller -> blocking function) by reason
  gc         collections per generation: count, total, max
  asyncio    per task: steps, time holding the loop; slow steps, slowest first
  regions    user regions by name: count, total, max
  tasks      user tasks: name, duration, whether it ended in the window
  logs       user log entries, in order
  counters   per counter track: samples, min, max, last
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Optional

from exectrace.blocking import REASONS, reason_of_slice
from exectrace.reader import GC_TRACK, Trace


def _seconds(ns: float) -> float:
    return round(ns / 1e9, 9)


def _meta_value(value: Any) -> Any:
    """A metadata value as the summary shows it. A damaged or foreign file can
    hold any annotation type under a known key: what is not a string, a finite
    number, a bool or None is shown as text, so the JSON stays valid."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)


def _window_ns(value: Any, fallback: int) -> int:
    """The window's length: its metadata value if that is a usable number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return fallback
    return int(value)


def _walk_thread(trace: Trace, track: dict[str, Any], indices: list[int],
                 functions: dict[tuple[int, int, int], dict[str, Any]],
                 blocking: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    """One thread's calls in time order: adds to `functions` and `blocking`,
    returns the thread's time split."""
    c = trace.columns
    strings = trace.strings
    indices.sort(key=lambda i: (c.s_ts[i], c.s_depth[i]))
    python_ns = c_ns = 0
    blocked = dict.fromkeys(REASONS, 0)
    stack: list[int] = []  # open slices, outermost first
    self_ns: dict[int, int] = {}
    active: dict[tuple[int, int, int], int] = defaultdict(int)  # open calls per function
    keys: dict[int, tuple[int, int, int]] = {}

    def finish(j: int) -> None:
        nonlocal python_ns, c_ns
        key = keys[j]
        active[key] -= 1
        own = self_ns.pop(j)
        f = functions[key]
        f["self_ns"] += own
        if active[key] == 0:  # recursion: only the outermost call counts inclusively
            f["inclusive_ns"] += c.s_dur[j]
        name = strings[c.s_name[j]]
        cat = strings[c.s_cat[j]] if c.s_cat[j] >= 0 else ""
        reason = reason_of_slice(name, cat)
        if reason is not None:
            blocked[reason] += own
            caller = strings[c.s_name[stack[-1]]] if stack else "(thread)"
            site = blocking.setdefault((reason, caller, name), {
                "reason": reason, "caller": caller, "function": name,
                "count": 0, "total_ns": 0, "max_ns": 0})
            site["count"] += 1
            site["total_ns"] += c.s_dur[j]
            site["max_ns"] = max(site["max_ns"], c.s_dur[j])
        elif "c" in cat.split(","):
            c_ns += own
        else:
            python_ns += own

    for i in indices:
        depth = c.s_depth[i]
        while stack and c.s_depth[stack[-1]] >= depth:  # not an ancestor: it has ended
            finish(stack.pop())
        if stack:
            self_ns[stack[-1]] -= c.s_dur[i]
        key = (c.s_name[i], c.s_file[i], c.s_line[i])
        keys[i] = key
        f = functions.get(key)
        if f is None:
            f = functions[key] = {
                "name": strings[key[0]], "file": strings[key[1]] if key[1] >= 0 else "",
                "line": key[2], "calls": 0, "inclusive_ns": 0, "self_ns": 0}
        f["calls"] += 1
        active[key] += 1
        self_ns[i] = c.s_dur[i]
        stack.append(i)
    while stack:
        finish(stack.pop())
    return {
        "name": track.get("name") or "", "tid": track.get("tid") or 0,
        "calls": len(indices),
        "python_s": _seconds(python_ns), "c_s": _seconds(c_ns),
        "running_s": _seconds(python_ns + c_ns),
        "blocked_s": {k: _seconds(v) for k, v in blocked.items()},
        "gc_s": 0.0,
    }


def _events_threads(trace: Trace, threads: list[dict[str, Any]], samples: list[Any],
                    blocking: dict[tuple[str, str, str], dict[str, Any]]) -> None:
    """An `events` file has no slice for running code: a thread's running
    time is the part of its life in the window (first to last event seen,
    the window's edges for threads sampled there) not spent in a recorded
    wait or in GC. Waits' call sites come from their stacks."""
    meta = trace.metadata
    interval = meta.get("samples.interval_ns")
    interval = interval if isinstance(interval, int) and interval > 0 else 0
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    names: dict[int, str] = {}
    for sample in samples:
        first.setdefault(sample.tid, sample.ts_ns)
        last[sample.tid] = sample.ts_ns
        names[sample.tid] = sample.thread
    for slice_ in trace.slices():
        first[slice_.tid] = min(first.get(slice_.tid, slice_.start_ns), slice_.start_ns)
        last[slice_.tid] = max(last.get(slice_.tid, slice_.end_ns), slice_.end_ns)
        names[slice_.tid] = slice_.thread
    by_tid = {t["tid"]: t for t in threads}
    for tid in first:
        if tid not in by_tid:
            t: dict[str, Any] = {"name": names[tid], "tid": tid, "calls": 0, "python_s": 0.0, "c_s": 0.0,
                 "running_s": 0.0, "blocked_s": dict.fromkeys(REASONS, 0.0), "gc_s": 0.0}
            threads.append(t)
            by_tid[tid] = t
    for tid, t in by_tid.items():
        if tid not in first:
            continue
        # a thread sampled at a tick was there since the tick before it
        begin = max(meta.start_ns, first[tid] - interval)
        end = min(meta.end_ns, last[tid] + interval) if meta.end_ns else last[tid]
        life = max(0, end - begin)
        waiting = sum(t["blocked_s"].values()) * 1e9
        t["python_s"] = None
        t["c_s"] = None
        t["running_s"] = _seconds(max(0.0, life - waiting))
        t["covered_s"] = _seconds(life)
    # call sites: the innermost Python frame of each wait's stack
    sites: dict[tuple[str, str, str], dict[str, Any]] = {}
    for slice_ in trace.slices():
        reason = slice_.blocking
        if reason is None:
            continue
        stack = slice_.stack
        caller = f"{stack[-1].function}:{stack[-1].line}" if stack else "(thread)"
        site = sites.setdefault((reason, caller, slice_.name), {
            "reason": reason, "caller": caller, "function": slice_.name,
            "file": stack[-1].file if stack else "", "count": 0, "total_ns": 0, "max_ns": 0})
        site["count"] += 1
        site["total_ns"] += slice_.dur_ns
        site["max_ns"] = max(site["max_ns"], slice_.dur_ns)
    blocking.clear()
    blocking.update(sites)


def _samples(samples: list[Any], top: int) -> dict[str, Any]:
    """Top functions by samples: self (the innermost frame) and total (on
    the stack at all, once per sample)."""
    self_counts: dict[tuple[str, str], int] = defaultdict(int)
    total_counts: dict[tuple[str, str], int] = defaultdict(int)
    for sample in samples:
        if not sample.stack:
            continue
        leaf = sample.stack[-1]
        self_counts[(leaf.function, leaf.file)] += 1
        for key in {(f.function, f.file) for f in sample.stack}:
            total_counts[key] += 1
    ranked = sorted(total_counts, key=lambda k: (-self_counts.get(k, 0), -total_counts[k], k))
    return {
        "count": len(samples),
        "top": [{"function": k[0], "file": k[1], "self": self_counts.get(k, 0),
                 "total": total_counts[k]} for k in ranked[:top]],
    }


def _asyncio(trace: Trace, top: int, slow_step_ns: Optional[int]) -> dict[str, Any]:
    tasks: dict[str, dict[str, Any]] = {}
    slow: list[dict[str, Any]] = []
    start = trace.metadata.start_ns
    for step in trace.steps():
        t = tasks.setdefault(step.task, {"task": step.task, "coroutine": step.name, "steps": 0,
                                          "total_ns": 0, "max_ns": 0})
        t["steps"] += 1
        t["total_ns"] += step.dur_ns
        t["max_ns"] = max(t["max_ns"], step.dur_ns)
        is_slow = step.slow if slow_step_ns is None else step.dur_ns >= slow_step_ns > 0
        if is_slow:
            slow.append({"task": step.task, "coroutine": step.name, "thread": step.thread,
                         "at_ns": step.start_ns - start, "duration_ns": step.dur_ns})
    slow.sort(key=lambda e: -e["duration_ns"])
    by_time = sorted(tasks.values(), key=lambda t: -t["total_ns"])
    return {"tasks": len(tasks), "steps": sum(t["steps"] for t in tasks.values()),
            "by_task": by_time[:top], "slow_steps": slow[:top], "slow_step_count": len(slow)}


def _regions(trace: Trace, by_track: dict[int, list[int]]) -> list[dict[str, Any]]:
    c = trace.columns
    strings = trace.strings
    try:
        region = strings.index("region")
    except ValueError:
        return []
    regions: dict[str, dict[str, Any]] = {}
    for indices in by_track.values():
        for i in indices:
            if c.s_cat[i] != region:
                continue
            r = regions.setdefault(strings[c.s_name[i]], {"name": strings[c.s_name[i]], "count": 0,
                                                           "total_ns": 0, "max_ns": 0})
            r["count"] += 1
            r["total_ns"] += c.s_dur[i]
            r["max_ns"] = max(r["max_ns"], c.s_dur[i])
    return sorted(regions.values(), key=lambda r: -r["total_ns"])


def _counters(trace: Trace) -> dict[str, dict[str, Any]]:
    counters: dict[str, dict[str, Any]] = {}
    for sample in trace.counters():
        k = counters.setdefault(sample.name, {"samples": 0, "min": sample.value, "max": sample.value,
                                               "last": sample.value})
        k["samples"] += 1
        k["min"] = min(k["min"], sample.value)
        k["max"] = max(k["max"], sample.value)
        k["last"] = sample.value
    return counters


def summarize(trace: Trace, top: int = 20, slow_step_ns: Optional[int] = None) -> dict[str, Any]:
    """slow_step_ns: flag asyncio steps at least this long as slow (default:
    the flags the writer set, from the slow_step setting in force)."""
    c = trace.columns
    tracks = trace.tracks
    meta = trace.metadata
    n = len(c.s_ts)

    by_track: dict[int, list[int]] = defaultdict(list)
    thread_tracks = {uuid for uuid, t in tracks.items() if t.get("kind") == "thread"}
    for i in range(n):
        if c.s_track[i] in thread_tracks:
            by_track[c.s_track[i]].append(i)

    functions: dict[tuple[int, int, int], dict[str, Any]] = {}
    blocking: dict[tuple[str, str, str], dict[str, Any]] = {}
    threads = [_walk_thread(trace, tracks[uuid], indices, functions, blocking)
               for uuid, indices in by_track.items()]
    events_mode = trace.mode == "events"
    samples = trace.samples() if events_mode else []
    if events_mode:
        _events_threads(trace, threads, samples, blocking)

    gc: dict[str, dict[str, Any]] = {}
    by_thread_name = {t["name"]: t for t in threads}
    for event in trace.gc_events():
        g = gc.setdefault(f"gen{event.generation}", {"count": 0, "total_ns": 0, "max_ns": 0,
                                                      "collected": 0})
        g["count"] += 1
        g["total_ns"] += event.dur_ns
        g["max_ns"] = max(g["max_ns"], event.dur_ns)
        g["collected"] += max(event.collected, 0)
        t = by_thread_name.get(event.thread)
        if t is not None:  # the collection ran inside that thread's running time
            t["gc_s"] = _seconds(t["gc_s"] * 1e9 + event.dur_ns)
            t["running_s"] = max(0.0, _seconds(t["running_s"] * 1e9 - event.dur_ns))
            if t["python_s"] is not None:
                t["python_s"] = max(0.0, _seconds(t["python_s"] * 1e9 - event.dur_ns))

    def public(entry: dict[str, Any]) -> dict[str, Any]:
        return {k.replace("_ns", "_s"): (_seconds(v) if k.endswith("_ns") else v) for k, v in entry.items()}

    funcs = list(functions.values())
    by_inclusive = sorted(funcs, key=lambda f: -f["inclusive_ns"])[:top]
    by_self = sorted(funcs, key=lambda f: -f["self_ns"])[:top]
    threads.sort(key=lambda t: (t["name"] != "MainThread", t["name"]))
    return {
        "file": trace.path,
        "window": {
            "start": _meta_value(meta.get("window.start")),
            "end": _meta_value(meta.get("window.end")),
            "duration_s": _seconds(_window_ns(meta.get("window.duration_ns"), meta.end_ns - meta.start_ns)),
            "pid": _meta_value(meta.get("process.pid")),
            "python": _meta_value(meta.get("python.version")),
            "hook": _meta_value(meta.get("recorder.hook")),
            "mode": trace.mode,
            "records_lost": meta.records_lost,
            "truncated": bool(meta.get("window.truncated", False)),
            "closed_by": _meta_value(meta.get("window.closed_by")),
            "snapshot_reason": _meta_value(meta.get("snapshot.reason")),
            "flight_recorder_bound": _meta_value(meta.get("flight_recorder.bound")),
            "slices": n,
            "damage": trace.damage,
        },
        "threads": threads,
        "functions": {
            "by_inclusive": [public(f) for f in by_inclusive],
            "by_self": [public(f) for f in by_self],
        },
        "blocking": [public(b) for b in sorted(blocking.values(), key=lambda b: -b["total_ns"])[:top]],
        "gc": {k: public(v) for k, v in sorted(gc.items())},
        "asyncio": _public_nested(_asyncio(trace, top, slow_step_ns), public),
        "regions": [public(r) for r in _regions(trace, by_track)[:top]],
        "tasks": [
            {"name": span.name, "duration_s": _seconds(span.dur_ns),
             "ended": not span.args.get("unfinished", False),
             "began_in_window": not span.args.get("began_before_window", False)}
            for span in trace.spans() if span.category == "task"
        ][:top],
        "logs": [
            {"at_s": _seconds(e.ts_ns - meta.start_ns), "thread": str(e.args.get("thread", e.track)),
             "category": e.args.get("category", e.category), "message": e.args.get("message", e.name),
             "task": e.args.get("task")}
            for e in trace.logs()
        ][:top * 10],
        "counters": _counters(trace),
        "samples": _samples(samples, top),
    }


def _public_nested(section: dict[str, Any], public: Any) -> dict[str, Any]:
    return {k: [public(e) for e in v] if isinstance(v, list) else v for k, v in section.items()}


def format_text(summary: dict[str, Any], top: int = 10) -> str:
    """The summary as text for a terminal."""
    w = summary["window"]
    lines = [
        f"trace    {summary['file']}",
        f"window   {w['start']} .. {w['end']} ({w['duration_s']:.3f} s), pid {w['pid']}, "
        f"Python {w['python']}, {w['hook']}",
        f"records  {w['slices']} slices, {w['records_lost']} lost, mode {w.get('mode', 'calls')}"
        + (", truncated (closed by " + str(w["closed_by"]) + ")" if w["truncated"] else ""),
    ]
    if w.get("closed_by") == "snapshot":
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(w.get("snapshot_reason")))[:200]
        lines.append(f"snapshot {reason!s} (flight recorder; the span was bounded by "
                     f"{w.get('flight_recorder_bound')})")
    if w.get("damage"):
        lines.append(f"damaged  {w['damage']} (showing what is readable)")
    events_mode = w.get("mode") == "events"
    if events_mode:
        lines += ["", "threads                         running   sleep      io    lock  subproc      GC"]
        for t in summary["threads"]:
            b = t["blocked_s"]
            lines.append(f"  {t['name'][:28]:<28} {t['running_s']:>8.3f} {b['sleep']:>7.3f} "
                         f"{b['io']:>7.3f} {b['lock']:>7.3f} {b['subprocess']:>8.3f} {t['gc_s']:>7.3f}")
        smp = summary["samples"]
        lines += ["", f"top functions by samples ({smp['count']} samples)         self     total"]
        for f in smp["top"][:top]:
            lines.append(f"  {f['function'][:48]:<48} {f['self']:>7} {f['total']:>9}")
    else:
        lines += ["", "threads                          python       C   sleep      io    lock  subproc      GC"]
        for t in summary["threads"]:
            b = t["blocked_s"]
            lines.append(f"  {t['name'][:28]:<28} {t['python_s']:>8.3f} {t['c_s']:>7.3f} {b['sleep']:>7.3f} "
                         f"{b['io']:>7.3f} {b['lock']:>7.3f} {b['subprocess']:>8.3f} {t['gc_s']:>7.3f}")
        lines += ["", "top functions by inclusive time        calls  inclusive s     self s"]
        for f in summary["functions"]["by_inclusive"][:top]:
            lines.append(f"  {f['name'][:36]:<36} {f['calls']:>7} {f['inclusive_s']:>12.4f} {f['self_s']:>10.4f}")
        lines += ["", "top functions by self time             calls  inclusive s     self s"]
        for f in summary["functions"]["by_self"][:top]:
            lines.append(f"  {f['name'][:36]:<36} {f['calls']:>7} {f['inclusive_s']:>12.4f} {f['self_s']:>10.4f}")
    if summary["blocking"]:
        lines += ["", "blocking (caller -> function)                      reason   count   total s     max s"]
        for b in summary["blocking"][:top]:
            site = f"{b['caller']} -> {b['function']}"
            lines.append(f"  {site[:48]:<48} {b['reason']:<10} {b['count']:>5} {b['total_s']:>9.4f} "
                         f"{b['max_s']:>9.4f}")
    a = summary["asyncio"]
    if a["tasks"]:
        lines += ["", f"asyncio tasks ({a['tasks']} tasks, {a['steps']} steps)"
                  "                   steps   total s     max s"]
        for t in a["by_task"][:top]:
            label = f"{t['task']} ({t['coroutine']})"
            lines.append(f"  {label[:48]:<48} {t['steps']:>7} {t['total_s']:>9.4f} {t['max_s']:>9.4f}")
        if a["slow_steps"]:
            lines += ["", f"slow asyncio steps ({a['slow_step_count']})"
                      "                              at s  duration s  thread"]
            for st in a["slow_steps"][:top]:
                label = f"{st['task']} ({st['coroutine']})"
                lines.append(f"  {label[:48]:<48} {st['at_s']:>9.4f} {st['duration_s']:>11.4f}  {st['thread']}")
    if summary["regions"]:
        lines += ["", "regions                                          count   total s     max s"]
        for r in summary["regions"][:top]:
            lines.append(f"  {r['name'][:48]:<48} {r['count']:>5} {r['total_s']:>9.4f} {r['max_s']:>9.4f}")
    if summary["tasks"]:
        lines += ["", "tasks                                         duration s"]
        for t in summary["tasks"][:top]:
            note = "" if t["ended"] else "  (not ended in the window)"
            lines.append(f"  {t['name'][:44]:<44} {t['duration_s']:>10.4f}{note}")
    if summary["logs"]:
        lines += ["", "logs"]
        for e in summary["logs"][:top]:
            lines.append(f"  {e['at_s']:>9.4f}  {e['thread'][:16]:<16} {e['category']}: {e['message']}")
    if summary["counters"]:
        lines += ["", "counters                   samples          min          max         last"]
        for name, k in summary["counters"].items():
            lines.append(f"  {name[:24]:<24} {k['samples']:>8} {_num(k['min']):>12} {_num(k['max']):>12} "
                         f"{_num(k['last']):>12}")
    if summary["gc"]:
        lines += ["", "garbage collection     count   total s     max s   collected"]
        for gen, g in summary["gc"].items():
            lines.append(f"  {gen:<18} {g['count']:>7} {g['total_s']:>9.4f} {g['max_s']:>9.4f} "
                         f"{g['collected']:>11}")
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3f}"


__all__ = ["GC_TRACK", "format_text", "summarize"]
