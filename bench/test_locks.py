"""Cost of an uncontended `with lock:`: native locks against exectrace's traced
locks (src/native/tracedlock.h), between windows and inside a window.

Run:  pytest bench/test_locks.py --benchmark-only
Each round runs LOOPS with-statements; the summary at the end gives ns per
with-statement (median round / LOOPS, the loop's own cost included: see the
"empty loop" line).
"""

from __future__ import annotations

import _thread

import pytest

from conftest import tracer
from exectrace import _tracecore

LOOPS = 20_000

MAKERS = {
    "native Lock": _thread.allocate_lock,
    "traced Lock": _tracecore.Lock,
    "native RLock": _thread.RLock,
    "traced RLock": _tracecore.RLock,
}

_results: dict[tuple[str, str], tuple[float, float]] = {}


def with_loop(lock, loops=LOOPS):
    for _ in range(loops):
        with lock:
            pass


def empty_loop(lock, loops=LOOPS):
    for _ in range(loops):
        pass


@pytest.fixture(scope="module", autouse=True)
def ns_per_with_table(request):
    yield
    if not _results:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        _write_table(request.config.pluginmanager.get_plugin("terminalreporter").write_line)


def _write_table(write):
    write("")
    write(f"ns per uncontended `with lock:`, median (min) round / {LOOPS}")
    write("| lock | idle (no window) | in a window |")
    write("|---|---|---|")
    for kind in ["empty loop", *MAKERS]:
        cells = []
        for state in ("idle", "window"):
            v = _results.get((kind, state))
            cells.append(f"{v[0]:.1f} ({v[1]:.1f})" if v is not None else "-")
        write(f"| {kind} | {cells[0]} | {cells[1]} |")


@pytest.mark.parametrize("state", ["idle", "window"])
@pytest.mark.parametrize("kind", ["empty loop", *MAKERS])
def test_with_lock(benchmark, kind, state):
    lock = MAKERS.get(kind, _thread.allocate_lock)()
    target = empty_loop if kind == "empty loop" else with_loop
    benchmark.group = f"with lock: ({state})"
    benchmark.extra_info["loops"] = LOOPS
    with tracer("untraced" if state == "idle" else "exectrace"):
        benchmark.pedantic(target, args=(lock,), rounds=30, warmup_rounds=3)
    stats = benchmark.stats
    stats = getattr(stats, "stats", stats)
    _results[(kind, state)] = (float(stats.median) / LOOPS * 1e9, float(stats.min) / LOOPS * 1e9)
