"""What a trace says, in numbers: the `go tool trace` counterpart.

summarize(trace) walks every thread's calls once and returns a plain dict
(the JSON of ``exectrace summary --json``):

  window     when, how long, how it was captured, records lost
  threads    per thread: time running Python, in C, blocked (by reason), in GC
  functions  per function: calls, inclusive time (recursion counted once), self time
  blocking   blocking call sites (caller -> blocking function) by reason
  gc         collections per generation: count, total, max
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Optional

from exectrace.reader import GC_TRACK, Trace

# Blocking C functions by reason. A C function whose qualified name is listed
# here (or starts with a listed prefix ending in ".") counts as blocked time.
BLOCKING_REASONS: dict[str, str] = {
    "time.sleep": "sleep",
    "_thread.lock.acquire": "lock",
    "_thread.RLock.acquire": "lock",
    "_thread.lock.__enter__": "lock",
    "_thread.RLock.__enter__": "lock",
    "_thread.lock.acquire_lock": "lock",
    "select.select": "io",
    "select.poll.poll": "io",
    "select.epoll.poll": "io",
    "select.kqueue.control": "io",
    "select.devpoll.poll": "io",
    "_socket.socket.": "io",
    "_ssl._SSLSocket.": "io",
    "_io.FileIO.read": "io",
    "_io.FileIO.readinto": "io",
    "_io.FileIO.readall": "io",
    "_io.FileIO.write": "io",
    "_io.BufferedReader.": "io",
    "_io.BufferedWriter.": "io",
    "_io.TextIOWrapper.readline": "io",
    "_io.TextIOWrapper.read": "io",
    "posix.read": "io",
    "posix.write": "io",
    "posix.readv": "io",
    "posix.writev": "io",
    "posix.waitpid": "subprocess",
    "posix.wait": "subprocess",
    "posix.wait3": "subprocess",
    "posix.wait4": "subprocess",
    "posix.waitid": "subprocess",
}
REASONS = ("sleep", "io", "lock", "subprocess")


def blocking_reason(name: str, category: str = "c") -> Optional[str]:
    """The reason a C function blocks, or None (it computes)."""
    if category != "c":
        return None
    reason = BLOCKING_REASONS.get(name)
    if reason is not None:
        return reason
    head = name.rsplit(".", 1)[0] + "."
    return BLOCKING_REASONS.get(head)


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
        reason = blocking_reason(name, cat)
        if reason is not None:
            blocked[reason] += own
            caller = strings[c.s_name[stack[-1]]] if stack else "(thread)"
            site = blocking.setdefault((reason, caller, name), {
                "reason": reason, "caller": caller, "function": name,
                "count": 0, "total_ns": 0, "max_ns": 0})
            site["count"] += 1
            site["total_ns"] += c.s_dur[j]
            site["max_ns"] = max(site["max_ns"], c.s_dur[j])
        elif cat == "c":
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


def summarize(trace: Trace, top: int = 20) -> dict[str, Any]:
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
    }


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
    if summary["gc"]:
        lines += ["", "garbage collection     count   total s     max s   collected"]
        for gen, g in summary["gc"].items():
            lines.append(f"  {gen:<18} {g['count']:>7} {g['total_s']:>9.4f} {g['max_s']:>9.4f} "
                         f"{g['collected']:>11}")
    return "\n".join(lines)


__all__ = ["BLOCKING_REASONS", "GC_TRACK", "blocking_reason", "format_text", "summarize"]
