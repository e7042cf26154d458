"""`events` windows: waits with their callstacks, stack samples, asyncio steps,
and what summary, convert and read() make of them (issue 11)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
import time

import pytest

import exectrace
from exectrace import analysis
from exectrace.__main__ import main
from perfetto_check import check_trace


def known_hot_function(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def run_for(seconds: float, step) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()


class Measured:
    """What a thread measured of itself: its life and its waits by reason."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.waits = {"sleep": 0.0, "io": 0.0, "lock": 0.0}

    def timed(self, reason: str, wait) -> None:
        t0 = time.perf_counter()
        wait()
        self.waits[reason] += time.perf_counter() - t0

    @property
    def life(self) -> float:
        return self.end - self.start


def mixed_program(seconds: float = 1.5) -> dict[str, Measured]:
    """Threads that spend known parts of their life sleeping, waiting for a
    (traced) lock, reading a socket and computing in known_hot_function."""
    measured = {name: Measured() for name in ("sleeper", "waiter", "reader", "computer")}
    lock = threading.Lock()  # made while tracing: a traced lock
    a, b = socket.socketpair()
    stop = threading.Event()

    def sleeper() -> None:
        m = measured["sleeper"]
        run_for(seconds, lambda: (m.timed("sleep", lambda: time.sleep(0.02)), known_hot_function(2000)))

    def holder() -> None:
        while not stop.is_set():
            with lock:
                time.sleep(0.03)
            time.sleep(0.01)

    def waiter() -> None:
        m = measured["waiter"]

        def once() -> None:
            t0 = time.perf_counter()
            with lock:
                m.waits["lock"] += time.perf_counter() - t0
                known_hot_function(500)

        run_for(seconds, once)

    def writer() -> None:
        while not stop.is_set():
            time.sleep(0.025)
            try:
                b.sendall(b"x" * 16)
            except OSError:
                return

    def reader() -> None:
        m = measured["reader"]
        run_for(seconds, lambda: m.timed("io", lambda: a.recv(16)))

    def computer() -> None:
        run_for(seconds, lambda: known_hot_function(5000))

    def wrap(name, target):
        def run() -> None:
            if name in measured:
                measured[name].start = time.perf_counter()
            target()
            if name in measured:
                measured[name].end = time.perf_counter()
        return threading.Thread(target=run, name=name)

    threads = [wrap(n, f) for n, f in (("sleeper", sleeper), ("holder", holder), ("waiter", waiter),
                                       ("writer", writer), ("reader", reader), ("computer", computer))]
    for t in threads:
        t.start()
    for t in threads:
        if t.name in measured:
            t.join()
    stop.set()
    for t in threads:
        t.join()
    a.close()
    b.close()
    return measured


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "mixed.out"
    with exectrace.tracing(path, mode="events"):
        measured = mixed_program()
    check_trace(path)
    return path, measured


def test_per_thread_split_matches_what_the_program_measured(mixed):
    path, measured = mixed
    summary = analysis.summarize(exectrace.read(path))
    assert summary["window"]["mode"] == "events"
    threads = {t["name"]: t for t in summary["threads"]}
    for name, m in measured.items():
        t = threads[name]
        for reason, seconds in m.waits.items():
            # within 5 percentage points of the thread's life
            assert abs(t["blocked_s"][reason] - seconds) <= 0.05 * m.life, (name, reason, t, m.waits)
        running = m.life - sum(m.waits.values())
        assert abs(t["running_s"] - running) <= 0.05 * m.life, (name, t, m.life, m.waits)


def test_known_function_is_first_by_samples(mixed):
    path, _measured = mixed
    summary = analysis.summarize(exectrace.read(path))
    top = summary["samples"]["top"]
    assert summary["samples"]["count"] > 0
    assert top[0]["function"] == "known_hot_function", top[:3]
    assert top[0]["self"] >= top[0]["total"] * 0.9
    assert set(top[0]) >= {"function", "self", "total"}


