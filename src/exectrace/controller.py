"""The controller: traces the process on a schedule and keeps a bounded history.

Two daemon threads, neither of them recorded:

- the scheduler opens and closes windows when the Schedule says so, and
  applies setting changes at once;
- the writer turns closed windows into files (encode, atomic write) and runs
  the dump directory's GC, off the application's threads.

Nothing here raises into the application: faults (disk full, directory gone,
permission denied, another profiler holding the hook) become one warning on
the ``exectrace`` logger, are kept in ``status()["last_error"]`` and are
retried at the next window.

Process events: after ``fork`` the child drops the parent's records and, if
tracing was on, traces on its own schedule under its own pid. At exit (and
on SIGTERM when its disposition is the default) a window in progress is
closed, written, marked truncated, within a bounded time.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Optional

from exectrace import _names, _tracecore, dumpstore, flight, locks
from exectrace.capture import ClosedWindow, Window, utc_iso
from exectrace.schedule import CLOSE, OPEN, Schedule
from exectrace.settings import SETTINGS, WINDOW, Settings, format_duration

logger = logging.getLogger("exectrace")

#: Closed windows waiting for the writer: while this many wait, no window
#: opens (it is skipped); past it, the oldest would be dropped.
MAX_PENDING_WRITES = 2
#: How long stop() and exit wait for writes in progress.
EXIT_WRITE_TIMEOUT = 10.0
#: The same warning is repeated at most this often.
WARNING_INTERVAL = 60.0
#: Flight recorder: the recording capture is compacted this often (at least
#: flight_recorder apart: what is compacted away is older than that).
COMPACT_INTERVAL = 10.0
#: Flight recorder: how long after a failed start the recorder is retried.
FLIGHT_RETRY = 10.0
#: Counters sampling for the resource triggers when counters_interval is 0.
TRIGGER_SAMPLE_INTERVAL_NS = 100_000_000


def warn(message: str) -> None:
    """One warning line: to the ``exectrace`` logger when logging is set up,
    else straight to stderr."""
    if logger.hasHandlers():
        logger.warning("exectrace: %s", message)
    else:
        try:
            sys.stderr.write(f"exectrace: warning: {message}\n")
            sys.stderr.flush()
        except Exception:
            pass


class _Warnings:
    """Rate-limits repeated warnings (a full disk fails every window, a
    flapping fault every other one): one per key per WARNING_INTERVAL."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -WARNING_INTERVAL) >= WARNING_INTERVAL:
            self._last[key] = now
            warn(message)


