"""Shared by `run` and `record`: the program to run, and settings as options."""

from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import sys

from exectrace.errors import ExectraceError
from exectrace.settings import SETTINGS, Setting, parse_value


def add_setting_options(parser: argparse.ArgumentParser, names: list[str]) -> None:
    """--interval, --duration, ... from the settings table (values parsed later,
    so errors name the setting and show an example)."""
    group = parser.add_argument_group("settings (see README: Settings)")
    for name in names:
        setting: Setting = SETTINGS[name]
        group.add_argument(setting.option, dest=f"setting_{name}", metavar="VALUE", default=None,
                           help=f"{setting.help} (env {setting.env}; e.g. {setting.example})")


def setting_values(args: argparse.Namespace, names: list[str]) -> dict[str, str]:
    """The settings given as options, as given (strings, for the API or the
    environment), after checking each (ExectraceConfigError on a bad one)."""
    values = {}
    for name in names:
        raw = getattr(args, f"setting_{name}")
        if raw is not None:
            parse_value(name, raw)
            values[name] = raw
    return values


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a library module as a script")
    parser.add_argument("program", nargs=argparse.REMAINDER,
                        help="script.py and its arguments (or, after -m MODULE, the module's arguments)")


def program_argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.program)
    if argv and argv[0] == "--":
        argv = argv[1:]
    return argv


def run_python_program(args: argparse.Namespace) -> int:
    """Runs `-m module args` or `script.py args` as __main__ in this process;
    returns its exit status."""
    argv = program_argv(args)
    if args.module:
        try:
            found = importlib.util.find_spec(args.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ExectraceError(f"no module named {args.module!r}")
        sys.argv = [args.module, *argv]
        target, runner = args.module, "module"
    else:
        if not argv:
            raise ExectraceError("no program given: e.g. exectrace record -o run.out app.py --port 8000")
        script = argv[0]
        if not os.path.isfile(script):
            raise ExectraceError(f"no such script: {script} (give a .py file, or -m module)")
        sys.argv = argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        target, runner = script, "path"
    try:
        if runner == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0
