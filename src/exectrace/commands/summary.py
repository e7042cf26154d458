"""Summarize trace files: the window, how much of it the records cover, time
per thread (running Python, in C, blocked by reason, in GC, unrecorded), top
functions, blocking call sites, GC pauses and the minimum mutator
utilization, asyncio tasks and slow steps, latency distributions (regions,
user tasks, asyncio steps, blocking call sites), user tasks and logs, counters.

One file: --since/--until zoom into part of its window (offsets from the
window's start, e.g. --since 2.5s --until 4s).

Several files or a dump directory: one report of all their windows, read in
parallel (one process per core); --since/--until then select files by the
time in their names, as ages (--since 1h: the windows that ended within the
last hour). Unreadable files are skipped and counted.

Time outside what the records cover (the recorder's ring overflowed, the
file is damaged) is reported as unrecorded, never as a function's time."""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from exectrace import dumpstore
from exectrace._files import is_tty
from exectrace.analysis import format_text, merge, summarize
from exectrace.errors import ExectraceConfigError, ExectraceError
from exectrace.fleet import layout
from exectrace.reader import read
from exectrace.settings import parse_duration, parse_value

HELP = "what trace files say: threads, functions, blocking, GC, latency, asyncio, regions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE_OR_DIR",
                        help="a trace file (executiontrace.*.out), several, a dump directory, "
                             "or one shipped file: s3://BUCKET/KEY")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="rows per table (default 10)")
    parser.add_argument("--slow-step", metavar="DURATION",
                        help="list asyncio steps at least this long as slow, e.g. 50ms "
                             "(default: the slow_step setting the file was written with)")
    layout.add_store_options(parser)
    parser.add_argument("--since", metavar="DURATION",
                        help="one file: from this offset into its window, e.g. 2.5s; "
                             "several: only windows that ended within this long ago, e.g. 1h")
    parser.add_argument("--until", metavar="DURATION",
                        help="one file: until this offset into its window, e.g. 4s; "
                             "several: only windows that ended at least this long ago")
    parser.add_argument("--host", metavar="GLOB", dest="host_glob",
                        help="s3://BUCKET/PREFIX: only these hosts' windows (a shell pattern, e.g. 'web-*')")
    parser.add_argument("-j", "--jobs", type=int, default=0, metavar="N",
                        help="processes reading files in parallel (default: one per core)")


def duration_option(option: str, text: Optional[str]) -> Optional[int]:
    """A --since/--until value in ns; a bad one is a one-line error with an example."""
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ExectraceConfigError(f"{option} {text!r}: {e}; give a duration such as 2.5s, 500ms or 1h") from None


def trace_paths(args: list[str], since_ns: Optional[int] = None,
                until_ns: Optional[int] = None) -> list[str]:
    """The files named: each FILE as given, each directory's owned trace files
    (oldest first); with since/until (ages, ns), only owned files whose name
    says they ended in that span."""
    paths: list[str] = []
    now = datetime.now(timezone.utc)
    for arg in args:
        if os.path.isdir(arg):
            try:
                files = dumpstore.owned_files(arg)
            except OSError as e:
                raise ExectraceError(f"cannot list {arg}: {e.strerror or e}") from None
            for f in files:
                if _in_span(f.end_time, now, since_ns, until_ns):
                    paths.append(f.path)
            continue
        parsed = dumpstore.parse_name(os.path.basename(arg))
        if since_ns is not None or until_ns is not None:
            if parsed is None:
                raise ExectraceError(f"{arg}: --since/--until select files by the time in their names, "
                                     "and this is not a trace file's name (like executiontrace.2026-11-29T18_41_22.216.4242.out)")
            if not _in_span(parsed[0], now, since_ns, until_ns):
                continue
        paths.append(arg)
    return paths


def _in_span(end_time: datetime, now: datetime, since_ns: Optional[int], until_ns: Optional[int]) -> bool:
    age = now - end_time
    if since_ns is not None and age > timedelta(microseconds=since_ns / 1000):
        return False
    return not (until_ns is not None and age < timedelta(microseconds=until_ns / 1000))


def summarize_file(path: str, top: int, slow_step: Optional[int]) -> tuple[str, Any]:
    """("ok", raw summary) or ("error", message): what a worker process returns."""
    try:
        return "ok", summarize(read(path, allow_damaged=True), top=top, slow_step_ns=slow_step, raw=True)
    except ExectraceError as e:
        return "error", str(e)
    except (MemoryError, RecursionError) as e:  # a file too large for this machine
        return "error", f"{path}: {type(e).__name__}"


