"""The ``exectrace`` command line: the commands listed in
exectrace/commands/__init__.py, one module each.

Exit status: 0 success, 1 failure (one line on stderr, no traceback), 2 usage."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from exectrace import commands
from exectrace._version import __version__
from exectrace.errors import ExectraceError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exectrace",
        description="Automatic execution tracer for Python: recurring traces, Perfetto files, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"exectrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in commands._COMMANDS:
        module = importlib.import_module(commands.module_name(name))
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
