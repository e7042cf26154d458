"""Attacks on the application's side: exectrace must never hurt the app.

Each test runs a small application in a fresh interpreter, traced (windows
opening and closing while the attack happens) and, where it means something,
the same program untraced, and checks that the application behaves the same
(stdout, stderr, exit status), that no exception of the tracer reaches it, that
every trace file left behind is valid (Perfetto's schema and semantics, and
exectrace.read) and that nothing hangs: every child has a timeout and dumps its
stacks through faulthandler before it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import exectrace
from perfetto_check import check_trace

NAME = re.compile(r"^executiontrace\.\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3}\.(\d+)\.out$")
TMP = re.compile(r"^executiontrace\..*\.tmp$")

#: A child that runs longer than this prints every thread's stack and exits 1.
HANG = 90
TIMEOUT = HANG + 30

# Every child starts with this: a hang dumps stacks; start_tracing() traces
# only in the traced run, so the program is otherwise the same.
PRELUDE = f"""
import faulthandler, os, sys, time
faulthandler.dump_traceback_later({HANG}, exit=True)
TRACED = os.environ.get("ATTACK_TRACED") == "1"
DUMP = os.environ.get("ATTACK_DUMP", "")

def start_tracing(**settings):
    if TRACED:
        import exectrace
        # `calls` unless the test says: the checks below look for the calls of work()
        settings.setdefault("mode", os.environ.get("ATTACK_MODE", "calls"))
        exectrace.start(dump_dir=DUMP, **settings)

def handle(i):
    return sum(range(i % 50))

def work(seconds):  # calls with short sleeps: windows hold some records, not millions
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        handle(i)
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)
    return i

def spin(seconds):  # calls flat out: full buffers, long flushes
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        handle(i)
        i += 1
    return i
