"""When trace windows open and close: pure logic over a monotonic clock (ns).

The first window opens when tracing is enabled, then every `interval`,
start to start; when ``interval <= duration`` windows run back to back.
Changes apply at once:

- a new interval re-arms the timer now: the next window opens `interval`
  after the last one opened, or now if that moment has passed;
- a new duration moves the end of the window in progress;
- interval 0 closes the window in progress at once and opens no more.

The controller drives this with the real clock; tests drive it with a fake one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from exectrace.settings import interval_enables

OPEN = "open"
CLOSE = "close"


@dataclass
class Schedule:
    interval: int  # ns between window starts; 0: off
    duration: int  # ns a window lasts
    window_start: Optional[int] = None  # the open window's start
    last_start: Optional[int] = None
    next_start: Optional[int] = None  # None: no window planned

    @property
    def enabled(self) -> bool:
        return interval_enables(self.interval)

    @property
    def window_open(self) -> bool:
        return self.window_start is not None

    def enable(self, now: int) -> None:
        """Tracing turned on (or the process forked): the first window is due now."""
        self.last_start = None
        self.next_start = now if self.enabled else None

    def _plan_after(self, start: int) -> Optional[int]:
        if not self.enabled:
            return None
        return start + max(self.interval, self.duration)

    def closes_at(self) -> Optional[int]:
        if self.window_start is None:
            return None
        if not self.enabled:
            return self.window_start  # interval 0: close at once
        return self.window_start + self.duration

    def due(self, now: int) -> Optional[str]:
        """What to do now: CLOSE the open window, OPEN one, or nothing."""
        closes_at = self.closes_at()
        if closes_at is not None:
            return CLOSE if now >= closes_at else None
        if self.next_start is not None and now >= self.next_start:
            return OPEN
        return None

    def wake_at(self) -> Optional[int]:
        """When `due` will next have something to do (None: not before a change)."""
        closes_at = self.closes_at()
        return closes_at if closes_at is not None else self.next_start

    def opened(self, now: int) -> None:
        self.window_start = now
        self.last_start = now
        self.next_start = self._plan_after(now)

    def closed(self, now: int) -> None:
        self.window_start = None
        if self.next_start is not None and self.next_start < now:
            self.next_start = now  # overdue (back to back, or a slow close)

    def set_interval(self, now: int, interval: int) -> None:
        self.interval = interval
        if not self.enabled:
            self.next_start = None
        elif self.last_start is None:
            self.next_start = now
        else:
            planned = self._plan_after(self.last_start)
            self.next_start = max(now, planned) if planned is not None else None

    def set_duration(self, now: int, duration: int) -> None:
        self.duration = duration
        if self.last_start is not None and self.enabled:
            planned = self._plan_after(self.last_start)
            if planned is not None:
                self.next_start = max(now, planned) if self.window_start is None else planned
