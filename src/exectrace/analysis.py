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

import array
import bisect
import math
from collections import defaultdict
from typing import Any, Optional

from exectrace import _summarize
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


def _kinds(trace: Trace, quads: list[tuple[int, int, int, int]]) -> Any:
    """What each key's self time counts as (_summarize's kinds): 0 Python,
    1 C, 2 + i blocking for REASONS[i]."""
    strings = trace.strings
    out = array.array("b", bytes(len(quads)))
    for k, (name, cat, _file, _line) in enumerate(quads):
        category = strings[cat] if cat >= 0 else ""
        reason = reason_of_slice(strings[name] if name >= 0 else "", category)
        if reason is not None:
            out[k] = 2 + REASONS.index(reason)
        elif "c" in category.split(","):
            out[k] = 1
    return out


def _walk(trace: Trace, lo: int, hi: int, raw: bool = False) -> dict[str, Any]:
    """Every thread's calls, clipped to [lo, hi) (native: exectrace._summarize)."""
    c = trace.columns
    strings = trace.strings
    slot = trace.track_index()[0]
    mask = trace.thread_mask()
    thread_of_slot, thread_uuids = trace.thread_slots()
    key, quads = trace.slice_keys()
    kinds = _kinds(trace, quads)
    wanted = array.array("b", [cat >= 0 and "region" in strings[cat].split(",") for _n, cat, _f, _l in quads])
    # user regions on threads' tracks: (name, start, duration)
    regions = [(strings[quads[key[i]][0]], c.s_ts[i], c.s_dur[i])
               for i in (_summarize.select(key, wanted) if any(wanted) else ())
               if mask[slot[i]]]
    (k_calls, k_incl, k_self, t_stats, b_caller, b_callee, b_thread, b_dur,
     b_clip, b_start) = _summarize.walk(slot, thread_of_slot, c.s_ts, c.s_dur, c.s_depth, key, kinds,
                               len(thread_uuids), lo, hi)

    functions: dict[tuple[int, int, int], dict[str, Any]] = {}
    for k, (name, _cat, file, line) in enumerate(quads):
        if not k_calls[k] and not k_self[k] and not k_incl[k]:
            continue
        f = functions.get((name, file, line))
        if f is None:
            f = functions[(name, file, line)] = {
                "name": strings[name] if name >= 0 else "", "file": strings[file] if file >= 0 else "",
                "line": line, "calls": 0, "inclusive_ns": 0, "self_ns": 0}
        f["calls"] += k_calls[k]
        f["inclusive_ns"] += k_incl[k]
        f["self_ns"] += k_self[k]

    width = 3 + len(REASONS)
    threads = []
    for t, u in enumerate(thread_uuids):
        track = trace.tracks[u]
        row = t_stats[t * width:(t + 1) * width]
        threads.append({
            "name": track.get("name") or "", "tid": track.get("tid") or 0, "calls": row[0],
            "python_ns": row[1], "c_ns": row[2],
            "blocked_ns": dict(zip(REASONS, row[3:])),
        })

    # blocking call sites: (reason, caller, function)
    sites: dict[tuple[str, str, str], int] = {}
    group = array.array("i", bytes(4 * len(b_callee)))
    for i, (caller, callee) in enumerate(zip(b_caller, b_callee)):
        reason = REASONS[kinds[callee] - 2]
        site = (reason, strings[quads[caller][0]] if caller >= 0 else "(thread)", strings[quads[callee][0]])
        group[i] = sites.setdefault(site, len(sites))
    raw_sites: dict[tuple[str, str, str], list[int]] = {}
    if raw:
        site_list = list(sites)
        for g, d in zip(group, b_dur):
            raw_sites.setdefault(site_list[g], []).append(d)
    dist = _summarize.distribution(group, b_dur)
    clipped = _summarize.distribution(group, b_clip)
    blocking = {}
    for site, g in sites.items():
        count, _total, longest, p50, p90, p99 = dist[g]
        blocking[site] = {"reason": site[0], "caller": site[1], "function": site[2], "count": count,
                          "total_ns": clipped[g][1], "max_ns": longest,
                          "p50_ns": p50, "p90_ns": p90, "p99_ns": p99}
    # every blocking call: (thread name, start, end, reason), for the per-task split
    names = [t["name"] for t in threads]
    waits = [(names[t], start, start + d, REASONS[kinds[callee] - 2])
             for t, start, d, callee in zip(b_thread, b_start, b_dur, b_callee)]
    return {"functions": functions, "threads": threads, "blocking": blocking, "regions": regions,
            "raw_sites": raw_sites, "waits": waits}