"""


def program(code: str) -> str:
    return PRELUDE + textwrap.dedent(code)


def child_env(dump, traced: bool, env=None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    full.update(PYTHONFAULTHANDLER="1", ATTACK_TRACED="1" if traced else "0", ATTACK_DUMP=str(dump))
    full.update(env or {})
    return full


def spawn(code: str, dump, *, traced: bool = True, env=None):
    """The program as a process in its own session (see finish())."""
    return subprocess.Popen([sys.executable, "-c", program(code)], env=child_env(dump, traced, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Waits for `proc`; past `timeout`, every process of its session (forked
    children too) gets SIGABRT, so faulthandler prints their stacks, and the
    test fails with them."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"the application hung (killed after {timeout} s)\n--- stdout\n{out}\n--- stderr\n{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # forked children left behind
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_app(code: str, dump, *, traced: bool = True, timeout: float = TIMEOUT, env=None):
    return finish(spawn(code, dump, traced=traced, env=env), timeout)


def run_both(code: str, tmp_path, **kwargs):
    """The program traced and untraced: (traced result, untraced result, dump dir)."""
    dump = tmp_path / "dump"
    traced = run_app(code, dump, traced=True, **kwargs)
    untraced = run_app(code, tmp_path / "untraced-dump", traced=False, **kwargs)
    assert not (tmp_path / "untraced-dump").exists()
    return traced, untraced, dump


def describe(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def assert_same(traced, untraced):
    """The traced application behaved exactly as the untraced one."""
    assert traced.returncode == untraced.returncode, describe(traced)
    assert traced.stdout == untraced.stdout, describe(traced)
    assert traced.stderr == untraced.stderr, describe(traced)


FORK_WARNING = re.compile(r"^.*DeprecationWarning: This process \(pid=\d+\) is multi-threaded, "
                          r"use of fork\(\) may lead to deadlocks in the child\.\n(  .*\n)?", re.M)


def without_fork_warning(stderr: str) -> str:
    return FORK_WARNING.sub("", stderr)


def trace_files(dump) -> list[str]:
    names = sorted(os.listdir(dump)) if os.path.isdir(dump) else []
    return [os.path.join(dump, n) for n in names if n.endswith(".out")]


def check_dump(dump, *, tmp_allowed: bool = False, min_files: int = 1, checked: int = 3):
    """Every file in the dump dir is a well-named trace that reads back whole
    (or an unfinished temporary file, when the process was killed mid-write);
    `checked` of them (first, last, between) also pass the full Perfetto
    check, which is slow in Python. Returns the traces read, oldest first."""
    names = sorted(os.listdir(dump)) if os.path.isdir(dump) else []
    traces = []
    for name in names:
        path = os.path.join(dump, name)
        if TMP.match(name):
            assert tmp_allowed, f"temporary file left behind: {name}"
            continue
        if name == ".executiontrace.lock":
            continue
        match = NAME.match(name)
        assert match, f"unexpected file in the dump dir: {name}"
        trace = exectrace.read(path)  # raises on a damaged or truncated file
        assert trace.metadata["process.pid"] == int(match.group(1))
        traces.append(trace)
    assert len(traces) >= min_files, names
    if traces and checked:
        picks = {0, len(traces) - 1} | {len(traces) * k // checked for k in range(1, checked)}
        for i in sorted(picks)[:checked]:
            check_trace(traces[i].path)
    return traces


def thread_names(traces) -> set[str]:
    return {t.name for trace in traces for t in trace.threads}


# ------------------------------------------------------------------ threads

def test_200_threads_started_and_ended_inside_windows(tmp_path):
    """200 threads alive at once inside one window, then 200 more started and
    ended in batches while short windows open and close around them."""
    traced, untraced, dump = run_both("""
        import threading
        results = []
        lock = threading.Lock()
        def worker(i, started, go):
            started.release()
            go.wait()
            total = sum(handle(i + j) for j in range(50))
            time.sleep(0.001)
            with lock:
                results.append(total)

        def phase(first, count, batch):
            for b in range(first, first + count, batch):
                started = threading.Semaphore(0)
                go = threading.Event()
                threads = [threading.Thread(target=worker, args=(i, started, go), name=f"w{i}")
                           for i in range(b, b + batch)]
                for t in threads:
                    t.start()
                for _ in threads:
                    started.acquire()
                go.set()
                for t in threads:
                    t.join()
                time.sleep(0.05)

        start_tracing(interval="1h", duration="1h")   # one window around all of phase 1
        phase(0, 200, 200)                            # 200 threads alive at once
        if TRACED:
            import exectrace
            exectrace.stop()
        start_tracing(interval="300ms", duration="200ms")
        phase(200, 200, 20)
        print(len(results), sum(results))
    """, tmp_path)
    assert_same(traced, untraced)
    traces = check_dump(dump, min_files=3)
    first = traces[0]
    assert first.metadata["window.closed_by"] == "stop"
    assert {f"w{i}" for i in range(200)} <= thread_names([first])
    assert any(s.name == "worker" and s.thread == "w199" for s in first.slices())
    later = {n for n in thread_names(traces[1:]) if n.startswith("w")}
    assert len(later) >= 20  # windows saw batches of the second phase


# --------------------------------------------------------------------- fork

def test_fork_storm(tmp_path):
    """50 forks, many while a window is open in the parent: every child exits
    with its own status, writes only files under its own pid, and every file
    is valid. Half the children leave with os._exit (no file for the window
    they had open, no temporary file), half return normally (their last
    window is written)."""
    dump = tmp_path / "dump"
    result = run_app("""
        # a forked child cannot exit while it inherits faulthandler's watchdog
        # (a CPython limit): the test's timeout and SIGABRT stand in for it here
        faulthandler.cancel_dump_traceback_later()
        start_tracing(interval="300ms", duration="150ms")
        children = {}
        for n in range(50):
            work(0.02)
            pid = os.fork()
            if pid == 0:
                try:
                    work(0.05 + (n % 5) * 0.05)
                finally:
                    if n % 2:
                        os._exit(n)
                sys.exit(n)
            children[pid] = n
            print("forked", pid, n, flush=True)
            if len(children) > 10:   # at most about 10 alive at once
                done, status = os.wait()
                assert os.waitstatus_to_exitcode(status) == children.pop(done), status
                print("reaped", done, flush=True)
        while children:
            done, status = os.wait()
            assert os.waitstatus_to_exitcode(status) == children.pop(done), status
            print("reaped", done, flush=True)
        print("parent", os.getpid())
    """, dump)
    assert result.returncode == 0, describe(result)
    # Python 3.12+ warns about fork() in any process with threads: exectrace's
    # two background threads make it say so (a known limit); nothing else
    assert without_fork_warning(result.stderr) == "", describe(result)
    lines = result.stdout.split("\n")
    parent = int(lines[-2].split()[1])
    reaped = [int(line.split()[1]) for line in lines if line.startswith("reaped")]
    assert len(reaped) == 50
    forked = {int(line.split()[1]): int(line.split()[2]) for line in lines if line.startswith("forked")}
    assert set(forked) == set(reaped)
    # os._exit during a write leaves its temporary file (collected an hour later)
    for name in os.listdir(dump):
        if TMP.match(name):
            assert forked[int(name.split(".")[3])] % 2 == 1, name
    traces = check_dump(dump, tmp_allowed=True)
    by_pid = {}
    for trace in traces:
        by_pid.setdefault(trace.metadata["process.pid"], []).append(trace)
    assert parent in by_pid
    assert set(by_pid) <= {parent, *reaped}
    # children that left normally wrote at least the window open at their exit
    # (every child's first window opens when it starts)
    assert len(set(by_pid) - {parent}) >= 25
    for pid, child in by_pid.items():
        if pid != parent:
            assert all(t.metadata["process.pid"] == pid for t in child)
            assert any(s.name == "work" for t in child for s in t.slices())


def test_background_threads_import_nothing(tmp_path):
    """exectrace's threads never import a module: a child forked while one of
    them held a module's import lock would wait for it forever (its writer,
    and the application's own first import of that module)."""
    dump = tmp_path / "dump"
    result = run_app("""
        import threading
        imports = []
        class Spy:  # asked first for every module not imported yet
            def find_spec(self, name, path=None, target=None):
                if threading.current_thread().name.startswith("exectrace"):
                    imports.append(name)
                return None
        sys.meta_path.insert(0, Spy())
        start_tracing(interval="150ms", duration="100ms", total_dump_size_limit=1)
        work(0.8)
        import exectrace
        exectrace.configure(interval="100ms", total_dump_size_limit="1MiB")
        work(0.4)
        exectrace.stop()
        print(sorted(set(imports)), exectrace.status()["windows_written"] >= 4)
    """, dump)
    assert result.stdout == "[] True\n", describe(result)
    check_dump(dump, checked=1)


