"""The fleet index: a trace file's summary rows as one Parquet object, written
with DuckDB beside the shipped trace, and queried with DuckDB.

One row per window (kind 'window'), per function ('function'), blocking call
site ('blocking'), user region ('region'), asyncio task ('task') and GC
generation ('gc'), computed by exectrace.analysis.summarize. Every row also
carries the window's columns, so any row can be filtered by time or pid
without a join. Times are integer nanoseconds (sums stay exact). `date` and
`host` are not stored in the file: they are the hive partition columns of
its key, PREFIX/_index/date=YYYY-MM-DD/host=H/<file>.parquet.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Optional

from exectrace.errors import ExectraceError

#: (column, DuckDB type), in file order. Documented in docs/fleet.md.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("trace", "VARCHAR"),          # the trace file's name
    ("pid", "BIGINT"),
    ("window_start", "TIMESTAMP"),  # UTC
    ("window_end", "TIMESTAMP"),
    ("duration_ns", "BIGINT"),
    ("mode", "VARCHAR"),           # calls | events
    ("reason", "VARCHAR"),         # why the window was written: schedule, exit, ...
    ("python", "VARCHAR"),
    ("exectrace", "VARCHAR"),
    ("records_kept", "BIGINT"),
    ("records_lost", "BIGINT"),
    ("bytes", "BIGINT"),           # the trace file's size
    ("kind", "VARCHAR"),           # window | function | blocking | region | task | gc
    ("name", "VARCHAR"),           # function, blocking function, region, task, gen0..2
    ("caller", "VARCHAR"),         # blocking: the calling function
    ("source", "VARCHAR"),         # function: its file; task: its coroutine
    ("line", "BIGINT"),            # function: its first line
    ("blocking", "VARCHAR"),       # blocking: sleep | io | lock | subprocess
    ("count", "BIGINT"),           # calls, blocks, regions, steps, collections; window: slices
    ("total_ns", "BIGINT"),        # function: inclusive; window: its length
    ("self_ns", "BIGINT"),         # function: self time
    ("max_ns", "BIGINT"),
    ("collected", "BIGINT"),       # gc: objects collected
)
KINDS = ("window", "function", "blocking", "region", "task", "gc")
#: Every row of a window, not only the top 20: passed to summarize().
ALL = 1 << 62


def _import_duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise ExectraceError("the fleet index needs duckdb, which is not installed: "
                             "pip install 'exectrace[s3]'") from None
    return duckdb


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("duckdb") is not None


def _ns(seconds: Any) -> Optional[int]:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    return int(round(seconds * 1e9))


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    try:
        return int(value)
    except (OverflowError, ValueError):
        return None


def _utc(ns: Optional[int]) -> Optional[datetime]:
    if ns is None:
        return None
    try:
        return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def rows(name: str, size: int, meta: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The index rows of one trace file: `meta` its metadata values, `summary`
    what analysis.summarize(trace, top=ALL) returned."""
    start = _int(meta.get("window.start_realtime_ns"))
    duration = _int(meta.get("window.duration_ns"))
    end = start + duration if start is not None and duration is not None else None
    window = {
        "trace": name, "pid": _int(meta.get("process.pid")),
        "window_start": _utc(start), "window_end": _utc(end), "duration_ns": duration,
        "mode": window_mode(meta), "reason": window_reason(meta),
        "python": _str(meta.get("python.version")), "exectrace": _str(meta.get("exectrace.version")),
        "records_kept": _int(meta.get("records.kept")), "records_lost": _int(meta.get("records.lost")),
        "bytes": size,
    }
    out: list[dict[str, Any]] = [{**window, "kind": "window", "count": summary["window"].get("slices"),
                                  "total_ns": duration}]
    functions = summary["functions"]["by_inclusive"]
    for f in functions:
        out.append({**window, "kind": "function", "name": f["name"], "source": f["file"], "line": f["line"],
                    "count": f["calls"], "total_ns": _ns(f["inclusive_s"]), "self_ns": _ns(f["self_s"])})
    for b in summary["blocking"]:
        out.append({**window, "kind": "blocking", "name": b["function"], "caller": b["caller"],
                    "blocking": b["reason"], "count": b["count"], "total_ns": _ns(b["total_s"]),
                    "max_ns": _ns(b["max_s"])})
    for r in summary["regions"]:
        out.append({**window, "kind": "region", "name": r["name"], "count": r["count"],
                    "total_ns": _ns(r["total_s"]), "max_ns": _ns(r["max_s"])})
    for t in summary["asyncio"]["by_task"]:
        out.append({**window, "kind": "task", "name": t["task"], "source": t["coroutine"], "count": t["steps"],
                    "total_ns": _ns(t["total_s"]), "max_ns": _ns(t["max_s"])})
    for gen, g in summary["gc"].items():
        out.append({**window, "kind": "gc", "name": gen, "count": g["count"], "total_ns": _ns(g["total_s"]),
                    "max_ns": _ns(g["max_s"]), "collected": g["collected"]})
    return out


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def window_mode(meta: dict[str, Any]) -> str:
    """The recording mode; files written before there were modes are 'calls'."""
    for key in ("settings.mode", "recorder.mode", "window.mode"):
        value = meta.get(key)
        if isinstance(value, str) and value:
            return value
    return "calls"