def _events_threads(trace: Trace, threads: list[dict[str, Any]], samples: list[Any],
                    lo: int, hi: int) -> dict[tuple[str, str, str], dict[str, Any]]:
    """An `events` file has no slice for running code: a thread's running
    time is the part of its life in the covered span [lo, hi) (first to last
    event seen, the window's edges for threads sampled there) not spent in a
    recorded wait or in GC. Waits' call sites come from their stacks."""
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
    waits = list(trace.slices())
    for slice_ in waits:
        first[slice_.tid] = min(first.get(slice_.tid, slice_.start_ns), slice_.start_ns)
        last[slice_.tid] = max(last.get(slice_.tid, slice_.end_ns), slice_.end_ns)
        names[slice_.tid] = slice_.thread
    by_tid = {t["tid"]: t for t in threads}
    for tid in first:
        if tid not in by_tid:
            t: dict[str, Any] = {"name": names[tid], "tid": tid, "calls": 0, "python_ns": 0, "c_ns": 0,
                 "blocked_ns": dict.fromkeys(REASONS, 0)}
            threads.append(t)
            by_tid[tid] = t
    for tid, t in by_tid.items():
        if tid not in first:
            t["life_ns"] = 0
            continue
        # a thread sampled at a tick was there since the tick before it
        begin = max(lo, meta.start_ns, first[tid] - interval)
        end = min(hi, meta.end_ns if meta.end_ns else last[tid], last[tid] + interval)
        t["life_ns"] = max(0, end - begin)
    # call sites: the innermost Python frame of each wait's stack
    sites: dict[tuple[str, str, str], dict[str, Any]] = {}
    durations: dict[tuple[str, str, str], list[int]] = {}
    for slice_ in waits:
        reason = slice_.blocking
        if reason is None or slice_.start_ns > hi or slice_.end_ns < lo:
            continue
        stack = slice_.stack
        caller = f"{stack[-1].function}:{stack[-1].line}" if stack else "(thread)"
        key = (reason, caller, slice_.name)
        site = sites.setdefault(key, {
            "reason": reason, "caller": caller, "function": slice_.name,
            "file": stack[-1].file if stack else "", "count": 0, "total_ns": 0, "max_ns": 0})
        durations.setdefault(key, []).append(slice_.dur_ns)
        site["count"] += 1
        site["total_ns"] += _overlap(slice_.start_ns, slice_.end_ns, lo, hi)
        site["max_ns"] = max(site["max_ns"], slice_.dur_ns)
    for key, values in durations.items():
        sites[key].update(_percentiles(values))
    return sites


def _overlap(start: int, end: int, lo: int, hi: int) -> int:
    return max(0, min(end, hi) - max(start, lo))


def _percentiles(values: list[int]) -> dict[str, int]:
    """p50, p90, p99 (nearest rank) of durations, as *_ns keys."""
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> int:
        return ordered[min(n, max(1, math.ceil(q * n - 1e-9))) - 1] if n else 0

    return {"p50_ns": rank(0.5), "p90_ns": rank(0.9), "p99_ns": rank(0.99)}


def _distribution(name: str, values: list[int], **extra: Any) -> dict[str, Any]:
    """A latency distribution: count, p50, p90, p99, max and total."""
    return {"name": name, **extra, "count": len(values), "total_ns": sum(values),
            "max_ns": max(values, default=0), **_percentiles(values)}


#: The spans the minimum mutator utilization is shown for (go tool trace's MMU).
MMU_WINDOWS_NS = (1_000_000, 10_000_000, 100_000_000, 1_000_000_000)


def mmu(pauses: list[tuple[int, int]], lo: int, hi: int,
        windows: tuple[int, ...] = MMU_WINDOWS_NS) -> list[dict[str, Any]]:
    """Minimum mutator utilization: for each span w, the smallest fraction of
    any w-long stretch of [lo, hi) that was not a GC pause (None where w is
    longer than [lo, hi)). The worst stretch starts or ends at a pause's edge,
    so only those are tried."""
    merged: list[list[int]] = []
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in pauses):
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    starts = [a for a, _b in merged]
    ends = [b for _a, b in merged]
    before = [0]  # GC time in the pauses before each one
    for a, b in merged:
        before.append(before[-1] + b - a)

    def gc_until(t: int) -> int:
        """GC time in [lo, t)."""
        i = bisect.bisect_right(starts, t)  # pauses starting at or before t
        if i == 0:
            return 0
        return before[i - 1] + min(t, ends[i - 1]) - starts[i - 1]

    out = []
    for w in windows:
        if w > hi - lo or w <= 0:
            out.append({"window_s": _seconds(w), "utilization": None})
            continue
        candidates = {lo, hi - w}
        for a, b in merged:
            candidates.update((a, b, a - w, b - w))
        worst = max((gc_until(s + w) - gc_until(s) for s in candidates if lo <= s <= hi - w), default=0)
        out.append({"window_s": _seconds(w), "utilization": round(1 - worst / w, 6)})
    return out


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