# ------------------------------------------------------------------ signals

SIGNAL_APP = """
import signal, threading
counts = {"INT": 0, "TERM": 0, "USR1": 0}
def on_signal(signum, frame):
    counts[signal.Signals(signum).name[3:]] += 1
for name in counts:
    signal.signal(getattr(signal, "SIG" + name), on_signal)
# long flushes: back-to-back windows of a busy program, a large buffer
start_tracing(interval="400ms", duration="400ms", buffer_size="4MiB",
              total_dump_size_limit=1)
print("ready", flush=True)
n = spin(3.0)
print("handled", all(counts.values()), file=sys.stderr, flush=True)
if TRACED:
    import exectrace
    exectrace.stop()
    status = exectrace.status()
    print(status["windows_written"], status["windows_failed"], status["last_error"])
sys.exit(5)
"""


def test_signals_delivered_during_flushes(tmp_path):
    """SIGINT, SIGTERM and SIGUSR1, with handlers the application installed,
    delivered every few milliseconds while windows close and are written: the
    handlers run, the application goes on and exits with its own status."""
    dump = tmp_path / "dump"
    proc = spawn(SIGNAL_APP, dump)
    sent = 0
    try:
        assert proc.stdout.readline().strip() == "ready"
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
        deadline = time.monotonic() + 2.6
        while time.monotonic() < deadline and proc.poll() is None:
            proc.send_signal(signals[sent % 3])
            sent += 1
            time.sleep(0.003)
    finally:
        result = finish(proc)
    assert result.returncode == 5, describe(result)
    assert result.stderr == "handled True\n", describe(result)
    written, failed, error = result.stdout.strip().split(maxsplit=2)  # "ready" was read above
    assert int(written) >= 3 and failed == "0" and error == "None", describe(result)
    check_dump(dump, checked=1)
    assert sent > 100


