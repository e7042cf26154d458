"""The recorder end to end: real hooks, real threads, real files.

Every file is checked twice: by exectrace.read and against Perfetto's own
schema and the semantics trace_processor relies on (tests/perfetto_check.py).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time

import pytest

import exectrace
from exectrace import _tracecore
from perfetto_check import check_trace

HAS_SYS_MONITORING = sys.version_info >= (3, 12)


def load(path):
    """The trace through both readers: (exectrace Trace, Perfetto model)."""
    model = check_trace(str(path))
    trace = exectrace.read(path)
    return trace, model


def slices_named(trace, name):
    return [s for s in trace.slices() if s.name == name]


def contains(outer, inner):
    return outer.start_ns <= inner.start_ns and inner.end_ns <= outer.end_ns


# --------------------------------------------------------------- call trees

def inner():
    return 1


def outer():
    for _ in range(3):
        inner()


def test_known_call_tree_is_exact(trace_path):
    with exectrace.tracing(trace_path):
        for _ in range(100):
            outer()
    trace, model = load(trace_path)
    outers = slices_named(trace, "outer")
    inners = slices_named(trace, "inner")
    assert len(outers) == 100
    assert len(inners) == 300
    for o in outers:
        children = [i for i in inners if contains(o, i)]
        assert len(children) == 3
        assert all(c.depth == o.depth + 1 for c in children)
    assert {s.file for s in inners} == {__file__}
    assert inners[0].line == inner.__code__.co_firstlineno
    # Perfetto sees the same nesting
    m_outers = [s for s in model.slices if s.name == "outer"]
    m_inners = [s for s in model.slices if s.name == "inner"]
    assert len(m_outers) == 100 and len(m_inners) == 300
    assert {s.depth for s in m_inners} == {m_outers[0].depth + 1}
    assert m_inners[0].source_location[0] == __file__


def test_thread_sleep_on_its_own_track(trace_path):
    def worker():
        time.sleep(0.05)

    with exectrace.tracing(trace_path):
        t = threading.Thread(target=worker, name="worker-1")
        t.start()
        t.join()
    trace, model = load(trace_path)
    sleeps = slices_named(trace, "time.sleep")
    assert len(sleeps) == 1
    assert sleeps[0].thread == "worker-1"
    assert sleeps[0].dur_ns >= 50_000_000
    assert sleeps[0].is_c_function
    assert sleeps[0].tid == t.native_id
    worker_tracks = [tr for tr in model.tracks.values() if tr.name == "worker-1"]
    assert len(worker_tracks) == 1 and worker_tracks[0].kind == "thread"
    m_sleep = [s for s in model.slices if s.name == "time.sleep"]
    assert m_sleep[0].track_uuid == worker_tracks[0].uuid
    assert m_sleep[0].dur >= 50_000_000


def test_cyclic_garbage_shows_on_gc_track(trace_path):
    class Node:
        pass

    with exectrace.tracing(trace_path):
        for _ in range(1000):
            n = Node()
            n.me = n
        del n
        gc.collect()
    trace, model = load(trace_path)
    events = trace.gc_events()
    full = [e for e in events if e.generation == 2]
    assert full, events
    # automatic collections may take some of the cycles before gc.collect()
    assert sum(e.collected for e in events) >= 1000
    assert all(e.uncollectable == 0 for e in events)
    assert all(e.dur_ns > 0 and e.thread == "MainThread" for e in events)
    gc_track = [t for t in model.tracks.values() if t.name == "GC"]
    assert len(gc_track) == 1
    m_gc = [s for s in model.slices if s.track_uuid == gc_track[0].uuid]
    assert len(m_gc) == len(events)
    assert {"generation", "collected", "uncollectable"} <= set(m_gc[0].args)


def test_threads_started_before_and_during(trace_path):
    stop = threading.Event()
    started = threading.Event()

    def spin(tag):
        started.set()
        while not stop.is_set():
            inner()
            time.sleep(0.001)

    before = threading.Thread(target=spin, args=("before",), name="before-window")
    before.start()
    started.wait()
    try:
        with exectrace.tracing(trace_path):
            during = threading.Thread(target=spin, args=("during",), name="during-window")
            during.start()
            time.sleep(0.1)
            stop.set()
            during.join()
    finally:
        stop.set()
        before.join()
    trace, _ = load(trace_path)
    by_thread = {}
    for s in slices_named(trace, "inner"):
        by_thread.setdefault(s.thread, 0)
        by_thread[s.thread] += 1
    assert by_thread.get("before-window", 0) > 5
    assert by_thread.get("during-window", 0) > 5
    # The thread already running was seen inside its running function.
    spins = [s for s in slices_named(trace, "test_threads_started_before_and_during.<locals>.spin")
             if s.thread == "before-window"] or [
        s for s in slices_named(trace, "spin") if s.thread == "before-window"]
    assert spins and spins[0].start_ns == trace.metadata.start_ns


# --------------------------------------------------------- hard call shapes

def raiser(n):
    if n == 0:
        raise ValueError("boom")
    raiser(n - 1)


def test_exceptions_close_their_slices(trace_path):
    with exectrace.tracing(trace_path):
        for _ in range(10):
            try:
                raiser(5)
            except ValueError:
                pass
            try:
                int("not a number")
            except ValueError:
                pass
    trace, _ = load(trace_path)
    raisers = slices_named(trace, "raiser")
    assert len(raisers) == 60
    assert sorted({s.depth for s in raisers}) == list(range(raisers[0].depth, raisers[0].depth + 6))
    c_raises = [s for s in trace.slices() if s.name in ("int", "builtins.int")]
    # int() is a type call: not a C function call in the profiler's sense on
    # every version, so only check the Python frames are closed.
    assert all(s.dur_ns >= 0 for s in c_raises)


def gen(n):
    # a loop of yields, not `yield from`: each resumption is a step of gen
    for i in range(n):  # noqa: UP028
        yield i


def test_each_generator_resumption_is_a_slice(trace_path):
    with exectrace.tracing(trace_path):
        total = sum(1 for _ in gen(50))
    assert total == 50
    trace, _ = load(trace_path)
    steps = slices_named(trace, "gen")
    assert len(steps) == 51  # 50 yields + the final return


async def step(n):
    for _ in range(n):
        await asyncio.sleep(0)
    return n


async def main_async():
    return await asyncio.gather(*(step(3) for _ in range(4)))


def test_coroutine_steps(trace_path):
    with exectrace.tracing(trace_path):
        assert asyncio.run(main_async()) == [3, 3, 3, 3]
    trace, _ = load(trace_path)
    steps = slices_named(trace, "step")
    # each coroutine: first run + 3 resumptions
    assert len(steps) == 16


def deep(n):
    return 0 if n == 0 else deep(n - 1) + 1


def test_recursion_5000_deep(trace_path):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)
    try:
        with exectrace.tracing(trace_path):
            assert deep(5000) == 5000
    finally:
        sys.setrecursionlimit(limit)
    trace, model = load(trace_path)
    deeps = slices_named(trace, "deep")
    assert len(deeps) == 5001
    assert max(s.depth for s in deeps) - min(s.depth for s in deeps) == 5000
    assert max(s.depth for s in model.slices if s.name == "deep") >= 5000


def test_code_freed_mid_window_keeps_its_name(trace_path):
    with exectrace.tracing(trace_path):
        for i in range(50):
            namespace = {}
            exec(f"def made_{i}():\n    return {i}\n", namespace)
            namespace[f"made_{i}"]()
            del namespace
        gc.collect()
    trace, _ = load(trace_path)
    names = {s.name for s in trace.slices()}
    assert {f"made_{i}" for i in range(50)} <= names


def test_tiny_buffer_overflows_with_loss_counted(trace_path):
    with exectrace.tracing(trace_path, buffer_size="64KiB"):
        for _ in range(5000):
            outer()
    trace, model = load(trace_path)
    capacity = 64 * 1024 // 32
    assert trace.slice_count <= capacity + 2  # + the window and records-lost markers
    assert trace.metadata.records_lost > 0
    kept = trace.metadata["records.kept"]
    assert kept == capacity
    # 5000 outer + 15000 inner, plus the calls around them
    assert trace.metadata.records_lost + kept >= 20000
    lost_markers = [i for i in trace.instants() if i.name == "records lost"]
    assert lost_markers and lost_markers[0].args["count"] == trace.metadata.records_lost


# --------------------------------------------------------------- options

def test_c_calls_off(trace_path):
    with exectrace.tracing(trace_path, c_calls=False):
        for _ in range(10):
            outer()
            len("abc")
            time.sleep(0)
    trace, _ = load(trace_path)
    assert not [s for s in trace.slices() if s.is_c_function]
    assert len(slices_named(trace, "inner")) == 30


def test_c_calls_are_named_by_owner(trace_path):
    lock = threading.Lock()
    with exectrace.tracing(trace_path):
        time.sleep(0)
        lock.acquire()
        lock.release()
        len([1])
        dict.fromkeys("ab")
    trace, _ = load(trace_path)
    names = {s.name for s in trace.slices() if s.is_c_function}
    assert {"time.sleep", "_thread.lock.acquire", "_thread.lock.release", "len",
            "dict.fromkeys"} <= names


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_min_duration_drops_short_calls(trace_path):
    with exectrace.tracing(trace_path, min_duration="1ms"):
        for _ in range(20):
            inner()
        busy(0.003)
    trace, _ = load(trace_path)
    assert not slices_named(trace, "inner")
    busies = slices_named(trace, "busy")
    assert len(busies) == 1 and busies[0].dur_ns >= 3_000_000
    assert all(s.dur_ns >= 1_000_000 for s in trace.slices())


def nest(n):
    if n:
        nest(n - 1)


def test_max_depth(trace_path):
    """Depth counts from the thread's outermost frame: a new thread starts at
    Thread._bootstrap (0), _bootstrap_inner (1), run (2)."""
    with exectrace.tracing(trace_path, max_depth=6):
        t = threading.Thread(target=nest, args=(20,), name="nester")
        t.start()
        t.join()
    trace, _ = load(trace_path)
    mine = [s for s in trace.slices() if s.thread == "nester"]
    assert max(s.depth for s in mine) == 5
    assert len([s for s in mine if s.name == "nest"]) == 3


def test_exclude_and_include(tmp_path):
    excluded = tmp_path / "excluded.out"
    with exectrace.tracing(excluded, exclude=[__file__]):
        outer()
        threading.current_thread()
    trace, _ = load(excluded)
    assert not slices_named(trace, "outer") and not slices_named(trace, "inner")
    assert slices_named(trace, "current_thread")

    included = tmp_path / "included.out"
    with exectrace.tracing(included, include=[__file__], c_calls=False):
        outer()
        threading.current_thread()
    trace, _ = load(included)
    assert len(slices_named(trace, "inner")) == 3
    assert not slices_named(trace, "current_thread")


def test_uncompressed_file_is_equivalent(tmp_path):
    a, b = tmp_path / "z.out", tmp_path / "raw.out"
    with exectrace.tracing(a, compress=True):
        outer()
    with exectrace.tracing(b, compress=False):
        outer()
    ta, _ = load(a)
    tb, _ = load(b)
    assert [s.name for s in slices_named(ta, "inner")] == [s.name for s in slices_named(tb, "inner")]
    assert b.stat().st_size > a.stat().st_size


def test_monotonic_clock_option(trace_path):
    with exectrace.tracing(trace_path, clock="monotonic"):
        busy(0.002)
    trace, _ = load(trace_path)
    assert trace.metadata["recorder.clock"] == "monotonic"
    assert slices_named(trace, "busy")[0].dur_ns >= 2_000_000


def test_metadata_header(trace_path):
    with exectrace.tracing(trace_path, min_duration="1us"):
        pass
    trace, model = load(trace_path)
    meta = trace.metadata
    import os
    import platform
    assert meta["process.pid"] == os.getpid()
    assert meta["python.version"] == platform.python_version()
    assert meta["exectrace.version"] == exectrace.__version__
    assert meta.settings["min_duration"] == "1us"
    assert meta.records_lost == 0
    assert meta["window.start"].endswith("Z")
    window = [s for s in model.slices if s.name == "exectrace window"]
    assert len(window) == 1 and window[0].args["process.pid"] == os.getpid()


# -------------------------------------------------------- lifecycle, peers

def test_start_stop_a_thousand_times_without_leaks():
    def cycle():
        _tracecore.start(buffer_size=1 << 16)
        outer()
        capture = _tracecore.stop()
        capture.functions()
        capture.release()

    code = outer.__code__
    for _ in range(50):
        cycle()
    gc.collect()
    refs = sys.getrefcount(code)
    objects = len(gc.get_objects())
    for _ in range(1000):
        cycle()
    gc.collect()
    assert sys.getrefcount(code) == refs
    assert len(gc.get_objects()) <= objects + 50
    assert not _tracecore.is_active()


def test_capture_released_drops_code_references():
    namespace = {}
    exec("def temp():\n    return 1\n", namespace)
    code = namespace["temp"].__code__
    before = sys.getrefcount(code)
    _tracecore.start(buffer_size=1 << 16)
    namespace["temp"]()
    capture = _tracecore.stop()
    assert sys.getrefcount(code) == before + 1  # held by the capture
    capture.release()
    assert sys.getrefcount(code) == before
    with pytest.raises(exectrace.ExectraceError):
        capture.functions()


def test_second_window_is_refused(trace_path):
    with exectrace.tracing(trace_path), pytest.raises(exectrace.ExectraceError), \
            exectrace.tracing(trace_path):
        pass
    load(trace_path)


@pytest.mark.skipif(not HAS_SYS_MONITORING, reason="sys.monitoring is 3.12+")
def test_tool_ids_held_by_other_tools(trace_path, caplog):
    """exectrace takes tool id 3 (else 4), leaving PROFILER_ID to cProfile;
    PROFILER_ID only when 3 and 4 are held (with a warning); none free: refused."""
    mon = sys.monitoring
    with exectrace.tracing(trace_path):
        outer()
    assert "tool id 3" in load(trace_path)[0].metadata["recorder.hook"]
    mon.use_tool_id(3, "other-3")
    try:
        with exectrace.tracing(trace_path):
            outer()
        assert "tool id 4" in load(trace_path)[0].metadata["recorder.hook"]
        mon.use_tool_id(4, "other-4")
        try:
            with caplog.at_level("WARNING", logger="exectrace"), exectrace.tracing(trace_path):
                outer()
            assert "other-4" in caplog.text and "PROFILER_ID" in caplog.text
            trace, _ = load(trace_path)
            assert "tool id 2" in trace.metadata["recorder.hook"]
            assert len(slices_named(trace, "inner")) == 3
            mon.use_tool_id(mon.PROFILER_ID, "someone-else")
            try:
                with pytest.raises(exectrace.ExectraceError, match="in use"), exectrace.tracing(trace_path):
                    pass
            finally:
                mon.free_tool_id(mon.PROFILER_ID)
        finally:
            mon.free_tool_id(4)
    finally:
        mon.free_tool_id(3)


def test_with_cprofile_active(python, tmp_path):
    """cProfile holds the profile hook: <=3.11 refuses clearly, 3.12+ records alongside."""
    out = tmp_path / "t.out"
    result = python(
        f"""
        import cProfile, sys, exectrace
        def f(): return 1
        p = cProfile.Profile()
        p.enable()
        try:
            with exectrace.tracing({str(out)!r}):
                f()
            print("traced")
        except exectrace.ExectraceError as e:
            print("refused:", e)
        p.disable()
        """
    )
    if HAS_SYS_MONITORING:
        assert "traced" in result.stdout
        trace, _ = load(out)
        assert slices_named(trace, "f")
    else:
        assert "refused: another profiler" in result.stdout
        assert not out.exists()


def test_with_settrace_debugger_active(python, tmp_path):
    out = tmp_path / "t.out"
    result = python(
        f"""
        import sys, exectrace
        lines = []
        def tracer(frame, event, arg):
            lines.append(event)
            return tracer
        def f(): return 1
        sys.settrace(tracer)
        with exectrace.tracing({str(out)!r}):
            f()
        sys.settrace(None)
        print(len(lines) > 0)
        """
    )
    assert result.stdout.strip() == "True"
    trace, _ = load(out)
    assert slices_named(trace, "f")


def test_read_metadata_matches_the_full_read(trace_path, tmp_path):
    from exectrace.reader import read_metadata

    with exectrace.tracing(trace_path):
        for _ in range(50):
            outer()
        gc.collect()
    full = exectrace.read(trace_path)
    meta = read_metadata(trace_path)
    assert meta.values == full.metadata.values
    assert meta.start_ns == full.metadata.start_ns
    assert full.slice_count == meta["records.kept"] + meta["gc.collections"] + 1
    # the metadata comes first: a file cut after it still has it
    plain = tmp_path / "plain.out"
    with exectrace.tracing(plain, compress=False):
        for _ in range(50):
            outer()
    data = plain.read_bytes()
    cut = tmp_path / "cut.out"
    cut.write_bytes(data[: len(data) // 2])
    assert read_metadata(cut)["process.pid"] == exectrace.read(plain).metadata["process.pid"]
    other = tmp_path / "other.out"
    other.write_bytes(b"\x0a\x02\x40\x01" * 10)  # packets with only a timestamp
    with pytest.raises(exectrace.ExectraceError, match="not written by exectrace"):
        read_metadata(other)
