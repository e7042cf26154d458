"""Traced locks (exectrace.Lock, exectrace.RLock; src/native/tracedlock.h).

They must behave like the native locks of the running Python -- checked by
running the same scenarios against both and comparing every outcome -- keep
the standard library working when installed as threading.Lock/RLock, survive
fork and signals, and record `with lock:` waits while a window is open.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import copy
import logging
import math
import pickle
import queue
import re
import sys
import threading
import time
import weakref

import pytest

import exectrace
from exectrace import _tracecore, locks

NATIVE_TYPES = {type(_thread.allocate_lock()): "LOCK", _thread.RLock: "RLOCK"}
TRACED_TYPES = {_tracecore.Lock: "LOCK", _tracecore.RLock: "RLOCK"}


def normalize(value):
    """Outcome text with what legitimately differs taken out: type names,
    addresses, the calling thread's ident."""
    text = value if isinstance(value, str) else repr(value)
    for kind in (NATIVE_TYPES, TRACED_TYPES):
        for cls, name in kind.items():
            text = text.replace(f"{cls.__module__}.{cls.__name__}", name)
    text = re.sub(r"\b[lL]ock\b", "LOCK", text).replace("RLock", "RLOCK")
    text = re.sub(r" at 0x[0-9a-fA-F]+", " at ADDR", text)
    return text.replace(str(threading.get_ident()), "ME")


def outcome(fn):
    try:
        return ("ok", normalize(fn()))
    except Exception as e:
        return ("raise", type(e).__name__, normalize(str(e)))


def in_thread(fn):
    """fn() run in another thread: its outcome."""
    result = []
    t = threading.Thread(target=lambda: result.append(outcome(fn)))
    t.start()
    t.join()
    return result[0]


# ------------------------------------------------------------ conformance

BAD_ACQUIRE_ARGS = [
    ((False, 1), {}),
    ((0, -1), {}),
    ((), {"timeout": -2}),
    ((), {"timeout": -1.5}),
    ((), {"timeout": 1e300}),
    ((), {"timeout": float("nan")}),
    ((), {"timeout": math.inf}),
    ((), {"timeout": 2**70}),
    ((), {"timeout": 1e10}),
    ((), {"timeout": "x"}),
    ((), {"timeout": None}),
    ((), {"blocking": None}),
    ((), {"blocking": "x"}),
    ((), {"blocking": 2.5}),
    ((), {"blocking": False, "timeout": -1}),
    ((1, 2, 3), {}),
    ((), {"foo": 1}),
    ((True,), {"blocking": True}),
    ((), {"timeout": -0.0}),
    ((), {"timeout": 0}),
    ((0,), {}),
    ((), {"blocking": 0}),
    ((), {"timeout": threading.TIMEOUT_MAX}),
]


def lock_scenario(make):
    out = []
    lock = make()
    rec = out.append
    rec(("repr new", normalize(repr(lock))))
    for args, kwargs in BAD_ACQUIRE_ARGS:
        for method in ("acquire", "acquire_lock", "__enter__"):
            rec((method, args, kwargs, outcome(lambda m=method, a=args, k=kwargs: getattr(lock, m)(*a, **k))))
            if lock.locked():
                lock.release()
    rec(("acquire", outcome(lock.acquire)))
    rec(("locked", lock.locked(), lock.locked_lock()))
    rec(("repr held", normalize(repr(lock))))
    rec(("acquire(False)", outcome(lambda: lock.acquire(False))))
    rec(("acquire(blocking=False)", outcome(lambda: lock.acquire(blocking=False))))
    rec(("acquire(timeout=0)", outcome(lambda: lock.acquire(timeout=0))))
    rec(("__enter__(False)", outcome(lambda: lock.__enter__(False))))
    start = time.monotonic()
    rec(("acquire(True, 0.05)", outcome(lambda: lock.acquire(True, 0.05))))
    rec(("timed out late enough", time.monotonic() - start >= 0.045))
    rec(("release from another thread", in_thread(lock.release)))
    rec(("locked after", lock.locked()))
    rec(("release unlocked", outcome(lock.release)))
    rec(("release_lock unlocked", outcome(lock.release_lock)))
    rec(("__exit__ unlocked", outcome(lambda: lock.__exit__(None, None, None))))
    rec(("__enter__", outcome(lock.__enter__)))
    rec(("__exit__ 4 args", outcome(lambda: lock.__exit__(1, 2, 3, 4))))
    rec(("__exit__ no args", outcome(lambda: (lock.acquire(), lock.__exit__())[1])))
    with lock as entered:
        rec(("with value", entered, lock.locked()))
    rec(("after with", lock.locked()))
    lock.acquire()
    rec(("_at_fork_reinit", outcome(lock._at_fork_reinit), lock.locked()))
    rec(("after reinit", outcome(lambda: lock.acquire(False)), outcome(lock.release)))
    # a wait that another thread ends
    lock.acquire()
    timer = threading.Timer(0.05, lock.release)
    timer.start()
    rec(("timed acquire released by another thread", outcome(lambda: lock.acquire(timeout=5))))
    timer.join()
    lock.release()
    rec(("weakref", weakref.ref(lock)() is lock))
    rec(("pickle", outcome(lambda: pickle.dumps(lock))))
    rec(("copy", outcome(lambda: copy.copy(lock))))
    rec(("hash", outcome(lambda: hash(lock) == hash(lock))))
    rec(("subclass", outcome(lambda: type("Sub", (type(lock),), {}))))
    rec(("set attribute", outcome(lambda: setattr(lock, "x", 1))))
    rec(("release args", outcome(lambda: lock.release(1))))
    rec(("locked args", outcome(lambda: lock.locked(1))))
    return out


