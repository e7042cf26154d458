"""The ``exectrace`` command line. Each command is a module in
exectrace/commands/ with ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from exectrace._version import __version__
from exectrace.errors import ExectraceError

COMMANDS = {
    "demo": "run a built-in workload under automatic tracing and summarize it",
    "summary": "what a trace file says: threads, functions, blocking, GC",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exectrace",
        description="Automatic execution tracer for Python: recurring traces, Perfetto files, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"exectrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"exectrace.commands.{name}")
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ExectraceError as e:
        print(f"exectrace {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"exectrace {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