class Controller:
    """Schedules windows for one process. Use the module functions start(),
    configure(), stop() and status()."""

    def __init__(self, settings: Settings, *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._schedule = Schedule(settings.interval, settings.duration)
        self._window: Optional[Window] = None
        self._window_started_wall: Optional[float] = None
        self._close_reason = "schedule"
        self._pending: collections.deque[ClosedWindow] = collections.deque()
        self._pending_ready = threading.Condition(self._lock)
        self._writing = False
        self._running = False
        self._scheduler: Optional[threading.Thread] = None
        self._writer: Optional[threading.Thread] = None
        self._warnings = _Warnings()
        self._last_name = ""
        self._collect_requested = False  # a settings change asks the writer to collect
        self.windows_written = 0
        self.windows_failed = 0
        self.windows_dropped = 0
        self.windows_skipped = 0
        self.records_lost = 0
        self.last_file: Optional[str] = None
        self.last_error: Optional[str] = None
        # flight recorder (docs/flight-recorder.md)
        self._flight: Optional[Window] = None  # the continuous window
        self._flight_failed_at: Optional[float] = None
        self._virtual_start: Optional[int] = None  # a scheduled window cut from the ring
        self._last_compact = time.monotonic()
        self._snap_gate = threading.Lock()  # only ever tried without blocking
        self._name_lock = threading.Lock()
        self._snap_request: Optional[tuple[str, str, float]] = None  # reason, name, wall time
        self._snap_busy = False  # a snapshot accepted and not yet written
        self._next_snapshot_at = 0.0  # time.monotonic(): none accepted before
        self._wake_r = self._wake_w = -1  # the snapshot thread's pipe, made with the thread
        self._snapshotter: Optional[threading.Thread] = None
        self._signal_trigger: Optional[flight.SignalTrigger] = None
        self._gc_trigger: Optional[flight.GCPauseTrigger] = None
        self._state_file: Optional[str] = None
        self.snapshots_written = 0
        self.snapshots_refused = 0
        self.last_snapshot_reason: Optional[str] = None
        self.last_snapshot_file: Optional[str] = None
        self.compactions = 0
        self.last_compaction: dict[str, Any] = {}

    # ---------------------------------------------------------------- API
    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
            self._schedule.enable(self._clock())
            self._flight_step()  # a flight recorder records from the start() call on (after _running)
            self._scheduler = self._spawn(self._run_scheduler, "exectrace-scheduler")
            self._writer = self._spawn(self._run_writer, "exectrace-writer")

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        started = threading.Event()

        def body() -> None:
            ident = threading.get_ident()
            _tracecore.ignore_thread(ident)
            started.set()
            try:
                target()
            finally:  # at most 8 threads are ignored: a thread that ends frees its place
                try:
                    _tracecore.ignore_thread(ident, False)
                except Exception:
                    pass

        thread = threading.Thread(target=body, name=name, daemon=True)
        thread.start()
        started.wait(5)
        return thread

    def configure(self, settings: Settings) -> None:
        """Applies new settings at once (see exectrace.schedule for how)."""
        with self._lock:
            changed = self.settings.diff(settings)
            self.settings = settings
            now = self._clock()
            if "duration" in changed:
                self._schedule.set_duration(now, settings.duration)
            if "interval" in changed:
                if not settings.enabled and self._window is not None:
                    self._close_reason = "configure"
                self._schedule.set_interval(now, settings.interval)
            if changed & {"dump_dir", "total_dump_size_limit"}:
                self._pending_ready.notify_all()  # the writer collects again
                self._collect_requested = True
            if changed & ({"flight_recorder", "snapshot_on_slow_step", "slow_step", "snapshot_gc_pause",
                           "snapshot_rss", "snapshot_cpu", "snapshot_cpu_span"}
                          | {n for n, s in SETTINGS.items() if s.scope == WINDOW}):
                self._restart_flight()  # the ring starts over with the new settings
                self._flight_step()
            if changed & {"snapshot_cooldown"}:
                self._next_snapshot_at = 0.0
            self._wake.notify_all()

    def stop(self, reason: str = "stop", timeout: float = EXIT_WRITE_TIMEOUT) -> None:
        """Closes the window in progress, writes everything pending, stops
        the threads. Returns within about `timeout` seconds."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._close_window(reason)
            self._close_flight()
            self._wake.notify_all()
            self._pending_ready.notify_all()
        self._poke(b"q")
        if self._state_file is not None:
            flight.remove_state(os.getpid())
            self._state_file = None
        deadline = time.monotonic() + timeout
        for thread in (self._scheduler, self._writer, self._snapshotter):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._snapshotter is not None and not self._snapshotter.is_alive():
                self._snapshotter = None
                self._close_pipe()
        # A writer that did not finish in time leaves its window; what is
        # still queued is written here.
        while True:
            with self._lock:
                if not self._pending or (self._writer is not None and self._writer.is_alive()):
                    break
                closed = self._pending.popleft()
                settings = self.settings
            self._write(closed, settings)

    def status(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            wake = self._schedule.next_start
            directory = os.path.abspath(self.settings.dump_dir)
            try:
                files, used = dumpstore.usage(directory)
            except OSError:
                files, used = 0, 0
            flight_on = self._flight is not None
            next_snapshot = max(0.0, self._next_snapshot_at - time.monotonic())
            return {
                "enabled": self._running and self.settings.enabled,
                "settings": self.settings.as_display_dict(),
                "window_open": self._window is not None or self._virtual_start is not None,
                "flight_recorder": flight_on,
                "next_snapshot_in": (next_snapshot if flight_on and not self._snap_busy else None),
                "snapshots_written": self.snapshots_written,
                "snapshots_refused": self.snapshots_refused,
                "last_snapshot_reason": self.last_snapshot_reason,
                "last_snapshot_file": self.last_snapshot_file,
                "compactions": self.compactions,
                "last_compaction": dict(self.last_compaction),
                "window_started": (utc_iso(int(self._window_started_wall * 1e9), "milliseconds")
                                   if self._window and self._window_started_wall else None),
                "next_window_in": (max(0, wake - now) / 1e9) if wake is not None and self._running else None,
                "dump_dir": directory,
                "files": files,
                "bytes": used,
                "total_dump_size_limit": self.settings.total_dump_size_limit,
                "windows_written": self.windows_written,
                "windows_failed": self.windows_failed,
                "windows_skipped": self.windows_skipped,
                "windows_dropped": self.windows_dropped,
                "records_lost": self.records_lost,
                "last_file": self.last_file,
                "last_error": self.last_error,
            }

    # ---------------------------------------------------------- scheduler
    def _run_scheduler(self) -> None:
        with self._lock:
            while self._running:
                try:
                    self._step()
                except Exception as e:  # never let the thread die
                    self._fault("scheduler", f"scheduler error: {e!r}")
                wake = self._schedule.wake_at()
                if not self._running:
                    break
                timeout = None if wake is None else max(0.0, (wake - self._clock()) / 1e9)
                if self.settings.flight_recorder > 0:  # compaction, retries
                    timeout = min(timeout, 1.0) if timeout is not None else 1.0
                if timeout is None or timeout > 0:
                    self._wake.wait(timeout)

    def _step(self) -> None:
        self._flight_step()
        now = self._clock()
        action = self._schedule.due(now)
        if action == CLOSE:
            self._close_window(self._close_reason)
            now = self._clock()
            action = self._schedule.due(now)
        if action == OPEN:
            self._open_window(now)

    def _open_window(self, now: int) -> None:
        self._schedule.opened(now)
        if self._flight is not None:
            # the flight recorder records anyway: this window is cut from its ring
            self._virtual_start = now
            self._close_reason = "schedule"
            return
        if len(self._pending) >= MAX_PENDING_WRITES:
            # The writer is behind (a busy or overloaded process): skip this
            # window rather than make the application pay for recording one
            # that would be dropped unwritten. Not a fault: counted only.
            self._schedule.closed(self._clock())
            self.windows_skipped += 1
            logger.debug("exectrace: the writer is behind; a window was skipped")
            return
        try:
            self._window = Window.open(self.settings)
        except Exception as e:
            self._window = None
            self._schedule.closed(self._clock())  # retried at the next window, not at once
            self.windows_skipped += 1
            self._fault("open", f"could not open a trace window: {e}")
            return
        self._window_started_wall = time.time()
        self._close_reason = "schedule"
        if self.last_error is not None and self.last_error.startswith("could not open"):
            self.last_error = None  # e.g. the other profiler is gone

    def _close_window(self, reason: str) -> None:
        """Closes the open window (if any) and queues it for the writer."""
        if self._virtual_start is not None:
            self._close_virtual(reason)
            return
        window = self._window
        if window is None:
            return
        self._window = None
        self._schedule.closed(self._clock())
        try:
            closed = window.close()
        except Exception as e:
            self._fault("close", f"could not close the trace window: {e}")
            return
        closed.truncated = reason != "schedule"
        closed.closed_by = reason
        if len(self._pending) >= MAX_PENDING_WRITES:
            dropped = self._pending.popleft()
            dropped.release()
            self.windows_dropped += 1
            self._fault("write", "the writer fell behind: a closed window was dropped unwritten")
        self._pending.append(closed)
        self._pending_ready.notify_all()

    # -------------------------------------------------------------- writer
    def _run_writer(self) -> None:
        while True:
            with self._lock:
                while not self._pending and self._running and not self._collect_requested:
                    self._pending_ready.wait()
                if self._collect_requested and not self._pending:
                    self._collect_requested = False
                    settings = self.settings
                    closed = None
                elif self._pending:
                    closed = self._pending.popleft()
                    settings = self.settings
                else:
                    return  # stopped, nothing left
            if closed is None:
                self._collect(settings)
            else:
                self._write(closed, settings)

    def _write(self, closed: ClosedWindow, settings: Settings) -> None:
        """Encodes and writes one window into the dump directory of `settings`
        (as they were when the writer took the window), collecting the
        directory in the same step; never raises."""
        directory = settings.dump_dir
        gc_error: Optional[BaseException] = None
        try:
            data = closed.encode()
            name = closed.name or self._unique_name(closed.capture.stop_realtime_ns)
            try:  # written and collected in one step (see dumpstore.write)
                path = dumpstore.write(directory, name, data, limit=settings.total_dump_size_limit)
            except dumpstore.CollectError as e:
                path, gc_error = e.path, e.cause
        except Exception as e:
            with self._lock:
                self.windows_failed += 1
            self._fault(f"write {_kind(e)}", f"could not write a trace to {os.path.abspath(directory)}: {_describe(e)}")
            return
        finally:
            lost = closed.capture.records_lost if closed.capture is not None else 0
            closed.release()
            if closed.closed_by == "snapshot":
                self._snap_busy = False
        with self._lock:
            if closed.closed_by == "snapshot":
                self.snapshots_written += 1
                self.last_snapshot_file = path
            self.windows_written += 1
            self.records_lost += lost
            self.last_file = path
            if self.last_error is not None and self.last_error.startswith("could not write"):
                self.last_error = None
        _trim_heap()
        self._collected(settings, gc_error)

    def _collect(self, settings: Settings) -> None:
        """Collects the dump directory; never raises."""
        try:
            dumpstore.collect(settings.dump_dir, settings.total_dump_size_limit)
        except Exception as e:
            self._collected(settings, e)
        else:
            self._collected(settings, None)

    def _collected(self, settings: Settings, error: Optional[BaseException]) -> None:
        if error is not None:
            self._fault(f"gc {_kind(error)}",
                        f"could not collect old traces in {settings.dump_dir}: {_describe(error)}")
            return
        with self._lock:
            if self.last_error is not None and self.last_error.startswith("could not collect"):
                self.last_error = None

    def _unique_name(self, end_realtime_ns: int) -> str:
        """The file name for a window; never the name of an earlier window of
        this process (two windows ending in the same millisecond)."""
        with self._name_lock:
            return self._unique_name_locked(end_realtime_ns)

    def _unique_name_locked(self, end_realtime_ns: int) -> str:
        pid = os.getpid()
        name = dumpstore.file_name(end_realtime_ns, pid)
        while name <= self._last_name:
            end_realtime_ns += 1_000_000
            name = dumpstore.file_name(end_realtime_ns, pid)
        self._last_name = name
        return name

    def _fault(self, key: str, message: str) -> None:
        self.last_error = message
        self._warnings(key, message)

    # ------------------------------------------------------ flight recorder
    def snapshot(self, reason: str) -> Optional[str]:
        """Asks for a snapshot of the flight recorder's ring; returns the path
        the file will have, or None (no flight recorder, a snapshot already
        accepted and not yet written, or the cooldown). Takes no lock another
        thread may hold for long and never waits: safe from any thread,
        asyncio code and signal handlers. The copy and the write are done by
        the snapshot and writer threads."""
        if not self._running or self._flight is None:
            return None
        text = reason if isinstance(reason, str) else str(reason)  # may raise: before any state changes
        now = time.monotonic()
        if self._snap_busy or now < self._next_snapshot_at:
            self.snapshots_refused += 1
            return None
        if not self._snap_gate.acquire(blocking=False):
            self.snapshots_refused += 1  # another caller is accepting one right now
            return None
        try:
            if self._snap_busy or now < self._next_snapshot_at:
                self.snapshots_refused += 1
                return None
            # only the writer holds _name_lock, and only for a few lines
            if not self._name_lock.acquire(timeout=1.0):
                return None
            try:
                wall = time.time_ns()
                name = self._unique_name_locked(wall)
            finally:
                self._name_lock.release()
            self._snap_busy = True
            self._next_snapshot_at = now + self.settings.snapshot_cooldown / 1e9
            self._snap_request = (text, name, wall / 1e9)
            path = os.path.join(os.path.abspath(self.settings.dump_dir), name)
        finally:
            self._snap_gate.release()
        fd = self._wake_w
        if fd >= 0:
            # not os.write: it would release the GIL, and the snapshot thread,
            # woken, could take it for the copy before this call returns
            _tracecore.poke(fd)
        return path

    def _poke(self, what: bytes) -> None:
        fd = self._wake_w
        if fd < 0:
            return
        try:
            os.write(fd, what)
        except OSError:  # full (a wake-up is pending anyway)
            pass

    def _ensure_snapshotter(self) -> None:
        """The snapshot thread and its pipe, made when a flight recorder starts."""
        if self._snapshotter is not None and self._snapshotter.is_alive():
            return
        if self._wake_r < 0:
            self._wake_r, self._wake_w = _pipe()
        self._snapshotter = self._spawn(self._run_snapshotter, "exectrace-snapshot")

    def _close_pipe(self) -> None:
        r, w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = -1  # never written again: the numbers may be reused
        for fd in (r, w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _run_snapshotter(self) -> None:
        fd = self._wake_r
        while True:
            try:
                data = os.read(fd, 256)
            except InterruptedError:
                continue
            except OSError:
                return
            if not data or (b"q" in data and not self._running) or self._wake_r != fd:
                return
            if b"s" in data and self.settings.snapshot_on_slow_step:
                self.snapshot(f"slow asyncio step (slow_step {format_duration(self.settings.slow_step)})")
                self._arm_slow_step()
            request = self._snap_request
            if request is not None:
                self._snap_request = None
                try:
                    self._take_snapshot(*request)
                except Exception as e:
                    self._snap_busy = False
                    self._fault("snapshot", f"could not take a snapshot: {e!r}")

    def _take_snapshot(self, reason: str, name: str, wall: float) -> None:
        with self._lock:
            window = self._flight
            settings = self.settings
            if window is None:
                self._snap_busy = False
                return
            span = settings.flight_recorder
            started = time.perf_counter_ns()
            capture, info = _tracecore.flight_copy(span)
            copy_ns = time.perf_counter_ns() - started
            window.note_thread_names()
            counters = window.sampler.recent(span) if window.sampler is not None and window.sampler.record else []
            closed = ClosedWindow(capture, settings, window.hook, dict(window.thread_names),
                                  counters=counters, closed_by="snapshot", name=name)
            closed.extra_meta = _flight_meta(info, span, copy_ns) + [
                ("snapshot.reason", reason),
                ("snapshot.requested", utc_iso(int(wall * 1e9))),
                ("snapshot.requested_realtime_ns", int(wall * 1e9)),
            ]
            self.last_snapshot_reason = reason
            self._pending.append(closed)  # never dropped: the cooldown bounds them
            self._pending_ready.notify_all()

    def _close_virtual(self, reason: str) -> None:
        """The scheduled window of a flight recorder: its span cut from the ring."""
        start = self._virtual_start
        self._virtual_start = None
        now = self._clock()
        self._schedule.closed(now)
        window = self._flight
        if window is None or start is None:
            return
        try:
            span = max(1, now - start)
            capture, info = _tracecore.flight_copy(span)
        except Exception as e:
            self._fault("close", f"could not cut the window from the flight recorder: {e}")
            return
        window.note_thread_names()
        counters = window.sampler.recent(span) if window.sampler is not None and window.sampler.record else []
        closed = ClosedWindow(capture, self.settings, window.hook, dict(window.thread_names),
                              counters=counters, closed_by=reason, truncated=reason != "schedule")
        closed.extra_meta = _flight_meta(info, span, 0)
        if len(self._pending) >= MAX_PENDING_WRITES:
            closed.release()
            self.windows_skipped += 1
            return
        self._pending.append(closed)
        self._pending_ready.notify_all()

    def _flight_step(self) -> None:
        """Opens the flight recorder's window when it should record, compacts it."""
        settings = self.settings
        if settings.flight_recorder <= 0 or not self._running:
            if self._flight is not None:
                self._close_flight()
            return
        if self._flight is None:
            if self._flight_failed_at is not None and time.monotonic() - self._flight_failed_at < FLIGHT_RETRY:
                return
            self._open_flight()
            return
        if time.monotonic() - self._last_compact >= max(COMPACT_INTERVAL, settings.flight_recorder / 1e9):
            self._compact()

    def _keep_ns(self) -> int:
        settings = self.settings
        keep = settings.flight_recorder
        if settings.interval > 0:
            keep = max(keep, settings.duration)
        return keep

    def _open_flight(self) -> None:
        settings = self.settings
        triggers = flight.ResourceTriggers(settings, self.snapshot)
        try:
            self._ensure_snapshotter()
        except Exception as e:
            self._flight_failed_at = time.monotonic()
            self._fault("open", f"could not start the flight recorder: {e}")
            return
        try:
            window = Window.open(settings, keep_ns=self._keep_ns() + 1_000_000_000,
                                 on_sample=triggers if triggers.active else None,
                                 trigger_interval=TRIGGER_SAMPLE_INTERVAL_NS if triggers.active else 0)
        except Exception as e:
            self._flight_failed_at = time.monotonic()
            self._fault("open", f"could not start the flight recorder: {e}")
            return
        self._flight = window
        self._flight_failed_at = None
        self._last_compact = time.monotonic()
        self._arm_slow_step()
        if settings.snapshot_gc_pause > 0:
            self._gc_trigger = flight.GCPauseTrigger(settings.snapshot_gc_pause, self.snapshot)
            self._gc_trigger.install()
        if self.last_error is not None and self.last_error.startswith("could not start the flight"):
            self.last_error = None

    def _arm_slow_step(self) -> None:
        settings = self.settings
        try:
            _tracecore.flight_arm_slow_step(self._wake_w if settings.snapshot_on_slow_step else -1,
                                            settings.slow_step)
        except Exception:
            pass

    def _close_flight(self) -> None:
        """Stops the flight recorder; what its ring holds is dropped unwritten
        (a scheduled window cut from it is written first)."""
        if self._virtual_start is not None:
            self._close_virtual(self._close_reason if self._running else "stop")
        if self._gc_trigger is not None:
            self._gc_trigger.uninstall()
            self._gc_trigger = None
        window = self._flight
        self._flight = None
        if window is None:
            return
        try:
            window.close().release()
        except Exception as e:
            self._fault("close", f"could not stop the flight recorder: {e}")

    def _restart_flight(self) -> None:
        if self._flight is not None:
            self._close_flight()
        self._flight_failed_at = None

    def _compact(self) -> None:
        self._last_compact = time.monotonic()
        started = time.perf_counter_ns()
        try:
            info = _tracecore.flight_compact(self._keep_ns())
        except Exception as e:
            self._fault("compact", f"could not compact the flight recorder: {e!r}")
            return
        info["pause_ms"] = (time.perf_counter_ns() - started) / 1e6
        self.compactions += 1
        self.last_compaction = info
        window = self._flight
        if window is not None:  # names of threads gone for two compactions are dropped
            current = _names_now()
            window.thread_names = {**window.previous_names, **current}
            window.previous_names = current

    # ----------------------------------------------------------- processes
    def drop_after_fork(self) -> None:
        """In a forked child: forget the parent's windows, threads and locks."""
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._pending_ready = threading.Condition(self._lock)
        for closed in self._pending:
            closed.release()
        self._pending.clear()
        self._window = None
        self._running = False
        self._scheduler = self._writer = None
        self._schedule = Schedule(self.settings.interval, self.settings.duration)
        self._last_name = ""
        self._collect_requested = False
        # the recorder dropped its capture (after_fork_child): the child starts its own ring
        self._flight = None
        self._virtual_start = None
        self._gc_trigger = None
        self._snap_gate = threading.Lock()
        self._name_lock = threading.Lock()
        self._snap_request = None
        self._snap_busy = False
        self._next_snapshot_at = 0.0
        self._snapshotter = None
        self._close_pipe()  # the parent's thread is gone; a new pipe comes with a new thread
        self._state_file = None


def _pipe() -> tuple[int, int]:
    """The snapshot thread's wake-up pipe: writes never block (a full pipe
    already has a wake-up pending)."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    return r, w


def _names_now() -> dict[int, str]:
    return _names.thread_name_snapshot()


def _flight_meta(info: dict[str, Any], span_ns: int, copy_ns: int) -> list[tuple[str, Any]]:
    return [
        ("flight_recorder.span", format_duration(span_ns)),
        ("flight_recorder.bound", info["bound"]),
        ("flight_recorder.copy_ms", round(copy_ns / 1e6, 3)),
        ("flight_recorder.records_retained", info["records_in"]),
    ]


_malloc_trim: Any = None


def _trim_heap() -> None:
    """Hands the heap pages freed by writing a window back to the OS.

    Encoding a window allocates tens of MiB of short-lived buffers (records
    index, packets, the file's bytes). glibc serves most of them from its heap
    and keeps the pages when they are freed, so without this a process's RSS
    creeps up by that much over the first windows and stays there (measured
    by bench/soak.py: +20-30% of a small server's RSS over 10 minutes, with
    the memory in use flat). malloc_trim(0) returns free pages at once; it
    runs on the writer thread, once per window. Best effort: glibc only.
    (Found by _load_malloc_trim() on the thread that starts tracing: the
    background threads import nothing, see test_attacks.)"""
    if _malloc_trim:
        try:
            _malloc_trim(0)
        except Exception:  # pragma: no cover - best effort
            pass


def _load_malloc_trim() -> None:
    global _malloc_trim
    if _malloc_trim is not None:
        return
    _malloc_trim = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            trim = libc.malloc_trim
            trim.argtypes = [ctypes.c_size_t]
            trim.restype = ctypes.c_int
            _malloc_trim = trim
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


def _kind(e: BaseException) -> str:
    """What rate-limits a fault's warning: the same fault, flapping or not,
    warns once a WARNING_INTERVAL; a different one warns at once."""
    return f"errno {e.errno}" if isinstance(e, OSError) and e.errno else type(e).__name__


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}" + (f": {e.filename}" if e.filename else "")
    return repr(e)


# --------------------------------------------------------- process-wide state

_controller: Optional[Controller] = None
_state_lock = threading.RLock()
_hooks_registered = False
_sigterm_installed = False


def current() -> Optional[Controller]:
    return _controller


def start_controller(settings: Settings) -> Controller:
    """Starts (or reconfigures) the process's controller."""
    global _controller
    with _state_lock:
        _register_process_hooks()
        _load_malloc_trim()
        _apply_trace_locks(settings)
        if _controller is not None and _controller._running:
            _controller.configure(settings)
            _apply_snapshot_signal(_controller)
            return _controller
        _controller = Controller(settings)
        _controller.start()
        _install_sigterm()
        _apply_snapshot_signal(_controller)
        return _controller


def snapshot(reason: str) -> Optional[str]:
    """exectrace.snapshot(): see Controller.snapshot."""
    controller = _controller
    if controller is None:
        return None
    try:
        return controller.snapshot(reason)
    except Exception:  # never raises into the application
        return None


def _apply_snapshot_signal(controller: Controller) -> None:
    """Installs (or removes) the snapshot signal's handler and the state file
    `exectrace snapshot PID` reads, as the settings say."""
    settings = controller.settings
    wanted = settings.snapshot_signal if settings.flight_recorder > 0 else ""
    trigger = controller._signal_trigger
    if trigger is not None and trigger.name != wanted:
        trigger.uninstall()
        controller._signal_trigger = trigger = None
    if wanted and trigger is None:
        trigger = flight.SignalTrigger(wanted, snapshot)
        problem = trigger.install()
        if problem is not None:
            warn(problem)
        else:
            controller._signal_trigger = trigger
    if controller._signal_trigger is not None:
        controller._state_file = flight.write_state(os.getpid(), settings)
    elif controller._state_file is not None:
        flight.remove_state(os.getpid())
        controller._state_file = None


def _apply_trace_locks(settings: Settings) -> None:
    """While tracing is on (and trace_locks), threading.Lock/RLock make traced
    locks, whose `with lock:` waits are recorded (see exectrace.locks)."""
    if settings.trace_locks and settings.enabled:
        locks.install()
    else:
        locks.uninstall()


def stop_controller(reason: str = "stop") -> None:
    with _state_lock:
        controller = _controller
    if controller is not None:
        controller.stop(reason)
        if controller._signal_trigger is not None:
            controller._signal_trigger.uninstall()
            controller._signal_trigger = None
    locks.uninstall()
    _uninstall_sigterm()


def _register_process_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                            after_in_child=_after_fork_child)


def _at_exit() -> None:
    controller = _controller
    if controller is not None:
        try:
            controller.stop("exit")
        except KeyboardInterrupt:  # Ctrl-C again while the last window is written: leave now
            warn("interrupted: the last trace window was not written")
        except Exception as e:  # the application is exiting: never raise
            warn(f"could not write the last trace window at exit: {e!r}")


# fork: hold the controller's lock across the fork so the child never
# inherits it half-held, then give the child fresh state.
def _before_fork() -> None:
    _state_lock.acquire()
    if _controller is not None:
        _controller._lock.acquire()


def _after_fork_parent() -> None:
    if _controller is not None:
        _controller._lock.release()
    _state_lock.release()


def _after_fork_child() -> None:
    global _state_lock
    _state_lock = threading.RLock()
    try:
        _tracecore.after_fork_child()
    except Exception as e:
        warn(f"could not reset the recorder after fork: {e!r}")
    controller = _controller
    if controller is None:
        return
    was_running = controller._running
    controller.drop_after_fork()
    if was_running:
        try:
            controller.start()
            if controller._signal_trigger is not None:  # the handler is inherited
                controller._state_file = flight.write_state(os.getpid(), controller.settings)
        except Exception as e:
            warn(f"could not restart tracing after fork: {e!r}")
        _register_multiprocessing_exit(controller)


def _register_multiprocessing_exit(controller: Controller) -> None:
    """multiprocessing's forked children leave through os._exit, which skips
    atexit: its own exit hooks write the last window instead."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        try:
            util.Finalize(None, controller.stop, args=("exit",), exitpriority=0)
        except Exception:
            pass


# SIGTERM with the default disposition would end the process without atexit:
# write the window first, then die of SIGTERM as the process would have.
def _on_sigterm(signum: int, frame: Any) -> None:
    try:
        if _controller is not None:
            _controller.stop("signal")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm() -> None:
    global _sigterm_installed
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            _sigterm_installed = True
    except (ValueError, OSError):
        pass


def _uninstall_sigterm() -> None:
    global _sigterm_installed
    if not _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass
    _sigterm_installed = False
