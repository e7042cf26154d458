"""Summarize a trace file: the window, time per thread (running Python, in C,
blocked by reason, in GC), top functions, blocking call sites, GC pauses,
asyncio tasks and slow steps, user regions, tasks and logs, counters."""

from __future__ import annotations

import argparse
import json
from typing import Optional

from exectrace.analysis import format_text, summarize
from exectrace.errors import ExectraceConfigError
from exectrace.fleet import layout
from exectrace.reader import read
from exectrace.settings import parse_value

HELP = "what a trace file says: threads, functions, blocking, GC, asyncio, regions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a trace file (executiontrace.*.out), or one shipped: s3://BUCKET/KEY")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="rows per table (default 10)")
    parser.add_argument("--slow-step", metavar="DURATION",
                        help="list asyncio steps at least this long as slow, e.g. 50ms "
                             "(default: the slow_step setting the file was written with)")
    layout.add_store_options(parser)


def run(args: argparse.Namespace) -> int:
    slow_step: Optional[int] = None
    if args.slow_step is not None:
        try:
            slow_step = parse_value("slow_step", args.slow_step, source="--slow-step")[1]
        except ExectraceConfigError as e:
            raise ExectraceConfigError(str(e).replace("EXECTRACE_SLOW_STEP", "--slow-step")) from None
    path = args.file
    if layout.is_s3(path):  # downloaded to the cache first
        from exectrace.fleet import remote

        path = remote.fetch_trace(args, args.file)
    trace = read(path, allow_damaged=True)
    summary = summarize(trace, top=max(args.top, 1), slow_step_ns=slow_step)
    if path != args.file:
        summary["file"] = args.file
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_text(summary, top=max(args.top, 1)))
    return 0
