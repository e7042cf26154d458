"""Run a built-in workload (threads contending for a lock, an asyncio echo over
loopback, sleeps, a pipe, garbage) under automatic tracing with a short
schedule, then show where the trace files are and the summary of the newest."""

from __future__ import annotations

import argparse
import os
import time
from typing import cast

from exectrace import api, demo, dumpstore
from exectrace.analysis import format_text, summarize
from exectrace.errors import ExectraceError
from exectrace.reader import read, read_metadata
from exectrace.settings import SETTINGS, Choice

HELP = "run a built-in workload under automatic tracing and summarize it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=12.0, help="how long the workload runs (default 12)")
    parser.add_argument("--interval", default="3s", help="time between windows (default 3s)")
    parser.add_argument("--duration", default="1s", help="length of each window (default 1s)")
    parser.add_argument("--dump-dir", default=SETTINGS["dump_dir"].default,
                        help=f"where trace files go (default {SETTINGS['dump_dir'].default})")
    parser.add_argument("--mode", choices=cast(Choice, SETTINGS["mode"].kind).choices, default=SETTINGS["mode"].default,
                        help="what windows record: events (the automatic tracer's default: waits "
                             "with stacks, samples, GC, asyncio steps) or calls (every call)")


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        raise ExectraceError(f"--seconds must be positive, e.g. --seconds 12 (got {args.seconds})")
    print(f"exectrace demo: running a workload for {args.seconds:g} s, tracing {args.duration} "
          f"every {args.interval} in `{args.mode}` mode into {os.path.abspath(args.dump_dir)}")
    started = time.time()
    api.start(interval=args.interval, duration=args.duration, dump_dir=args.dump_dir, mode=args.mode)
    try:
        done = demo.run(args.seconds)
    finally:
        api.stop()
    status = api.status()
    files = [f for f in dumpstore.owned_files(args.dump_dir) if f.end_time.timestamp() >= started - 1]
    print(f"workload: {done['orders']} orders, {done['replies']} echo replies")
    if not files:
        raise ExectraceError(f"no trace was written to {args.dump_dir}: {status.get('last_error')}")
    print(f"\n{len(files)} trace files in {os.path.abspath(args.dump_dir)}:")
    for f in files:
        print(f"  {f.name}  {f.size / 1024:.0f} KiB")
    # the newest whole window: the last file is usually the window cut short at stop
    complete = [f for f in files if not read_metadata(f.path).get("window.truncated", False)]
    newest = (complete or files)[-1]
    newest_path = os.path.abspath(newest.path)
    print(f"\nsummary of the newest whole window ({newest.name}):\n")
    print(format_text(summarize(read(newest.path, allow_damaged=True)), top=8))
    print(f"\nopen it in the Perfetto UI:  exectrace view {newest_path}")
    print(f"summarize any of them:       exectrace summary {newest_path}")
    print(f"list them:                   exectrace ls {os.path.abspath(args.dump_dir)}")
    if args.mode == "events":
        print("every call instead of events:  exectrace demo --mode calls  (or EXECTRACE_MODE=calls)")
    return 0
