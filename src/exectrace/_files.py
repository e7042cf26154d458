"""Writing files so that readers see all of a file or none of it; telling a
terminal from a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Optional

from exectrace.errors import ExectraceError


def write_atomic(path: str, data: bytes, *, mode: int = 0o600, tmp_name: Optional[str] = None,
                 commit: Optional[Callable[[str, str], None]] = None) -> str:
    """Writes `data` as `path` through a temporary file in the same directory
    (`tmp_name`, or a hidden one), fsync and rename, `mode` whatever the umask.
    `commit(tmp, path)`, if given, does the rename (e.g. under a lock).
    On failure nothing is left behind and OSError is raised."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, tmp_name or f".{os.path.basename(path)}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if commit is not None:
            commit(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def output_file(out: str, *, force: bool, exists: str) -> Iterator[tuple[int, str]]:
    """A temporary file (fd, path; mode 0600) beside `out` for a command to
    write; when the block succeeds it becomes `out`. Without `force` an `out`
    that appeared meanwhile is never replaced (ExectraceError `exists`)."""
    directory = os.path.dirname(os.path.abspath(out))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(out)}.", suffix=".tmp")
    except OSError as e:
        raise ExectraceError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        yield fd, tmp
        if force:
            os.replace(tmp, out)
            return
        try:
            os.link(tmp, out)  # fails if `out` exists, unlike a rename
        except FileExistsError:
            raise ExectraceError(exists) from None
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(out):
                raise ExectraceError(exists) from None
            os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def is_tty(stream: object) -> bool:
    """Whether `stream` is a terminal (False for anything that cannot tell)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False
