"""The dump directory: file names, atomic writes and size-based garbage collection.

Files are named ``executiontrace.<UTC end time>.<pid>.out`` with the time as
``2006-01-02T15_04_05.000``, so the lexical order of names is the order in
which windows ended. A file is written as ``executiontrace.*.tmp`` in the same
directory and renamed: a crash or a full disk never leaves a truncated
``.out``. With each write, GC walks the files exectrace owns from newest to
oldest, summing sizes, and deletes every file past the limit; the newest file
always stays. Several processes may share a directory: names carry the pid,
the rename and its GC happen as one step under an advisory lock (so the
directory never holds more than the limit besides its newest file, even for
a moment), and a file a neighbour already deleted is not an error. Nothing that does not look exactly like an owned trace file (other
names, directories, symlinks) is ever touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from exectrace._files import write_atomic

# Imported now, not in the writer thread: a child forked while that thread
# imports would find the module's import lock held forever.
try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

PREFIX = "executiontrace."
SUFFIX = ".out"
TMP_SUFFIX = ".tmp"
LOCK_NAME = ".executiontrace.lock"
#: An owned trace file: executiontrace.2026-11-29T18_41_22.216.4242.out
OWNED = re.compile(r"^executiontrace\.(\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3})\.(\d+)\.out$")
OWNED_TMP = re.compile(r"^executiontrace\.(\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3})\.(\d+)(\.\d+)?\.tmp$")
#: A temporary file this old was left by a crash (no write takes this long).
STALE_TMP_SECONDS = 3600
#: How long GC waits for the directory's lock before collecting without it.
LOCK_TIMEOUT = 5.0
DIR_MODE = 0o700
FILE_MODE = 0o600


def file_name(end_realtime_ns: int, pid: int) -> str:
    """``executiontrace.2026-11-29T18_41_22.216.4242.out`` for a window that
    ended at `end_realtime_ns` (UTC) in process `pid`."""
    seconds, ns = divmod(end_realtime_ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{PREFIX}{when:%Y-%m-%dT%H_%M_%S}.{ns // 1_000_000:03d}.{pid}{SUFFIX}"


@dataclass(frozen=True)
class TraceFile:
    """An owned trace file in a dump directory."""

    path: str
    name: str
    size: int
    end_time: datetime
    pid: int


def parse_name(name: str) -> Optional[tuple[datetime, int]]:
    """(UTC end time, pid) of an owned file's name, else None."""
    match = OWNED.match(name)
    if match is None:
        return None
    t = match.group(1)  # 2026-11-29T18_41_22.216; not strptime: its lazy import of
    try:                # _strptime in the writer thread can deadlock a child forked meanwhile
        when = datetime(int(t[0:4]), int(t[5:7]), int(t[8:10]), int(t[11:13]), int(t[14:16]),
                        int(t[17:19]), int(t[20:23]) * 1000, tzinfo=timezone.utc)
    except ValueError:
        return None
    return when, int(match.group(2))


def ensure_dir(path: str) -> None:
    """Creates the dump directory (mode 0700, whatever the umask) if missing,
    and any missing directory above it, 0700 too: with umask 0, makedirs
    would leave those world-writable, and whoever can write a parent can
    swap the dump dir for a link to a directory of their own."""
    if os.path.isdir(path):
        return
    missing = []
    at = os.path.abspath(path)
    while not os.path.isdir(at):
        missing.append(at)
        parent = os.path.dirname(at)
        if parent == at:
            break
        at = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        os.chmod(directory, DIR_MODE)


