"""The flight recorder (docs/flight-recorder.md): continuous recording,
snapshot() and its triggers, in real processes. Durations are scaled down
from the issue's (flight_recorder=10s after 30s) to keep the suite short."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import exectrace
from exectrace import flight
from perfetto_check import check_trace

NAME = re.compile(r"^executiontrace\.\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3}\.(\d+)\.out$")

# Busy with waits (events mode records them) and Python code (samples see it).
APP = """
import json, os, sys, threading, time
import exectrace
def work(i):
    return sum(range(i % 200))
def serve(seconds):
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        work(i)
        i += 1
        if i % 50 == 0:
            time.sleep(0.001)
def wait_written(path, timeout=30):
    end = time.time() + timeout
    while not os.path.exists(path) and time.time() < end:
        time.sleep(0.02)
    return os.path.exists(path)
"""


def traces(directory):
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return [os.path.join(directory, n) for n in names if NAME.match(n)]


def valid(path):
    check_trace(path)
    return exectrace.read(path)


def test_snapshot_covers_the_flight_recorder_span_and_ends_at_the_call(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
exectrace.start(flight_recorder="3s", dump_dir={str(dump)!r})
serve(8)
before = time.time_ns()
path = exectrace.snapshot("checkout was slow")
print(json.dumps({{"path": path, "before": before}}))
assert wait_written(path)
""")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    files = traces(dump)
    assert files == [out["path"]]
    trace = valid(out["path"])
    meta = trace.metadata
    assert meta["window.closed_by"] == "snapshot"
    assert meta["snapshot.reason"] == "checkout was slow"
    assert meta["flight_recorder.bound"] == "flight_recorder"
    assert meta["recorder.mode"] == "events"
    # covers at least the 3 s before the call ...
    assert meta["window.duration_ns"] >= 3_000_000_000
    assert meta["window.start_realtime_ns"] + meta["window.duration_ns"] >= out["before"]
    # ... ends within 50 ms of it ...
    end_realtime = meta["window.start_realtime_ns"] + meta["window.duration_ns"]
    assert 0 <= end_realtime - meta["snapshot.requested_realtime_ns"] <= 50_000_000
    # ... and holds records over the whole span: the waits of serve() (one
    # every ~50 calls) from its first 100 ms to its last, and stack samples
    waits = sorted(s.start_ns for s in trace.slices() if s.blocking == "sleep")
    assert waits and waits[0] - meta.start_ns <= 100_000_000
    assert meta.end_ns - waits[-1] <= 100_000_000
    assert max(b - a for a, b in zip(waits, waits[1:])) <= 100_000_000
    assert any(f.function == "serve" for s in trace.samples() for f in s.stack)


def test_buffer_size_bounds_the_span_and_the_file_says_so(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
exectrace.start(flight_recorder="1h", buffer_size="64KiB", sample_interval="1ms", dump_dir={str(dump)!r})
serve(3)
path = exectrace.snapshot("small buffer")
print(path)
assert wait_written(path)
""")
    trace = valid(result.stdout.strip())
    assert trace.metadata["flight_recorder.bound"] == "buffer_size"
    assert trace.metadata["window.duration_ns"] < 3_000_000_000
    assert trace.metadata["records.lost"] == 0  # what is in the file is whole


def test_a_process_that_just_started_snapshots_what_exists(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
exectrace.start(flight_recorder="1h", dump_dir={str(dump)!r})
serve(0.3)
path = exectrace.snapshot("early")
print(path)
assert wait_written(path)
""")
    trace = valid(result.stdout.strip())
    assert trace.metadata["flight_recorder.bound"] == "start"
    assert trace.metadata["window.duration_ns"] < 3_000_000_000


