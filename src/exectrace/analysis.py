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
        "blocked_s": {k: _seconds(v) for k, v in blocked.items()},
        "gc_s": 0.0,
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
        if t is not None:  # the collection ran inside that thread's Python time
            t["gc_s"] = _seconds(t["gc_s"] * 1e9 + event.dur_ns)
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
            "records_lost": meta.records_lost,
            "truncated": bool(meta.get("window.truncated", False)),
            "closed_by": _meta_value(meta.get("window.closed_by")),
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
        f"records  {w['slices']} slices, {w['records_lost']} lost"
        + (", truncated (closed by " + str(w["closed_by"]) + ")" if w["truncated"] else ""),
    ]
    if w.get("damage"):
        lines.append(f"damaged  {w['damage']} (showing what is readable)")
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