def test_waits_carry_their_callstacks(mixed):
    path, _measured = mixed
    trace = exectrace.read(path)
    lock_waits = [s for s in trace.slices()
                  if s.thread == "waiter" and s.blocking == "lock" and s.name.startswith("exectrace.Lock")]
    assert lock_waits, "the traced lock's waits are recorded"
    for wait in lock_waits:
        assert wait.stack, wait
        assert wait.stack[-1].function.endswith("once") and wait.stack[-1].file == __file__
        assert wait.stack[0].function == "Thread._bootstrap" or "bootstrap" in wait.stack[0].function
    sleeps = [s for s in trace.slices() if s.name == "time.sleep" and s.thread == "sleeper"]
    assert sleeps and all(s.stack[-1].function.endswith("<lambda>") for s in sleeps)
    reads = [s for s in trace.slices() if s.thread == "reader" and s.blocking == "io"]
    assert reads and all(s.stack[-1].line > 0 for s in reads)


def test_samples_read_back_with_their_threads_and_frames(mixed):
    path, _measured = mixed
    trace = exectrace.read(path)
    model = check_trace(path)
    samples = trace.samples()
    assert len(samples) == len(model.samples) == trace.metadata["samples.written"]
    computer = [s for s in samples if s.thread == "computer"]
    hot = [s for s in computer if s.stack[-1].function == "known_hot_function"]
    assert computer and len(hot) >= 0.8 * len(computer)
    # Perfetto's view of the same samples: same thread ids, same innermost functions
    tids = {t.tid: t.name for t in model.thread_tracks()}
    assert {tids[s.tid] for s in model.samples} == {s.thread for s in samples}
    assert sorted(s.frames[-1][0] for s in model.samples) == sorted(s.stack[-1].function for s in samples)
    # a thread inside a recorded wait is not sampled
    sleeper = [s for s in samples if s.thread == "sleeper"]
    assert len(sleeper) < len(computer)


def test_metadata_counts_records_and_samples_apart(mixed):
    path, _measured = mixed
    trace = exectrace.read(path)
    meta = trace.metadata
    assert meta["recorder.mode"] == "events"
    assert trace.damage is None
    assert meta["records.lost"] == 0
    assert meta["samples.kept"] >= meta["samples.written"] > 0
    assert meta["settings.sample_interval"] == "10ms"