def test_twenty_threads_one_file_then_cooldown(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
exectrace.start(flight_recorder="2s", snapshot_cooldown="2s", dump_dir={str(dump)!r})
serve(1)
barrier = threading.Barrier(20)
results = []
def call():
    barrier.wait()
    results.append(exectrace.snapshot("thread"))
threads = [threading.Thread(target=call) for _ in range(20)]
for t in threads: t.start()
for t in threads: t.join()
paths = [p for p in results if p is not None]
assert len(results) == 20 and len(paths) == 1, results
assert wait_written(paths[0])
assert exectrace.snapshot("within the cooldown") is None
status = exectrace.status()
assert 0 < status["next_snapshot_in"] <= 2, status
serve(status["next_snapshot_in"] + 0.1)
later = exectrace.snapshot("after the cooldown")
assert later is not None
assert wait_written(later)
print(paths[0]); print(later)
""")
    first, later = result.stdout.split()
    assert traces(dump) == [first, later]
    assert valid(first).metadata["snapshot.reason"] == "thread"
    assert valid(later).metadata["snapshot.reason"] == "after the cooldown"


def test_snapshot_without_flight_recorder_is_none_and_never_raises(python, tmp_path):
    python(f"""
import exectrace
assert exectrace.snapshot("nothing running") is None
exectrace.start(interval="1h", dump_dir={str(tmp_path)!r})
assert exectrace.snapshot("windows only") is None
assert exectrace.snapshot(object()) is None
exectrace.stop()
""")


def test_snapshot_from_asyncio_and_a_bad_reason_type(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
import asyncio
exectrace.start(flight_recorder="2s", snapshot_cooldown="0", dump_dir={str(dump)!r})
async def main():
    async def step(i):
        await asyncio.sleep(0.001)
        return work(i)
    for i in range(100):
        await asyncio.gather(*(step(j) for j in range(10)))
    class Bad:
        def __str__(self):
            raise RuntimeError("no text")
    assert exectrace.snapshot(Bad()) is None   # never raises, and leaves no snapshot pending
    return exectrace.snapshot(12345)   # not a str: written as its str()
path = asyncio.run(main())
print(path)
assert wait_written(path)
""")
    trace = valid(result.stdout.strip())
    assert trace.metadata["snapshot.reason"] == "12345"
    assert trace.steps()  # asyncio steps were recorded continuously


SIGNAL_APP = APP + """
import signal
seen = []
signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))   # the application's own
exectrace.start(flight_recorder="2s", snapshot_signal="SIGUSR2", dump_dir=sys.argv[1])
print("ready", os.getpid(), flush=True)
end = time.time() + 60
while time.time() < end and not (seen and os.path.exists(sys.argv[2])):
    serve(0.05)
    for name in (os.listdir(sys.argv[1]) if os.path.isdir(sys.argv[1]) else []):
        if name.endswith(".out"):
            open(sys.argv[2], "w").close()
print("app handler ran", len(seen), flush=True)
"""


