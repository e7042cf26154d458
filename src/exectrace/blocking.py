"""Which C functions wait, and why: the one table the project keeps.

The writer gives every call of a listed function the reason as a category
(filterable in Perfetto: ``c,io``) and a ``blocking`` argument; the analysis
reads it back from there (and falls back to this table for files that lack
it). A name is the C function's qualified name as exectrace writes it
(``_socket.socket.recv``, ``time.sleep``); an entry ending in "." matches
every method of that type.
"""

from __future__ import annotations

from typing import Optional

#: The reasons, in the order reports show them.
REASONS = ("sleep", "io", "lock", "subprocess")

_SOCKET_WAITS = (
    "recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into",
    "send", "sendall", "sendto", "sendmsg", "_accept", "accept", "connect", "connect_ex",
)
_BUFFERED_IO = ("read", "read1", "readinto", "readinto1", "readline", "readlines", "peek",
                "write", "flush")

TABLE: dict[str, str] = {
    # sleep
    "time.sleep": "sleep",
    "signal.pause": "sleep",
    "signal.sigwait": "sleep",
    "signal.sigtimedwait": "sleep",
    "signal.sigwaitinfo": "sleep",
    # lock: locks, and through them Condition, Event, Queue, Semaphore, futures
    "_thread.lock.acquire": "lock",
    "_thread.lock.acquire_lock": "lock",
    "_thread.lock.__enter__": "lock",
    "_thread.RLock.acquire": "lock",
    "_thread.RLock.__enter__": "lock",
    "_thread.RLock._acquire_restore": "lock",
    "exectrace.Lock.acquire": "lock",
    "exectrace.Lock.acquire_lock": "lock",
    "exectrace.Lock.__enter__": "lock",
    "exectrace.RLock.acquire": "lock",
    "exectrace.RLock.__enter__": "lock",
    "exectrace.RLock._acquire_restore": "lock",
    "_queue.SimpleQueue.get": "lock",
    "_multiprocessing.SemLock.acquire": "lock",
    "_multiprocessing.SemLock.__enter__": "lock",
    # io: sockets, name lookups, readiness waits (asyncio's idle selector too), files, pipes
    **{f"_socket.socket.{m}": "io" for m in _SOCKET_WAITS},
    "_socket.getaddrinfo": "io",
    "_socket.gethostbyname": "io",
    "_socket.gethostbyname_ex": "io",
    "_socket.gethostbyaddr": "io",
    "_ssl._SSLSocket.": "io",
    "select.select": "io",
    "select.poll.poll": "io",
    "select.epoll.poll": "io",
    "select.kqueue.control": "io",
    "select.devpoll.poll": "io",
    "_io.FileIO.read": "io",
    "_io.FileIO.readinto": "io",
    "_io.FileIO.readall": "io",
    "_io.FileIO.write": "io",
    **{f"_io.BufferedReader.{m}": "io" for m in _BUFFERED_IO},
    **{f"_io.BufferedWriter.{m}": "io" for m in _BUFFERED_IO},
    **{f"_io.BufferedRandom.{m}": "io" for m in _BUFFERED_IO},
    **{f"_io.BufferedRWPair.{m}": "io" for m in _BUFFERED_IO},
    "_io.TextIOWrapper.read": "io",
    "_io.TextIOWrapper.readline": "io",
    "_io.TextIOWrapper.readlines": "io",
    "_io.TextIOWrapper.flush": "io",
    "posix.read": "io",
    "posix.readv": "io",
    "posix.pread": "io",
    "posix.write": "io",
    "posix.writev": "io",
    "posix.pwrite": "io",
    "posix.sendfile": "io",
    "posix.fsync": "io",
    "posix.fdatasync": "io",
    # subprocess: waiting for a child, starting one
    "posix.waitpid": "subprocess",
    "posix.wait": "subprocess",
    "posix.wait3": "subprocess",
    "posix.wait4": "subprocess",
    "posix.waitid": "subprocess",
    "posix.system": "subprocess",
    "_posixsubprocess.fork_exec": "subprocess",
}


def _blocking_types() -> list[type]:
    """The C types whose methods the table lists, among the modules imported."""
    import sys

    found: list[type] = []

    def add(module_name: str, *attrs: str) -> None:
        module = sys.modules.get(module_name)
        for attr in attrs:
            obj = getattr(module, attr, None) if module is not None else None
            if isinstance(obj, type):
                found.append(obj)

    thread = sys.modules.get("_thread")
    if thread is not None:
        found.append(type(thread.allocate_lock()))
        add("_thread", "RLock")
    add("exectrace._tracecore", "Lock", "RLock")
    add("_queue", "SimpleQueue")
    add("_multiprocessing", "SemLock")
    add("_socket", "socket")
    add("_ssl", "_SSLSocket")
    add("select", "epoll", "kqueue")
    select = sys.modules.get("select")
    for factory in ("poll", "devpoll"):
        make = getattr(select, factory, None)
        if make is not None:
            try:
                obj = make()
            except OSError:
                continue
            found.append(type(obj))
            close = getattr(obj, "close", None)
            if close is not None:
                close()
    add("_io", "FileIO", "BufferedReader", "BufferedWriter", "BufferedRandom",
        "BufferedRWPair", "TextIOWrapper")
    return found


_MODULES_WITH_WAITS = ("time", "signal", "_socket", "select", "posix", "_posixsubprocess")


def callables() -> list[tuple[object, str]]:
    """Every C function of the table that exists in this process, as
    (function or method descriptor, reason): what an `events` window watches.
    Only modules already imported are looked at (importing one here could
    deadlock a forked child, and a module not imported has nothing to wait in)."""
    import sys

    found: list[tuple[object, str]] = []
    for module_name in _MODULES_WITH_WAITS:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for attr, obj in vars(module).items():
            if type(obj).__name__ == "builtin_function_or_method":
                reason = reason_of(f"{module_name}.{attr}")
                if reason is not None:
                    found.append((obj, reason))
    for cls in _blocking_types():
        prefix = "exectrace" if cls.__module__ == "exectrace._tracecore" else cls.__module__
        for attr, obj in vars(cls).items():
            if type(obj).__name__ == "method_descriptor":
                reason = reason_of(f"{prefix}.{cls.__qualname__}.{attr}")
                if reason is not None:
                    found.append((obj, reason))
    return found


def reason_of(name: str) -> Optional[str]:
    """The reason a C function (by qualified name) waits, or None."""
    reason = TABLE.get(name)
    if reason is not None:
        return reason
    return TABLE.get(name.rsplit(".", 1)[0] + ".")


def reason_of_slice(name: str, category: str) -> Optional[str]:
    """The reason a slice waited: from its category when the writer gave one,
    else from the table for C functions (files from other writers)."""
    if not category:
        return None
    parts = category.split(",")
    for part in parts:
        if part in REASONS:
            return part
    if "c" in parts:
        return reason_of(name)
    return None