def summarize_many(paths: list[str], top: int, slow_step: Optional[int], jobs: int = 0) -> dict[str, Any]:
    """One report of many files, read in parallel processes, merged in the
    order of their names (their end times): the same files give the same
    report wherever they are."""
    paths = sorted(paths, key=lambda p: (os.path.basename(p), p))
    jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
    jobs = max(1, min(jobs, len(paths)))
    show = len(paths) > 1 and is_tty(sys.stderr)
    results = []

    def done(result: tuple[str, Any]) -> None:
        results.append(result)
        if show:  # "exectrace summary: 3/10 files" on a terminal
            print(f"\rexectrace summary: {len(results)}/{len(paths)} files", end="", file=sys.stderr, flush=True)

    if jobs == 1:
        for p in paths:
            done(summarize_file(p, top, slow_step))
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for result in pool.map(summarize_file, paths, [top] * len(paths), [slow_step] * len(paths)):
                done(result)
    if show:
        print("\r" + " " * 48 + "\r", end="", file=sys.stderr, flush=True)
    summaries = [r for status, r in results if status == "ok"]
    errors = [r for status, r in results if status == "error"]
    if not summaries:
        raise ExectraceError(f"none of the {len(paths)} files is readable (first: {errors[0]})")
    report = merge(summaries, top=top)
    report["window"]["unreadable"] = len(errors)
    report["unreadable"] = errors
    return report


def run(args: argparse.Namespace) -> int:
    slow_step: Optional[int] = None
    if args.slow_step is not None:
        try:
            slow_step = parse_value("slow_step", args.slow_step, source="--slow-step")[1]
        except ExectraceConfigError as e:
            raise ExectraceConfigError(str(e).replace("EXECTRACE_SLOW_STEP", "--slow-step")) from None
    top = max(args.top, 1)
    if any(layout.is_s3(f) for f in args.files) and not (len(args.files) == 1 and args.files[0].endswith(".out")):
        return _print(summarize_many(_fleet_selection(args), top, slow_step, args.jobs), args.json, top)
    since = duration_option("--since", args.since)
    until = duration_option("--until", args.until)
    single = len(args.files) == 1 and not os.path.isdir(args.files[0])
    if single:
        if since is not None and until is not None and until <= since:
            raise ExectraceConfigError(f"--until {args.until} is not after --since {args.since}; "
                                       "give a range such as --since 2.5s --until 4s")
        path = args.files[0]
        if layout.is_s3(path):  # downloaded to the cache first
            from exectrace.fleet import remote

            path = remote.fetch_trace(args, path)
        trace = read(path, allow_damaged=True)
        summary = summarize(trace, top=top, slow_step_ns=slow_step, since_ns=since, until_ns=until)
        if path != args.files[0]:
            summary["file"] = args.files[0]
    else:
        paths = trace_paths(args.files, since, until)
        if not paths:
            span = " in that time span" if since is not None or until is not None else ""
            raise ExectraceError(f"no trace files{span} in {' '.join(args.files)} (give a trace file, or a dump "
                                 "directory holding executiontrace.*.out files, e.g. ./executiontrace_dump)")
        summary = summarize_many(paths, top, slow_step, args.jobs)
    return _print(summary, args.json, top)


def _print(summary: dict[str, Any], as_json: bool, top: int) -> int:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_text(summary, top=top))
    return 0


def _fleet_selection(args: argparse.Namespace) -> list[str]:
    """s3://BUCKET/PREFIX... with --host/--since/--until: the windows shipped
    there, downloaded in parallel to the local cache; their local paths."""
    from exectrace.fleet import remote

    if any(not layout.is_s3(f) for f in args.files):
        raise ExectraceError("give either local files and directories or s3:// prefixes, not both "
                             "(e.g. exectrace summary s3://traces/prod --since 1h --host 'web-*')")
    client = remote.client_for(args)
    root = remote.cache_root(args, client)
    selection = remote.Selection(args.host_glob, args.since, args.until)
    paths: list[str] = []
    for text in args.files:
        url = layout.parse_url(text, what="a bucket and prefix")
        objects = remote.list_traces(client, url, selection)
        paths += remote.fetch_all(client, root, url.bucket, objects)
    if not paths:
        raise ExectraceError(f"no trace files shipped under {' '.join(args.files)} for that selection "
                             "(see exectrace ls s3://BUCKET/PREFIX)")
    return paths
