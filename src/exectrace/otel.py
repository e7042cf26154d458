"""OpenTelemetry: spans as exectrace tasks, slow spans to the flight recorder.

    from opentelemetry.sdk.trace import TracerProvider
    import exectrace.otel
    provider = TracerProvider()
    provider.add_span_processor(exectrace.otel.SpanProcessor(slow="500ms"))

Needs the OpenTelemetry SDK (``pip install 'exectrace[otel]'``); importing
``exectrace`` never imports OpenTelemetry.

Inside a trace window every span that starts becomes an exectrace task named
after the span, ending when the span ends, with arguments ``trace_id`` and
``span_id`` (hex, as tracing backends show them), ``parent_span_id``,
``kind``, ``status`` and ``duration_ms`` — so a span found in a tracing
backend can be looked up in the execution trace of that moment, and a task
in the trace leads back to its span. A span taking ``slow`` or longer (the
``slow_request`` setting unless given) is logged in the window (a
``slow span`` entry), counted in ``exectrace.status()["slow_spans"]`` and,
with a flight recorder, passed to ``exectrace.snapshot(reason)``.

Separately, exectrace.middleware's request tasks carry the ids of the span
current when the request starts (put the OpenTelemetry middleware outside
exectrace's).
"""

from __future__ import annotations

import threading
from typing import Any, Optional

try:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span
    from opentelemetry.sdk.trace import SpanProcessor as _SDKSpanProcessor
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "exectrace.otel needs the OpenTelemetry SDK: pip install 'exectrace[otel]' "
        "(or opentelemetry-api and opentelemetry-sdk)"
    ) from e

from exectrace import _annotate, _tracecore
from exectrace.settings import SETTINGS

__all__ = ["SpanProcessor"]

#: Spans started and not yet ended that are tracked at most (spans that are
#: never ended must not grow memory without bound).
MAX_OPEN_SPANS = 10000


class SpanProcessor(_SDKSpanProcessor):
    """Turns OpenTelemetry spans into exectrace tasks inside trace windows;
    see the module. ``slow``: a duration ("500ms"); None takes the
    ``slow_request`` setting in force; 0 never."""

    def __init__(self, slow: Any = None) -> None:
        self.slow_ns: Optional[int] = (
            None if slow is None else SETTINGS["slow_request"].parse(slow, given_as="slow"))
        self._lock = threading.Lock()
        self._open: dict[int, Any] = {}  # span id -> exectrace task

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        if not _tracecore.is_active():
            return
        try:
            context = span.get_span_context()
            if context is None or len(self._open) >= MAX_OPEN_SPANS:
                return
            task = _tracecore.task(str(span.name))
            args = {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}
            if span.parent is not None:
                args["parent_span_id"] = format(span.parent.span_id, "016x")
            _annotate.set_task_args(task, args)
            with self._lock:
                self._open[context.span_id] = task
        except Exception:
            pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            context = span.get_span_context()
            if context is None:
                return
            with self._lock:
                task = self._open.pop(context.span_id, None)
            if not _tracecore.is_active() and task is None:
                return
            duration = (span.end_time or 0) - (span.start_time or 0)
            if task is not None:
                args: dict[str, Any] = {"kind": span.kind.name, "status": span.status.status_code.name,
                                        "duration_ms": round(duration / 1e6, 3)}
                _annotate.set_task_args(task, args)
                task.end()
            slow = self.slow_ns if self.slow_ns is not None else _annotate.slow_threshold_ns()
            if slow > 0 and duration >= slow and _tracecore.is_active():
                _annotate.report_slow("span", str(span.name), duration,
                                      f"trace_id {format(context.trace_id, '032x')}")
        except Exception:
            pass

    def shutdown(self) -> None:
        with self._lock:
            self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
