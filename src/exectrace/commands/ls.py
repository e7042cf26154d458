"""List the trace files of a dump directory, oldest first and newest last: end
time (UTC, from the file name), pid, size, window length, slices and records
lost (from each file's metadata), "[snapshot: REASON]" for a flight
recorder's snapshot, then the number of files and their total
size against total_dump_size_limit (the newest file's setting, else the
environment's).

Only files exectrace owns are listed: regular files (not symlinks) named
exactly executiontrace.<UTC end time>.<pid>.out. A file that cannot be read
shows "unreadable: <reason>" in place of its metadata.

DIR defaults to the dump directory of the environment (EXECTRACE_DIR, else
./executiontrace_dump). Every file is decoded to count its slices, which
takes a second or two per million slices; --no-read lists names and sizes only."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
from typing import Any, Optional

from exectrace import dumpstore
from exectrace.commands._format import human_size, printable
from exectrace.errors import ExectraceError
from exectrace.fleet import layout
from exectrace.reader import Trace, read, read_metadata
from exectrace.settings import format_size, from_env, parse_size

HELP = "list the trace files of a dump directory, newest last"

_HEADER = ("END (UTC)", "PID", "SIZE", "WINDOW", "MODE", "SLICES", "LOST", "FILE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", nargs="?", metavar="DIR",
                        help="a dump directory (default: EXECTRACE_DIR, else ./executiontrace_dump), "
                             "or s3://BUCKET/PREFIX where exectrace ship ships to")
    parser.add_argument("--json", action="store_true", help="print one JSON list, one object per file")
    parser.add_argument("--no-read", action="store_true",
                        help="do not open the files: only what their names and sizes say")
    parser.add_argument("--verify", action="store_true",
                        help="decode each file whole: count its slices and report damage (slow on big dirs)")
    group = parser.add_argument_group("s3:// only (from the object listing and metadata; see docs/fleet.md)")
    layout.add_selection_options(group)
    layout.add_store_options(parser, cache=False)


def _int(value: Any) -> Optional[int]:
    """A metadata number as an int; None for anything else (a damaged file's
    strings, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def _reason(error: ExectraceError, path: str) -> str:
    """The reader's message without the path (the row already names the file)."""
    text = str(error)
    if path in text:
        text = text.replace(path, "the file", 1)
    return text.splitlines()[0] if text else type(error).__name__


def describe(f: dumpstore.TraceFile, *, open_file: bool = True, verify: bool = False) -> dict[str, Any]:
    """One file as a JSON-ready dict; `error` says why it could not be read."""
    row: dict[str, Any] = {
        "name": f.name,
        "path": os.path.abspath(f.path),
        "end_time": f"{f.end_time:%Y-%m-%dT%H:%M:%S}.{f.end_time.microsecond // 1000:03d}Z",
        "pid": f.pid,
        "size": f.size,
        "window_duration_ns": None,
        "mode": None,
        "slices": None,
        "records_kept": None,
        "records_lost": None,
        "total_dump_size_limit": None,
        "closed_by": None,
        "snapshot_reason": None,
        "damage": None,
        "error": None,
    }
    if not open_file:
        return row
    trace: Optional[Trace] = None
    try:
        if verify:
            trace = read(f.path, allow_damaged=True)
            meta = trace.metadata.values
        else:
            meta = read_metadata(f.path).values
    except ExectraceError as e:
        row["error"] = _reason(e, f.path)
        return row
    except (OSError, MemoryError, ValueError) as e:  # pragma: no cover - the reader reports its own errors
        row["error"] = f"{type(e).__name__}: {e}"
        return row
    row["window_duration_ns"] = _int(meta.get("window.duration_ns"))
    mode = meta.get("recorder.mode", "calls")  # files from before the events mode are calls files
    row["mode"] = mode if mode in ("events", "calls") else None
    # Without --verify the count comes from the metadata: a complete file
    # holds one slice per call kept, per collection, and the window slice;
    # --verify decodes the file and counts its slices.
    if trace is not None:
        row["slices"] = trace.slice_count
    else:
        kept, collections = _int(meta.get("records.kept")), _int(meta.get("gc.collections"))
        row["slices"] = kept + collections + 1 if kept is not None and collections is not None else None
    row["records_kept"] = _int(meta.get("records.kept"))
    row["records_lost"] = _int(meta.get("records.lost"))
    limit = meta.get("settings.total_dump_size_limit")
    if isinstance(limit, str):
        try:
            row["total_dump_size_limit"] = parse_size(limit)
        except ValueError:
            pass
    closed_by = meta.get("window.closed_by")
    row["closed_by"] = closed_by if isinstance(closed_by, str) else None
    if row["closed_by"] == "snapshot":
        reason = meta.get("snapshot.reason")
        row["snapshot_reason"] = str(reason) if reason is not None else ""
    row["damage"] = trace.damage if trace is not None else None
    return row


def _cells(row: dict[str, Any]) -> list[str]:
    ns = row["window_duration_ns"]
    return [
        row["end_time"][:-1].replace("T", " "),
        str(row["pid"]),
        human_size(row["size"]),
        "-" if ns is None else f"{ns / 1e9:.3f}s",
        row["mode"] or "-",
        "-" if row["slices"] is None else str(row["slices"]),
        "-" if row["records_lost"] is None else str(row["records_lost"]),
    ]


_WIDTHS = (23, 7, 10, 9, 6, 9, 7)


def _line(cells: list[str], name: str) -> str:
    first = cells[0].ljust(_WIDTHS[0])
    rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], _WIDTHS[1:]))
    return f"{first}  {rest}  {name}"


