"""The ``exectrace`` command line. Each command is a module in
exectrace/commands/ with a one-line ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; the module's docstring is the command's description.

Exit status: 0 success, 1 failure (one line on stderr, no traceback), 2 usage."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional

from exectrace import commands
from exectrace._version import __version__
from exectrace.errors import ExectraceError

#: Listed first in --help, in this order; other commands follow by name.
ORDER = ("run", "record", "demo", "summary", "view", "ls", "convert", "debug-zip")


def command_modules() -> dict[str, str]:
    """{command name: module name} of exectrace/commands/."""
    found = {info.name.replace("_", "-"): info.name for info in pkgutil.iter_modules(commands.__path__)
             if not info.name.startswith("_")}
    ranked = sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return {name: found[name] for name in ranked}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exectrace",
        description="Automatic execution tracer for Python: recurring traces, Perfetto files, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"exectrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in command_modules().items():
        module = importlib.import_module(f"exectrace.commands.{module_name}")
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
