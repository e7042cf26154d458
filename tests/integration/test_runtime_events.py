"""Runtime events at Go's depth: blocking reasons, asyncio task tracks and
slow steps, user regions/tasks/logs, counters, gevent and uvloop."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import re
import subprocess
import sys
import time

import pytest

import exectrace
from exectrace.__main__ import main
from perfetto_check import check_trace

# Three fetchers talk to an echo server over loopback; fetcher-1 blocks the
# event loop for 200 ms in one of its steps.
ASYNCIO_APP = """
import asyncio, sys, time
import exectrace

async def handle(reader, writer):
    while data := await reader.read(100):
        writer.write(data)
        await writer.drain()
    writer.close()

async def fetch(i, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(5):
        writer.write(b"ping")
        await writer.drain()
        await reader.read(100)
    if i == 1:
        time.sleep(0.2)  # holds the loop
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tasks = [asyncio.create_task(fetch(i, port), name=f"fetcher-{i}") for i in range(3)]
    await asyncio.gather(*tasks)
    server.close()
    await server.wait_closed()

with exectrace.tracing(sys.argv[1]):
    asyncio.run(main())
"""


def run_app(tmp_path, code):
    """Runs `code` as a script whose first argument is the trace path."""
    script = tmp_path / "app.py"
    script.write_text(code)
    out = tmp_path / "trace.out"
    result = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return out, result


def summary_json(path, *extra):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["summary", str(path), "--json", "--top", "50", *extra]) == 0
    return json.loads(buffer.getvalue())


def test_asyncio_tasks_get_tracks_steps_flows_and_slow_steps(tmp_path):
    out, _ = run_app(tmp_path, ASYNCIO_APP)
    model = check_trace(out)
    trace = exectrace.read(out)

    steps = trace.steps()
    by_task: dict[str, list] = {}
    for step in steps:
        by_task.setdefault(step.task, []).append(step)
    for i in range(3):
        task_steps = by_task[f"fetcher-{i}"]
        # connect, 5 round trips, close: at least 6 resumptions
        assert len(task_steps) >= 6, (i, len(task_steps))
        assert {s.name for s in task_steps} == {"fetch"}
        assert all(s.thread == "MainThread" for s in task_steps)
        # one track per task, named after the task and its coroutine
        track = model.track_named(f"asyncio fetcher-{i} (fetch)")
        assert len(model.slices_on(track.uuid)) == len(task_steps)

    # steps of one task never overlap and are real resumptions of its coroutine
    for task_steps in by_task.values():
        for a, b in zip(task_steps, task_steps[1:]):
            assert a.end_ns <= b.start_ns
    fetch_frames = [s for s in trace.slices() if s.name == "fetch"]
    assert len(fetch_frames) >= sum(len(by_task[f"fetcher-{i}"]) for i in range(3))

    # the slow step: fetcher-1's, ~200 ms, flagged in the file and by the summary
    slow = [s for s in steps if s.slow]
    assert [s.task for s in slow] == ["fetcher-1"]
    assert 0.2e9 <= slow[0].dur_ns < 0.2e9 * 1.5
    summary = summary_json(out)
    assert summary["asyncio"]["slow_steps"][0]["task"] == "fetcher-1"
    assert summary["asyncio"]["slow_steps"][0]["coroutine"] == "fetch"
    assert summary["asyncio"]["slow_step_count"] == 1
    assert {"fetcher-0", "fetcher-1", "fetcher-2"} <= {t["task"] for t in summary["asyncio"]["by_task"]}
    # a lower threshold from the command line lists more steps
    assert summary_json(out, "--slow-step", "1ns")["asyncio"]["slow_step_count"] == len(steps)

    # flows: main's step that created each fetcher -> the fetcher's first step
    main_track = next(t for t in model.tracks.values() if (t.name or "").startswith("asyncio Task-")
                      and "(main)" in t.name)
    outgoing = {f for s in model.slices_on(main_track.uuid) for f in s.flow_ids}
    for i in range(3):
        first = model.slices_on(model.track_named(f"asyncio fetcher-{i} (fetch)").uuid)[0]
        assert set(first.terminating_flow_ids) & outgoing, i
    assert trace.metadata["asyncio.tasks"] >= 4
    assert trace.metadata["asyncio.slow_steps"] == 1


BLOCKING_APP = """
import socket, sys, threading, time
import exectrace

measured = {}

def nap():
    t = time.perf_counter()
    time.sleep(0.1)
    measured["sleep"] = time.perf_counter() - t

def hold(lock, held, seconds):
    with lock:
        held.set()
        time.sleep(seconds)

def wait_acquire(lock):
    held = threading.Event()
    threading.Thread(target=hold, args=(lock, held, 0.15), name="holder").start()
    held.wait()
    t = time.perf_counter()
    lock.acquire()
    measured["acquire"] = time.perf_counter() - t
    lock.release()

def wait_with(lock):
    held = threading.Event()
    threading.Thread(target=hold, args=(lock, held, 0.15), name="holder2").start()
    held.wait()
    t = time.perf_counter()
    with lock:
        measured["with"] = time.perf_counter() - t

def serve(listener):
    conn, _ = listener.accept()
    time.sleep(0.12)
    conn.sendall(b"hello")
    conn.close()

def read_socket():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    threading.Thread(target=serve, args=(listener,), name="server").start()
    client = socket.create_connection(listener.getsockname())
    t = time.perf_counter()
    client.recv(100)
    measured["recv"] = time.perf_counter() - t
    client.close()

with exectrace.tracing(sys.argv[1]):
    lock = threading.Lock()
    nap()
    wait_acquire(lock)
    wait_with(lock)
    read_socket()
print(repr(measured))
"""


@pytest.mark.parametrize("trace_locks", [True, False])
def test_blocking_profile_by_reason_with_call_sites_and_durations(tmp_path, trace_locks):
    app = BLOCKING_APP
    if not trace_locks:
        app = app.replace("exectrace.tracing(sys.argv[1])", "exectrace.tracing(sys.argv[1], trace_locks=False)")
    out, result = run_app(tmp_path, app)
    measured = ast.literal_eval(result.stdout.strip())
    check_trace(out)
    summary = summary_json(out)
    sites = {(b["reason"], b["caller"], b["function"]): b for b in summary["blocking"]}

    def site(reason, caller, function):
        found = sites.get((reason, caller, function))
        assert found is not None, (reason, caller, function, sorted(sites))
        return found

    lock_type = "exectrace.Lock" if trace_locks else "_thread.lock"
    checks = [(site("sleep", "nap", "time.sleep"), measured["sleep"]),
              (site("lock", "wait_acquire", f"{lock_type}.acquire"), measured["acquire"]),
              (site("io", "read_socket", "_socket.socket.recv"), measured["recv"])]
    if trace_locks:
        checks.append((site("lock", "wait_with", "exectrace.Lock.__enter__"), measured["with"]))
    else:  # a native lock's `with` wait is invisible: the caller's own time
        assert not [k for k in sites if k[1] == "wait_with"]
    for entry, expected in checks:
        assert entry["count"] == 1
        assert abs(entry["total_s"] - expected) <= 0.1 * expected, (entry, expected)

    # the reason is a category Perfetto can filter by, and an argument
    trace = exectrace.read(out)
    sleeps = [s for s in trace.slices() if s.name == "time.sleep"]
    assert sleeps and all(s.category == "c,sleep" and s.args["blocking"] == "sleep" for s in sleeps)
    recv = next(s for s in trace.slices() if s.name == "_socket.socket.recv")
    assert recv.category == "c,io" and recv.blocking == "io"
    main = next(t for t in summary["threads"] if t["name"] == "MainThread")
    assert main["blocked_s"]["lock"] >= measured["acquire"] * 0.9
    assert set(main["blocked_s"]) == {"sleep", "io", "lock", "subprocess"}


ANNOTATIONS_APP = """
import sys, threading, time
import exectrace

def pack(order):
    with order.region("pack"):
        time.sleep(0.02)
    order.end()

with exectrace.tracing(sys.argv[1]):
    with exectrace.region("checkout"):
        exectrace.log("orders", "placed 3 orders")
        time.sleep(0.01)
    with exectrace.task("order-42") as order:
        with exectrace.region("validate"):   # a region of the current task
            time.sleep(0.01)
        worker = threading.Thread(target=pack, args=(order,), name="packer")
        worker.start()
        worker.join()
    exectrace.log("orders", "done")
"""


def test_regions_tasks_and_logs_are_in_the_trace(tmp_path):
    out, _ = run_app(tmp_path, ANNOTATIONS_APP)
    model = check_trace(out)
    trace = exectrace.read(out)

    checkout = [s for s in trace.slices() if s.name == "checkout"]
    assert len(checkout) == 1 and checkout[0].category == "region" and checkout[0].thread == "MainThread"
    assert checkout[0].dur_ns >= 10_000_000
    # calls made inside the region nest under it
    inner = [s for s in trace.slices() if s.name == "time.sleep" and checkout[0].start_ns <= s.start_ns
             and s.end_ns <= checkout[0].end_ns]
    assert inner and inner[0].depth == checkout[0].depth + 1

    logs = trace.logs()
    assert [(e.args["category"], e.args["message"]) for e in logs] == [("orders", "placed 3 orders"),
                                                                      ("orders", "done")]
    assert logs[0].args["thread"] == "MainThread" and logs[0].track == "MainThread logs"
    assert checkout[0].start_ns <= logs[0].ts_ns <= checkout[0].end_ns
    # in Perfetto's structure: an instant named after the message, category = the log's
    instant = model.instants_named("placed 3 orders")
    assert len(instant) == 1 and instant[0].categories == ("orders",)
    log_track = model.tracks[instant[0].track_uuid]
    assert model.tracks[log_track.parent_uuid].kind == "thread"
    region = model.slices_named("checkout")
    assert len(region) == 1 and region[0].categories == ("region",)

    # the task: a span on its own track, crossing threads, with its regions
    spans = trace.spans()
    task_span = [s for s in spans if s.category == "task"]
    assert [s.name for s in task_span] == ["order-42"] and task_span[0].track == "task order-42"
    assert not task_span[0].args.get("unfinished")
    task_regions = {(s.name, s.track) for s in spans if s.category == "region"}
    assert task_regions == {("validate", "MainThread"), ("pack", "packer")}
    pack_span = next(s for s in spans if s.name == "pack")
    assert task_span[0].start_ns <= pack_span.start_ns and pack_span.end_ns <= task_span[0].end_ns
    # the regions are on the threads' tracks too, like any region
    assert {s.thread for s in trace.slices() if s.name in ("validate", "pack")} == {"MainThread", "packer"}

    summary = summary_json(out)
    assert {r["name"] for r in summary["regions"]} == {"checkout", "validate", "pack"}
    assert summary["tasks"][0]["name"] == "order-42" and summary["tasks"][0]["ended"]
    assert summary["logs"][0]["message"] == "placed 3 orders"


def test_annotations_outside_a_window_do_nothing_and_check_their_arguments():
    assert not exectrace._tracecore.is_active()
    region = exectrace.region("checkout")
    with region as entered:
        assert entered is region
    assert exectrace.region("x") is region  # one shared idle object
    task = exectrace.task("order-42")
    assert task.id == 0 and task.name == ""
    with task, task.region("r"):
        pass
    task.end()
    assert exectrace.log("orders", "placed 3 orders") is None
    for call, usage in ((lambda: exectrace.region(42), 'e.g. exectrace.region("checkout")'),
                        (lambda: exectrace.task(None), 'e.g. exectrace.task("order-42")'),
                        (lambda: exectrace.log("orders"), 'e.g. exectrace.log("orders", "placed 3 orders")'),
                        (lambda: exectrace.log("orders", b"bytes"), "both str, e.g. exectrace.log(")):
        with pytest.raises(TypeError, match=re.escape(usage)):
            call()


def test_annotation_errors_propagate_and_regions_never_swallow_exceptions(tmp_path):
    out = tmp_path / "t.out"
    with exectrace.tracing(out):
        with pytest.raises(ZeroDivisionError), exectrace.region("failing"):
            _ = 1 / 0
        task = exectrace.task("t")
        assert task.id > 0 and task.name == "t"
        task.end()
        task.end()  # a second end does nothing
    trace = exectrace.read(out)
    assert [s.name for s in trace.slices() if s.category == "region"] == ["failing"]
    assert len([s for s in trace.spans() if s.category == "task"]) == 1


def test_counters_have_values_inside_the_window(tmp_path):
    out = tmp_path / "t.out"
    with exectrace.tracing(out, counters_interval="10ms", c_calls=False):
        junk = []
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            junk.append(bytearray(1000))
    model = check_trace(out)
    trace = exectrace.read(out)
    samples: dict[str, list] = {}
    for c in trace.counters():
        samples.setdefault(c.name, []).append(c)
    assert set(samples) >= {"CPU time", "threads", "GC gen0 count", "GC gen1 count", "GC gen2 count"}
    assert "RSS" in samples or "RSS peak" in samples
    meta = trace.metadata
    for name, values in samples.items():
        # 300 ms at 10 ms is 30 samples on an idle machine; a loaded one delays the sampler
        assert len(values) >= 3, name
        assert all(meta.start_ns <= v.ts_ns <= meta.end_ns for v in values), name
    rss = samples.get("RSS") or samples["RSS peak"]
    assert all(v.value > 1_000_000 for v in rss)
    cpu = [v.value for v in samples["CPU time"]]
    assert cpu == sorted(cpu) and cpu[-1] > 0.1e9  # a busy loop: CPU time grows
    assert all(v.value >= 1 for v in samples["threads"])
    counter_tracks = [t for t in model.tracks.values() if t.kind == "counter"]
    assert {t.name for t in counter_tracks} == set(samples)
    # the sampler thread is never recorded
    assert "exectrace-counters" not in {t.name for t in trace.threads}


def test_counters_can_be_turned_off(tmp_path):
    out = tmp_path / "t.out"
    with exectrace.tracing(out, counters_interval=0):
        sum(range(1000))
    assert exectrace.read(out).counters() == []


@pytest.mark.skipif(importlib.util.find_spec("gevent") is None, reason="gevent is not installed")
def test_gevent_program_traces_balanced(tmp_path):
    out, result = run_app(tmp_path, """
from gevent import monkey
monkey.patch_all()
import sys, socket, time
import gevent
import exectrace

def echo_server(listener):
    conn, _ = listener.accept()
    while data := conn.recv(100):
        conn.sendall(data)
    conn.close()

def client(port, n):
    s = socket.create_connection(("127.0.0.1", port))
    for _ in range(n):
        s.sendall(b"ping")
        s.recv(100)
        gevent.sleep(0.001)
    s.close()
    return n

def sleeper(i):
    for _ in range(20):
        gevent.sleep(0.002)
        sum(range(100))
    return i

with exectrace.tracing(sys.argv[1]):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    server = gevent.spawn(echo_server, listener)
    jobs = [gevent.spawn(sleeper, i) for i in range(10)] + [gevent.spawn(client, listener.getsockname()[1], 20)]
    gevent.joinall(jobs, timeout=30)
    server.join(timeout=5)
print(sum(j.value for j in jobs))
""")
    assert result.stdout.strip() == str(sum(range(10)) + 20)
    check_trace(out)  # begin/end balance per track, order, interning
    trace = exectrace.read(out)
    assert any(s.name == "sleeper" for s in trace.slices())


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed")
def test_uvloop_does_not_break(tmp_path):
    code = ASYNCIO_APP.replace("    asyncio.run(main())", "    import uvloop\n    uvloop.install()\n    asyncio.run(main())")
    out, _ = run_app(tmp_path, code)
    check_trace(out)
    trace = exectrace.read(out)
    assert any(s.name == "fetch" for s in trace.slices())
    # uvloop runs asyncio's own Task: steps are still attributed
    assert {"fetcher-0", "fetcher-1", "fetcher-2"} <= {s.task for s in trace.steps()}