def _start_app(tmp_path, code, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_signal_trigger_writes_a_file_and_other_handlers_still_run(tmp_path):
    dump = tmp_path / "dump"
    proc = _start_app(tmp_path, SIGNAL_APP, dump, tmp_path / "done")
    try:
        os.kill(proc.pid, signal.SIGUSR2)
        os.kill(proc.pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "app handler ran 1" in out
    files = traces(dump)
    assert len(files) == 1
    assert valid(files[0]).metadata["snapshot.reason"] == "signal SIGUSR2"


def test_signal_handler_of_the_application_is_left_alone(python, tmp_path):
    result = python(f"""
import signal, exectrace
mine = lambda s, f: None
signal.signal(signal.SIGUSR2, mine)
exectrace.start(flight_recorder="1s", snapshot_signal="SIGUSR2", dump_dir={str(tmp_path)!r})
assert signal.getsignal(signal.SIGUSR2) is mine
exectrace.stop()
""")
    assert "snapshot_signal SIGUSR2 not installed: the application has its own handler" in result.stderr


def test_cli_snapshot_pid(tmp_path):
    dump = tmp_path / "dump"
    proc = _start_app(tmp_path, SIGNAL_APP, dump, tmp_path / "done")
    try:
        state = flight.read_state(proc.pid)
        assert state is not None and state["signal"] == "SIGUSR2"
        cli = subprocess.run([sys.executable, "-m", "exectrace", "snapshot", str(proc.pid), "--wait", "30"],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        path = cli.stdout.strip().splitlines()[-1]
        assert os.path.dirname(path) == str(dump)
        os.kill(proc.pid, signal.SIGUSR1)
        proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert valid(path).metadata["snapshot.reason"] == "signal SIGUSR2"
    assert flight.read_state(proc.pid) is None  # removed at exit


@pytest.mark.parametrize("target, message", [
    ("self-child", "has no exectrace flight recorder"),
    ("gone", "no process"),
    ("pid1", "belongs to another user"),
    ("bad", "invalid PID"),
])
def test_cli_snapshot_refuses_clearly(tmp_path, target, message):
    child = None
    if target == "pid1" and os.getuid() == 0:  # as root: a process of user nobody
        child = subprocess.Popen([sys.executable, "-c", "import os, time; os.setuid(65534); time.sleep(60)"])
        deadline = time.monotonic() + 30
        while os.stat(f"/proc/{child.pid}").st_uid == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = str(child.pid)
    elif target == "self-child":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pid = str(child.pid)
    elif target == "gone":
        done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True)
        pid = done.stdout.strip()
    elif target == "pid1":
        pid = "1"  # init: root's
    else:
        pid = "12ab"
    try:
        cli = subprocess.run([sys.executable, "-m", "exectrace", "snapshot", pid],
                             capture_output=True, text=True, timeout=60)
    finally:
        if child is not None:
            child.kill()
            child.wait()
    assert cli.returncode != 0
    assert message in cli.stderr
    assert "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1


CPU_APP = APP + """
exectrace.start(flight_recorder="2s", snapshot_cpu="0.5", snapshot_cpu_span="1s",
                snapshot_rss=sys.argv[2], dump_dir=sys.argv[1])
mode = sys.argv[3]
end = time.time() + 3
hold = []
while time.time() < end:
    if mode == "busy":
        work(1000)          # one core, all the time: above 0.5
    elif mode == "grow":
        hold.append(bytearray(8 << 20)); time.sleep(0.05)   # RSS grows by ~480 MiB
    else:
        time.sleep(0.01); work(10)   # idle: far below both
deadline = time.time() + 10
while exectrace.status()["snapshots_written"] < (mode != "idle") and time.time() < deadline:
    time.sleep(0.05)
status = exectrace.status()
print(status["snapshots_written"], status["last_snapshot_reason"])
"""


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS from /proc")
@pytest.mark.parametrize("mode, fires", [("busy", "CPU"), ("grow", "RSS"), ("idle", None)])
def test_resource_triggers_fire_above_and_not_below(python, tmp_path, mode, fires):
    dump = tmp_path / "dump"
    rss_limit = f"{_rss_now() // (1 << 20) + 200}MiB"  # well above a fresh interpreter's
    result = python(CPU_APP.replace("sys.argv[1]", repr(str(dump))).replace("sys.argv[2]", repr(rss_limit))
                    .replace("sys.argv[3]", repr(mode)))
    written, _, reason = result.stdout.strip().partition(" ")
    files = traces(dump)
    if fires is None:
        assert written == "0" and files == []
    else:
        assert written == "1" and len(files) == 1
        assert reason.startswith(fires), reason
        assert valid(files[0]).metadata["snapshot.reason"] == reason


def test_slow_asyncio_step_and_gc_pause_triggers(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
import asyncio, gc
exectrace.start(flight_recorder="2s", snapshot_on_slow_step=True, slow_step="100ms",
                snapshot_gc_pause="1ms", snapshot_cooldown="0", dump_dir={str(dump)!r})
async def fine():
    for _ in range(20):
        await asyncio.sleep(0.005)
async def slow():
    await asyncio.sleep(0.01)
    time.sleep(0.3)      # holds the event loop: a slow step
asyncio.run(fine())
time.sleep(0.5)
assert exectrace.status()["snapshots_written"] == 0
asyncio.run(slow())
deadline = time.time() + 20
while exectrace.status()["snapshots_written"] < 1 and time.time() < deadline:
    time.sleep(0.05)
first = exectrace.status()["last_snapshot_reason"]
# a collection of many cycles pauses far longer than 1 ms
junk = []
for i in range(300000):
    a = []; a.append(a); junk.append(a)
del junk, a
gc.collect()
while exectrace.status()["snapshots_written"] < 2 and time.time() < deadline:
    time.sleep(0.05)
print(first); print(exectrace.status()["last_snapshot_reason"])
""")
    first, second = result.stdout.strip().splitlines()[-2:]
    assert first.startswith("slow asyncio step")
    assert second.startswith("GC pause")
    # in the order written: the slow step's, then one per collection above 1 ms
    reasons = [valid(f).metadata["snapshot.reason"] for f in traces(dump)]
    assert reasons[0] == first and len(reasons) >= 2
    assert all(r.startswith("GC pause") for r in reasons[1:])


def test_compaction_releases_what_left_the_ring(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
import asyncio, json
from exectrace import _tracecore, controller
exectrace.start(flight_recorder="500ms", snapshot_cooldown="0", dump_dir={str(dump)!r})
async def one(i):
    await asyncio.sleep(0.002)
    exectrace.log("req", str(i))
async def many(n):
    await asyncio.gather(*(one(i) for i in range(n)))
for round in range(5):
    asyncio.run(many(400))
    namespace = {{}}
    exec(f"def fresh_{{round}}():\\n    time.sleep(0.002)", {{"time": time}}, namespace)
    for _ in range(5): namespace[f"fresh_{{round}}"]()
short = [threading.Thread(target=time.sleep, args=(0.002,)) for _ in range(30)]
for t in short: t.start()
for t in short: t.join()
before = _tracecore.stats()
time.sleep(0.7)                       # all of it leaves the last 500 ms
ctl = controller.current()
with ctl._lock:
    ctl._compact()
after = _tracecore.stats()
info = ctl.last_compaction
serve(0.3)
path = exectrace.snapshot("after compaction")
print(json.dumps({{"before": before, "after": after, "info": info, "path": path}}))
assert wait_written(path)
""")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    before, after, info = out["before"], out["after"], out["info"]
    assert before["asyncio_tasks"] >= 2000 and after["asyncio_tasks"] < 10
    assert before["annotations"] >= 2000 and after["annotations"] == 0
    assert after["functions"] < before["functions"]
    assert before["threads"] >= 31 and after["threads"] < 5  # the 30 that ended are gone
    assert after["callstacks"] < before["callstacks"]
    assert info["tasks_in"] == before["asyncio_tasks"] and info["tasks_out"] == after["asyncio_tasks"]
    assert info["pause_ms"] > 0
    trace = valid(out["path"])
    assert trace.metadata["snapshot.reason"] == "after compaction"
    # recording went on after the swap, with callstacks interned anew
    assert any(w.blocking == "sleep" and any(f.function == "serve" for f in w.stack) for w in trace.slices())


def test_compaction_keeps_open_calls_and_live_threads(python, tmp_path):
    """A `calls` mode flight recorder compacted while calls are open on a
    thread: the calls still end where they return, under their own names."""
    dump = tmp_path / "dump"
    result = python(APP + f"""
from exectrace import controller
exectrace.start(flight_recorder="300ms", mode="calls", snapshot_cooldown="0", dump_dir={str(dump)!r})
go = threading.Event(); done = threading.Event()
def outer_call():
    with exectrace.region("long region"):
        go.set(); done.wait()
        serve(0.2)
t = threading.Thread(target=outer_call, name="holder"); t.start()
go.wait()
serve(0.6)
ctl = controller.current()
with ctl._lock:
    ctl._compact()
done.set(); t.join()
path = exectrace.snapshot("open calls")
print(path)
assert wait_written(path)
""")
    trace = valid(result.stdout.strip())
    names = {s.name for s in trace.slices() if s.thread == "holder"}
    assert {"outer_call", "long region"} <= names


def test_interval_with_flight_recorder_cuts_windows_from_the_ring(python, tmp_path):
    dump = tmp_path / "dump"
    python(APP + f"""
exectrace.start(flight_recorder="2s", interval="1s", duration="300ms", dump_dir={str(dump)!r})
serve(2.6)
""")
    files = traces(dump)
    assert len(files) >= 2
    for f in files:
        trace = valid(f)
        assert trace.metadata["window.closed_by"] in ("schedule", "exit")
        assert "snapshot.reason" not in trace.metadata.values
    full = [exectrace.read(f) for f in files if exectrace.read(f).metadata["window.closed_by"] == "schedule"]
    assert full and all(250e6 <= t.metadata["window.duration_ns"] <= 400e6 for t in full)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_fork_child_starts_its_own_ring(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + f"""
def parent_only():
    time.sleep(0.01)
exectrace.start(flight_recorder="5s", snapshot_cooldown="0", dump_dir={str(dump)!r})
for _ in range(30): parent_only()
pid = os.fork()
if pid == 0:
    serve(0.5)
    path = exectrace.snapshot("child")
    ok = wait_written(path)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(pid, status)
""")
    pid, status = map(int, result.stdout.split())
    assert status == 0
    files = traces(dump)
    assert len(files) == 1 and NAME.match(os.path.basename(files[0])).group(1) == str(pid)
    trace = valid(files[0])
    assert trace.metadata["process.pid"] == pid
    assert trace.metadata["flight_recorder.bound"] == "start"
    assert not [s for s in trace.slices() if s.name == "time.sleep" and
                any(f.function == "parent_only" for f in s.stack)]


def test_flight_recorder_alone_from_the_environment(python, tmp_path):
    dump = tmp_path / "dump"
    result = python(APP + """
from exectrace import _autostart
assert _autostart.start_from_env(os.environ)
serve(0.5)
path = exectrace.snapshot("env")
print(path)
assert wait_written(path)
""", env={"EXECTRACE_FLIGHT_RECORDER": "2s", "EXECTRACE_DIR": str(dump)})
    assert valid(result.stdout.strip()).metadata["settings.flight_recorder"] == "2s"


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    return subprocess.run([sys.executable, "-m", "exectrace", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_ls_summary_debug_zip_show_the_reason(python, tmp_path):
    """ls marks snapshot files with their reason, summary and debug-zip show
    it; a hostile reason (control characters, escape sequences, 10 KB) is
    printed escaped, on one line, cut short."""
    dump = tmp_path / "dump"
    hostile = "slow\\n\\x1b[31mred\\r" + "x" * 10000
    result = python(APP + f"""
exectrace.start(flight_recorder="2s", interval="1h", duration="200ms", dump_dir={str(dump)!r})
serve(0.5)
path = exectrace.snapshot("{hostile}")
assert wait_written(path)
print(path)
""")
    snap = result.stdout.strip()
    files = traces(dump)
    assert snap in files and len(files) == 2  # the scheduled window, then the snapshot
    ls = _cli("ls", dump)
    assert ls.returncode == 0, ls.stderr
    rows = [line for line in ls.stdout.splitlines() if "executiontrace." in line]
    assert len(rows) == 2
    marked = [r for r in rows if "[snapshot: " in r]
    assert len(marked) == 1 and os.path.basename(snap) in marked[0]
    assert "\x1b" not in ls.stdout and "\\x1b[31mred\\r" in marked[0] and len(marked[0]) < 400
    as_json = json.loads(_cli("ls", dump, "--json").stdout)
    assert [r["closed_by"] for r in as_json] == ["schedule", "snapshot"]
    assert as_json[1]["snapshot_reason"].startswith("slow\n\x1b[31mred\r")
    summary = _cli("summary", snap)
    assert summary.returncode == 0, summary.stderr
    line = next(x for x in summary.stdout.splitlines() if x.startswith("snapshot "))
    assert "\x1b" not in summary.stdout and "flight recorder" in line and len(line) < 400
    assert json.loads(_cli("summary", snap, "--json").stdout)["window"]["snapshot_reason"].startswith("slow\n")
    out = tmp_path / "debug.zip"
    zipped = _cli("debug-zip", out, "--dump-dir", dump)
    assert zipped.returncode == 0, zipped.stderr
    import zipfile

    with zipfile.ZipFile(out) as zf:
        settings_doc = json.loads(next(zf.read(n) for n in zf.namelist() if n.endswith("settings.json")))
    taken = settings_doc["dump_dirs"][0]["files"]
    assert sorted((t["closed_by"], "snapshot_reason" in t) for t in taken) == [
        ("schedule", False), ("snapshot", True)]


def test_state_files_that_cannot_be_trusted_are_refused(tmp_path, monkeypatch):
    """`exectrace snapshot` reads only state files of its own user's private
    directory: garbage, another pid's file, a symlink, a group-writable
    directory are all "no flight recorder"."""
    monkeypatch.setattr(flight.tempfile, "gettempdir", lambda: str(tmp_path))
    pid = os.getpid()
    directory = tmp_path / f"exectrace-{os.getuid()}"
    assert flight.read_state(pid) is None  # no directory
    settings = exectrace.settings.resolve(exectrace.settings.defaults(), flight_recorder="1s",
                                          snapshot_signal="SIGUSR2")
    assert flight.write_state(pid, settings) == str(directory / f"{pid}.json")
    assert flight.read_state(pid)["signal"] == "SIGUSR2"
    path = directory / f"{pid}.json"
    for bad in (b"", b"{", b"[]", b'{"pid": 1, "signal": "SIGUSR2"}', b'{"pid": %d}' % pid, b"\xff" * 100,
                b'{"pid": %d, "signal": "SIGUSR2", "started": -1}' % pid):
        path.write_bytes(bad)
        assert flight.read_state(pid) is None, bad
    path.unlink()
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"pid": pid, "signal": "SIGUSR2", "started": flight._process_start(pid)}))
    path.symlink_to(target)
    assert flight.read_state(pid) is None  # never followed
    path.unlink()
    assert flight.write_state(pid, settings) is not None
    os.chmod(directory, 0o770)
    assert flight.read_state(pid) is None  # others may write there
    os.chmod(directory, 0o700)
    assert flight.read_state(pid) is not None
    flight.remove_state(pid)
    assert flight.read_state(pid) is None


def test_autostart_line_starts_on_the_flight_recorder_variable_alone(python, tmp_path):
    """The .pth line (run here as code: editable installs do not install it)
    starts tracing on EXECTRACE_FLIGHT_RECORDER alone."""
    from pathlib import Path

    line = (Path(__file__).resolve().parents[2] / "src" / "exectrace-autostart.pth").read_text().strip()
    result = python(line + "\nimport exectrace\nprint(exectrace.status()['flight_recorder'])",
                    env={"EXECTRACE_FLIGHT_RECORDER": "2s", "EXECTRACE_DIR": str(tmp_path)})
    assert result.stdout.strip() == "True"
    result = python(line + "\nimport sys\nprint('exectrace._autostart' in sys.modules)")
    assert result.stdout.strip() == "False"