def _format_row(row: dict[str, Any]) -> str:
    if row["error"] is not None:
        cells = _cells(row)[:3]
        head = cells[0].ljust(_WIDTHS[0]) + "  " + "  ".join(
            c.rjust(w) for c, w in zip(cells[1:], _WIDTHS[1:3]))
        return f"{head}  {row['name']}  unreadable: {row['error']}"
    text = _line(_cells(row), row["name"])
    if row["closed_by"] == "snapshot":
        text += f"  [snapshot: {printable(row['snapshot_reason'])}]"
    if row["damage"]:
        text += f"  (damaged: {row['damage']})"
    return text


def _environment_limit() -> Optional[int]:
    try:
        return from_env(os.environ)[0].total_dump_size_limit
    except ExectraceError:
        return None


def total_line(rows: list[dict[str, Any]], env_limit: Optional[int]) -> str:
    total = sum(r["size"] for r in rows)
    count = f"{len(rows)} file{'' if len(rows) == 1 else 's'}"
    text = f"{count}, {human_size(total)} ({total} bytes)"
    limit, source = None, ""
    for i, r in enumerate(reversed(rows)):
        if r["total_dump_size_limit"] is not None:
            limit = r["total_dump_size_limit"]
            source = "the newest file's setting" if i == 0 else "the newest readable file's setting"
            break
    if limit is None and env_limit is not None:
        limit, source = env_limit, "the environment"
    if limit == 0:
        text += f"; total_dump_size_limit 0B ({source}): only the newest file is kept"
    elif limit is not None:
        text += f"; {100 * total / limit:.1f}% of the {format_size(limit)} total_dump_size_limit ({source})"
    return text


def dump_dir(arg: Optional[str]) -> str:
    """The directory to list: `arg`, else the environment's dump_dir (checked)."""
    directory = arg if arg is not None else from_env(os.environ)[0].dump_dir
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        hint = "" if arg is not None else " (from EXECTRACE_DIR or the default; give one, e.g. exectrace ls /var/tmp/executiontrace_dump)"
        raise ExectraceError(f"no such directory: {directory}{hint}") from None
    except OSError as e:
        raise ExectraceError(f"cannot read {directory}: {e.strerror or e}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ExectraceError(f"{directory} is not a directory; give a dump directory, e.g. exectrace ls ./executiontrace_dump")
    return directory


def list_files(directory: str) -> list[dumpstore.TraceFile]:
    try:
        return dumpstore.owned_files(directory)
    except OSError as e:
        raise ExectraceError(f"cannot list {directory}: {e.strerror or e}") from None


def run(args: argparse.Namespace) -> int:
    if layout.is_s3(args.dir):
        from exectrace.fleet import remote

        return remote.ls(args)
    if args.host_glob or args.since or args.until:
        raise ExectraceError("--host, --since and --until select shipped traces: give an s3:// URL, "
                             "e.g. exectrace ls s3://my-traces/prod --since 1h")
    directory = dump_dir(args.dir)
    files = list_files(directory)
    env_limit = _environment_limit()
    if args.json:
        rows = [describe(f, open_file=not args.no_read, verify=args.verify) for f in files]
        print(json.dumps(rows, indent=2))
        return 0
    if not files:
        print(f"no trace files in {os.path.abspath(directory)}")
        print(total_line([], env_limit))
        return 0
    print(_line(list(_HEADER[:-1]), _HEADER[-1]), flush=True)
    rows = []
    for f in files:  # printed as read: a large directory takes a while
        row = describe(f, open_file=not args.no_read, verify=args.verify)
        rows.append(row)
        print(_format_row(row), flush=True)
    print(total_line(rows, env_limit))
    return 0
