"""Names of what a window recorded: functions, threads, the process.

Resolved once per unique code object / C function when a window is written,
never on the hot path.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Iterable, Sequence
from typing import Any

from exectrace._compat import HAS_CO_QUALNAME

FunctionName = tuple[str, str, int]  # (display name, file, first line)


def c_function_name(method: str, owner: Any, defining: Any) -> str:
    """`time.sleep`, `_thread.lock.acquire`, `_socket.socket.recv`, `len`."""
    if isinstance(owner, type):
        return f"{type_name(defining if isinstance(defining, type) else owner)}.{method}"
    if isinstance(owner, str) and owner and owner != "builtins":
        return f"{owner}.{method}"
    return method


def type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if not module or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


class _QualnameIndex:
    """Qualified names of code objects, found by walking modules (Python < 3.11,
    where code objects carry only their short name)."""

    def __init__(self) -> None:
        self._by_code: dict[types.CodeType, str] = {}
        self._indexed_files: set[str] = set()

    def qualname(self, code: types.CodeType) -> str:
        name = self._by_code.get(code)
        if name is None and code.co_filename not in self._indexed_files:
            self._indexed_files.add(code.co_filename)
            self._index_file(code.co_filename)
            name = self._by_code.get(code)
        return name or code.co_name

    def _index_file(self, filename: str) -> None:
        for module in list(sys.modules.values()):
            if getattr(module, "__file__", None) == filename:
                self._walk(vars(module), "", depth=0, seen=set())

    def _add_code(self, code: types.CodeType, qualname: str) -> None:
        if code in self._by_code:
            return
        self._by_code[code] = qualname
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self._add_code(const, f"{qualname}.<locals>.{const.co_name}")

    def _walk(self, namespace: dict[str, Any], prefix: str, depth: int, seen: set[int]) -> None:
        if depth > 8:
            return
        for value in list(namespace.values()):
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    if isinstance(accessor, types.FunctionType):
                        self._add_code(accessor.__code__, accessor.__qualname__)
                continue
            if isinstance(value, types.FunctionType):
                self._add_code(value.__code__, value.__qualname__)
            elif isinstance(value, type) and id(value) not in seen:
                seen.add(id(value))
                try:
                    self._walk(dict(vars(value)), prefix, depth + 1, seen)
                except TypeError:
                    pass


def function_names(functions: Sequence[tuple[Any, ...]]) -> list[FunctionName]:
    """Display names for Capture.functions() entries, in the same order."""
    index = None if HAS_CO_QUALNAME else _QualnameIndex()
    names: list[FunctionName] = []
    for entry in functions:
        if entry[0] == "py":
            code = entry[1]
            qualname = code.co_qualname if index is None else index.qualname(code)
            names.append((qualname, code.co_filename, code.co_firstlineno))
        elif entry[0] == "region":
            names.append((str(entry[1]), "", 0))
        else:
            _, method, owner, defining = entry
            names.append((c_function_name(method, owner, defining), "", 0))
    return names


def thread_name_snapshot() -> dict[int, str]:
    """{threading ident: name} of the threads alive now."""
    return {ident: thread.name for ident, thread in list(threading._active.items())}  # type: ignore[attr-defined]


def thread_names(
    threads: Iterable[tuple[int, int, int, Any]], known: dict[int, str]
) -> list[str]:
    """One name per Capture.threads() entry (index, ident, native_id, Thread):
    the Thread's name, else a name seen during the window, else one made up."""
    main_ident = threading.main_thread().ident
    result = []
    for _index, ident, native_id, thread in threads:
        name = getattr(thread, "name", None) if isinstance(thread, threading.Thread) else None
        if not isinstance(name, str):
            name = known.get(ident)
        if name is None:
            name = "MainThread" if ident == main_ident else f"thread-{native_id or ident}"
        result.append(name)
    return result


def process_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-c"):
        return "python"
    if argv0 == "-m" or not os.path.basename(argv0):
        return "python"
    return f"python {os.path.basename(argv0)}"