def window_reason(meta: dict[str, Any]) -> str:
    """Why the window was written: a snapshot's reason, else what closed it."""
    for key in ("window.reason", "snapshot.reason", "window.closed_by"):
        value = meta.get(key)
        if isinstance(value, str) and value:
            return value
    return "schedule"


def write_parquet(path: str, table: list[dict[str, Any]]) -> None:
    """The rows as a Parquet file (zstd), written by DuckDB."""
    duckdb = _import_duckdb()
    con = duckdb.connect(":memory:")
    try:
        con.execute("CREATE TABLE t (" + ", ".join(f'"{c}" {t}' for c, t in COLUMNS) + ")")
        columns = [[row.get(c) for row in table] for c, _ in COLUMNS]
        select = ", ".join(f"unnest(${i + 1}::{t}[])" for i, (_, t) in enumerate(COLUMNS))
        con.execute(f"INSERT INTO t SELECT {select}", columns)
        quoted = path.replace("'", "''")
        con.execute(f"COPY t TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()


def _by(by: str) -> tuple[str, str, str]:
    """(kind, group-by columns, order) of fleet top --by."""
    if by == "function":
        return "function", "name, source, line", "self_ns"
    if by == "blocking":
        return "blocking", "blocking, caller, name", "total_ns"
    if by == "region":
        return "region", "name", "total_ns"
    if by == "task":
        return "task", "name, source", "total_ns"
    if by == "gc":
        return "gc", "name", "total_ns"
    raise ExectraceError(f"invalid --by {by!r}: expected one of function, blocking, region, task, gc")


def top(paths: list[str], by: str, limit: int) -> list[dict[str, Any]]:
    """The top rows over the index files `paths` (local, laid out as
    .../date=D/host=H/<file>.parquet), summed over windows and hosts."""
    kind, group, order = _by(by)
    if not paths:
        return []
    duckdb = _import_duckdb()
    con = duckdb.connect(":memory:")
    try:
        sql = (
            f"SELECT {group}, sum(count)::BIGINT AS count, sum(total_ns)::BIGINT AS total_ns, "
            "sum(self_ns)::BIGINT AS self_ns, max(max_ns) AS max_ns, "
            "count(DISTINCT host) AS hosts, count(DISTINCT host || '/' || trace) AS windows "
            "FROM read_parquet($paths, hive_partitioning = true, "
            "hive_types = {'date': DATE, 'host': VARCHAR}) "
            f"WHERE kind = '{kind}' GROUP BY {group} ORDER BY {order} DESC NULLS LAST, {group} LIMIT $limit"
        )
        try:
            result = con.execute(sql, {"paths": [os.path.abspath(p) for p in paths], "limit": limit})
            names = [d[0] for d in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]
        except duckdb.Error as e:  # a damaged or foreign object under _index/
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExectraceError(f"cannot read the fleet index: {first}") from None
    finally:
        con.close()
