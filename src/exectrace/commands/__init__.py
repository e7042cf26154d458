"""The ``exectrace`` commands, one module each, listed in :data:`_COMMANDS`.

A command module has a one-line ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; its docstring is the command's description. To add a
command, write its module here and append its name to ``_COMMANDS``. Output
formatting that several commands share lives in ``_format.py``.
"""

from __future__ import annotations

#: The commands in the order ``exectrace --help`` lists them; a command
#: ``debug-zip`` is the module ``debug_zip``.
_COMMANDS = [
    "run",
    "record",
    "demo",
    "summary",
    "view",
    "ls",
    "convert",
    "debug-zip",
    "diff",
    "ship",
    "fleet",
    "snapshot",
]


def module_name(command: str) -> str:
    """The module of `command`, in this package."""
    return "exectrace.commands." + command.replace("-", "_")
