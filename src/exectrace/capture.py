"""Opening and closing trace windows, and turning a closed one into a file.

This is the policy side of the recorder: it turns settings into the plain
values `_tracecore` takes (file prefixes, tick-counter choice, tool id),
names what was recorded, and writes the metadata every file carries.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import platform
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from exectrace import _extras, _names, _perfetto, _tracecore, _waits, blocking, locks
from exectrace._compat import HAS_SYS_MONITORING, IS_LINUX, IS_MACOS
from exectrace._files import write_atomic
from exectrace._version import __version__
from exectrace.counters import CounterSampler, Samples
from exectrace.errors import ExectraceError
from exectrace.settings import SETTINGS, WINDOW, Settings, from_env, resolve, window_settings

logger = logging.getLogger("exectrace")

# sys.monitoring tool ids exectrace may take, preferred first: the two ids
# Python leaves free for other tools, then PROFILER_ID. Not PROFILER_ID first:
# cProfile takes it on 3.12+, and an application enabling cProfile while a
# window held it would get "ValueError: Another profiling tool is already active".
_MONITORING_TOOL_IDS = (3, 4, 2)
_PROFILER_ID = 2
_warned_profiler_id = False


def ticks_are_safe() -> bool:
    """Whether the CPU tick counter can time calls across threads and cores.

    x86-64: only when the kernel itself uses the TSC as its clocksource (it
    checked that the TSC is invariant and synchronised across CPUs).
    arm64: the generic timer's virtual counter is architecturally synchronised.
    """
    if not _tracecore.HAS_TICKS:
        return False
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return IS_LINUX or IS_MACOS
    if IS_LINUX and machine in ("x86_64", "amd64"):
        try:
            with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
                return f.read().strip() == "tsc"
        except OSError:
            return False
    return False


def _use_ticks(clock: str) -> bool:
    if clock == "monotonic":
        return False
    if clock == "tsc":
        return bool(_tracecore.HAS_TICKS)
    return ticks_are_safe()


def path_prefixes(entries: Iterable[str]) -> tuple[bytes, ...]:
    """File-path prefixes for module names or paths given to include/exclude.

    A module name stands for its file, or its package directory; a path (with
    a separator, or ending in .py) is used as it is.
    """
    prefixes: list[str] = []
    for entry in entries:
        if os.sep in entry or "/" in entry or entry.endswith(".py") or entry.startswith("<"):
            prefixes.append(entry if entry.startswith("<") else os.path.abspath(entry))
            continue
        module = sys.modules.get(entry)
        locations: list[str] = []
        if module is not None:
            locations = list(getattr(module, "__path__", None) or [])
            file = getattr(module, "__file__", None)
            if not locations and file:
                locations = [file]
        else:
            try:
                spec = importlib.util.find_spec(entry)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                locations = list(spec.submodule_search_locations or [])
                if not locations and spec.origin and os.path.exists(spec.origin):
                    locations = [spec.origin]
        if not locations:
            logger.warning("exectrace: module %r not found; include/exclude ignores it", entry)
        for location in locations:
            prefixes.append(os.path.join(location, "") if os.path.isdir(location) else location)
        prefixes.append(f"<frozen {entry}")
    return tuple(p.encode("utf-8", "surrogateescape") for p in prefixes)


def _asyncio_hooks() -> dict[str, Any]:
    """What the recorder needs to attribute coroutine steps to asyncio tasks,
    when asyncio is in use: how asyncio.current_task() finds the task (the C
    _get_running_loop and the {loop: task} dict the C tasks keep), and the
    code of BaseEventLoop.create_task (tasks it returns get a flow from the
    step that created them)."""
    if "asyncio" not in sys.modules:
        return {}
    c_asyncio = sys.modules.get("_asyncio")
    base_loop = getattr(sys.modules.get("asyncio.base_events"), "BaseEventLoop", None)
    return {
        "asyncio_running_loop": getattr(c_asyncio, "_get_running_loop", None),
        "asyncio_current_tasks": getattr(c_asyncio, "_current_tasks", None),
        "asyncio_create_task_code": getattr(getattr(base_loop, "create_task", None), "__code__", None),
    }


def _asyncio_steps() -> dict[str, Any]:
    """What an `events` window needs to see asyncio task steps without a hook
    on coroutines: Context.run and the code of Handle._run (the one call
    through which the event loop runs every callback), and the task classes."""
    events = sys.modules.get("asyncio.events")
    tasks = sys.modules.get("asyncio.tasks")
    handle = getattr(events, "Handle", None)
    run_code = getattr(getattr(handle, "_run", None), "__code__", None)
    if run_code is None or tasks is None:
        return {}
    import contextvars  # imported by asyncio already

    return {
        "asyncio_context_run": contextvars.Context.run,
        "asyncio_handle_run_code": run_code,
        "asyncio_task_type": getattr(tasks, "Task", None),
        "asyncio_py_task_type": getattr(tasks, "_PyTask", None),
    }


def _events_options(settings: Settings) -> dict[str, Any]:
    """The `events` mode's options of _tracecore.start()."""
    found = blocking.callables()
    return dict(
        events_mode=True,
        min_block_ns=settings.min_block,
        blocking_callables=[obj for obj, _reason in found],
        blocking_reasons=[blocking.REASONS.index(reason) + 1 for _obj, reason in found],
        **_asyncio_steps(),
    )