def test_cli_summary_json_and_text(mixed, capsys):
    path, _measured = mixed
    assert main(["summary", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["window"]["mode"] == "events"
    assert doc["samples"]["count"] > 0 and doc["samples"]["top"]
    assert main(["summary", str(path)]) == 0
    text = capsys.readouterr().out
    assert "top functions by samples" in text and "known_hot_function" in text


def test_pprof_has_a_sample_type_per_reason(mixed, tmp_path):
    from test_convert import load_pprof

    path, measured = mixed
    out = tmp_path / "events.pb.gz"
    assert main(["convert", str(path), "--to", "pprof", "-o", str(out)]) == 0
    profile = load_pprof(out)
    strings = list(profile.string_table)
    types = [strings[t.type] for t in profile.sample_type]
    assert types == ["samples", "cpu", "sleep", "io", "lock", "subprocess"]
    totals = dict.fromkeys(types, 0)
    for sample in profile.sample:
        for t, v in zip(types, sample.value):
            totals[t] += v
    trace = exectrace.read(path)
    assert totals["samples"] == len(trace.samples())
    waited = sum(s.dur_ns for s in trace.slices() if s.blocking == "lock")
    assert totals["lock"] == waited


def test_asyncio_steps_are_attributed_to_their_tasks(tmp_path):
    path = tmp_path / "asyncio.out"

    async def worker(n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(0.005)

    async def main_coro() -> None:
        await asyncio.gather(*(asyncio.create_task(worker(4), name=f"w{i}") for i in range(3)))

    with exectrace.tracing(path, mode="events"):
        asyncio.run(main_coro())
    check_trace(path)
    trace = exectrace.read(path)
    steps = trace.steps()
    by_task: dict[str, int] = {}
    for step in steps:
        by_task[step.task] = by_task.get(step.task, 0) + 1
    for i in range(3):
        assert by_task[f"w{i}"] == 5, by_task  # the first step and one per sleep
    assert {s.name for s in steps if s.task.startswith("w")} == {"test_asyncio_steps_are_attributed_to_their_tasks.<locals>.worker"}
    # the loop's idle waits are io waits with a stack through the event loop (on 3.9-3.11
    # the wait is the selector's select(), named after the poll it waits in)
    polls = [s for s in trace.slices() if s.name.endswith(".poll") or s.name == "select.select"]
    assert polls and all(any("_run_once" in f.function for f in s.stack) for s in polls)


def test_values_of_arguments_never_reach_the_file(tmp_path):
    secret = "S3CR3T-events-7f2c"
    path = tmp_path / "secret.out"

    def handle(token: str) -> str:
        time.sleep(0.02)  # a wait whose stack passes through here
        return known_hot_function(20000) and token[::-1]

    with exectrace.tracing(path, mode="events"):
        for _ in range(5):
            handle(secret)
    assert secret.encode() not in path.read_bytes()
    trace = exectrace.read(path)
    assert secret not in repr(trace.samples()) and secret not in repr(list(trace.slices()))


def test_a_forked_child_samples_on_its_own(tmp_path):
    dump = tmp_path / "dump"
    code = f"""
import os, sys, time
import exectrace
def known_hot_function(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
exectrace.start(interval="400ms", duration="300ms", dump_dir={str(dump)!r})
def busy(seconds):
    end = time.time() + seconds
    while time.time() < end:
        known_hot_function(3000)
busy(0.35)
pid = os.fork()
busy(1.0)
if pid:
    os.waitpid(pid, 0)
    print(os.getpid(), pid)
"""
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")})
    assert result.returncode == 0, result.stderr
    parent, child = map(int, result.stdout.split())
    by_pid: dict[int, list[exectrace.Trace]] = {}
    for name in sorted(n for n in os.listdir(dump) if n.endswith(".out")):
        check_trace(dump / name)
        trace = exectrace.read(dump / name)
        by_pid.setdefault(trace.metadata["process.pid"], []).append(trace)
    assert set(by_pid) == {parent, child}
    for pid, traces in by_pid.items():
        assert all(t.mode == "events" for t in traces)
        samples = [s for t in traces for s in t.samples()]
        assert samples, pid
        assert any(s.stack[-1].function == "known_hot_function" for s in samples)


def test_lock_hand_offs_draw_a_flow_from_the_release_to_the_waiter(tmp_path):
    path = tmp_path / "handoff.out"
    with exectrace.tracing(path, mode="events"):
        lock = threading.Lock()  # a traced lock
        holding = threading.Event()

        def holder() -> None:
            for _ in range(5):
                with lock:
                    holding.set()
                    time.sleep(0.02)
                time.sleep(0.005)

        def waiter() -> None:
            holding.wait()
            for _ in range(5):
                with lock:
                    time.sleep(0.001)

        threads = [threading.Thread(target=holder, name="holder"),
                   threading.Thread(target=waiter, name="waiter")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    model = check_trace(path)
    trace = exectrace.read(path)
    released = [e for e in trace.instants() if e.name == "lock released"]
    acquired = [e for e in trace.instants() if e.name == "lock acquired"]
    assert released and len(released) == len(acquired) == trace.metadata["locks.handoffs"]
    assert {e.track for e in released if e.args["to"] == "waiter"} == {"holder lock hand-offs"}
    assert all("holder" in e.args["stack"] for e in released if e.args["to"] == "waiter")
    # the flows, as Perfetto reads them: each release's flow id ends at an acquire
    outgoing = {f for i in model.instants if i.name == "lock released" for f in i.flow_ids}
    assert len(outgoing) == len(released)


def test_a_wait_open_when_the_window_closes_has_its_stack(tmp_path):
    path = tmp_path / "open.out"
    started = threading.Event()

    def napper() -> None:
        started.set()
        time.sleep(0.6)

    with exectrace.tracing(path, mode="events"):
        t = threading.Thread(target=napper, name="napper")
        t.start()
        started.wait()
        time.sleep(0.2)
    t.join()
    check_trace(path)
    (wait,) = [s for s in exectrace.read(path).slices() if s.thread == "napper" and s.name == "time.sleep"]
    assert wait.stack and wait.stack[-1].function.endswith("napper")