def _task_split(steps: list[Any], waits: list[tuple[str, int, int, str]],
                pauses: list[tuple[str, int, int]]) -> dict[str, dict[str, int]]:
    """Per asyncio task: the time of its steps blocked by reason and in GC
    (the waits and collections on the step's thread during the step)."""
    by_thread: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for thread, start, end, reason in waits:
        by_thread[thread].append((start, end, reason))
    for thread, start, end in pauses:
        by_thread[thread].append((start, end, "gc"))
    starts: dict[str, list[int]] = {}
    for thread, spans in by_thread.items():
        spans.sort()
        starts[thread] = [s for s, _e, _r in spans]
    out: dict[str, dict[str, int]] = {}
    for step in steps:
        on_thread = by_thread.get(step.thread)
        if not on_thread:
            continue
        split = out.setdefault(step.task, dict.fromkeys((*REASONS, "gc"), 0))
        i = max(0, bisect.bisect_left(starts[step.thread], step.start_ns) - 1)
        while i < len(on_thread) and on_thread[i][0] < step.end_ns:
            start, end, reason = on_thread[i]
            split[reason] += _overlap(start, end, step.start_ns, step.end_ns)
            i += 1
    return out


def _asyncio(trace: Trace, top: int, slow_step_ns: Optional[int], lo: int, hi: int,
             waits: list[tuple[str, int, int, str]], pauses: list[tuple[str, int, int]]) -> dict[str, Any]:
    tasks: dict[str, dict[str, Any]] = {}
    in_range = []
    slow: list[dict[str, Any]] = []
    start = trace.metadata.start_ns
    by_coroutine: dict[str, list[int]] = defaultdict(list)
    for step in trace.steps():
        if step.start_ns > hi or step.end_ns < lo:
            continue
        t = tasks.setdefault(step.task, {"task": step.task, "coroutine": step.name, "steps": 0,
                                          "total_ns": 0, "max_ns": 0})
        t["steps"] += 1
        t["total_ns"] += step.dur_ns
        t["max_ns"] = max(t["max_ns"], step.dur_ns)
        in_range.append(step)
        by_coroutine[step.name].append(step.dur_ns)
        is_slow = step.slow if slow_step_ns is None else step.dur_ns >= slow_step_ns > 0
        if is_slow:
            slow.append({"task": step.task, "coroutine": step.name, "thread": step.thread,
                         "at_ns": step.start_ns - start, "duration_ns": step.dur_ns})
    slow.sort(key=lambda e: -e["duration_ns"])
    # per task: its steps' time running, blocked by reason, in GC
    for name, split in _task_split(in_range, waits, pauses).items():
        t = tasks[name]
        t["blocked_s"] = {r: _seconds(split[r]) for r in REASONS}
        t["gc_ns"] = split["gc"]
        t["running_ns"] = max(0, t["total_ns"] - sum(split.values()))
    for t in tasks.values():
        t.setdefault("blocked_s", dict.fromkeys(REASONS, 0.0))
        t.setdefault("gc_ns", 0)
        t.setdefault("running_ns", t["total_ns"])
    by_time = sorted(tasks.values(), key=lambda t: -t["total_ns"])
    return {"tasks": len(tasks), "steps": sum(t["steps"] for t in tasks.values()),
            "by_task": by_time[:top], "slow_steps": slow[:top], "slow_step_count": len(slow),
            "_latency": [_distribution(name, v) for name, v in by_coroutine.items()]}


def _regions(regions: list[tuple[str, int, int]], lo: int, hi: int) -> list[dict[str, Any]]:
    """User regions on threads' tracks, by name: count, total, max, percentiles."""
    return sorted((_distribution(name, v) for name, v in _region_durations(regions, lo, hi).items()),
                  key=lambda r: -r["total_ns"])


def _counters(trace: Trace, lo: int, hi: int) -> dict[str, dict[str, Any]]:
    counters: dict[str, dict[str, Any]] = {}
    for sample in trace.counters():
        if not lo <= sample.ts_ns <= hi:
            continue
        k = counters.setdefault(sample.name, {"samples": 0, "min": sample.value, "max": sample.value,
                                               "last": sample.value})
        k["samples"] += 1
        k["min"] = min(k["min"], sample.value)
        k["max"] = max(k["max"], sample.value)
        k["last"] = sample.value
    return counters