class CollectError(Exception):
    """write() wrote the file, but collecting the directory failed (`cause`)."""

    def __init__(self, path: str, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.path = path
        self.cause = cause


def write(directory: str, name: str, data: bytes, *, limit: Optional[int] = None) -> str:
    """Writes `data` as `directory/name` atomically (temporary file, fsync,
    rename), mode 0600. A directory removed during the write is made again and
    the write tried once more. On failure nothing is left behind and OSError
    is raised.

    With `limit`, the directory is collected in the same step, under its
    lock, counting the new file as already there: older files past the limit
    are deleted before it appears (and the new file itself is dropped when
    it is older than files that fill the limit: a slow writer among several
    processes). So no process sharing the directory, nor a reader listing it,
    ever sees more than `limit` bytes besides the newest file. If that GC
    fails, the file is still written and CollectError says why."""
    if os.sep in name or not OWNED.match(name):
        raise ValueError(f"not a trace file name: {name!r}")
    # "dump/./new/..": the kernel resolves "new" before "..", and it does not
    # exist yet; the directory meant is the lexical one
    directory = os.path.abspath(directory)
    gc_error: list[BaseException] = []

    def commit(tmp: str, path: str) -> None:
        assert limit is not None
        with _gc_lock(directory):
            try:
                result = collect(directory, limit, incoming=(name, len(data)), locked=True)
            except OSError as e:
                gc_error.append(e)
                result = None
            if result is not None and any(f.name == name for f in result.deleted):
                os.unlink(tmp)
            else:
                os.replace(tmp, path)

    for attempt in (1, 2):
        # executiontrace.<time>.<pid>.<n>.tmp: GC recognises it if a crash leaves it
        tmp = name[: -len(SUFFIX)] + f".{time.monotonic_ns() % 1_000_000}" + TMP_SUFFIX
        gc_error.clear()
        try:
            ensure_dir(directory)
            path = write_atomic(os.path.join(directory, name), data, mode=FILE_MODE, tmp_name=tmp,
                                commit=commit if limit is not None else None)
        except FileNotFoundError:
            if attempt == 2:
                raise
            continue  # the directory was removed during the write: make it again, once
        if gc_error:
            raise CollectError(path, gc_error[0])
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def owned_files(directory: str) -> list[TraceFile]:
    """The owned trace files of a directory, oldest first: regular files (never
    followed through a symlink) whose name is exactly a trace file name."""
    files = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        parsed = parse_name(entry.name)
        if parsed is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        files.append(TraceFile(entry.path, entry.name, info.st_size, parsed[0], parsed[1]))
    files.sort(key=lambda f: f.name)
    return files


@contextlib.contextmanager
def _gc_lock(directory: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An advisory lock shared by every process collecting in `directory`
    (best effort: without one, e.g. on a read-only directory, GC goes on).

    A POSIX record lock (lockf), not flock: it belongs to the process, so a
    child forked while the lock is held does not hold it too (with flock the
    child's copy of the descriptor kept the lock, for the child's whole life,
    from every process sharing the directory). Waits at most `timeout`: a
    neighbour stopped or hung while holding it does not stop GC here."""
    if fcntl is None:  # pragma: no cover - not POSIX
        yield
        return
    path = os.path.join(directory, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN) or time.monotonic() >= deadline:
                    break  # collect without the lock
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class CollectResult:
    kept: list[TraceFile]
    deleted: list[TraceFile]

    @property
    def kept_bytes(self) -> int:
        return sum(f.size for f in self.kept)


def collect(directory: str, limit: int, *, now: Optional[float] = None,
            incoming: Optional[tuple[str, int]] = None, locked: bool = False) -> CollectResult:
    """Deletes owned files past `limit` bytes, newest kept first; the newest
    file always stays. Also removes temporary files a crash left behind.

    `incoming` (name, size): a file about to be renamed into the directory,
    counted as if there (write() does this, holding the lock: `locked`); it
    is in `deleted` when it does not fit, and then not renamed at all."""
    kept: list[TraceFile] = []
    deleted: list[TraceFile] = []
    directory = os.path.abspath(directory)  # as write() names it
    with contextlib.nullcontext() if locked else _gc_lock(directory):
        files = owned_files(directory)
        if incoming is not None:
            name, size = incoming
            parsed = parse_name(name)
            assert parsed is not None
            files = [f for f in files if f.name != name]  # it replaces a file of the same name
            files.append(TraceFile(os.path.join(directory, name), name, size, parsed[0], parsed[1]))
            files.sort(key=lambda f: f.name)
        total = 0
        for f in reversed(files):
            total += f.size
            if kept and total > limit:
                if incoming is None or f.name != incoming[0]:
                    try:
                        os.unlink(f.path)
                    except FileNotFoundError:
                        pass  # a neighbour collected it first
                deleted.append(f)
            else:
                kept.append(f)
        _remove_stale_tmp(directory, time.time() if now is None else now)
    kept.reverse()
    deleted.reverse()
    return CollectResult(kept, deleted)


def _remove_stale_tmp(directory: str, now: float) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not OWNED_TMP.match(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_TMP_SECONDS:
                os.unlink(entry.path)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
                raise


def usage(directory: str) -> tuple[int, int]:
    """(number of owned files, their total bytes)."""
    files = owned_files(directory)
    return len(files), sum(f.size for f in files)
