"""Benchmark fixtures: the tracers under comparison, and the ratio table.

Run:  pytest bench --benchmark-only
Every workload runs once per mode in the same session, so the ratios at the
end compare like with like:

  untraced    no hook
  floor       exectrace's no-op C hook on the same events: the cost of being
              called at all (PyEval_SetProfile <= 3.11, sys.monitoring 3.12+)
  exectrace   recording with default settings (C calls on, 64 MiB buffer)
  viztracer   VizTracer's default tracer (C functions on)
  cprofile    the standard library's deterministic profiler, for reference

A tracer is started before the first round and stopped after the last, as
in a long window: the buffer's first page faults land in the warmup rounds.
"""

from __future__ import annotations

import contextlib
import cProfile
import platform
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exectrace import _tracecore, capture, settings  # noqa: E402

MODES = ["untraced", "floor", "exectrace", "viztracer", "cprofile"]
#: "exectrace" above is a `calls` window (every call), the mode these peers compare with
CALLS = {"mode": "calls"}


class _KeepInstrumentation:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# pytest-benchmark pauses sys.settrace/sys.setprofile hooks while it measures;
# here the hooks are what is measured. (Its pause also breaks tracers on
# Python <= 3.11: it restores them as plain Python profile functions.)
import pytest_benchmark.fixture  # noqa: E402

pytest_benchmark.fixture.PauseInstrumentation = _KeepInstrumentation  # type: ignore[misc,assignment]


@contextlib.contextmanager
def tracer(mode: str) -> Iterator[None]:
    if mode == "untraced":
        yield
    elif mode == "floor":
        _tracecore.floor_start()
        try:
            yield
        finally:
            _tracecore.floor_stop()
    elif mode == "exectrace":
        window = capture.Window.open(settings.resolve(settings.defaults(), **CALLS))
        try:
            yield
        finally:
            window.close().release()
    elif mode == "viztracer":
        viztracer = pytest.importorskip("viztracer")
        tracer_ = viztracer.VizTracer(verbose=0)
        tracer_.start()
        try:
            yield
        finally:
            tracer_.stop()
            tracer_.clear()
            # VizTracer leaves its hook in threading.setprofile on <= 3.11:
            # threads started later (the server's) would carry it.
            threading.setprofile(None)  # type: ignore[arg-type]
    elif mode == "cprofile":
        profile = cProfile.Profile()
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
    else:
        raise ValueError(mode)


def _median(bench) -> float:
    stats = bench.stats
    stats = getattr(stats, "stats", stats)
    return float(stats.median)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    by_group: dict[str, dict[str, object]] = {}
    extra: list[object] = []
    for bench in session.benchmarks:
        mode = bench.extra_info.get("mode")
        if mode:
            by_group.setdefault(bench.group, {})[mode] = bench
        else:
            extra.append(bench)
    write = terminalreporter.write_line
    write("")
    write(f"exectrace overhead ratios (median of rounds), {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}")
    header = "| workload | untraced | floor | exectrace | viztracer | cProfile | exectrace / floor | exectrace / viztracer |"
    write(header)
    write("|---" * (header.count("|") - 1) + "|")
    others = []
    for group, modes in sorted(by_group.items()):
        base = modes.get("untraced")
        if base is None:
            continue
        if "exectrace" not in modes:
            others.append((group, modes, base))
            continue
        b = _median(base)

        def ratio(mode: str, modes: dict[str, object] = modes, b: float = b) -> str:
            bench = modes.get(mode)
            return f"{_median(bench) / b:.2f}x" if bench else "-"

        ours = modes.get("exectrace")
        floor = modes.get("floor")
        viz = modes.get("viztracer")
        vs_floor = f"{_median(ours) / _median(floor):.3f}" if ours and floor else "-"
        vs_viz = f"{_median(ours) / _median(viz):.3f}" if ours and viz else "-"
        write(f"| {group} ({b * 1e3:.1f} ms) | 1.00x | {ratio('floor')} | {ratio('exectrace')} | "
              f"{ratio('viztracer')} | {ratio('cprofile')} | {vs_floor} | {vs_viz} |")
    for group, modes, base in others:
        ratios = ", ".join(f"{mode} {_median(bench) / _median(base):.3f}x"
                           for mode, bench in modes.items() if mode != "untraced")
        requests = base.extra_info.get("requests_per_round")
        rates = (" (requests/s: " + ", ".join(f"{mode} {requests / _median(bench):,.0f}"
                                              for mode, bench in modes.items()) + ")") if requests else ""
        write(f"{group} ({_median(base) * 1e3:.1f} ms untraced): {ratios}{rates}")
    fresh = {b.extra_info["fresh_process_mode"]: b.extra_info["process_median_s"]
             for b in extra if "fresh_process_mode" in b.extra_info}
    if "no-package" in fresh and "idle-controller" in fresh:
        write(f"fresh process, threaded server: exectrace never imported {fresh['no-package'] * 1e3:.1f} ms, "
              f"idle controller {fresh['idle-controller'] * 1e3:.1f} ms "
              f"({fresh['idle-controller'] / fresh['no-package']:.3f}x)")
    for bench in extra:
        info = bench.extra_info
        if "summary_line" in info:  # a benchmark's own result line (bench/test_ship.py)
            write(info["summary_line"])
        if bench.group == "autostart check":
            write(f"autostart check without EXECTRACE_* variables: {_median(bench) * 1e9:.0f} ns "
                  f"({info.get('environment_variables')} variables in the environment)")
        if "slices" in info:
            median = _median(bench)
            write(f"{bench.name}: {info['slices']} slices in {median * 1e3:.1f} ms = "
                  f"{info['slices'] / median / 1e6:.1f}M slices/s, "
                  f"{info['bytes'] / info['slices']:.2f} bytes/slice ({info.get('compressor')})")


@pytest.fixture(scope="session")
def big_trace_file(tmp_path_factory):
    """A trace file of the call-heavy and scheduler workloads (about 1.4M slices)."""
    import workloads

    window = capture.Window.open(settings.resolve(settings.defaults(), **CALLS))
    for _ in range(4):
        workloads.call_heavy()
        workloads.scheduler()
    closed = window.close()
    try:
        data = closed.encode()
    finally:
        closed.release()
    path = tmp_path_factory.mktemp("big") / "big.out"
    path.write_bytes(data)
    return path

