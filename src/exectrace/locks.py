"""Traced locks: make `with lock:` waits show in traces.

The hooks see every call of a C function made by a call expression
(`lock.acquire()` is recorded as `_thread.lock.acquire`), but a with
statement calls its context manager's `__enter__` through a special-method
lookup that fires no CALL (3.12+) or C_CALL (<= 3.11) event. So the
commonest lock wait of a Python program, `with lock:`, was invisible.

`install()` replaces `threading.Lock` and `threading.RLock` with
`exectrace.Lock` and `exectrace.RLock` (implemented in C, in
src/native/tracedlock.h): locks that behave like `_thread.lock` and
`_thread.RLock` of the running Python -- same methods, arguments, errors,
interruptible waits, `_at_fork_reinit`, `threading.Condition` support -- and
that, while a trace window records C calls, write their `__enter__` as a C
call slice (`exectrace.Lock.__enter__`, `exectrace.RLock.__enter__`) on the
waiting thread, nested under the Python function that ran the with
statement. Between windows they cost what a native lock costs plus one flag
check (see bench/test_locks.py). `uninstall()` puts the originals back.

What stays invisible (a `with` on these locks records nothing):

- locks created before `install()`, and locks created later through a name
  bound before it (`from threading import Lock` at import time, default
  arguments, class attributes);
- `_thread.allocate_lock()`, `_thread.RLock()`, `threading._allocate_lock()`
  and `threading._CRLock()`: not patched on purpose. The locks the standard
  library makes that way are Condition's waiter locks and thread-state
  locks; Condition.wait() and Thread.join() wait on them through explicit
  `acquire()` calls, which the hooks record anyway. Patching `_thread` would
  also reach the interpreter's own locks (importlib's module locks);
- locks of C extensions, and `asyncio.Lock` (not a thread lock; its waits
  are task steps).

`with cond:` on a `threading.Condition` is visible whatever its lock:
Condition.__enter__ (Python) calls `self._lock.__enter__()` explicitly, a C
call the hooks record (checked on 3.9-3.13 by tests/integration/
test_locks.py); a traced lock's own recording then stands aside, so the wait
is one slice, not two.

Known differences from native locks: `type(threading.Lock())` is
`exectrace.Lock`, so on 3.13 (where `threading.Lock` is the class
`_thread.lock`) `isinstance(native_lock, threading.Lock)` is False while
installed; on 3.13 native locks are built on `PyMutex` (which hands a
contended lock over fairly after 1 ms) while traced ones use the OS lock
that 3.9-3.12 use; `threading.RLock(*args)` no longer warns on 3.13
(arguments are ignored, as before).
"""

from __future__ import annotations

import _thread
import threading
from typing import Any

from exectrace import _tracecore

__all__ = ["Lock", "RLock", "install", "installed", "uninstall"]

Lock = _tracecore.Lock
RLock = _tracecore.RLock

_OURS: dict[str, Any] = {"Lock": Lock, "RLock": RLock}

# What threading held before install(), per name; kept until put back.
_saved: dict[str, Any] = {}
_guard = _thread.allocate_lock()


def install() -> None:
    """Makes `threading.Lock()` and `threading.RLock()` return traced locks.
    Idempotent; remembers what it replaced for `uninstall()`."""
    with _guard:
        for name, ours in _OURS.items():
            current = getattr(threading, name)
            if current is not ours:
                _saved[name] = current
                setattr(threading, name, ours)


def uninstall() -> None:
    """Puts back what `install()` replaced, where the traced type is still
    installed (a patch somebody made since is left alone). Locks already
    handed out stay traced locks: they keep working, and keep recording
    their `with` waits in later windows."""
    with _guard:
        for name, ours in _OURS.items():
            if getattr(threading, name) is ours and name in _saved:
                setattr(threading, name, _saved.pop(name))


def installed() -> bool:
    """Whether `threading.Lock` and `threading.RLock` are the traced types."""
    return all(getattr(threading, name) is ours for name, ours in _OURS.items())
