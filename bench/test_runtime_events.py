"""What issue 6's runtime events cost.

Run:  pytest bench/test_runtime_events.py --benchmark-only

1. Idle annotations: `with exectrace.region(...)`, `exectrace.task(...)` and
   `exectrace.log(...)` when no window is open (target: < 100 ns per region
   enter + exit). Reported as ns per call, the empty loop's cost subtracted.
2. In a window, the core with and without the runtime-event machinery:
   asyncio step attribution (a task lookup per step, a flow per create_task)
   on an asyncio workload, and traced locks on a threaded lock workload.
   Blocking classification itself costs nothing in a window: it is a
   per-function lookup when the window is written (3.).
3. Writing a window with and without blocking classification.
"""

from __future__ import annotations

import asyncio
import threading
from unittest import mock

import pytest

import exectrace
import workloads
from conftest import tracer
from exectrace import _tracecore, capture, settings

LOOPS = 100_000
_ns: dict[str, float] = {}
_ratios: dict[str, dict[str, float]] = {}


def _median(bench) -> float:
    stats = getattr(bench.stats, "stats", bench.stats)
    return float(stats.median)


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    write = request.config.pluginmanager.get_plugin("terminalreporter").write_line
    capture_manager = request.config.pluginmanager.get_plugin("capturemanager")
    with capture_manager.global_and_fixture_disabled():
        if _ns:
            write("")
            write("idle annotation cost, ns per call (median round, empty loop subtracted)")
            for name, ns in _ns.items():
                write(f"  {name:<44} {ns:7.1f} ns")
        for group, modes in _ratios.items():
            if "off" in modes and "on" in modes:
                write(f"{group}: untraced {modes.get('untraced', 0) * 1e3:.1f} ms, "
                      f"events off {modes['off'] * 1e3:.1f} ms, on {modes['on'] * 1e3:.1f} ms "
                      f"-> on / off = {modes['on'] / modes['off']:.3f}")


# ------------------------------------------------------------ idle annotations

def empty_loop(n=LOOPS):
    for _ in range(n):
        pass


def region_loop(n=LOOPS):
    for _ in range(n):
        with exectrace.region("checkout"):
            pass


def task_loop(n=LOOPS):
    for _ in range(n):
        with exectrace.task("order-42"):
            pass


def log_loop(n=LOOPS):
    for _ in range(n):
        exectrace.log("orders", "placed 3 orders")


IDLE = {
    "empty loop": empty_loop,
    "with exectrace.region(name): (enter + exit)": region_loop,
    "with exectrace.task(name): (enter + exit)": task_loop,
    "exectrace.log(category, message)": log_loop,
}


@pytest.mark.parametrize("name", list(IDLE))
def test_idle_annotation(benchmark, name):
    assert not _tracecore.is_active()
    benchmark.group = "idle annotations"
    benchmark.pedantic(IDLE[name], rounds=30, warmup_rounds=3)
    median = _median(benchmark)
    if name == "empty loop":
        _ns["_empty"] = median
    else:
        _ns[name] = (median - _ns.get("_empty", 0.0)) / LOOPS * 1e9


# -------------------------------------------- in a window: events on and off

async def _ping(queue_in, queue_out, n):
    for i in range(n):
        await queue_in.put(i)
        await queue_out.get()


async def _pong(queue_in, queue_out, n):
    for _ in range(n):
        await queue_out.put(await queue_in.get())


async def _asyncio_main():
    for _ in range(20):
        tasks = []
        for _ in range(10):
            a, b = asyncio.Queue(), asyncio.Queue()
            tasks.append(asyncio.create_task(_ping(a, b, 20)))
            tasks.append(asyncio.create_task(_pong(a, b, 20)))
        await asyncio.gather(*tasks)


def asyncio_workload():
    asyncio.run(_asyncio_main())


def lock_workload(lock_type):
    lock = lock_type()
    total = [0]

    def work():
        for _ in range(20_000):
            with lock:
                total[0] += 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total[0]


@pytest.mark.parametrize("mode", ["untraced", "off", "on"])
def test_asyncio_attribution(benchmark, mode):
    group = "asyncio queues, 400 tasks (step attribution + flows)"
    benchmark.group = group
    if mode == "untraced":
        benchmark.pedantic(asyncio_workload, rounds=10, warmup_rounds=1)
    elif mode == "on":
        with tracer("exectrace"):
            benchmark.pedantic(asyncio_workload, rounds=10, warmup_rounds=1)
    else:
        with mock.patch.object(capture, "_asyncio_hooks", dict), tracer("exectrace"):
            benchmark.pedantic(asyncio_workload, rounds=10, warmup_rounds=1)
    _ratios.setdefault(group, {})[mode] = _median(benchmark)


@pytest.mark.parametrize("mode", ["untraced", "off", "on"])
def test_traced_locks(benchmark, mode):
    group = "4 threads x 20k `with lock:` (traced locks)"
    benchmark.group = group
    lock_type = _tracecore.Lock if mode == "on" else threading.Lock
    if mode == "untraced":
        result = benchmark.pedantic(lock_workload, args=(lock_type,), rounds=10, warmup_rounds=1)
    else:
        with tracer("exectrace"):
            result = benchmark.pedantic(lock_workload, args=(lock_type,), rounds=10, warmup_rounds=1)
    assert result == 80_000
    _ratios.setdefault(group, {})[mode] = _median(benchmark)


# -------------------------------------------- writing: classification on/off

@pytest.fixture(scope="module")
def closed_window():
    window = capture.Window.open(settings.resolve(settings.defaults(), mode="calls"))
    server = workloads.LoopbackServer()
    try:
        for _ in range(3):
            workloads.server_round(server.address)
            workloads.call_heavy()
    finally:
        server.close()
    closed = window.close()
    yield closed
    closed.release()


@pytest.mark.parametrize("mode", ["off", "on"])
def test_write_with_classification(benchmark, mode, closed_window):
    group = "write a window (blocking classification)"
    benchmark.group = group
    if mode == "on":
        benchmark.pedantic(closed_window.encode, rounds=5, warmup_rounds=1)
    else:
        with mock.patch("exectrace.blocking.reason_of", lambda name: None):
            benchmark.pedantic(closed_window.encode, rounds=5, warmup_rounds=1)
    _ratios.setdefault(group, {})[mode] = _median(benchmark)
