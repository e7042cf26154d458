"""The command list: every command module is listed, and each is a command."""

from __future__ import annotations

import importlib
import pkgutil

from exectrace import commands
from exectrace.__main__ import build_parser


def test_every_command_module_is_listed() -> None:
    modules = {info.name for info in pkgutil.iter_modules(commands.__path__)
               if not info.name.startswith("_")}
    assert {name.replace("-", "_") for name in commands._COMMANDS} == modules
    assert len(set(commands._COMMANDS)) == len(commands._COMMANDS)


def test_every_listed_command_is_one() -> None:
    for name in commands._COMMANDS:
        module = importlib.import_module(commands.module_name(name))
        assert isinstance(module.HELP, str) and module.HELP
        assert module.__doc__
        assert callable(module.add_arguments) and callable(module.run)


def test_help_lists_the_commands_in_order() -> None:
    help_text = build_parser().format_help()
    positions = [help_text.index(f"    {name}") for name in commands._COMMANDS]
    assert positions == sorted(positions)