def rlock_scenario(make):
    out = []
    rec = out.append
    lock = make()
    rec(("repr new", normalize(repr(lock))))
    for args, kwargs in BAD_ACQUIRE_ARGS:
        for method in ("acquire", "__enter__"):
            rec((method, args, kwargs, outcome(lambda m=method, a=args, k=kwargs: getattr(lock, m)(*a, **k))))
            while lock._is_owned():
                lock.release()
    rec(("release unowned", outcome(lock.release)))
    rec(("_release_save unowned", outcome(lock._release_save)))
    for _ in range(3):
        rec(("acquire", outcome(lock.acquire)))
    rec(("owned", lock._is_owned()))
    if hasattr(_thread.RLock, "_recursion_count"):  # 3.11+
        rec(("_recursion_count", lock._recursion_count(), in_thread(lock._recursion_count)))
    rec(("repr held", normalize(repr(lock))))
    rec(("other thread: _is_owned", in_thread(lock._is_owned)))
    rec(("other thread: acquire(False)", in_thread(lambda: lock.acquire(False))))
    rec(("other thread: acquire(timeout=0.05)", in_thread(lambda: lock.acquire(timeout=0.05))))
    rec(("other thread: release", in_thread(lock.release)))
    rec(("other thread: __exit__", in_thread(lambda: lock.__exit__(None, None, None))))
    state = lock._release_save()
    rec(("_release_save", state[0], state[1] == threading.get_ident(), lock._is_owned()))
    rec(("repr released", normalize(repr(lock))))
    rec(("other thread takes and gives back", in_thread(lambda: (lock.acquire(False), lock.release()))))
    rec(("_acquire_restore", outcome(lambda: lock._acquire_restore(state)), lock._is_owned()))
    rec(("repr restored", normalize(repr(lock))))
    for _ in range(3):
        rec(("release", outcome(lock.release)))
    rec(("release once more", outcome(lock.release)))
    rec(("_acquire_restore bad", outcome(lambda: lock._acquire_restore(1))))
    rec(("_acquire_restore bad tuple", outcome(lambda: lock._acquire_restore((1,)))))
    with lock as entered, lock as again:
        rec(("nested with", entered, again, normalize(repr(lock))))
    rec(("after with", lock._is_owned()))
    rec(("__exit__ many args", outcome(lambda: (lock.acquire(), lock.__exit__(1, 2, 3, 4))[1])))
    lock.acquire()
    lock.acquire()
    rec(("_at_fork_reinit", outcome(lock._at_fork_reinit), lock._is_owned(), normalize(repr(lock))))
    rec(("weakref", weakref.ref(lock)() is lock))
    rec(("pickle", outcome(lambda: pickle.dumps(lock))))
    rec(("args ignored", outcome(lambda: normalize(repr(type(lock)(1, a=2))))))
    sub = type("Sub", (type(lock),), {})
    instance = sub()
    rec(("subclass", outcome(lambda: (instance.acquire(), instance._is_owned(), instance.release()))))
    instance.x = 1
    rec(("release args", outcome(lambda: lock.release(1))))
    return out