def time_range(trace: Trace, since_ns: Optional[int], until_ns: Optional[int]) -> tuple[int, int]:
    """[lo, hi) in the trace's clock: since/until are relative to the window's
    start (None: its edges), clamped to the window."""
    meta = trace.metadata
    start, end = meta.start_ns, max(meta.end_ns, meta.start_ns)
    lo = start if since_ns is None else min(end, start + max(0, since_ns))
    hi = end if until_ns is None else min(end, start + max(0, until_ns))
    return lo, max(lo, hi)


def summarize(trace: Trace, top: int = 20, slow_step_ns: Optional[int] = None,
              since_ns: Optional[int] = None, until_ns: Optional[int] = None,
              raw: bool = False) -> dict[str, Any]:
    """slow_step_ns: flag asyncio steps at least this long as slow (default:
    the flags the writer set, from the slow_step setting in force).
    since_ns/until_ns: only the part of the window from/until these offsets
    from its start (calls clipped to it, events overlapping it).
    raw: add "_raw", everything merge() needs to combine windows (every
    function and site, every duration), not only the top rows."""
    meta = trace.metadata
    n = trace.slice_count
    lo, hi = time_range(trace, since_ns, until_ns)
    covered_from, covered_until = trace.coverage
    cov_lo = min(max(lo, covered_from), hi)
    cov_hi = max(cov_lo, min(hi, covered_until))
    walked = _walk(trace, cov_lo, cov_hi, raw)
    threads = walked["threads"]
    blocking = walked["blocking"]
    events_mode = trace.mode == "events"
    samples = [e for e in trace.samples() if lo <= e.ts_ns <= hi] if events_mode else []
    if events_mode:
        blocking = _events_threads(trace, threads, samples, cov_lo, cov_hi)

    gc: dict[str, dict[str, Any]] = {}
    pauses: dict[str, list[int]] = defaultdict(list)
    spans: list[tuple[int, int]] = []
    gc_by_thread: dict[str, int] = defaultdict(int)
    for event in trace.gc_events():
        if event.start_ns > hi or event.end_ns < lo:
            continue
        g = gc.setdefault(f"gen{event.generation}", {"count": 0, "total_ns": 0, "max_ns": 0,
                                                      "collected": 0})
        g["count"] += 1
        g["total_ns"] += event.dur_ns
        g["max_ns"] = max(g["max_ns"], event.dur_ns)
        g["collected"] += max(event.collected, 0)
        pauses[f"gen{event.generation}"].append(event.dur_ns)
        spans.append((event.start_ns, event.end_ns))
        # the collection ran inside that thread's running time
        gc_by_thread[event.thread] += _overlap(event.start_ns, event.end_ns, cov_lo, cov_hi)
    for gen, values in pauses.items():
        gc[gen].update(_percentiles(values))

    covered = cov_hi - cov_lo
    out_threads = []
    for t in threads:
        b = t["blocked_ns"]
        in_gc = gc_by_thread.get(t["name"], 0)
        row = {"name": t["name"], "tid": t["tid"], "calls": t["calls"]}
        if events_mode:
            running = max(0, t.get("life_ns", 0) - sum(b.values()) - in_gc)
            row.update(python_s=None, c_s=None, running_s=_seconds(running))
        else:
            python = max(0, t["python_ns"] - in_gc)
            row.update(python_s=_seconds(python), c_s=_seconds(t["c_ns"]),
                       running_s=_seconds(python + t["c_ns"]))
        row["blocked_s"] = {k: _seconds(v) for k, v in b.items()}
        row["gc_s"] = _seconds(in_gc)
        row["covered_s"] = _seconds(t.get("life_ns", covered) if events_mode else covered)
        row["unrecorded_s"] = _seconds((hi - lo) - covered)
        out_threads.append(row)
    out_threads.sort(key=lambda t: (t["name"] != "MainThread", t["name"]))

    def public(entry: dict[str, Any]) -> dict[str, Any]:
        return {k.replace("_ns", "_s"): (_seconds(v) if k.endswith("_ns") else v) for k, v in entry.items()}

    funcs = list(walked["functions"].values())
    by_inclusive = sorted(funcs, key=lambda f: -f["inclusive_ns"])[:top]
    by_self = sorted(funcs, key=lambda f: -f["self_ns"])[:top]
    waits = walked["waits"]
    if events_mode:
        waits = [(e.thread, e.start_ns, e.end_ns, e.blocking) for e in trace.slices() if e.blocking]
    asyncio_section = _asyncio(trace, top, slow_step_ns, lo, hi, waits,
                               [(e.thread, e.start_ns, e.end_ns) for e in trace.gc_events()])
    step_latency = asyncio_section.pop("_latency")
    regions = _regions(walked["regions"], lo, hi)
    task_durations: dict[str, list[int]] = defaultdict(list)
    tasks = []
    for span in trace.spans():
        if span.category != "task" or span.start_ns > hi or span.end_ns < lo:
            continue
        task_durations[span.name].append(span.dur_ns)
        tasks.append({"name": span.name, "duration_s": _seconds(span.dur_ns),
                      "ended": not span.args.get("unfinished", False),
                      "began_in_window": not span.args.get("began_before_window", False)})
    blocking_rows = sorted(blocking.values(), key=lambda b: -b["total_ns"])
    result = {
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
            "since_s": _seconds(lo - meta.start_ns),
            "until_s": _seconds(hi - meta.start_ns),
            "covered_from_s": _seconds(cov_lo - meta.start_ns),
            "covered_s": _seconds(covered),
            "unrecorded_s": _seconds((hi - lo) - covered),
        },
        "threads": out_threads,
        "functions": {
            "by_inclusive": [public(f) for f in by_inclusive],
            "by_self": [public(f) for f in by_self],
        },
        "blocking": [public(b) for b in blocking_rows[:top]],
        "gc": {k: public(v) for k, v in sorted(gc.items())},
        "mmu": mmu(spans, lo, hi),
        "asyncio": _public_nested(asyncio_section, public),
        "regions": [public(r) for r in regions[:top]],
        "latency": {
            "regions": [public(r) for r in regions[:top]],
            "tasks": [public(_distribution(name, v)) for name, v in
                      sorted(task_durations.items(), key=lambda kv: -sum(kv[1]))[:top]],
            "asyncio_steps": [public(r) for r in sorted(step_latency, key=lambda r: -r["total_ns"])[:top]],
            "blocking": [public(b) for b in blocking_rows[:top]],
            "gc": {gen: public(_distribution(gen, v)) for gen, v in sorted(pauses.items())},
        },
        "tasks": tasks[:top],
        "logs": [
            {"at_s": _seconds(e.ts_ns - meta.start_ns), "thread": str(e.args.get("thread", e.track)),
             "category": e.args.get("category", e.category), "message": e.args.get("message", e.name),
             "task": e.args.get("task")}
            for e in trace.logs() if lo <= e.ts_ns <= hi
        ][:top * 10],
        "counters": _counters(trace, lo, hi),
        "samples": _samples(samples, top),
    }
    if raw:
        result["_raw"] = {
            "functions": [public(f) for f in funcs],
            "blocking": [public(b) for b in blocking_rows],
            "durations": {
                "regions": _region_durations(walked["regions"], lo, hi),
                "tasks": dict(task_durations),
                "asyncio_steps": _step_durations(trace, lo, hi),
                "blocking": {"\x00".join(k): v for k, v in walked["raw_sites"].items()},
                "gc": dict(pauses),
            },
            "gc_pauses": spans,
            "window_ns": (lo, hi),
        }
    return result