def test_keyboard_interrupt_caught_inside_a_window(tmp_path):
    """SIGINT with Python's default handler raises KeyboardInterrupt in the
    application, inside a window; the application catches it and goes on."""
    code = """
        start_tracing(interval="250ms", duration="200ms")
        print("ready", flush=True)
        try:
            work(60)
        except KeyboardInterrupt:
            print("caught", flush=True)
        work(0.6)
        print("done")
    """
    results = []
    for traced in (True, False):
        proc = spawn(code, tmp_path / ("dump" if traced else "untraced"), traced=traced)
        try:
            assert proc.stdout.readline() == "ready\n"
            time.sleep(0.7)
            proc.send_signal(signal.SIGINT)
        finally:
            result = finish(proc)
        out, err = result.stdout, result.stderr
        results.append((result.returncode, out, err))
    assert results[0] == results[1] == (0, "caught\ndone\n", "")
    check_dump(tmp_path / "dump", min_files=3)


def test_keyboard_interrupt_uncaught_exits_as_untraced(tmp_path):
    """An uncaught KeyboardInterrupt ends the process as it would untraced
    (killed by SIGINT, i.e. status -2 / 130 in a shell), after the window in
    progress is written."""
    code = """
        start_tracing(interval="1h", duration="1h")
        print("ready", flush=True)
        work(60)
    """
    results = []
    for traced in (True, False):
        proc = spawn(code, tmp_path / ("dump" if traced else "untraced"), traced=traced)
        try:
            assert proc.stdout.readline() == "ready\n"
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        finally:
            result = finish(proc)
        out, err = result.stdout, result.stderr
        results.append((result.returncode, out, err.strip().splitlines()[-1]))
        assert err.startswith("Traceback"), err
        assert "exectrace" not in err, err
    assert results[0] == results[1] == (-signal.SIGINT, "", "KeyboardInterrupt")
    (trace,) = check_dump(tmp_path / "dump")
    assert trace.metadata["window.closed_by"] == "exit"
    assert any(s.name == "work" for s in trace.slices())