def test_lock_conforms_to_native():
    native = lock_scenario(_thread.allocate_lock)
    traced = lock_scenario(_tracecore.Lock)
    assert traced == native


def test_rlock_conforms_to_native():
    native = rlock_scenario(_thread.RLock)
    traced = rlock_scenario(_tracecore.RLock)
    assert traced == native


@pytest.mark.parametrize("native, traced", [(type(_thread.allocate_lock()), _tracecore.Lock),
                                            (_thread.RLock, _tracecore.RLock)])
def test_same_methods(native, traced):
    assert set(dir(native)) - set(dir(traced)) <= {"__module__"}  # a heap type's (3.12+)
    extra = set(dir(traced)) - set(dir(native))
    assert extra <= {"_recursion_count"}  # 3.9, 3.10 RLocks lack it


def test_type_names_and_constructors():
    assert repr(_tracecore.Lock) == "<class 'exectrace.Lock'>"
    assert _tracecore.RLock.__module__ == "exectrace"
    assert re.fullmatch(r"<unlocked exectrace\.Lock object at 0x[0-9a-f]+>", repr(_tracecore.Lock()))
    assert re.fullmatch(r"<unlocked exectrace\.RLock object owner=0 count=0 at 0x[0-9a-f]+>",
                        repr(_tracecore.RLock()))
    with pytest.raises(TypeError):
        _tracecore.Lock(1)
    with pytest.raises(TypeError):
        _tracecore.Lock(blocking=True)


def test_deallocating_a_held_lock():
    for make in (_tracecore.Lock, _tracecore.RLock):
        for _ in range(1000):
            lock = make()
            lock.acquire()
            del lock


def test_contention_counts_right():
    """Many threads incrementing under each lock type: no lost update."""
    for make in (_tracecore.Lock, _tracecore.RLock):
        lock = make()
        box = [0]

        def work(lock=lock, box=box):
            for _ in range(2000):
                with lock:
                    value = box[0]
                    if value % 97 == 0:
                        time.sleep(0)
                    box[0] = value + 1

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert box[0] == 16000


# -------------------------------------------------- installed in threading

@pytest.fixture
def installed():
    was = threading.Lock, threading.RLock
    locks.install()
    try:
        yield
    finally:
        locks.uninstall()
    assert (threading.Lock, threading.RLock) == was


def test_install_uninstall_idempotent():
    native_lock, native_rlock = threading.Lock, threading.RLock
    assert not locks.installed()
    locks.install()
    locks.install()
    try:
        assert locks.installed()
        assert threading.Lock is _tracecore.Lock and threading.RLock is _tracecore.RLock
        assert type(threading.Lock()) is _tracecore.Lock
        assert type(threading.RLock()) is _tracecore.RLock
        assert type(threading.Condition()._lock) is _tracecore.RLock
        assert type(threading.Event()._cond._lock) is _tracecore.Lock
        # not patched: Condition's waiter locks, thread-state locks
        assert type(_thread.allocate_lock()) is not _tracecore.Lock
        assert type(threading._allocate_lock()) is not _tracecore.Lock
    finally:
        locks.uninstall()
        locks.uninstall()
    assert not locks.installed()
    assert threading.Lock is native_lock and threading.RLock is native_rlock


def test_uninstall_leaves_a_later_patch_alone():
    native_lock = threading.Lock
    locks.install()

    def theirs():
        return native_lock()

    threading.Lock = theirs
    try:
        locks.uninstall()
        assert threading.Lock is theirs
        assert threading.RLock is not _tracecore.RLock
        assert not locks.installed()
        # they put ours back: a second uninstall restores the original
        threading.Lock = _tracecore.Lock
        locks.uninstall()
        assert threading.Lock is native_lock
    finally:
        threading.Lock = native_lock


def test_condition(installed):
    cond = threading.Condition()
    items = []

    def consumer():
        with cond:
            assert cond.wait_for(lambda: len(items) == 3, timeout=5)

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(3):
        time.sleep(0.01)
        with cond:
            items.append(i)
            cond.notify_all()
    t.join()
    with cond:
        assert cond.wait(0.01) is False
    plain = threading.Condition(threading.Lock())
    with plain:
        assert plain.wait(0.01) is False
    with pytest.raises(RuntimeError):
        cond.notify()


