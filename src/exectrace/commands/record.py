"""Trace a whole run of a Python program into one file.

  exectrace record -o run.out app.py --port 8000
  exectrace record -o run.out --c-calls false -m mypackage.tool arg

The program runs in this process as __main__; the file is written when it
ends (also when it raises or calls sys.exit). Use a buffer large enough for
the run (--buffer-size): when it fills, the oldest calls are dropped and the
file says how many."""

from __future__ import annotations

import argparse
import os

from exectrace.capture import tracing
from exectrace.commands._program import (
    add_program_arguments,
    add_setting_options,
    run_python_program,
    setting_values,
)
from exectrace.errors import ExectraceError

HELP = "trace a whole run of a Python program (script or -m module) into one file"

OPTIONS = ["mode", "sample_interval", "min_block", "buffer_size", "c_calls", "min_duration", "max_depth", "include", "exclude", "compress", "clock"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the trace file to write")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    add_setting_options(parser, OPTIONS)
    add_program_arguments(parser)


def run(args: argparse.Namespace) -> int:
    values = setting_values(args, OPTIONS)
    if os.path.exists(args.output) and not args.force:
        raise ExectraceError(f"{args.output} exists; use --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        raise ExectraceError(f"no such directory for the output: {directory}")
    with tracing(args.output, **values):
        status = run_python_program(args)
    print(f"exectrace record: wrote {args.output}", flush=True)
    return status