def test_keyboard_interrupt_again_while_the_last_window_is_written(tmp_path):
    """Ctrl-C pressed again and again while the window open at exit is being
    written: the process leaves at once, killed by SIGINT as the application
    would be, with one warning instead of a traceback from exectrace's code,
    and no partial file."""
    dump = tmp_path / "dump"
    proc = spawn("""
        start_tracing(interval="1h", duration="1h")
        print("ready", flush=True)
        spin(60)    # a full buffer: a long write at exit
    """, dump)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        reader.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        # the application's traceback is printed before atexit writes the
        # window: from then on, interrupt the write until exectrace gives up
        deadline = time.monotonic() + 30
        while "KeyboardInterrupt\n" not in lines and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        while not any("exectrace" in line for line in lines) and proc.poll() is None \
                and time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
        returncode = proc.wait(timeout=TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(30)
    stderr = "".join(lines)
    assert returncode == -signal.SIGINT, stderr
    assert stderr.startswith("Traceback"), stderr
    assert "KeyboardInterrupt\n" in stderr
    assert "exectrace" not in stderr.replace(
        "exectrace: warning: interrupted: the last trace window was not written\n", ""), stderr
    assert "Exception ignored" not in stderr, stderr
    check_dump(dump, tmp_allowed=True, min_files=0)


# --------------------------------------------------------------------- exit

def test_sys_exit_in_a_window_keeps_the_status_and_writes_it(tmp_path):
    traced, untraced, dump = run_both("""
        start_tracing(interval="1h", duration="1h")
        work(0.3)
        print("leaving")
        sys.exit(3)
    """, tmp_path)
    assert_same(traced, untraced)
    assert traced.returncode == 3
    (trace,) = check_dump(dump)
    assert trace.metadata["window.truncated"] is True
    assert trace.metadata["window.closed_by"] == "exit"
    assert any(s.name == "work" for s in trace.slices())


def test_os_exit_in_a_window_leaves_no_partial_file(tmp_path):
    """os._exit skips atexit: the window open then is lost, the status is the
    application's, and a write cut short leaves at most a temporary file, never
    a partial .out. The exits land at different points of the writer's work
    (flat-out calls: full buffers, long writes)."""
    code = """
        start_tracing(interval="250ms", duration="250ms", buffer_size="4MiB")
        spin(0.5 + {delay})
        print("leaving", flush=True)
        os._exit(4)
    """
    untraced = run_app(code.format(delay=0), tmp_path / "untraced", traced=False)
    assert (untraced.returncode, untraced.stdout, untraced.stderr) == (4, "leaving\n", "")
    for delay in (0.0, 0.02, 0.06):
        dump = tmp_path / f"dump-{delay}"
        traced = run_app(code.format(delay=delay), dump)
        assert_same(traced, untraced)
        check_dump(dump, tmp_allowed=True, min_files=0, checked=1)


# ----------------------------------------------------------------- shutdown

def test_shutdown_with_daemon_threads_running(tmp_path):
    """The main thread returns while daemon threads are busy calling functions
    or blocked (sleep, lock, pipe read): the window open at exit is written and
    the process ends with the application's status, in bounded time."""
    traced, untraced, dump = run_both("""
        import threading
        def busy():
            i = 0
            while True:
                handle(i)
                i += 1
                if i % 5 == 0:
                    time.sleep(0.001)
        def sleeper():
            time.sleep(1000)
        def locked(lock):
            lock.acquire()
        def reader(fd):
            os.read(fd, 1)
        lock = threading.Lock()
        lock.acquire()
        r, w = os.pipe()
        for target, args in ((busy, ()), (busy, ()), (sleeper, ()), (locked, (lock,)), (reader, (r,))):
            threading.Thread(target=target, args=args, daemon=True, name=target.__name__).start()
        start_tracing(interval="1h", duration="1h")
        work(0.5)
        print("main returns", flush=True)
    """, tmp_path, timeout=60)
    assert_same(traced, untraced)
    assert traced.returncode == 0
    (trace,) = check_dump(dump)
    assert trace.metadata["window.closed_by"] == "exit"
    assert {"busy", "sleeper", "locked", "reader"} <= thread_names([trace])
    assert any(s.thread == "busy" and s.name == "handle" for s in trace.slices())


def test_shutdown_with_busy_daemon_threads_and_short_windows(tmp_path):
    """The same with windows opening and closing as the interpreter shuts down."""
    traced, untraced, dump = run_both("""
        import threading
        def busy(n):
            while True:
                handle(n)
                time.sleep(0.0005)
        for n in range(4):
            threading.Thread(target=busy, args=(n,), daemon=True).start()
        start_tracing(interval="100ms", duration="50ms")
        work(0.73)
        print("main returns", flush=True)
    """, tmp_path, timeout=60)
    assert_same(traced, untraced)
    check_dump(dump, min_files=2)


# ---------------------------------------------------------------- recursion

def test_recursion_error_at_the_limit(tmp_path):
    """RecursionError raised and caught by the application, again and again
    while windows open and close; also with the stack held near the limit
    across window boundaries."""
    traced, untraced, dump = run_both("""
        def down(n):
            return down(n + 1)
        def near(n, stop):
            if n > 0:
                return near(n - 1, stop)
            while time.monotonic() < stop:
                handle(3)
                time.sleep(0.001)
            return 1
        start_tracing(interval="150ms", duration="100ms")
        errors = 0
        for _ in range(60):   # about 1.2 s: windows open and close around them
            try:
                down(0)
            except RecursionError:
                errors += 1
            time.sleep(0.02)
        depth = sys.getrecursionlimit() - 40
        held = near(depth, time.monotonic() + 0.8)   # several windows open and close
        print(errors, held)
    """, tmp_path)
    assert_same(traced, untraced)
    assert traced.stdout == "60 1\n"
    traces = check_dump(dump, min_files=4)
    deepest = max(s.depth for t in traces for s in t.slices())
    assert deepest >= 900


# -------------------------------------------------------------------- names

def test_long_and_undecodable_names_and_paths(tmp_path):
    """A module whose path is not UTF-8 (surrogate-escaped bytes), a 5000-char
    function name, names holding lone surrogates: files stay valid and readable."""
    base = os.fsencode(str(tmp_path))
    module_dir = base + b"/mod\xff\xfe-" + b"d" * 200
    os.makedirs(module_dir)
    with open(module_dir + b"/weird_mod.py", "w") as f:
        f.write("def from_a_bad_path(n):\n    return sum(range(n))\n")
    traced, untraced, dump = run_both(f"""
        import types
        sys.path.insert(0, os.fsdecode({module_dir!r}))
        import weird_mod
        def template():
            return handle(5)
        code = template.__code__
        names = {{"long": "L" * 5000, "lone": "lone\\ud800surrogate", "escaped": "esc\\udcff",
                  "nul": "nul\\x00name", "emoji": "\\U0001f600" * 100}}
        funcs = []
        for key, name in names.items():
            kw = dict(co_name=name)
            if sys.version_info >= (3, 11):
                kw["co_qualname"] = name + ".q"
            funcs.append(types.FunctionType(code.replace(**kw), globals(), name))
        exec(compile("def made_by_exec():\\n    return 1\\n", "/no\\udcffwhere/\\ud801.py", "exec"))
        funcs.append(made_by_exec)
        start_tracing(interval="200ms", duration="150ms")
        end = time.monotonic() + 1.0
        calls = 0
        while time.monotonic() < end:
            weird_mod.from_a_bad_path(10)
            for f in funcs:
                f()
            calls += 1
            time.sleep(0.001)
        print(calls > 0)
    """, tmp_path)
    assert_same(traced, untraced)
    traces = check_dump(dump, min_files=3)
    names = {s.name for t in traces for s in t.slices()}
    files = {s.file for t in traces for s in t.slices()}
    assert "from_a_bad_path" in names
    assert any("mod" in f and f.endswith("weird_mod.py") for f in files)
    assert any(n.startswith("L" * 5000) for n in names)
    assert any(n.startswith("lone") and "surrogate" in n for n in names)
    assert any(n.startswith("\U0001f600" * 100) for n in names)
    assert "made_by_exec" in names


# ---------------------------------------------------------- other profilers

def test_cprofile_enabled_before_and_during_windows(tmp_path):
    """cProfile enabled by the application before tracing starts, and while a
    window is open: the application's profiles work and it never sees an error.
    On 3.12+ both record side by side (exectrace leaves PROFILER_ID to
    cProfile). On <= 3.11 exectrace cannot share the sys.setprofile hook: a
    window finding another profiler is skipped with one warning, and
    tracing resumes when the profiler is gone."""
    traced, untraced, dump = run_both("""
        import cProfile, io, pstats
        def window_open():
            if TRACED:
                import exectrace
                while not exectrace.status()["window_open"]:
                    time.sleep(0.005)
        def profile(seconds):
            prof = cProfile.Profile()
            prof.enable()
            work(seconds)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).print_stats("handle")
            return "handle" in out.getvalue()
        before = cProfile.Profile()
        before.enable()                      # before tracing starts
        start_tracing(interval="200ms", duration="150ms")
        work(0.5)
        before.disable()
        ok = []
        for _ in range(3):
            window_open()
            ok.append(profile(0.1))          # while a window is open
        work(0.6)                            # nobody else profiles: windows are written
        print(all(ok))
    """, tmp_path)
    assert traced.returncode == untraced.returncode == 0, describe(traced)
    assert traced.stdout == untraced.stdout == "True\n"
    if sys.version_info >= (3, 12):
        assert traced.stderr == "", describe(traced)
    else:
        (warning,) = traced.stderr.splitlines()  # rate-limited: one
        assert "could not open a trace window: another profiler (sys.setprofile) is active" in warning
    traces = check_dump(dump, min_files=2)
    assert any(s.name == "handle" for t in traces for s in t.slices())


def test_settrace_debugger_alongside(tmp_path):
    """A sys.settrace tracer (what pdb and IDE debuggers install) on every
    thread while windows open and close: it sees every line it saw untraced."""
    traced, untraced, dump = run_both("""
        import threading
        lines = []
        def tracer(frame, event, arg):
            if frame.f_code.co_name == "stepped":
                if event == "line":
                    lines.append(frame.f_lineno)
                return tracer
            return None
        def stepped(n):
            a = n
            b = a + 1
            return b
        sys.settrace(tracer)
        threading.settrace(tracer)
        start_tracing(interval="150ms", duration="100ms")
        end = time.monotonic() + 1.0
        calls = 0
        while time.monotonic() < end:
            stepped(calls)
            handle(calls)
            calls += 1
            time.sleep(0.001)
        t = threading.Thread(target=stepped, args=(1,))
        t.start()
        t.join()
        sys.settrace(None)
        print(len(lines) == 3 * (calls + 1), sorted(set(lines)) == [lines[0], lines[0] + 1, lines[0] + 2])
    """, tmp_path)
    assert_same(traced, untraced)
    assert traced.stdout == "True True\n"
    traces = check_dump(dump, min_files=3)
    assert any(s.name == "stepped" for t in traces for s in t.slices())


@pytest.mark.parametrize("core", ["ctrace", "sysmon"] if sys.version_info >= (3, 12) else ["ctrace"])
def test_coverage_alongside(tmp_path, core):
    """coverage.py measuring the application while windows open and close,
    with its sys.settrace core, and on 3.12+ its sys.monitoring one (tool id 1)."""
    pytest.importorskip("coverage", reason="coverage is not installed")
    (tmp_path / "measured_mod.py").write_text(
        "def measured(n):\n"
        "    if n % 2:\n"
        "        return n\n"
        "    return -n\n"
        "def never():\n"
        "    return 0\n"
    )
    traced, untraced, dump = run_both(f"""
        import coverage
        sys.path.insert(0, {str(tmp_path)!r})
        cov = coverage.Coverage(data_file=None, include=["*measured_mod.py"])
        cov.start()
        import measured_mod
        start_tracing(interval="150ms", duration="100ms")
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            measured_mod.measured(1)
            handle(2)
            time.sleep(0.001)
        cov.stop()
        data = cov.get_data()
        (measured,) = data.measured_files()
        print(sorted(data.lines(measured)))
    """, tmp_path, env={"COVERAGE_CORE": core})
    assert traced.stdout == "[1, 2, 3, 5]\n", describe(traced)
    assert_same(traced, untraced)
    traces = check_dump(dump, min_files=3)
    assert any(s.name == "measured" for t in traces for s in t.slices())
