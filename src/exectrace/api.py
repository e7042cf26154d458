"""The automatic tracer's API: start, configure, stop, status.

    exectrace.start(interval="15m", duration="10s", total_dump_size_limit="8GiB")
    exectrace.configure(interval="1m")   # takes effect now
    exectrace.status()["files"]
    exectrace.stop()                     # writes the window in progress
    exectrace.snapshot("slow checkout")  # flight recorder: write the last `flight_recorder`

Settings are layered defaults -> environment (EXECTRACE_*) -> these calls;
a bad value raises ExectraceConfigError naming the setting and an example.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from exectrace import _annotate
from exectrace import controller as _controller
from exectrace.settings import Settings, from_env, resolve


def _current_settings() -> Settings:
    controller = _controller.current()
    if controller is not None:
        return controller.settings
    return from_env(os.environ)[0]


def start(**settings: Any) -> None:
    """Starts tracing on a schedule. The first window opens now, then one
    every `interval`; with interval 0 (the default) nothing is traced until
    configure() sets one. If tracing is already on (e.g. started from
    EXECTRACE_* variables), the given settings are applied as by configure()."""
    _controller.start_controller(resolve(_current_settings(), **settings))


def configure(**settings: Any) -> None:
    """Changes settings now: a new interval re-arms the timer, a new duration
    moves the end of the window in progress, interval=0 closes the window in
    progress (still writing it) and stops opening new ones. Starts the
    tracer if it was not running."""
    _controller.start_controller(resolve(_current_settings(), **settings))


def stop() -> None:
    """Stops tracing: the window in progress is closed and written."""
    _controller.stop_controller("stop")


def snapshot(reason: str) -> Optional[str]:
    """Writes what the flight recorder holds of the past (the last
    `flight_recorder`) as a trace file in `dump_dir`, with `reason` in its
    metadata. Returns the file's path (written shortly after, by a background
    thread: this call never waits for the write), or None: no flight recorder
    running, a snapshot already in progress (this call is coalesced into it),
    or within `snapshot_cooldown` of the last one (status()["next_snapshot_in"]
    says when the next is allowed). Safe from any thread, asyncio code and
    signal handlers; never raises."""
    return _controller.snapshot(reason)


def status() -> dict[str, Any]:
    """Settings in force, whether a window is open, when the next one opens,
    the dump directory's files and bytes, counters (with the slow requests
    and spans seen by exectrace.middleware and exectrace.otel) and the last error."""
    controller = _controller.current()
    if controller is None:
        settings = _current_settings()
        result: dict[str, Any] = {
            "enabled": False,
            "settings": settings.as_display_dict(),
            "window_open": False,
            "dump_dir": os.path.abspath(settings.dump_dir),
            "last_error": None,
        }
    else:
        result = controller.status()
    result.update(_annotate.counts())
    return result
