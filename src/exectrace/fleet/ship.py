"""The shipping sidecar: uploads every complete trace file of some dump dirs to
S3-compatible object storage, with its metadata, and its fleet index rows.

- Only owned ``executiontrace.*.out`` files are shipped (the dump store writes
  ``.tmp`` and renames, so an ``.out`` is always whole), oldest first.
- Local files are only read, never modified or deleted: the dump store's GC
  stays the only deleter. A file opened for upload stays readable after GC
  unlinks it; a file GC deleted before it could be shipped is counted and
  reported.
- Resuming: a small state file (JSON, written atomically) lists the files
  shipped; a file it does not list is looked up with a HEAD first, and one
  already there with the same SHA-256 is not sent again (a crash between the
  upload and the state write, or an upload whose answer was lost). PUTs are
  not retried blindly by botocore: every new attempt HEADs first.
- Store errors (unreachable, 5xx, refused credentials) never stop the sidecar:
  it backs off (exponentially, up to a minute, with jitter), keeps scanning,
  and warns at most once a minute per kind of error. Memory is bounded by the
  files on disk: nothing is queued beyond what the dump dirs hold.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Optional

from exectrace import dumpstore
from exectrace._files import write_atomic
from exectrace._version import __version__
from exectrace.errors import ExectraceError
from exectrace.fleet import index, layout, s3
from exectrace.reader import read, read_metadata

STATE_FORMAT = 1
#: Files larger than one PUT may carry (5 GiB) are not shipped.
MAX_PUT_BYTES = 5 * 1024**3
#: Names of files GC'd before they were shipped kept in the state file.
GONE_NAMES_KEPT = 100
WARN_EVERY = 60.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 60.0
_CHUNK = 1 << 20
#: Object tags, for lifecycle rules that keep the index longer than the traces.
TAG_TRACE = "exectrace=trace"
TAG_INDEX = "exectrace=index"


class RateLimitedWarnings:
    """One warning line per kind per `every` seconds; how many were held back
    is said with the next one."""

    def __init__(self, write: Callable[[str], None], every: float = WARN_EVERY) -> None:
        self.write = write
        self.every = every
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self.last.get(kind)
        if last is not None and now - last < self.every:
            self.held[kind] = self.held.get(kind, 0) + 1
            return
        held = self.held.pop(kind, 0)
        self.last[kind] = now
        more = f" ({held} more like it in the last minute)" if held else ""
        self.write(f"exectrace ship: warning: {message}{more}")


def object_metadata(host: str, size: int, sha256: str, meta: Optional[dict[str, Any]],
                    error: Optional[str]) -> dict[str, str]:
    """x-amz-meta-* of a shipped trace (ASCII, well under S3's 2 KiB)."""
    out = {"host": host, "bytes": str(size), "sha256": sha256, "shipper": __version__}
    if meta is None:
        out["error"] = (error or "unreadable")[:300]
        return out
    start = meta.get("window.start_realtime_ns")
    duration = meta.get("window.duration_ns")
    values = {
        "pid": meta.get("process.pid"),
        "python-version": meta.get("python.version"),
        "exectrace-version": meta.get("exectrace.version"),
        "window-start": meta.get("window.start"),
        "window-end": meta.get("window.end"),
        "window-start-ns": start,
        "window-duration-ns": duration,
        "mode": index.window_mode(meta),
        "reason": index.window_reason(meta),
        "records-kept": meta.get("records.kept"),
        "records-lost": meta.get("records.lost"),
        "file-host": meta.get("process.host"),
    }
    for k, v in values.items():
        if v is None:
            continue
        text = str(v)[:200]
        out[k] = text.encode("ascii", "backslashreplace").decode("ascii").replace("\n", " ")
    return out


def default_state_path(dirs: list[str], url: layout.S3Url, host: str) -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    ident = json.dumps([sorted(os.path.abspath(d) for d in dirs), str(url), host])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return os.path.join(base, "exectrace", f"ship-{digest}.json")


@dataclass
class Stats:
    shipped: int = 0
    shipped_bytes: int = 0
    already_there: int = 0
    gone: int = 0
    conflicts: int = 0
    too_large: int = 0
    indexed: int = 0
    index_failed: int = 0
    store_errors: int = 0
    gone_names: list[str] = field(default_factory=list)


class Shipper:
    """Ships the owned trace files of `dirs` to `url` under `host`."""

    def __init__(self, dirs: list[str], url: layout.S3Url, host: str, client: Any, *,
                 state_path: str, put_client: Any = None, with_index: bool = True,
                 out: Callable[[str], None] = print, max_backoff: float = BACKOFF_MAX,
                 err: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> None:
        self.dirs = list(dict.fromkeys(os.path.abspath(d) for d in dirs))
        self.url = url
        self.host = host
        self.client = client
        self.put_client = put_client or client
        self.state_path = state_path
        self.with_index = with_index
        self.out = out
        self.err = err
        self.warn = RateLimitedWarnings(err)
        self.stats = Stats()
        #: path -> {"key", "bytes", "sha256", "index"}: shipped files still on disk
        self.shipped: dict[str, dict[str, Any]] = {}
        #: files seen not yet shipped (path -> size): to notice GC taking one
        self.pending: dict[str, int] = {}
        self.failures = 0
        self.next_try = 0.0
        self.max_backoff = max_backoff
        self._load_state()

    # -- state
    def _load_state(self) -> None:
        try:
            with open(self.state_path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            self.err(f"exectrace ship: warning: ignoring the state file {self.state_path} ({e}); "
                     "files already in the store are found by HEAD and not sent again")
            return
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            return
        shipped = doc.get("shipped")
        if isinstance(shipped, dict):
            self.shipped = {k: v for k, v in shipped.items() if isinstance(k, str) and isinstance(v, dict)}
        totals = doc.get("totals")
        if isinstance(totals, dict):
            for name in ("shipped", "shipped_bytes", "gone", "conflicts", "too_large", "indexed"):
                value = totals.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    setattr(self.stats, name, value)
            names = totals.get("gone_names")
            if isinstance(names, list):
                self.stats.gone_names = [n for n in names if isinstance(n, str)][-GONE_NAMES_KEPT:]

    def save_state(self) -> None:
        s = self.stats
        doc = {
            "format": STATE_FORMAT, "to": str(self.url), "host": self.host, "dirs": self.dirs,
            "shipped": self.shipped,
            "totals": {"shipped": s.shipped, "shipped_bytes": s.shipped_bytes, "gone": s.gone,
                       "conflicts": s.conflicts, "too_large": s.too_large, "indexed": s.indexed,
                       "gone_names": s.gone_names[-GONE_NAMES_KEPT:]},
        }
        data = (json.dumps(doc, indent=1) + "\n").encode()
        try:
            dumpstore.ensure_dir(os.path.dirname(os.path.abspath(self.state_path)))
            write_atomic(self.state_path, data, mode=0o600)
        except OSError as e:
            self.warn("state", f"cannot write the state file {self.state_path}: {e.strerror or e} "
                               "(shipping goes on; after a restart, HEAD finds what was shipped)")

    # -- scanning
    def scan(self) -> tuple[list[dumpstore.TraceFile], set[str]]:
        """(the owned files of the dump dirs, oldest first; the dirs that could not be listed)."""
        files: list[dumpstore.TraceFile] = []
        failed: set[str] = set()
        for d in self.dirs:
            try:
                files.extend(dumpstore.owned_files(d))
            except OSError as e:
                failed.add(d)
                self.warn(f"dir:{d}", f"cannot list {d}: {e.strerror or e}")
        files.sort(key=lambda f: (f.name, f.path))
        return files, failed

    def _note_gone(self, path: str) -> None:
        self.pending.pop(path, None)
        self.stats.gone += 1
        name = os.path.basename(path)
        self.stats.gone_names = (self.stats.gone_names + [name])[-GONE_NAMES_KEPT:]
        self.warn("gone", f"{path} was deleted by the dump dir's GC before it could be shipped "
                          f"({self.stats.gone} so far); raise total_dump_size_limit or check the store")

    def to_ship(self) -> list[dumpstore.TraceFile]:
        """The files not shipped yet, oldest first; forgets shipped files GC
        has deleted and counts pending ones it deleted."""
        files, failed = self.scan()
        on_disk = {f.path for f in files}

        def gone(path: str) -> bool:  # not when its directory could not be listed
            return path not in on_disk and os.path.dirname(path) not in failed

        for path in list(self.pending):
            if gone(path):
                self._note_gone(path)
        changed = False
        for path in list(self.shipped):
            if gone(path):
                del self.shipped[path]
                changed = True
        if changed:
            self.save_state()
        todo = [f for f in files if f.path not in self.shipped or not self.shipped[f.path].get("index", True)]
        for f in todo:
            if f.path not in self.shipped:
                self.pending[f.path] = f.size
        return todo

    # -- shipping
    def step(self, *, final: bool = False) -> int:
        """Ships what is pending until done or the store fails; returns the
        number of files still pending. In a final pass the backoff is ignored."""
        todo = self.to_ship()
        if not todo:
            return 0
        if not final and time.monotonic() < self.next_try:
            return len(todo)
        left = len(todo)
        for f in todo:
            try:
                self.ship_file(f)
            except s3.StoreError as e:
                self.stats.store_errors += 1
                self._back_off()
                self.warn(f"store:{e.kind}", f"{e} (will retry; {left} file(s) waiting)")
                return left
            except Exception as e:  # e.g. a read error: never the end of the sidecar
                self._back_off()
                self.warn(f"error:{type(e).__name__}", f"cannot ship {f.path}: {type(e).__name__}: {e} (will retry)")
                return left
            self.failures = 0
            left -= 1
        return 0

    def _back_off(self) -> None:
        self.failures += 1
        delay = min(self.max_backoff, BACKOFF_FIRST * 2 ** min(self.failures - 1, 16))
        self.next_try = time.monotonic() + delay * random.uniform(0.5, 1.0)

    def ship_file(self, f: dumpstore.TraceFile) -> None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(f.path, flags)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP):
                if f.path in self.shipped:
                    del self.shipped[f.path]
                else:
                    self._note_gone(f.path)
                return
            self.warn(f"open:{e.errno}", f"cannot read {f.path}: {e.strerror or e}")
            return
        with os.fdopen(fd, "rb") as src:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return
            # reads through the descriptor: GC may unlink the path meanwhile
            pinned = _fd_path(fd) or f.path
            entry = self.shipped.get(f.path)
            if entry is None:
                entry = self._ship_trace(f, src, info.st_size, pinned)
                if entry is None:
                    return
            if self.with_index and not entry.get("index", True):
                self._ship_index(f, entry, info.st_size, pinned)

    def _ship_trace(self, f: dumpstore.TraceFile, src: IO[bytes], size: int, pinned: str) -> Optional[dict[str, Any]]:
        if size > MAX_PUT_BYTES:
            self.pending.pop(f.path, None)
            self.stats.too_large += 1
            self.warn("too-large", f"{f.path} is larger than one upload may be (5 GiB): not shipped")
            self.shipped[f.path] = {"key": None, "bytes": size, "skipped": "too large", "index": True}
            self.save_state()
            return None
        meta: Optional[dict[str, Any]] = None
        error: Optional[str] = None
        try:
            meta = read_metadata(pinned).values
        except ExectraceError as e:
            error = str(e).replace(pinned, f.name)
        sha = _sha256(src)
        key = layout.trace_key(self.url, self.host, f.name)
        where = self.url.url_of(key)
        found = s3.head(self.client, self.url.bucket, key)
        if found is not None:
            theirs = (found.get("Metadata") or {}).get("sha256")
            if theirs == sha and int(found.get("ContentLength", -1)) == size:
                self.stats.already_there += 1
                if self.with_index and meta is not None and s3.head(
                        self.client, self.url.bucket, layout.index_key(self.url, self.host, f.name)) is not None:
                    meta = None  # its index rows are there too
            else:
                self.pending.pop(f.path, None)
                self.stats.conflicts += 1
                self.warn("conflict", f"{where} already holds another file of that name: {f.path} not shipped")
                self.shipped[f.path] = {"key": key, "bytes": size, "sha256": sha, "skipped": "conflict",
                                        "index": True}
                self.save_state()
                return None
        else:
            src.seek(0)
            s3.call(where, self.put_client.put_object, Bucket=self.url.bucket, Key=key, Body=src,
                    ContentLength=size, ContentType="application/octet-stream", Tagging=TAG_TRACE,
                    Metadata=object_metadata(self.host, size, sha, meta, error))
            self.stats.shipped += 1
            self.stats.shipped_bytes += size
            self.out(f"shipped {f.path} ({size} bytes) to {where}")
        self.pending.pop(f.path, None)
        entry = {"key": key, "bytes": size, "sha256": sha, "index": not (self.with_index and meta is not None)}
        self.shipped[f.path] = entry
        self.save_state()
        return entry

    def _ship_index(self, f: dumpstore.TraceFile, entry: dict[str, Any], size: int, pinned: str) -> None:
        key = layout.index_key(self.url, self.host, f.name)
        try:
            trace = read(pinned, allow_damaged=True)
            from exectrace.analysis import summarize

            summary = summarize(trace, top=index.ALL)
            table = index.rows(f.name, size, trace.metadata.values, summary)
            with tempfile.TemporaryDirectory(prefix="exectrace-index-") as tmp:
                path = os.path.join(tmp, "index.parquet")
                index.write_parquet(path, table)
                with open(path, "rb") as data:
                    s3.call(self.url.url_of(key), self.put_client.put_object, Bucket=self.url.bucket,
                            Key=key, Body=data, ContentType="application/vnd.apache.parquet", Tagging=TAG_INDEX,
                            Metadata={"host": self.host, "trace": entry["key"] or ""})
        except s3.StoreError:
            raise
        except Exception as e:  # a file the analysis cannot take: the trace is shipped, no index
            self.stats.index_failed += 1
            self.warn("index", f"no index rows for {f.path}: {type(e).__name__}: {e}")
        else:
            self.stats.indexed += 1
        entry["index"] = True
        self.save_state()

    # -- running
    def check(self) -> None:
        """Fails (ExectraceError) when the store refuses these credentials or
        has no such bucket; an unreachable store is only a warning."""
        try:
            s3.call(str(self.url), self.client.list_objects_v2, Bucket=self.url.bucket,
                    Prefix=self.url.key(""), MaxKeys=1)
        except s3.StoreError as e:
            if e.retryable:
                self.warn(f"store:{e.kind}", f"{e} (will retry)")
                return
            raise

    def report(self) -> str:
        s = self.stats
        pending = len(self.pending)
        text = (f"exectrace ship: {s.shipped} file(s) ({s.shipped_bytes} bytes) shipped to {self.url}/{self.host}/ "
                f"in all; {s.gone} deleted by GC before they could be shipped")
        if s.already_there:
            text += f"; {s.already_there} found already shipped"
        if s.conflicts:
            text += f"; {s.conflicts} not shipped (another object had the name)"
        if s.too_large:
            text += f"; {s.too_large} too large"
        if s.index_failed:
            text += f"; {s.index_failed} without index rows"
        text += f"; {pending} waiting"
        return text

    def run(self, *, poll: float, stop: threading.Event, until_pid: Optional[int] = None,
            once: bool = False) -> int:
        """Ships until `stop` is set (or, with `until_pid`, that process is
        gone), then makes one last pass. Returns the files left unshipped."""
        if once:
            for _ in range(4):
                left = self.step(final=True)
                if not left or stop.is_set():
                    return left
                stop.wait(max(0.0, self.next_try - time.monotonic()))
            return left
        while not stop.is_set():
            parent_gone = until_pid is not None and not _alive(until_pid)
            self.step()
            if parent_gone:
                break
            wait = poll
            if self.next_try > time.monotonic():
                wait = min(poll, max(0.05, self.next_try - time.monotonic()))
            stop.wait(wait)
        return self.step(final=True)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs. An exited process its parent has not
    reaped yet (a zombie; on Linux) counts as gone: its parent may be waiting
    for the output pipes this process holds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    end = data.rfind(b")")
    return data[end + 2:end + 3] not in (b"Z", b"X") if end >= 0 else True


def _fd_path(fd: int) -> Optional[str]:
    for path in (f"/proc/self/fd/{fd}", f"/dev/fd/{fd}"):
        if os.path.exists(path):
            return path
    return None


def _sha256(src: IO[bytes]) -> str:
    src.seek(0)
    h = hashlib.sha256()
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)
