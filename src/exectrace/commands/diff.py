"""What changed between two traces (or two sets of traces): the functions
(self time), blocking call sites (time blocked), regions (total time, with medians)
and GC figures (pause time per generation, minimum mutator utilization) that
changed most, each with both values and the ratio NEW / OLD.

OLD and NEW are each a trace file or a dump directory (all its windows,
summarized together as `exectrace summary DIR` does). When the two sides
cover different lengths of time, rows are ranked by the change in time per
second covered, so a longer capture does not look slower; the values shown
are the totals."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any, Optional

from exectrace.commands.summary import summarize_file, summarize_many, trace_paths
from exectrace.errors import ExectraceError

HELP = "what got slower: functions, blocking, regions and GC that changed most between two traces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", help="a trace file or dump directory (before)")
    parser.add_argument("new", metavar="NEW", help="a trace file or dump directory (after)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="rows per table (default 10)")


def side(arg: str) -> dict[str, Any]:
    """The (merged) summary of one side."""
    if not os.path.isdir(arg):
        status, result = summarize_file(arg, 1 << 30, None)
        if status == "error":
            raise ExectraceError(result)
        return dict(result)
    paths = trace_paths([arg])
    if not paths:
        raise ExectraceError(f"no trace files in {arg} (give a trace file, or a dump directory holding "
                             "executiontrace.*.out files, e.g. ./executiontrace_dump)")
    return summarize_many(paths, 1 << 30, None)


def _rows(kind: str, old: dict[str, tuple[float, dict[str, Any]]], new: dict[str, tuple[float, dict[str, Any]]],
          old_span: float, new_span: float) -> list[dict[str, Any]]:
    rows = []
    for name in set(old) | set(new):
        a, a_info = old.get(name, (0.0, {}))
        b, b_info = new.get(name, (0.0, {}))
        if a == b == 0:
            continue
        rate_a = a / old_span if old_span > 0 else a
        rate_b = b / new_span if new_span > 0 else b
        rows.append({"kind": kind, "name": name, "old": a, "new": b,
                     "ratio": round(b / a, 4) if a else None,
                     "change_per_s": round(rate_b - rate_a, 9),
                     **{f"old_{k}": v for k, v in a_info.items()}, **{f"new_{k}": v for k, v in b_info.items()}})
    rows.sort(key=lambda r: (-abs(r["change_per_s"]), r["name"]))
    return rows


def diff(old: dict[str, Any], new: dict[str, Any], top: int = 10) -> dict[str, Any]:
    """The rows that changed most, per kind, from two summaries made with raw=True
    (or merged ones)."""
    old_span = old["window"].get("covered_s") or old["window"]["duration_s"]
    new_span = new["window"].get("covered_s") or new["window"]["duration_s"]

    def functions(s: dict[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
        rows = s["_raw"]["functions"] if "_raw" in s else s["functions"]["by_self"]
        return {f"{f['name']} ({f['file']}:{f['line']})" if f["file"] else f["name"]:
                (f["self_s"], {"calls": f["calls"], "inclusive_s": f["inclusive_s"]}) for f in rows}

    def blocking(s: dict[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
        rows = s["_raw"]["blocking"] if "_raw" in s else s["blocking"]
        return {f"{b['caller']} -> {b['function']} ({b['reason']})":
                (b["total_s"], {"count": b["count"], "p50_s": b.get("p50_s"), "p99_s": b.get("p99_s")})
                for b in rows}

    def regions(s: dict[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
        return {r["name"]: (r["total_s"], {"count": r["count"], "p50_s": r["p50_s"], "p99_s": r["p99_s"]})
                for r in s["latency"]["regions"]}

    def gc(s: dict[str, Any]) -> dict[str, tuple[float, dict[str, Any]]]:
        out: dict[str, tuple[float, dict[str, Any]]] = {
            f"{gen} pauses": (g["total_s"], {"count": g["count"], "max_s": g["max_s"]})
            for gen, g in s["gc"].items()}
        return out

    mmu_rows = []
    for a, b in zip(old.get("mmu") or [], new.get("mmu") or []):
        if a["utilization"] is None or b["utilization"] is None:
            continue
        mmu_rows.append({"kind": "mmu", "name": f"MMU at {a['window_s']:g} s", "old": a["utilization"],
                         "new": b["utilization"],
                         "ratio": round(b["utilization"] / a["utilization"], 4) if a["utilization"] else None,
                         "change": round(b["utilization"] - a["utilization"], 6)})
    return {
        "old": {"files": _files(old), "covered_s": old_span},
        "new": {"files": _files(new), "covered_s": new_span},
        "functions": _rows("function", functions(old), functions(new), old_span, new_span)[:top],
        "blocking": _rows("blocking", blocking(old), blocking(new), old_span, new_span)[:top],
        "regions": _rows("region", regions(old), regions(new), old_span, new_span)[:top],
        "gc": _rows("gc", gc(old), gc(new), old_span, new_span)[:top] + mmu_rows,
    }


def _files(s: dict[str, Any]) -> list[str]:
    return s["file"] if isinstance(s["file"], list) else [s["file"]]


def _ratio(r: Optional[float]) -> str:
    if r is None:
        return "new"
    if not math.isfinite(r):
        return "-"
    return f"{r:.2f}x"


def format_text(d: dict[str, Any]) -> str:
    lines = [f"old      {len(d['old']['files'])} file(s), {d['old']['covered_s']:.3f} s covered",
             f"new      {len(d['new']['files'])} file(s), {d['new']['covered_s']:.3f} s covered"]
    titles = {"functions": "functions (self time, s)", "blocking": "blocking call sites (time blocked, s)",
              "regions": "regions (total time, s)", "gc": "garbage collection (pause time, s; MMU)"}
    for section, title in titles.items():
        rows = d[section]
        if not rows:
            continue
        lines += ["", f"{title:<58} {'old':>10} {'new':>10} {'new/old':>8}"]
        for r in rows:
            lines.append(f"  {str(r['name'])[:56]:<56} {r['old']:>10.4f} {r['new']:>10.4f} {_ratio(r['ratio']):>8}")
    if all(not d[s] for s in titles):
        lines += ["", "no differences"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    old, new = side(args.old), side(args.new)
    result = diff(old, new, top=max(args.top, 1))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_text(result))
    return 0