def _open_recorder(settings: Settings, seed_stacks: bool = True) -> str:
    """Starts the recorder; returns the name of the hook in use."""
    global _warned_profiler_id
    events_mode = settings.mode == "events"
    options: dict[str, Any] = dict(
        **_asyncio_hooks(),
        **(_events_options(settings) if events_mode else {}),
        buffer_size=settings.buffer_size,
        c_calls=settings.c_calls,
        min_duration_ns=settings.min_duration,
        max_depth=settings.max_depth,
        include_prefixes=path_prefixes(settings.include),
        exclude_prefixes=path_prefixes(settings.exclude),
        use_ticks=_use_ticks(settings.clock),
        seed_stacks=seed_stacks,
    )
    if not HAS_SYS_MONITORING:
        _tracecore.start(**options)
        if not events_mode:
            return "PyEval_SetProfile"
        try:
            wrapped = _waits.install()
        except Exception:
            _tracecore.stop()
            _waits.uninstall()
            raise
        return f"samples, GC, traced locks, {wrapped} wrappers (no hook)"
    monitoring = sys.monitoring  # type: ignore[attr-defined]
    held = {i: monitoring.get_tool(i) for i in _MONITORING_TOOL_IDS}
    free = [i for i in _MONITORING_TOOL_IDS if held[i] is None]
    if not free:
        raise ExectraceError(
            "sys.monitoring tool ids 2-4 are all in use "
            f"({', '.join(f'{i}: {n!r}' for i, n in held.items())}); exectrace cannot record"
        )
    if free[0] == _PROFILER_ID and not _warned_profiler_id:
        _warned_profiler_id = True  # once per process, not once per window
        logger.warning(
            "exectrace: sys.monitoring tool ids 3 and 4 are held (%r, %r); using PROFILER_ID (2): "
            "cProfile cannot be enabled while a window is open",
            held[3], held[4],
        )
    _tracecore.start(tool_id=free[0], **options)
    return f"sys.monitoring (tool id {free[0]})"


class StackSampler:
    """The thread that runs the native sampler (_tracecore.sample_loop) for a
    window. Started before the recorder, so the recorder never sees it: its
    samples would be of itself."""

    def __init__(self, interval_ns: int) -> None:
        _tracecore.sampler_reset()
        self._thread = threading.Thread(target=_tracecore.sample_loop, args=(interval_ns,),
                                         name="exectrace-sampler", daemon=True)
        self._thread.start()
        self._ident = self._thread.ident
        if self._ident is not None:
            _tracecore.ignore_thread(self._ident)

    def stop(self) -> None:
        _tracecore.sampler_stop()
        self._thread.join(timeout=5)
        if self._ident is not None and not self._thread.is_alive():
            _tracecore.ignore_thread(self._ident, False)


