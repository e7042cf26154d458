"""What the integrations (middleware, OpenTelemetry) add to user tasks.

- Arguments of a task known only after it began (a request's status and
  duration, the OpenTelemetry trace and span ids): kept here by task id and
  written on the task's span (and the ids on its regions) when the window
  holding the task's end is written. Bounded: an entry not claimed by the
  window that follows it is dropped, and at most MAX_ENTRIES are kept.
- Slow requests and spans: counted (``status()["slow_requests"]``,
  ``["slow_spans"]``), logged in the window as a ``slow request`` /
  ``slow span`` entry, and handed to ``exectrace.snapshot(reason)`` when the
  flight recorder provides it.

Nothing here raises into the application: callers wrap every call.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, Optional

from exectrace import _tracecore

MAX_ENTRIES = 65536
#: Task arguments also written on the regions of the task.
REGION_KEYS = ("trace_id", "span_id")

_lock = threading.Lock()
# task id -> [monotonic ns of the last update, args]
_args: dict[int, list[Any]] = {}
_counts = {"slow_requests": 0, "slow_spans": 0}


def set_task_args(task: Any, args: dict[str, Any]) -> None:
    """Adds `args` to the span of `task` (an exectrace.Task) in the window
    that records its end. Does nothing for an idle task or outside windows."""
    task_id = task.id
    if not task_id or not _tracecore.is_active():
        return
    now = time.monotonic_ns()
    with _lock:
        entry = _args.get(task_id)
        if entry is None:
            if len(_args) >= MAX_ENTRIES:
                return
            _args[task_id] = [now, dict(args)]
        else:
            entry[0] = now
            entry[1].update(args)


def take_task_args(ended: Iterable[int], seen: Iterable[int], window_start_ns: int) -> dict[int, dict[str, Any]]:
    """The arguments of the tasks of a window being written: those of tasks
    that ended in it are removed, those of tasks still running are copied
    (their end is in a later window); entries last updated before the window
    opened and not in it are dropped (their window was written already)."""
    ended = set(ended)
    seen = set(seen)
    out: dict[int, dict[str, Any]] = {}
    with _lock:
        for task_id in seen | ended:
            entry = _args.get(task_id)
            if entry is None:
                continue
            out[task_id] = dict(entry[1])
            if task_id in ended:
                del _args[task_id]
        for task_id in [t for t, (ts, _a) in _args.items() if ts < window_start_ns and t not in seen]:
            del _args[task_id]
    return out


def pending() -> int:
    """How many tasks' arguments are waiting for their window (for tests)."""
    with _lock:
        return len(_args)


def counts() -> dict[str, int]:
    return dict(_counts)


def report_slow(kind: str, what: str, duration_ns: int, detail: str = "") -> Optional[str]:
    """Counts a slow request or span (`kind` "request" or "span"), logs it in
    the window, and snapshots when a flight recorder exists. Returns what
    snapshot() returned (the file written), else None."""
    _counts[f"slow_{kind}s"] += 1
    message = f"{what} took {duration_ns / 1e6:.1f} ms" + (f", {detail}" if detail else "")
    _tracecore.log(f"slow {kind}", message)
    exectrace = sys.modules.get("exectrace")
    snapshot = getattr(exectrace, "snapshot", None)
    if snapshot is None:
        return None
    result = snapshot(f"slow {kind}: {message}")
    return result if isinstance(result, str) else None


def slow_threshold_ns() -> int:
    """The slow_request setting in force (0 without a running tracer)."""
    from exectrace import controller

    running = controller.current()
    return running.settings.slow_request if running is not None else 0


def otel_ids() -> Optional[dict[str, str]]:
    """The current OpenTelemetry span's trace and span ids as hex, when
    OpenTelemetry is in use (already imported by the application) and a
    valid span is current; never imports it."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
