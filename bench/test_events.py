"""What an `events` window costs, side by side with no tracing, in one run.

Run:  pytest bench/test_events.py --benchmark-only

Per workload: untraced, an `events` window with the defaults (waits with
callstacks, 100 Hz samples, asyncio steps, GC), the same without the
sampler (sample_interval=0), and a `calls` window for scale. The ratios are
printed at the end; issue 11's targets are <= 1.02x on the servers and
<= 1.05x on call-heavy and richards on 3.12/3.13.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator

import pytest

import workloads
from exectrace import capture, settings

MODES = ["untraced", "events", "events-no-sampler", "calls"]
_medians: dict[str, dict[str, float]] = {}
_bytes: dict[str, dict[str, float]] = {}


@contextlib.contextmanager
def window(mode: str, group: str, seconds: list[float]) -> Iterator[None]:
    if mode == "untraced":
        yield
        return
    options = {"mode": "calls"} if mode == "calls" else {"mode": "events"}
    if mode == "events-no-sampler":
        options["sample_interval"] = "0"
    opened = capture.Window.open(settings.resolve(settings.defaults(), **options))
    try:
        yield
    finally:
        closed = opened.close()
        try:
            data = closed.encode()
            elapsed = sum(seconds)
            stats = closed.capture.stats
            _bytes.setdefault(group, {})[mode] = len(data) / elapsed if elapsed else 0.0
            _bytes[group][mode + " lost"] = stats["records_lost"]
        finally:
            closed.release()


@pytest.fixture(scope="module")
def loopback_server():
    server = workloads.LoopbackServer()
    yield server
    server.close()


_interleaved: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    write = request.config.pluginmanager.get_plugin("terminalreporter").write_line
    capture_manager = request.config.pluginmanager.get_plugin("capturemanager")
    with capture_manager.global_and_fixture_disabled():
        write("")
        write(f"events mode vs untraced (median of rounds), {platform.python_implementation()} "
              f"{platform.python_version()}, {platform.machine()}")
        write("| workload | untraced | events | events, no sampler | calls | events bytes/s | events lost |")
        write("|---|---|---|---|---|---|---|")
        for group, modes in _medians.items():
            base = modes.get("untraced")
            if not base:
                continue

            def ratio(mode: str, modes: dict[str, float] = modes, base: float = base) -> str:
                return f"{modes[mode] / base:.3f}x" if mode in modes else "-"

            rate = _bytes.get(group, {}).get("events", 0.0)
            lost = _bytes.get(group, {}).get("events lost", 0)
            write(f"| {group} ({base * 1e3:.1f} ms) | 1.000x | {ratio('events')} | "
                  f"{ratio('events-no-sampler')} | {ratio('calls')} | {rate / 1024:.0f} KiB/s | {lost:.0f} |")
        if _interleaved:
            write("")
            write(f"interleaved, {platform.python_implementation()} {platform.python_version()}: median over "
                  "rounds of each mode's time / the untraced time of the same round (wall; process CPU)")
            write("| workload | events | events, no sampler | calls |")
            write("|---|---|---|---|")
            for group, r in _interleaved.items():
                w, c = r["wall"], r["cpu"]
                write(f"| {group} | {w['events']:.3f}x; {c['events']:.3f}x | "
                      f"{w['events-no-sampler']:.3f}x; {c['events-no-sampler']:.3f}x | "
                      f"{w['calls']:.3f}x; {c['calls']:.3f}x |")


def measure(benchmark, mode, group, target, *args):
    benchmark.group = group
    benchmark.extra_info["mode"] = mode
    seconds: list[float] = []

    def timed():
        import time

        t0 = time.perf_counter()
        result = target(*args)
        seconds.append(time.perf_counter() - t0)
        return result

    with window(mode, group, seconds):
        result = benchmark.pedantic(timed, rounds=15, warmup_rounds=2)
    stats = getattr(benchmark.stats, "stats", benchmark.stats)
    _medians.setdefault(group, {})[mode] = float(stats.median)
    return result


def interleaved(group: str, target, *args, rounds: int = 15) -> dict[str, dict[str, float]]:
    """Each round runs the workload once per mode, in a rotating order, each
    traced run in a window of its own after one untimed run in that window
    (so call sites have disabled themselves, as in a long window). Returns,
    per mode, the median over rounds of its time / the untraced time of the
    same round, for wall time and for the process's CPU time (all threads,
    the sampler's included): a machine whose load changes hurts every mode of
    a round alike, and CPU time hardly sees the load at all."""
    import statistics
    import time

    wall: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
            spent: list[float] = []
            with window(mode, group + " (interleaved)", spent):
                if mode != "untraced":
                    target(*args)
                t0, c0 = time.perf_counter(), time.process_time()
                target(*args)
                c1, t1 = time.process_time(), time.perf_counter()
                wall[mode].append(t1 - t0)
                cpu[mode].append(c1 - c0)
                spent.append(t1 - t0)
    return {
        kind: {m: statistics.median(t / u for t, u in zip(times[m], times["untraced"])) for m in MODES}
        for kind, times in (("wall", wall), ("cpu", cpu))
    }


@pytest.mark.parametrize("mode", MODES)
def test_call_heavy(benchmark, mode):
    measure(benchmark, mode, "call-heavy", workloads.call_heavy)


@pytest.mark.parametrize("mode", MODES)
def test_scheduler(benchmark, mode):
    assert measure(benchmark, mode, "scheduler (richards-style)", workloads.scheduler) > 1000


@pytest.mark.parametrize("mode", MODES)
def test_threaded_server(benchmark, mode, loopback_server):
    group = "threaded server over loopback"
    assert measure(benchmark, mode, group, workloads.server_round, loopback_server.address) == 600


@pytest.mark.parametrize("mode", MODES)
def test_asyncio_server(benchmark, mode):
    assert measure(benchmark, mode, "asyncio server over loopback",
                   workloads.asyncio_server_round) == 800


@pytest.mark.parametrize("workload", ["call-heavy", "scheduler (richards-style)",
                                      "threaded server over loopback", "asyncio server over loopback"])
def test_interleaved(benchmark, workload, loopback_server, rounds=21):
    targets = {
        "call-heavy": (workloads.call_heavy,),
        "scheduler (richards-style)": (workloads.scheduler,),
        "threaded server over loopback": (workloads.server_round, loopback_server.address),
        "asyncio server over loopback": (workloads.asyncio_server_round,),
    }
    target, *args = targets[workload]
    benchmark.group = "interleaved " + workload
    result = benchmark.pedantic(interleaved, args=(workload, target, *args), kwargs={"rounds": rounds},
                                rounds=1, iterations=1)
    _interleaved[workload] = result