@dataclass
class Window:
    """A window being recorded in this process."""

    settings: Settings
    hook: str = ""
    thread_names: dict[int, str] = field(default_factory=dict)
    sampler: Optional[CounterSampler] = None
    stack_sampler: Optional[StackSampler] = None
    #: a flight recorder's: the names noted at the compaction before last
    previous_names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, keep_ns: int = 0,
             on_sample: Optional[Callable[[int, dict[str, float]], None]] = None,
             trigger_interval: int = 0) -> Window:
        """keep_ns > 0: a flight recorder's continuous window (its counters
        keep the last keep_ns); on_sample: its resource triggers, sampled at
        least every trigger_interval ns."""
        window = cls(settings, thread_names=_names.thread_name_snapshot())
        if settings.counters_interval > 0 or on_sample is not None:
            interval = settings.counters_interval
            if trigger_interval and (interval <= 0 or interval > trigger_interval):
                interval = trigger_interval
            window.sampler = CounterSampler(interval, keep_ns=keep_ns,
                                            record=settings.counters_interval > 0, on_sample=on_sample)
            window.sampler.start()
        if settings.mode == "events" and settings.sample_interval > 0:
            window.stack_sampler = StackSampler(settings.sample_interval)
        try:
            window.hook = _open_recorder(settings)
        except BaseException:
            if window.sampler is not None:
                window.sampler.stop()
            if window.stack_sampler is not None:
                window.stack_sampler.stop()
            raise
        if window.sampler is not None:
            window.sampler.window_opened()
        return window

    def note_thread_names(self) -> None:
        """Remembers the names of threads alive now (threads that end before
        the window closes keep their name)."""
        self.thread_names.update(_names.thread_name_snapshot())

    def close(self) -> ClosedWindow:
        capture = _tracecore.stop()
        _waits.uninstall()
        if self.stack_sampler is not None:
            self.stack_sampler.stop()
        samples = self.sampler.stop() if self.sampler is not None else []
        if capture is None:
            raise ExectraceError("the trace window was closed elsewhere")
        self.note_thread_names()
        return ClosedWindow(capture, self.settings, self.hook, dict(self.thread_names),
                            counters=samples)


@dataclass
class ClosedWindow:
    """A closed window's records, ready to be written."""

    capture: Any  # _tracecore.Capture
    settings: Settings
    hook: str
    thread_names: dict[int, str]
    #: closed before its scheduled end (stop, exit, signal, interval set to 0)
    truncated: bool = False
    closed_by: str = "schedule"
    counters: Samples = field(default_factory=list)
    #: what encode() added besides calls: asyncio tasks and steps, user tasks, logs
    extras_stats: dict[str, int] = field(default_factory=dict)
    #: the file's name when chosen ahead (a snapshot's, returned by snapshot())
    name: Optional[str] = None
    #: more metadata: a flight recorder's (snapshot.reason, flight_recorder.bound, ...)
    extra_meta: list[tuple[str, Any]] = field(default_factory=list)

    def metadata(self) -> list[tuple[str, Any]]:
        capture = self.capture
        meta: list[tuple[str, Any]] = [
            ("exectrace.version", __version__),
            ("python.version", platform.python_version()),
            ("python.implementation", platform.python_implementation()),
            ("process.pid", os.getpid()),
            ("process.host", self.settings.host or socket.gethostname()),
            ("process.argv", " ".join(sys.argv)),
            ("window.start", utc_iso(capture.start_realtime_ns)),
            ("window.end", utc_iso(capture.stop_realtime_ns)),
            ("window.start_realtime_ns", capture.start_realtime_ns),
            ("window.duration_ns", capture.stop_monotonic_ns - capture.start_monotonic_ns),
            ("window.truncated", self.truncated),
            ("window.closed_by", self.closed_by),
            ("records.lost", capture.records_lost),
            ("records.kept", capture.stats["records_kept"] - self.extras_stats.get("samples.kept", 0)),
            ("gc.collections", capture.stats["gc_collections"]),
            ("gc.lost", capture.stats["gc_lost"]),
            ("annotations.lost", capture.stats["annotations_lost"]),
            ("file.trailer", _extras.TRAILER),
            ("recorder.mode", self.settings.mode),
            ("recorder.hook", self.hook),
            ("recorder.clock", "tsc" if capture.used_ticks else "monotonic"),
            ("recorder.compressor", _compressor_name() if self.settings.compress else "none"),
        ]
        meta += self.extra_meta
        meta += [(f"{k}", v) for k, v in sorted(self.extras_stats.items())]
        meta += [(f"settings.{k}", v) for k, v in self.settings.as_display_dict().items()]
        return meta

    def encode(self) -> bytes:
        capture = self.capture
        functions = capture.functions()
        names = _names.function_names(functions)
        threads = _names.thread_names(capture.threads(), self.thread_names)
        reasons = [blocking.reason_of(name) or "" if entry[0] == "c" else ""
                   for entry, (name, _file, _line) in zip(functions, names)]
        pid = os.getpid()
        extras = _extras.Extras(pid, _perfetto.first_free_sequence(len(threads)),
                                capture.start_monotonic_ns, capture.stop_monotonic_ns)
        stats = _extras.add_asyncio(extras, capture, names, threads, self.settings.slow_step)
        self.extras_stats = {f"asyncio.{k}": v for k, v in stats.items()}
        stats = _extras.add_annotations(extras, capture, threads)
        self.extras_stats.update({f"annotations.{k}": v for k, v in stats.items()})
        self.extras_stats["counters.samples"] = _extras.add_counters(extras, self.counters)
        stack_texts = None
        if self.settings.mode == "events":
            stacks = _extras.Callstacks(capture, names)
            stack_texts = stacks.texts()
            kept, written = _extras.add_samples(extras, capture, stacks, pid, capture.threads())
            self.extras_stats["samples.kept"] = kept
            self.extras_stats["samples.written"] = written
            self.extras_stats["samples.interval_ns"] = self.settings.sample_interval
            self.extras_stats["callstacks.count"] = len(stack_texts)
            self.extras_stats["callstacks.truncated"] = capture.stats["callstacks_truncated"]
            self.extras_stats["waits.short"] = capture.stats["short_waits"]
            self.extras_stats["locks.handoffs"] = _extras.add_handoffs(extras, capture, threads, stacks)
        return bytes(
            capture.encode(
                names=names,
                thread_names=threads,
                pid=pid,
                process_name=_names.process_name(),
                metadata=self.metadata(),
                compress_level=1 if self.settings.compress else 0,
                compressor=_chunk_compressor(),
                blocking=reasons,
                extra_packets=extras.packets(),
                stack_texts=stack_texts,
            )
        )

    def release(self) -> None:
        self.capture.release()