def test_event_semaphores_barrier(installed):
    event = threading.Event()
    assert not event.wait(0.01)
    threading.Timer(0.02, event.set).start()
    assert event.wait(5)

    sem = threading.Semaphore(2)
    bsem = threading.BoundedSemaphore(1)
    inside = []
    peak = []

    def worker():
        with sem:
            inside.append(1)
            peak.append(len(inside))
            time.sleep(0.01)
            inside.pop()
        with bsem:
            pass

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak) <= 2
    with pytest.raises(ValueError):
        bsem.release()
    assert sem.acquire(timeout=0.01) and sem.acquire(timeout=0.01)
    assert not sem.acquire(timeout=0.01)

    barrier = threading.Barrier(3, timeout=5)
    order = []

    def party(i):
        barrier.wait()
        order.append(i)

    threads = [threading.Thread(target=party, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(order) == [0, 1, 2]


def test_queue_and_thread_pool(installed):
    q: queue.Queue[int] = queue.Queue(maxsize=8)
    assert type(q.mutex) is _tracecore.Lock
    total = []

    def consumer():
        s = 0
        while True:
            item = q.get()
            q.task_done()
            if item < 0:
                break
            s += item
        total.append(s)

    consumers = [threading.Thread(target=consumer) for _ in range(3)]
    for t in consumers:
        t.start()
    for i in range(3000):
        q.put(i)
    for _ in consumers:
        q.put(-1)
    q.join()
    for t in consumers:
        t.join()
    assert sum(total) == sum(range(3000))
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda x: x * x, range(200))) == [x * x for x in range(200)]
        futures = [pool.submit(time.sleep, 0.01) for _ in range(8)]
        done, _ = concurrent.futures.wait(futures, timeout=5)
        assert len(done) == 8


