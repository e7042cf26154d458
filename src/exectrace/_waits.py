"""Waits and asyncio steps in `events` windows on Python 3.9-3.11.

Those versions have no cheap hook (PyEval_SetProfile costs 2.5-3x by itself),
so for the duration of a window exectrace puts recording wrappers
(``_tracecore.wait_wrapper``, native, one flag check outside a window) in
place of the blocking functions code reaches through an attribute lookup:

- module functions of the blocking table (time.sleep, select.select,
  os.read/write/waitpid, socket.getaddrinfo, ...) in the modules that hold
  them (``time``, ``os``/``posix``, ``socket``/``_socket``, ``select``,
  ``signal``);
- socket.socket's waiting methods (recv, send, sendall, connect, _accept, ...);
- the selectors' select() (named after the poll they wait in), threading's
  Condition.wait and Thread._wait_for_tstate_lock (named after the lock
  acquire they wait in: Event, Queue, Semaphore, futures and join go
  through them);
- asyncio's Handle._run (task steps).

What stays invisible there, and is seen on 3.12+: a function bound before
the window (``from time import sleep``), waits inside C code (file reads
through ``_io``, ssl), and direct calls of ``_thread.lock.acquire``. A
wrapper is removed at the window's end only if it is still in place (an
application or library that patched the same attribute since keeps its
patch). No module is imported here: this runs in exectrace's own thread.
"""

from __future__ import annotations

import sys
from typing import Any

from exectrace import _tracecore, blocking

#: Modules whose namespace holds blocking builtins, by the builtin's home module.
_HOLDERS = {
    "time": ("time",),
    "posix": ("posix", "os"),
    "_socket": ("_socket", "socket"),
    "select": ("select",),
    "signal": ("_signal", "signal"),
    "_posixsubprocess": ("_posixsubprocess",),
}

# (owner, attribute, what was there, the wrapper)
_installed: list[tuple[Any, str, Any, Any, bool]] = []


def _patch(owner: Any, name: str, wrapper: Any) -> None:
    had_own = name in vars(owner)
    original = vars(owner)[name] if had_own else getattr(owner, name)
    setattr(owner, name, wrapper)
    _installed.append((owner, name, original, wrapper, had_own))


def install() -> int:
    """Puts the wrappers in place; returns how many."""
    if _installed:
        return len(_installed)
    done: set[tuple[int, str]] = set()
    for func, _reason in blocking.callables():
        module_name = getattr(func, "__module__", None)
        name = getattr(func, "__name__", "")
        if type(func).__name__ != "builtin_function_or_method" or module_name not in _HOLDERS:
            continue
        for holder_name in _HOLDERS[module_name]:
            holder = sys.modules.get(holder_name)
            if holder is not None and vars(holder).get(name) is func and (id(holder), name) not in done:
                done.add((id(holder), name))
                _patch(holder, name, _tracecore.wait_wrapper(func, func))
    socket_module = sys.modules.get("socket")
    c_socket = getattr(sys.modules.get("_socket"), "socket", None)
    if socket_module is not None and c_socket is not None:
        for name in ("recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into",
                     "send", "sendall", "sendto", "sendmsg", "_accept", "connect", "connect_ex"):
            method = vars(c_socket).get(name)
            if method is not None and getattr(socket_module.socket, name, None) is method:
                _patch(socket_module.socket, name, _tracecore.wait_wrapper(method, method))
    selectors = sys.modules.get("selectors")
    select = sys.modules.get("select")
    if selectors is not None and select is not None:
        # select.select may be a wrapper already (patched above): name after the original
        polls: list[tuple[str, Any]] = [("SelectSelector", getattr(select.select, "__wrapped__", select.select))]
        if hasattr(select, "epoll"):
            polls.append(("EpollSelector", select.epoll.poll))
        if hasattr(select, "poll"):
            try:
                probe = select.poll()
            except OSError:
                probe = None
            if probe is not None:
                polls.append(("PollSelector", type(probe).poll))
        for class_name, poll in polls:
            cls = getattr(selectors, class_name, None)
            if cls is not None and "select" in vars(cls):
                _patch(cls, "select", _tracecore.wait_wrapper(vars(cls)["select"], poll))
    threading = sys.modules.get("threading")
    thread = sys.modules.get("_thread")
    if threading is not None and thread is not None:
        acquire = type(thread.allocate_lock()).acquire
        for cls, name in ((threading.Condition, "wait"), (threading.Thread, "_wait_for_tstate_lock")):
            if name in vars(cls):
                _patch(cls, name, _tracecore.wait_wrapper(vars(cls)[name], acquire))
    events = sys.modules.get("asyncio.events")
    handle = getattr(events, "Handle", None)
    if handle is not None and "_run" in vars(handle):
        _patch(handle, "_run", _tracecore.step_wrapper(vars(handle)["_run"]))
    return len(_installed)


def uninstall() -> None:
    """Puts back what was there, where the wrapper is still in place."""
    while _installed:
        owner, name, original, wrapper, had_own = _installed.pop()
        if vars(owner).get(name) is not wrapper:
            continue  # patched again since: theirs now
        try:
            if had_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        except (AttributeError, TypeError):
            pass
