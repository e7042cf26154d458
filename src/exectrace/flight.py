"""The flight recorder's triggers and its state file (docs/flight-recorder.md).

- Resource triggers, fed by the counters thread (exectrace.counters) with one
  sample at a time: RSS above `snapshot_rss`; process CPU above
  `snapshot_cpu` cores on average over `snapshot_cpu_span` (CockroachDB's
  overload dump).
- The GC-pause trigger: a gc callback, installed only while
  `snapshot_gc_pause` > 0, timing each collection.
- The signal trigger: `snapshot_signal`'s handler, installed only when the
  application has none for it (SIG_DFL), from the main thread.
- The state file `exectrace snapshot PID` reads: <state dir>/<pid>.json,
  written while a flight recorder with a snapshot signal runs. The state dir
  is per user (0700, owned by the user, not a symlink), so the file of a
  process of another user is never there.

Each trigger calls the controller's snapshot(reason); cooldown and
coalescing are the controller's.
"""

from __future__ import annotations

import collections
import gc
import json
import os
import signal
import tempfile
import threading
import time
from typing import Any, Callable, Optional

from exectrace.settings import Settings, format_duration, format_size

Snap = Callable[[str], Optional[str]]


class ResourceTriggers:
    """Checks each counters sample against the RSS and CPU thresholds."""

    def __init__(self, settings: Settings, snap: Snap) -> None:
        self.rss = settings.snapshot_rss
        self.cpu = settings.snapshot_cpu
        self.span_ns = settings.snapshot_cpu_span
        self.snap = snap
        self._cpu: collections.deque[tuple[int, int]] = collections.deque()
        self.fired: list[str] = []

    @property
    def active(self) -> bool:
        return self.rss > 0 or self.cpu > 0

    def __call__(self, now: int, values: dict[str, float]) -> None:
        rss = values.get("RSS")
        if self.rss > 0 and rss is not None and rss > self.rss:
            self._fire(f"RSS {format_size(int(rss))} above snapshot_rss {format_size(self.rss)}")
        if self.cpu > 0:
            cpu = time.process_time_ns()
            samples = self._cpu
            samples.append((now, cpu))
            while len(samples) > 1 and now - samples[1][0] >= self.span_ns:
                samples.popleft()
            t0, c0 = samples[0]
            if now - t0 >= self.span_ns:
                cores = (cpu - c0) / (now - t0)
                if cores > self.cpu:
                    self._fire(f"CPU {cores:.2f} cores over {format_duration(now - t0)} "
                               f"above snapshot_cpu {self.cpu:g}")
                    samples.clear()  # the next check needs a fresh span

    def _fire(self, reason: str) -> None:
        if self.snap(reason) is not None:
            self.fired.append(reason)


class GCPauseTrigger:
    """A gc callback timing collections; installed only while it is wanted."""

    def __init__(self, threshold_ns: int, snap: Snap) -> None:
        self.threshold_ns = threshold_ns
        self.snap = snap
        self._start = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
            return
        if self._start:
            pause = time.perf_counter_ns() - self._start
            self._start = 0
            if pause >= self.threshold_ns:
                self.snap(f"GC pause {format_duration(pause)} (generation {info.get('generation')}) "
                          f"above snapshot_gc_pause {format_duration(self.threshold_ns)}")

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        try:
            gc.callbacks.remove(self)
        except ValueError:
            pass


# ------------------------------------------------------------------ signal

class SignalTrigger:
    """The handler of `snapshot_signal`. It only asks for a snapshot (a
    non-blocking lock try and a pipe write: see Controller.snapshot)."""

    def __init__(self, name: str, snap: Snap) -> None:
        self.name = name
        self.signum = int(getattr(signal, name))
        self.snap = snap
        self.installed = False

    def __call__(self, signum: int, frame: Any) -> None:
        try:
            self.snap(f"signal {self.name}")
        except Exception:  # the application never sees an exception from exectrace
            pass

    def install(self) -> Optional[str]:
        """Installs the handler; returns why not when it cannot."""
        if threading.current_thread() is not threading.main_thread():
            return (f"snapshot_signal {self.name} not installed: tracing was started off the main "
                    "thread (signal handlers can only be set from it)")
        try:
            current = signal.getsignal(self.signum)
            if current is not signal.SIG_DFL and current is not self:
                return (f"snapshot_signal {self.name} not installed: the application has its own "
                        "handler for it")
            signal.signal(self.signum, self)
        except (ValueError, OSError) as e:
            return f"snapshot_signal {self.name} not installed: {e}"
        self.installed = True
        return None

    def uninstall(self) -> None:
        if not self.installed or threading.current_thread() is not threading.main_thread():
            return
        signum = self.signum
        try:
            if signal.getsignal(signum) is self:
                signal.signal(signum, signal.SIG_DFL)
        except (ValueError, OSError):
            pass
        self.installed = False


# -------------------------------------------------------------- state file

def state_dir() -> str:
    """The per-user directory of flight recorder state files."""
    return os.path.join(tempfile.gettempdir(), f"exectrace-{os.getuid()}")


def _safe_state_dir(create: bool) -> Optional[str]:
    path = state_dir()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    try:
        st = os.lstat(path)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # not ours, or others may write there: never trusted
    return path


def write_state(pid: int, settings: Settings) -> Optional[str]:
    """Writes <state dir>/<pid>.json; returns its path (None: could not)."""
    try:
        directory = _safe_state_dir(create=True)
        if directory is None:
            return None
        path = os.path.join(directory, f"{pid}.json")
        doc = {
            "pid": pid,
            "signal": settings.snapshot_signal,
            "flight_recorder": format_duration(settings.flight_recorder),
            "dump_dir": os.path.abspath(settings.dump_dir),
            "started": _process_start(pid),
        }
        tmp = f"{path}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        return path
    except OSError:
        return None


def remove_state(pid: int) -> None:
    directory = _safe_state_dir(create=False)
    if directory is None:
        return
    try:
        os.unlink(os.path.join(directory, f"{pid}.json"))
    except OSError:
        pass


def read_state(pid: int) -> Optional[dict[str, Any]]:
    """The state of process `pid`'s flight recorder, or None: no state file,
    a bad one, or one left by an earlier process with the same pid."""
    directory = _safe_state_dir(create=False)
    if directory is None:
        return None
    try:
        fd = os.open(os.path.join(directory, f"{pid}.json"), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd) as f:
            doc = json.loads(f.read(65536))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("pid") != pid or not isinstance(doc.get("signal"), str):
        return None
    if doc.get("started") != _process_start(pid):
        return None  # the pid was reused
    return doc


def _process_start(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (/proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
