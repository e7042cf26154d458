"""Summarize a trace file: the window, time per thread (running Python, in C,
blocked by reason, in GC), top functions, blocking call sites and GC pauses."""

from __future__ import annotations

import argparse
import json

from exectrace.analysis import format_text, summarize
from exectrace.reader import read

HELP = "what a trace file says: threads, functions, blocking, GC"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a trace file (executiontrace.*.out)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--top", type=int, default=10, metavar="N", help="rows per table (default 10)")


def run(args: argparse.Namespace) -> int:
    trace = read(args.file, allow_damaged=True)
    summary = summarize(trace, top=max(args.top, 1))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_text(summary, top=max(args.top, 1)))
    return 0