def test_logging(installed):
    records = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = ListHandler()
    assert type(handler.lock) is _tracecore.RLock
    logger = logging.getLogger("exectrace.test_locks")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        threads = [threading.Thread(target=lambda i=i: [logger.info("m %d", i) for _ in range(50)])
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        logger.removeHandler(handler)
    assert len(records) == 200


FORK_SCRIPT = r"""
import logging, os, sys, threading, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
from exectrace import locks, _tracecore
locks.install()
held = threading.Lock()
held_r = threading.RLock()
handler = logging.StreamHandler(sys.stdout)
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
started = threading.Event()
stop = threading.Event()
def hold():
    with held_r:            # held by a thread that will not exist in the child
        started.set()
        stop.wait()
t = threading.Thread(target=hold)
t.start()
started.wait()
held.acquire()
pid = os.fork()
if pid == 0:
    try:
        assert held.locked() and held_r._is_owned() is False
        held._at_fork_reinit()
        held_r._at_fork_reinit()
        assert held.acquire(False) and held_r.acquire(False)
        # threading's own after-fork path reinitialised its (traced) locks:
        out = []
        workers = [threading.Thread(target=lambda i=i: out.append(i)) for i in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sorted(out) == [0, 1, 2, 3], out
        cond = threading.Condition()
        with cond:
            assert not cond.wait(0.01)
        logging.info("child logs")
        sys.stdout.flush()
        os._exit(0)
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
_, status = os.waitpid(pid, 0)
stop.set()
t.join()
held.release()
print("child status", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
"""


def test_fork_with_held_traced_locks(python):
    result = python(FORK_SCRIPT)
    assert "child status 0" in result.stdout, result.stdout + result.stderr
    assert "child logs" in result.stdout


SIGNAL_SCRIPT = r"""
import os, signal, sys, threading, time
from exectrace import locks, _tracecore
locks.install()
kind = sys.argv[1]
lock = threading.Lock() if kind == "Lock" else threading.RLock()
holder_ready = threading.Event()
def hold():
    lock.acquire()
    holder_ready.set()
    time.sleep(30)
threading.Thread(target=hold, daemon=True).start()
holder_ready.wait()

# 1. SIGALRM with a raising handler ends a blocked `with lock:`
class Alarm(Exception):
    pass
def raising(signum, frame):
    raise Alarm
signal.signal(signal.SIGALRM, raising)
signal.setitimer(signal.ITIMER_REAL, 0.2)
start = time.monotonic()
try:
    with lock:
        print("acquired?!")
except Alarm:
    print("alarm after %.2f" % (time.monotonic() - start))

# 2. a handler that returns: the timed wait goes on with the time left
calls = []
signal.signal(signal.SIGALRM, lambda s, f: calls.append(s))
signal.setitimer(signal.ITIMER_REAL, 0.1)
start = time.monotonic()
got = lock.acquire(timeout=0.4)
print("timed", got, len(calls), "%.2f" % (time.monotonic() - start))

# 3. Ctrl-C
threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
start = time.monotonic()
try:
    with lock:
        print("acquired?!")
except KeyboardInterrupt:
    print("interrupted after %.2f" % (time.monotonic() - start))
"""


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_signals_interrupt_a_blocked_with(tmp_path, kind):
    import subprocess

    script = tmp_path / "signals.py"
    script.write_text(SIGNAL_SCRIPT)
    result = subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout + result.stderr
    assert lines[0].startswith("alarm after") and 0.15 < float(lines[0].split()[-1]) < 5
    _, got, calls, elapsed = lines[1].split()
    assert got == "False" and calls == "1" and 0.35 < float(elapsed) < 5
    assert lines[2].startswith("interrupted after") and 0.15 < float(lines[2].split()[-1]) < 5


# ------------------------------------------------------------- recording

def enter_names(make):
    return f"{type(make()).__module__}.{type(make()).__name__}.__enter__"


def wait_with(lock):
    with lock:
        pass


def enter_explicitly(lock):
    lock.__enter__()
    lock.__exit__(None, None, None)


def wait_with_condition(cond):
    with cond:
        pass


def hold_for(lock, seconds):
    """Another thread holds `lock` for `seconds`; returns once it holds it."""
    held = _thread.allocate_lock()
    held.acquire()

    def holder():
        lock.acquire()
        held.release()
        time.sleep(seconds)
        lock.release()

    t = threading.Thread(target=holder, name="holder")
    t.start()
    held.acquire()
    return t


def main_thread_slices(trace):
    return [s for s in trace.slices() if s.tid == threading.get_native_id()]


@pytest.mark.parametrize("make", [_tracecore.Lock, _tracecore.RLock], ids=["Lock", "RLock"])
def test_with_wait_is_one_slice_under_its_caller(trace_path, make):
    lock = make()
    name = enter_names(make)
    with exectrace.tracing(trace_path):
        t = hold_for(lock, 0.2)
        wait_with(lock)
        t.join()
    trace = exectrace.read(trace_path)
    mine = main_thread_slices(trace)
    callers = [s for s in mine if s.name.endswith("wait_with")]
    assert len(callers) == 1
    caller = callers[0]
    # (tracing() installs traced locks: threading's own Conditions, e.g. in
    # Thread.join, record their explicit __enter__ calls elsewhere)
    enters = inside(caller, [s for s in mine if s.name == name])
    assert len(enters) == 1, [s.name for s in mine]
    enter = enters[0]
    assert enter.is_c_function
    assert 0.15e9 <= enter.dur_ns <= 2e9
    assert caller.start_ns <= enter.start_ns and enter.end_ns <= caller.end_ns
    assert enter.depth == caller.depth + 1
    # the holder's explicit acquire() is a C call the hooks record
    holder = [s for s in trace.slices() if s.thread == "holder"]
    body = [s for s in holder if s.name.endswith("hold_for.<locals>.holder")]
    assert len(body) == 1
    assert any(s.name == f"exectrace.{make.__name__}.acquire" for s in inside(body[0], holder))
    assert not any(s.name == name for s in inside(body[0], holder))


def inside(outer, slices):
    return [s for s in slices if outer.start_ns <= s.start_ns and s.end_ns <= outer.end_ns]


@pytest.mark.parametrize("make", [_tracecore.Lock, _tracecore.RLock], ids=["Lock", "RLock"])
def test_explicit_enter_is_recorded_once(trace_path, make):
    lock = make()
    name = enter_names(make)
    cond = threading.Condition(make())
    with exectrace.tracing(trace_path):
        enter_explicitly(lock)
        wait_with_condition(cond)
        t = hold_for(cond, 0.1)
        wait_with_condition(cond)
        t.join()
    trace = exectrace.read(trace_path)
    mine = main_thread_slices(trace)
    enters = [s for s in mine if s.name == name]
    explicit = [s for s in mine if s.name.endswith("enter_explicitly")]
    assert len(explicit) == 1 and len(inside(explicit[0], enters)) == 1
    with_cond = [s for s in mine if s.name.endswith("wait_with_condition")]
    assert len(with_cond) == 2
    for caller in with_cond:
        # with cond: -> Condition.__enter__ (Python) -> self._lock.__enter__() (C, once)
        cond_enter = [s for s in inside(caller, mine) if s.name.endswith("Condition.__enter__")]
        assert len(cond_enter) == 1 and cond_enter[0].depth == caller.depth + 1
        lock_enter = inside(caller, enters)
        assert len(lock_enter) == 1, [(s.name, s.depth) for s in inside(caller, mine)]
        assert lock_enter[0].depth == cond_enter[0].depth + 1
    assert inside(with_cond[1], enters)[0].dur_ns >= 0.05e9


def test_native_locks_show_the_gap_and_the_condition_path(trace_path):
    """Why traced locks exist: a native `with lock:` records nothing, while
    `with cond:` is seen through Condition.__enter__'s explicit call."""
    native = _thread.allocate_lock()
    cond = threading.Condition(_thread.RLock())
    with exectrace.tracing(trace_path):
        wait_with(native)
        wait_with_condition(cond)
    trace = exectrace.read(trace_path)
    mine = main_thread_slices(trace)
    (plain,) = [s for s in mine if s.name.endswith("wait_with")]
    names = [s.name for s in inside(plain, mine)]
    assert "_thread.lock.__enter__" not in names
    assert "_thread.lock.__exit__" in names  # a plain call: visible
    (with_cond,) = [s for s in mine if s.name.endswith("wait_with_condition")]
    assert "_thread.RLock.__enter__" in [s.name for s in inside(with_cond, mine)]


def test_nothing_recorded_without_c_calls(trace_path):
    lock = _tracecore.Lock()
    with exectrace.tracing(trace_path, c_calls=False):
        t = hold_for(lock, 0.05)
        wait_with(lock)
        t.join()
    trace = exectrace.read(trace_path)
    assert not [s for s in trace.slices() if s.name.startswith("exectrace.Lock")]
    assert [s for s in main_thread_slices(trace) if s.name.endswith("wait_with")]


def recorded_c_names(capture):
    return [entry[1] for entry in capture.functions() if entry[0] == "c"]


def test_no_recording_between_windows():
    lock = _tracecore.Lock()
    rlock = _tracecore.RLock()
    _tracecore.start(buffer_size=1 << 16)
    _tracecore.stop().release()
    for _ in range(100):
        wait_with(lock)
        wait_with(rlock)
    assert _tracecore.stats() == {}
    # a wait that began before a window opened is not recorded in it
    t = hold_for(lock, 0.2)
    waiter = threading.Thread(target=wait_with, args=(lock,))
    waiter.start()
    time.sleep(0.05)
    _tracecore.start(buffer_size=1 << 16)
    waiter.join()
    t.join()
    capture = _tracecore.stop()
    try:
        assert "__enter__" not in recorded_c_names(capture)
    finally:
        capture.release()


def test_window_closing_during_a_wait():
    """A wait still open when the window closes ends at the close; the
    return after it, in no window or in the next, records nothing."""
    lock = _tracecore.RLock()
    t = hold_for(lock, 0.3)
    waiter = threading.Thread(target=wait_with, args=(lock,), name="waiter")
    _tracecore.start(buffer_size=1 << 16)
    waiter.start()
    time.sleep(0.1)
    first = _tracecore.stop()
    _tracecore.start(buffer_size=1 << 16)
    waiter.join()
    t.join()
    second = _tracecore.stop()
    try:
        assert "__enter__" in recorded_c_names(first)
        assert first.stats["records_kept"] > 0
        assert "__enter__" not in recorded_c_names(second)
    finally:
        first.release()
        second.release()


def test_installed_with_lock_in_a_window(trace_path, installed):
    lock = threading.Lock()
    with exectrace.tracing(trace_path):
        t = hold_for(lock, 0.1)
        wait_with(lock)
        t.join()
    trace = exectrace.read(trace_path)
    mine = main_thread_slices(trace)
    caller = [s for s in mine if s.name.endswith("wait_with")]
    assert len(caller) == 1
    enters = [s for s in inside(caller[0], mine) if s.name == "exectrace.Lock.__enter__"]
    assert len(enters) == 1 and enters[0].dur_ns >= 0.05e9
    # Thread.start() waits on an Event, whose Condition's lock is traced now: its
    # `with` goes through Condition.__enter__'s explicit call, recorded once
    starts = [s for s in mine if s.name.endswith("Thread.start")]
    assert starts
    for start in starts:
        for cond_enter in [s for s in inside(start, mine) if s.name.endswith("Condition.__enter__")]:
            assert len([s for s in inside(cond_enter, mine) if s.name.startswith("exectrace.Lock")]) == 1
