"""Run a program under automatic tracing without touching its code.

  exectrace run --interval 1m --duration 5s app.py --port 8000
  exectrace run --interval 30s -m mypackage.server
  exectrace run --interval 1m -- gunicorn app:wsgi -w 4

A script or -m module runs in this process with the tracer started. A
command after `--` runs with the EXECTRACE_* variables set, so every Python
process it starts traces itself through the autostart hook. Settings not
given come from the environment, then the defaults."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from exectrace import api
from exectrace.commands._program import (
    add_program_arguments,
    add_setting_options,
    program_argv,
    run_python_program,
    setting_values,
)
from exectrace.errors import ExectraceError
from exectrace.settings import SETTINGS, from_env, resolve

HELP = "run a program (script, -m module, or -- command) under automatic tracing"

OPTIONS = [name for name in SETTINGS]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_setting_options(parser, OPTIONS)
    parser.add_argument("--ship", metavar="s3://BUCKET/PREFIX",
                        help="also run `exectrace ship` on the dump dir, as a separate process, until the program exits")
    add_program_arguments(parser)


def run(args: argparse.Namespace) -> int:
    values = setting_values(args, OPTIONS)
    argv = program_argv(args)
    as_command = bool(args.program) and args.program[0] == "--" and not args.module
    if not argv and not args.module:
        raise ExectraceError("no program given: e.g. exectrace run --interval 1m app.py")
    if as_command and shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise ExectraceError(f"command not found: {argv[0]}")
    if not as_command and not args.module and not os.path.isfile(argv[0]):
        raise ExectraceError(f"no such script: {argv[0]} (give a .py file, -m module, or -- command)")
    if "interval" not in values and not os.environ.get(SETTINGS["interval"].env):
        values["interval"] = "1m"
        print("exectrace run: no --interval given; tracing every 1m", file=sys.stderr)
    ship = sidecar = None
    if args.ship is not None:
        from exectrace.fleet import launch  # no S3 client in this process: the sidecar has it

        ship = launch.check(args.ship)
        settings = resolve(from_env(os.environ)[0], **values)
        if as_command:
            launch.start_detached(ship, settings.dump_dir, settings.host)
        else:
            sidecar = launch.start_child(ship, settings.dump_dir, settings.host)
    if as_command:
        return _exec_command(argv, values)
    api.start(**values)
    try:
        return run_python_program(args)
    finally:
        api.stop()
        if sidecar is not None:
            launch.stop_child(sidecar)


def _exec_command(argv: list[str], values: dict[str, str]) -> int:
    """Replaces this process with the command, EXECTRACE_* set from `values`."""
    env = dict(os.environ)
    for name, value in values.items():
        env[SETTINGS[name].env] = value
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        raise ExectraceError(f"cannot run {argv[0]}: {e.strerror or e}") from None
    return 127  # not reached
