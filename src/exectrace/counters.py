"""Counters sampled during a window, off the application's threads.

A sampler thread (never recorded) wakes every `counters_interval` while a
window is open and reads, cheaply and without touching the application:

  RSS                 resident memory, bytes (/proc/self/statm; elsewhere the
                      peak, from getrusage, named "RSS peak")
  CPU time            process CPU time since the window opened, ns
  threads             OS threads of the process (Python threads elsewhere)
  GC gen0..gen2 count gc.get_count(): objects counted towards each generation's
                      next collection

The file gets one Perfetto counter track per counter.
"""

from __future__ import annotations

import bisect
import gc
import os
import sys
import threading
import time
from typing import Callable, Optional

from exectrace import _tracecore

#: (name, unit, [(monotonic ns, value), ...]) per counter
Samples = list[tuple[str, str, list[tuple[int, float]]]]


class CounterSampler:
    """keep_ns > 0 (a flight recorder's continuous window): samples older than
    keep_ns are dropped as new ones come, and recent() copies the last ones.
    record=False: no samples are kept at all (only on_sample sees them: the
    flight recorder's triggers without counters in the files). on_sample(now,
    {name: value}) is called after each sample, on the sampler's thread."""

    def __init__(self, interval_ns: int, keep_ns: int = 0, record: bool = True,
                 on_sample: Optional[Callable[[int, dict[str, float]], None]] = None) -> None:
        self.interval_s = max(interval_ns, 1_000_000) / 1e9  # at most 1000 samples/s
        self.keep_ns = keep_ns
        self.record = record
        self.on_sample = on_sample
        self._stop = threading.Event()
        self._go = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._cpu0 = time.process_time_ns()
        self._readers = self._make_readers()
        self._values: dict[str, list[tuple[int, float]]] = {name: [] for name, _u, _r in self._readers}

    def _make_readers(self) -> list[tuple[str, str, Callable[[], float]]]:
        readers: list[tuple[str, str, Callable[[], float]]] = []
        statm = _open_proc("/proc/self/statm")
        stat = _open_proc("/proc/self/stat")
        if statm is not None:
            page = os.sysconf("SC_PAGE_SIZE")
            readers.append(("RSS", "bytes", lambda: int(os.pread(statm, 256, 0).split()[1]) * page))
        else:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
            readers.append(("RSS peak", "bytes",
                            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale))
        readers.append(("CPU time", "ns", lambda: time.process_time_ns() - self._cpu0))
        if stat is not None:
            # fields after the ")" that ends the command name: num_threads is the 18th
            readers.append(("threads", "count",
                            lambda: int(os.pread(stat, 1024, 0).rsplit(b")", 1)[1].split()[17])))
        else:
            readers.append(("threads", "count", lambda: threading.active_count()))
        for gen in range(3):
            readers.append((f"GC gen{gen} count", "count", lambda g=gen: gc.get_count()[g]))  # type: ignore[misc]
        self._fds = [fd for fd in (statm, stat) if fd is not None]
        return readers

    def sample(self) -> None:
        now = time.monotonic_ns()
        current: dict[str, float] = {}
        for name, _unit, read in self._readers:
            try:
                current[name] = float(read())
            except (OSError, ValueError, IndexError):
                pass  # a counter that cannot be read is left out, never an error
        if self.record:
            for name, value in current.items():
                values = self._values[name]
                values.append((now, value))
                # drop a batch at a time: a slice, not one pop(0) per sample
                if self.keep_ns and now - values[0][0] > self.keep_ns + 1_000_000_000:
                    cut = bisect.bisect_left(values, (now - self.keep_ns, float("-inf")))
                    del values[:cut]
        if self.on_sample is not None:
            try:
                self.on_sample(now, current)
            except Exception:  # a trigger's fault never stops the sampler
                pass

    def recent(self, span_ns: int) -> Samples:
        """Copies of the samples of the last span_ns (safe while sampling)."""
        since = time.monotonic_ns() - span_ns
        out: Samples = []
        for name, unit, _r in self._readers:
            values = list(self._values[name])
            cut = bisect.bisect_left(values, (since, float("-inf")))
            out.append((name, unit, values[cut:]))
        return out

    def _run(self) -> None:
        _tracecore.ignore_thread(threading.get_ident())
        try:
            self._started.set()
            self._go.wait()
            if self._stop.is_set():
                return
            self.sample()
            while not self._stop.wait(self.interval_s):
                self.sample()
        finally:
            _tracecore.ignore_thread(threading.get_ident(), False)

    def start(self) -> None:
        """Starts sampling; the thread is ignored by the recorder before the
        window opens, so it never appears in the trace."""
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exectrace-counters", daemon=True)
        self._thread.start()
        self._started.wait(5)

    def window_opened(self) -> None:
        """Takes the first sample now and then every interval."""
        self._go.set()

    def stop(self) -> Samples:
        """Stops the thread (after one last sample) and returns the samples."""
        self._stop.set()
        self._go.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.sample()
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        return [(name, unit, self._values[name]) for name, unit, _r in self._readers]


def _open_proc(path: str) -> Optional[int]:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError:
        return None