# Imported here, not when a window is written: an import in the writer
# thread holds the module's import lock, and a child forked meanwhile would
# wait for it forever (the same goes for every module the writer uses).
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:
    _isal_zlib = None  # type: ignore[assignment]


def _chunk_compressor() -> Any:
    """ISA-L's zlib-compatible compressor when installed (about 3.7x zlib's
    speed at level 1 for the same ratio on trace packets), else None: the
    core's built-in zlib."""
    if _isal_zlib is None:
        return None
    return functools.partial(_isal_zlib.compress, level=1)


def _compressor_name() -> str:
    return "zlib (isal)" if _chunk_compressor() is not None else "zlib"


def utc_iso(realtime_ns: int, timespec: str = "microseconds") -> str:
    """2026-11-29T18:41:22.216123Z"""
    when = datetime.fromtimestamp(realtime_ns / 1e9, tz=timezone.utc)
    return when.isoformat(timespec=timespec).replace("+00:00", "Z")


_tracing_lock = threading.Lock()


@contextlib.contextmanager
def tracing(path: str | os.PathLike[str], **options: Any) -> Iterator[Window]:
    """Traces the block into one file at `path`, written when the block exits.

    Options are the settings that apply to a window (see exectrace.settings):
    {options}. Each defaults to its EXECTRACE_* variable when that is set,
    else to the setting's default; but `mode` defaults to "calls" here (every
    call: a development-time capture), not to "events".

        with exectrace.tracing("run.out", c_calls=False):
            work()
    """
    if "mode" not in options and SETTINGS["mode"].env not in os.environ:
        options = {**options, "mode": "calls"}
    settings = resolve(from_env(os.environ, scope=WINDOW)[0], **options)
    target = os.fspath(path)
    if not _tracing_lock.acquire(blocking=False):
        raise ExectraceError("exectrace.tracing() is already active in this process")
    installed_locks = settings.trace_locks and not locks.installed()
    try:
        if installed_locks:
            locks.install()
        window = Window.open(settings)
        try:
            yield window
        finally:
            closed = window.close()
            try:
                write_atomic(target, closed.encode())
            finally:
                closed.release()
    finally:
        if installed_locks:
            locks.uninstall()
        _tracing_lock.release()


if tracing.__doc__:  # None under python -OO
    tracing.__doc__ = tracing.__doc__.format(options=", ".join(window_settings()))