def _region_durations(regions: list[tuple[str, int, int]], lo: int, hi: int) -> dict[str, list[int]]:
    """The durations of the regions overlapping [lo, hi], by name."""
    durations: dict[str, list[int]] = defaultdict(list)
    for name, start, dur in regions:
        if start <= hi and start + dur >= lo:
            durations[name].append(dur)
    return dict(durations)


def _step_durations(trace: Trace, lo: int, hi: int) -> dict[str, list[int]]:
    by_name: dict[str, list[int]] = defaultdict(list)
    for step in trace.steps():
        if step.start_ns > hi or step.end_ns < lo:
            continue
        by_name[step.name].append(step.dur_ns)
    return dict(by_name)


def merge(summaries: list[dict[str, Any]], top: int = 20) -> dict[str, Any]:
    """One report of many windows: summaries made with raw=True, combined
    (sums of times and counts; latency percentiles over every duration; the
    MMU of the worst window)."""
    window: dict[str, Any] = {"files": len(summaries), "start": None, "end": None, "duration_s": 0.0,
                              "covered_s": 0.0, "unrecorded_s": 0.0, "slices": 0, "records_lost": 0,
                              "mode": None, "damaged": [], "pid": None, "python": None, "hook": None,
                              "truncated": False, "closed_by": None, "damage": None,
                              "since_s": 0.0, "until_s": 0.0, "covered_from_s": 0.0}
    threads: dict[str, dict[str, Any]] = {}
    functions: dict[tuple[str, str, int], dict[str, Any]] = {}
    blocking: dict[tuple[str, str, str], dict[str, Any]] = {}
    gc: dict[str, dict[str, Any]] = {}
    durations: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    mmus: list[list[dict[str, Any]]] = []
    asyncio_tasks: dict[str, dict[str, Any]] = {}
    slow: list[dict[str, Any]] = []
    counters: dict[str, dict[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    samples_top: dict[tuple[str, str], dict[str, Any]] = {}
    sample_count = 0
    modes = set()
    for s in summaries:
        w = s["window"]
        modes.add(w["mode"])
        for key in ("start", "end"):
            if isinstance(w[key], str):
                current = window[key]
                pick = min if key == "start" else max
                window[key] = w[key] if current is None else pick(current, w[key])
        for key in ("duration_s", "covered_s", "unrecorded_s"):
            window[key] = _seconds((window[key] + (w.get(key) or 0.0)) * 1e9)
        window["slices"] += w["slices"]
        window["records_lost"] += w["records_lost"]
        window["truncated"] = window["truncated"] or w["truncated"]
        if w.get("damage"):
            window["damaged"].append({"file": s["file"], "damage": w["damage"]})
        for t in s["threads"]:
            m = threads.get(t["name"])
            if m is None:
                threads[t["name"]] = {**t, "blocked_s": dict(t["blocked_s"])}
                continue
            for key in ("calls", "python_s", "c_s", "running_s", "gc_s", "covered_s", "unrecorded_s"):
                if m.get(key) is not None and t.get(key) is not None:
                    m[key] = m[key] + t[key] if isinstance(m[key], int) else round(m[key] + t[key], 9)
            for r, v in t["blocked_s"].items():
                m["blocked_s"][r] = round(m["blocked_s"].get(r, 0.0) + v, 9)
        raw = s["_raw"]
        for f in raw["functions"]:
            m = functions.setdefault((f["name"], f["file"], f["line"]), {**f, "calls": 0, "inclusive_s": 0.0, "self_s": 0.0})
            m["calls"] += f["calls"]
            m["inclusive_s"] = round(m["inclusive_s"] + f["inclusive_s"], 9)
            m["self_s"] = round(m["self_s"] + f["self_s"], 9)
        for b in raw["blocking"]:
            m = blocking.setdefault((b["reason"], b["caller"], b["function"]),
                                    {"reason": b["reason"], "caller": b["caller"], "function": b["function"],
                                     "count": 0, "total_s": 0.0, "max_s": 0.0})
            m["count"] += b["count"]
            m["total_s"] = round(m["total_s"] + b["total_s"], 9)
            m["max_s"] = max(m["max_s"], b["max_s"])
        for gen, g in s["gc"].items():
            m = gc.setdefault(gen, {"count": 0, "total_s": 0.0, "max_s": 0.0, "collected": 0})
            m["count"] += g["count"]
            m["total_s"] = round(m["total_s"] + g["total_s"], 9)
            m["max_s"] = max(m["max_s"], g["max_s"])
            m["collected"] += g["collected"]
        for kind, groups in raw["durations"].items():
            for name, values in groups.items():
                durations[kind][name].extend(values)
        mmus.append(s["mmu"])
        for t in s["asyncio"]["by_task"]:
            m = asyncio_tasks.setdefault(t["task"], {**t, "steps": 0, "total_s": 0.0, "max_s": 0.0,
                                                     "running_s": 0.0, "gc_s": 0.0,
                                                     "blocked_s": dict.fromkeys(REASONS, 0.0)})
            m["steps"] += t["steps"]
            m["total_s"] = round(m["total_s"] + t["total_s"], 9)
            m["max_s"] = max(m["max_s"], t["max_s"])
            for k in ("running_s", "gc_s"):
                m[k] = round(m[k] + t.get(k, 0.0), 9)
            for r, v in t.get("blocked_s", {}).items():
                m["blocked_s"][r] = round(m["blocked_s"].get(r, 0.0) + v, 9)
        slow += [{**e, "file": s["file"]} for e in s["asyncio"]["slow_steps"]]
        for name, k in s["counters"].items():
            m = counters.setdefault(name, dict(k))
            if m is not k:
                m["samples"] += k["samples"]
                m["min"] = min(m["min"], k["min"])
                m["max"] = max(m["max"], k["max"])
                m["last"] = k["last"]
        tasks += s["tasks"]
        logs += [{**e, "file": s["file"]} for e in s["logs"]]
        sample_count += s["samples"]["count"]
        for e in s["samples"]["top"]:
            m = samples_top.setdefault((e["function"], e["file"]), {**e, "self": 0, "total": 0})
            m["self"] += e["self"]
            m["total"] += e["total"]
    window["mode"] = modes.pop() if len(modes) == 1 else ("mixed" if modes else None)
    window["until_s"] = window["duration_s"]
    window["covered_from_s"] = window["unrecorded_s"]
    if window["damaged"]:
        window["damage"] = f"{len(window['damaged'])} of the files are damaged (showing what is readable)"

    def dist(kind: str, name: str) -> dict[str, Any]:
        return {k.replace("_ns", "_s"): (_seconds(v) if k.endswith("_ns") else v)
                for k, v in _distribution(name, durations[kind][name]).items()}

    for gen, g in gc.items():
        d = dist("gc", gen)
        g.update({k: d[k] for k in ("p50_s", "p90_s", "p99_s")})
    for (reason, caller, function), b in blocking.items():
        d = dist("blocking", "\x00".join((reason, caller, function)))
        b.update({k: d[k] for k in ("p50_s", "p90_s", "p99_s")})
    mmu_rows = []
    for i, w_ns in enumerate(MMU_WINDOWS_NS):
        values = [m[i]["utilization"] for m in mmus if i < len(m) and m[i]["utilization"] is not None]
        mmu_rows.append({"window_s": _seconds(w_ns), "utilization": min(values) if values else None})
    funcs = list(functions.values())
    blocking_rows = sorted(blocking.values(), key=lambda b: -b["total_s"])
    regions = sorted((dist("regions", n) for n in durations["regions"]), key=lambda r: -r["total_s"])
    slow.sort(key=lambda e: -e["duration_s"])
    merged_samples = sorted(samples_top.values(), key=lambda e: (-e["self"], -e["total"], e["function"]))
    return {
        "file": [s["file"] for s in summaries],
        "window": window,
        "threads": sorted(threads.values(), key=lambda t: (t["name"] != "MainThread", t["name"])),
        "functions": {"by_inclusive": sorted(funcs, key=lambda f: -f["inclusive_s"])[:top],
                      "by_self": sorted(funcs, key=lambda f: -f["self_s"])[:top]},
        "blocking": blocking_rows[:top],
        "gc": dict(sorted(gc.items())),
        "mmu": mmu_rows,
        "asyncio": {"tasks": len(asyncio_tasks), "steps": sum(t["steps"] for t in asyncio_tasks.values()),
                    "by_task": sorted(asyncio_tasks.values(), key=lambda t: -t["total_s"])[:top],
                    "slow_steps": slow[:top], "slow_step_count": sum(s["asyncio"]["slow_step_count"] for s in summaries)},
        "regions": regions[:top],
        "latency": {
            "regions": regions[:top],
            "tasks": sorted((dist("tasks", n) for n in durations["tasks"]), key=lambda r: -r["total_s"])[:top],
            "asyncio_steps": sorted((dist("asyncio_steps", n) for n in durations["asyncio_steps"]),
                                    key=lambda r: -r["total_s"])[:top],
            "blocking": blocking_rows[:top],
            "gc": {gen: dist("gc", gen) for gen in sorted(durations["gc"])},
        },
        "tasks": tasks[:top],
        "logs": logs[:top * 10],
        "counters": counters,
        "samples": {"count": sample_count, "top": merged_samples[:top]},
    }


def _public_nested(section: dict[str, Any], public: Any) -> dict[str, Any]:
    return {k: [public(e) for e in v] if isinstance(v, list) else v for k, v in section.items()}


def format_text(summary: dict[str, Any], top: int = 10) -> str:
    """The summary as text for a terminal."""
    w = summary["window"]
    lines = [
        f"trace    {summary['file']}" if isinstance(summary["file"], str)
        else f"traces   {len(summary['file'])} files: {summary['file'][0]} .. {summary['file'][-1]}",
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
    if w.get("files"):
        lines.append(f"files    {w['files']} windows" + (f", {w['unreadable']} unreadable" if w.get("unreadable") else ""))
    if "covered_s" in w:
        span = (w["until_s"] or 0) - (w["since_s"] or 0)
        text = f"covered  {w['covered_s']:.3f} s of {span:.3f} s"
        if w.get("since_s") or (w.get("until_s") is not None and abs(span - w["duration_s"]) > 1e-9):
            text += f" (range {w['since_s']:.3f} s .. {w['until_s']:.3f} s of the window)"
        if w.get("unrecorded_s"):
            where = "" if w.get("files") else f" (records lost before {w['covered_from_s']:.3f} s)"
            text += f"; {w['unrecorded_s']:.3f} s unrecorded{where}: every time below covers only the covered span"
        lines.append(text)
    events_mode = w.get("mode") == "events"
    if events_mode:
        lines += ["", "threads                         running   sleep      io    lock  subproc      GC  unrecorded"]
        for t in summary["threads"]:
            b = t["blocked_s"]
            lines.append(f"  {t['name'][:28]:<28} {t['running_s']:>8.3f} {b['sleep']:>7.3f} "
                         f"{b['io']:>7.3f} {b['lock']:>7.3f} {b['subprocess']:>8.3f} {t['gc_s']:>7.3f} "
                         f"{t.get('unrecorded_s', 0.0):>11.3f}")
        smp = summary["samples"]
        lines += ["", f"top functions by samples ({smp['count']} samples)         self     total"]
        for f in smp["top"][:top]:
            lines.append(f"  {f['function'][:48]:<48} {f['self']:>7} {f['total']:>9}")
    else:
        lines += ["", "threads                          python       C   sleep      io    lock  subproc      GC  unrecorded"]
        for t in summary["threads"]:
            b = t["blocked_s"]
            lines.append(f"  {t['name'][:28]:<28} {_cell(t['python_s'], 8)} {_cell(t['c_s'], 7)} {b['sleep']:>7.3f} "
                         f"{b['io']:>7.3f} {b['lock']:>7.3f} {b['subprocess']:>8.3f} {t['gc_s']:>7.3f} "
                         f"{t.get('unrecorded_s', 0.0):>11.3f}")
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
                  "                   steps   total s     max s   running   blocked        GC"]
        for t in a["by_task"][:top]:
            label = f"{t['task']} ({t['coroutine']})"
            blocked = sum((t.get("blocked_s") or {}).values())
            lines.append(f"  {label[:48]:<48} {t['steps']:>7} {t['total_s']:>9.4f} {t['max_s']:>9.4f} "
                         f"{t.get('running_s', t['total_s']):>9.4f} {blocked:>9.4f} {t.get('gc_s', 0.0):>9.4f}")
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
    latency = summary.get("latency") or {}
    rows = [(kind, r) for kind in ("regions", "tasks", "asyncio_steps") for r in latency.get(kind, [])[:top]]
    rows += [("blocking", {**b, "name": f"{b['caller']} -> {b['function']}"}) for b in latency.get("blocking", [])[:top]]
    if rows:
        lines += ["", "latency (ms)                                   kind       count     p50     p90     p99     max"]
        for kind, r in rows:
            lines.append(f"  {str(r['name'])[:44]:<44} {kind.replace('asyncio_steps', 'step'):<9} {r['count']:>7} "
                         f"{r['p50_s'] * 1e3:>7.2f} {r['p90_s'] * 1e3:>7.2f} {r['p99_s'] * 1e3:>7.2f} "
                         f"{r['max_s'] * 1e3:>7.2f}")
    if summary["gc"]:
        lines += ["", "garbage collection     count   total s     max s   collected    p50 ms    p99 ms"]
        for gen, g in summary["gc"].items():
            lines.append(f"  {gen:<18} {g['count']:>7} {g['total_s']:>9.4f} {g['max_s']:>9.4f} "
                         f"{g['collected']:>11} {g.get('p50_s', 0) * 1e3:>9.3f} {g.get('p99_s', 0) * 1e3:>9.3f}")
    if summary.get("mmu"):
        cells = "  ".join(f"{_span(m['window_s'])} {'-' if m['utilization'] is None else format(m['utilization'], '.3f')}"
                          for m in summary["mmu"])
        lines += ["", f"minimum mutator utilization (worst share of time outside GC)  {cells}"]
    return "\n".join(lines)


def _cell(value: Optional[float], width: int) -> str:
    """A time column; "-" where a window has no such figure (an events file's Python/C split)."""
    return "-".rjust(width) if value is None else f"{value:>{width}.3f}"


def _span(seconds: float) -> str:
    return f"{seconds * 1e3:g}ms" if seconds < 1 else f"{seconds:g}s"


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3f}"


__all__ = ["GC_TRACK", "MMU_WINDOWS_NS", "format_text", "merge", "mmu", "summarize", "time_range"]
