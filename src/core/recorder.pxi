# The recorder binding: the hooks, start/stop, the user annotations and the
# traced locks, over src/native/recorder.h (the hot path), annotations.h and
# tracedlock.h.  Included by src/_tracecore.pyx.

from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint32_t, uint64_t

from annotations cimport et_annotation_api, et_annotation_api_get
from clock cimport ET_HAVE_TICKS, et_monotonic_ns, et_read_ticks
from events cimport *
from recorder cimport *
from tracedlock cimport et_lock_api, et_lock_api_get

# module-level C variables, not attributes of the extension module
import gc
import sys
import threading

from exectrace import errors

cdef object _gc = gc
cdef object _sys = sys
cdef object _threading = threading
cdef object ExectraceError = errors.ExectraceError
del gc, sys, threading, errors

et_init_strings()
cdef object _threading_active = getattr(_threading, "_active", None)
if isinstance(_threading_active, dict):
    Py_INCREF(_threading_active)
    R.threading_active = <PyObject*>_threading_active

HAS_TICKS = bool(ET_HAVE_TICKS)
HAS_SYS_MONITORING = bool(ET_HAS_SYS_MONITORING)

# User annotations (src/native/annotations.h): one flag check when no window is open.
# (_annotations and _locks keep their references for the life of the process.)
cdef et_annotation_api _annotations
et_annotation_api_get(&_annotations)
region = <object>_annotations.region
task = <object>_annotations.task
log = <object>_annotations.log
Region = <object>_annotations.region_type
Task = <object>_annotations.task_type

# Traced locks (src/native/tracedlock.h)
cdef et_lock_api _locks
et_lock_api_get(&_locks)
Lock = <object>_locks.lock_type
RLock = <object>_locks.rlock_type

# ------------------------------------------------------------------ hooks

cdef object _gc_callback = et_gc_callback_function()
cdef object _monitor_tool = None     # tool id in use, 3.12+
cdef object _saved_thread_hook = None
cdef bint _hooks_installed = False
cdef bint _floor_installed = False
cdef bint _events_hooks = False        # the hooks installed are `events` mode's
cdef object _local_events_code = None  # the code given local events (3.12+ `events` mode)

# sys.monitoring: the events each callback role is registered for; the C
# function events only when C calls are recorded.
cdef tuple _MONITOR_PY_EVENTS = (
    (ET_MONITOR_PY_START, ("PY_START", "PY_RESUME")),
    (ET_MONITOR_PY_THROW, ("PY_THROW",)),
    (ET_MONITOR_PY_RETURN, ("PY_RETURN", "PY_YIELD")),
    (ET_MONITOR_PY_UNWIND, ("PY_UNWIND",)),
)
cdef tuple _MONITOR_C_EVENTS = (
    (ET_MONITOR_CALL, ("CALL",)),
    (ET_MONITOR_C_RETURN, ("C_RETURN", "C_RAISE")),
)


cdef object _threading_profile_hook():
    get = getattr(_threading, "getprofile", None)
    return get() if get is not None else getattr(_threading, "_profile_hook", None)


cdef _install_monitoring(int tool_id, bint c_calls, bint floor):
    global _monitor_tool
    mon = _sys.monitoring
    current = mon.get_tool(tool_id)
    if current is not None:
        raise ExectraceError(
            f"sys.monitoring tool id {tool_id} is held by {current!r}; "
            "exectrace cannot record while another tool uses it"
        )
    mon.use_tool_id(tool_id, "exectrace")
    _monitor_tool = tool_id
    if R.disable == NULL:
        disable = mon.DISABLE
        Py_INCREF(disable)
        R.disable = <PyObject*>disable
    events = mon.events
    mask = 0
    cdef et_monitor_role role
    for role, names in _MONITOR_PY_EVENTS + (_MONITOR_C_EVENTS if c_calls else ()):
        if floor:
            role = ET_MONITOR_FLOOR_CALL if role == ET_MONITOR_CALL else ET_MONITOR_FLOOR_ANY
        callback = et_monitor_callback(role)
        for name in names:
            event = getattr(events, name)
            mon.register_callback(tool_id, event, callback)
            mask |= event
    # Call sites disabled in an earlier window (DISABLE lasts until this).
    mon.restart_events()
    mon.set_events(tool_id, mask)


cdef _remove_monitoring():
    global _monitor_tool
    if _monitor_tool is None:
        return
    mon = _sys.monitoring
    tool_id = _monitor_tool
    _monitor_tool = None
    mon.set_events(tool_id, 0)
    global _local_events_code
    if _local_events_code is not None:
        mon.set_local_events(tool_id, _local_events_code, 0)
        _local_events_code = None
    for event in (
        "PY_START", "PY_RESUME", "PY_THROW", "PY_RETURN", "PY_YIELD", "PY_UNWIND",
        "CALL", "C_RETURN", "C_RAISE",
    ):
        mon.register_callback(tool_id, getattr(mon.events, event), None)
    mon.free_tool_id(tool_id)


cdef _install_profile(bint floor):
    """<= 3.11: the C profile function on every thread, and on new threads."""
    global _saved_thread_hook
    cdef Py_tracefunc func = et_profile_func(floor)
    cdef unsigned long other = et_foreign_profiler_thread(et_profile_func(0), et_profile_func(1))
    if other:
        raise ExectraceError(
            f"another profiler (sys.setprofile) is active on thread {other}; on Python "
            f"{_sys.version_info[0]}.{_sys.version_info[1]} exectrace cannot share the hook"
        )
    _saved_thread_hook = _threading_profile_hook()
    et_set_profile_all(func, NULL)
    _threading.setprofile(et_thread_bootstrap_function(floor))


cdef _remove_profile(bint floor):
    global _saved_thread_hook
    et_set_profile_all(NULL, et_profile_func(floor))
    _threading.setprofile(_saved_thread_hook)
    _saved_thread_hook = None


cdef _install_hooks(int tool_id, bint c_calls, bint floor):
    if HAS_SYS_MONITORING:
        _install_monitoring(tool_id, c_calls, floor)
    else:
        _install_profile(floor)


cdef _remove_hooks(bint floor):
    if HAS_SYS_MONITORING:
        _remove_monitoring()
    else:
        _remove_profile(floor)


cdef dict _seed_current_frames():
    """Threads' call stacks at start, outermost first:
    {ident: (native_id, Thread or None, [code, ...])}."""
    threads = {t.ident: t for t in _threading.enumerate()}
    seeds = {}
    for ident, frame in _sys._current_frames().items():
        codes = []
        while frame is not None:
            codes.append(frame.f_code)
            frame = frame.f_back
        codes.reverse()
        thread = threads.get(ident)
        seeds[ident] = (getattr(thread, "native_id", 0) or 0, thread, codes)
    return seeds


def start(*, uint64_t buffer_size, bint c_calls=True, int64_t min_duration_ns=0,
          uint32_t max_depth=0, include_prefixes=(), exclude_prefixes=(), bint use_ticks=True,
          int tool_id=2, bint seed_stacks=True, asyncio_running_loop=None,
          asyncio_current_tasks=None, asyncio_create_task_code=None, bint events_mode=False,
          blocking_callables=(), blocking_reasons=(), asyncio_context_run=None,
          asyncio_handle_run_code=None, asyncio_task_type=None, asyncio_py_task_type=None,
          int64_t min_block_ns=0):
    """Opens a window.

    buffer_size: bytes for the ring of records (32 bytes each).
    include_prefixes/exclude_prefixes: file-path prefixes (bytes) of Python code to trace/skip.
    use_ticks: read the CPU's tick counter (the caller checked it is safe).
    tool_id: the sys.monitoring tool id to take (3.12+).
    seed_stacks: start with the call stacks threads already have (`calls` mode).
    asyncio_running_loop, asyncio_current_tasks: _asyncio._get_running_loop and
    _asyncio._current_tasks, to attribute coroutine steps to their tasks;
    asyncio_create_task_code: the code object of BaseEventLoop.create_task,
    whose return values are new tasks.
    events_mode: record waits, samples and steps (events.h), not every call;
    then blocking_callables/blocking_reasons: the C functions that wait and
    their reason numbers (>= 1); asyncio_context_run, asyncio_handle_run_code:
    Context.run and the code of Handle._run, where the loop runs callbacks;
    asyncio_task_type, asyncio_py_task_type: the task classes whose steps count;
    min_block_ns: waits shorter than this are not recorded. Samples are taken
    by sample_loop(), run in a thread of the caller's.
    """
    global _hooks_installed, _events_hooks
    if _hooks_installed or _floor_installed or R.cap != NULL:
        raise ExectraceError("a trace window is already open in this process")
    cdef uint64_t capacity = buffer_size // sizeof(et_record)
    if capacity < 16:
        raise ValueError("buffer_size is too small")
    _events_hooks = events_mode
    if events_mode:
        et_set_blocking(tuple(blocking_callables), tuple(blocking_reasons))
        et_set_asyncio_steps(asyncio_context_run, asyncio_handle_run_code, asyncio_task_type,
                             asyncio_py_task_type)
    et_begin(capacity, use_ticks, c_calls, min_duration_ns, max_depth,
             tuple(include_prefixes), tuple(exclude_prefixes), events_mode)
    et_set_min_block(et_ns_to_ticks(R.cap, min_block_ns) if events_mode else 0)
    try:
        et_set_asyncio(asyncio_running_loop, asyncio_current_tasks, asyncio_create_task_code)
        if seed_stacks and not events_mode:
            for ident, (native_id, thread, codes) in _seed_current_frames().items():
                for code in codes:
                    et_seed_frame(ident, native_id, code, thread)
        if not events_mode:
            _install_hooks(tool_id, c_calls, False)
        elif HAS_SYS_MONITORING:
            _install_events_monitoring(tool_id, asyncio_create_task_code)
        _hooks_installed = True
        _gc.callbacks.append(_gc_callback)
    except BaseException:
        _hooks_installed = False
        et_capture_free(et_end())
        raise
    et_activate()


cdef _install_events_monitoring(int tool_id, create_task_code):
    """3.12+ `events` mode: CALL/C_RETURN/C_RAISE everywhere (call sites that
    call nothing recorded disable themselves), PY_START/PY_RETURN only on
    BaseEventLoop.create_task (the task it returns gets a creation flow)."""
    global _monitor_tool, _local_events_code
    mon = _sys.monitoring
    current = mon.get_tool(tool_id)
    if current is not None:
        raise ExectraceError(
            f"sys.monitoring tool id {tool_id} is held by {current!r}; "
            "exectrace cannot record while another tool uses it"
        )
    mon.use_tool_id(tool_id, "exectrace")
    _monitor_tool = tool_id
    if R.disable == NULL:
        disable = mon.DISABLE
        Py_INCREF(disable)
        R.disable = <PyObject*>disable
    events = mon.events
    mon.register_callback(tool_id, events.CALL, et_events_callback(ET_EVENTS_CALL))
    c_return = et_events_callback(ET_EVENTS_C_RETURN)
    mon.register_callback(tool_id, events.C_RETURN, c_return)
    mon.register_callback(tool_id, events.C_RAISE, c_return)
    mon.restart_events()
    mon.set_events(tool_id, events.CALL | events.C_RETURN | events.C_RAISE)
    if create_task_code is not None:
        mon.register_callback(tool_id, events.PY_START, et_monitor_callback(ET_MONITOR_PY_START))
        mon.register_callback(tool_id, events.PY_RETURN, et_monitor_callback(ET_MONITOR_PY_RETURN))
        mon.set_local_events(tool_id, create_task_code, events.PY_START | events.PY_RETURN)
        _local_events_code = create_task_code


def sampler_reset():
    """Readies sample_loop() to run (clears a stop request); before starting it."""
    et_sampler_reset()


def sample_loop(int64_t interval_ns):
    """Takes a stack sample of every thread every interval_ns while an
    `events` window records, until sampler_stop(); run it in a thread of its
    own, after sampler_reset()."""
    if interval_ns <= 0:
        raise ValueError("interval_ns must be > 0")
    et_sampler_loop(interval_ns)


def sampler_stop():
    """Makes sample_loop() return (at once, not at its next tick)."""
    et_sampler_stop()


def wait_wrapper(func, named_after):
    """<= 3.11 `events` windows: a callable that calls func and records each
    call as a wait in the C function named_after (exectrace/_waits.py puts
    them in place for a window). Binds like a function in a class."""
    return et_make_wrapper(func, named_after)


def step_wrapper(func):
    """<= 3.11 `events` windows: wraps asyncio's Handle._run to record task steps."""
    return et_make_wrapper(func, None)


cdef _uninstall():
    """Removes the recording hooks and the GC callback, if installed."""
    global _hooks_installed
    if _hooks_installed:
        _hooks_installed = False
        try:
            _gc.callbacks.remove(_gc_callback)
        except ValueError:
            pass
        if not _events_hooks:
            _remove_hooks(False)
        elif HAS_SYS_MONITORING:
            _remove_monitoring()


def stop():
    """Closes the window; returns its Capture, or None when none was open."""
    R.slow_step_ticks = 0
    R.wake_fd = 0
    et_events_stacks_of_open_waits()
    cdef et_capture* c = et_end()
    _uninstall()
    if c == NULL:
        return None
    cdef Capture capture = Capture.__new__(Capture)
    capture.c = c
    return capture


def is_active():
    return bool(R.active)


def stats():
    """Counters of the window in progress (an empty dict when none is)."""
    cdef et_capture* c = R.cap
    if c == NULL:
        return {}
    c.pos = R.ring_pos  # the hot copies, kept in R while recording
    c.written = R.written
    return _capture_stats(c)


cdef dict _capture_stats(et_capture* c):
    lost = c.written - c.capacity if c.written > c.capacity else 0
    return {
        "records_written": c.written,
        "records_lost": lost,
        "records_kept": c.written - lost,
        "capacity": c.capacity,
        "buffer_bytes": c.capacity * sizeof(et_record),
        "threads": c.n_threads,
        "functions": c.n_funcs,
        "gc_collections": c.n_gc,
        "gc_lost": c.gc_lost,
        "dropped_calls": c.dropped_calls,
        "asyncio_tasks": c.n_tasks,
        "annotations": c.n_events,
        "annotations_lost": c.events_lost,
        "samples": c.samples,
        "callstacks": (<et_stacks*>c.stacks).n_nodes if c.stacks != NULL else 0,
        "callstacks_truncated": (<et_stacks*>c.stacks).truncated if c.stacks != NULL else 0,
        "sampler_ticks_late": EV.ticks_late if c.events_mode else 0,
        "short_waits": EV.short_waits if c.events_mode else 0,
    }


def after_fork_child():
    """In a forked child: drop the parent's window and hooks without writing."""
    R.slow_step_ticks = 0
    R.wake_fd = 0
    et_after_fork_child()
    et_events_after_fork_child()
    _uninstall()


def ignore_thread(uint64_t ident, bint ignored=True):
    """Never record the thread `ident` (threading.get_ident()), or record it again.
    For exectrace's own background threads; at most 8."""
    et_ignore_thread(ident, ignored)


def floor_start(bint c_calls=True, int tool_id=2):
    """Benchmarks only: install a hook on the same events that does nothing."""
    global _floor_installed
    if _hooks_installed or _floor_installed:
        raise ExectraceError("a hook is already installed")
    if HAS_SYS_MONITORING:
        if R.disable == NULL:
            disable = _sys.monitoring.DISABLE
            Py_INCREF(disable)
            R.disable = <PyObject*>disable
    _install_hooks(tool_id, c_calls, True)
    _floor_installed = True


def floor_stop():
    global _floor_installed
    if _floor_installed:
        _floor_installed = False
        _remove_hooks(True)


# ------------------------------------------------------- flight recorder

from flight cimport *

cdef dict _flight_info(et_flight_info* info):
    return {
        "bound": ("flight_recorder", "buffer_size", "start")[info.bound],
        "records_in": info.records_in, "records_out": info.records_out,
        "functions_in": info.funcs_in, "functions_out": info.funcs_out,
        "threads_in": info.threads_in, "threads_out": info.threads_out,
        "tasks_in": info.tasks_in, "tasks_out": info.tasks_out,
        "annotations_in": info.events_in, "annotations_out": info.events_out,
        "gc_in": info.gc_in, "gc_out": info.gc_out,
        "callstacks_in": info.stacks_in, "callstacks_out": info.stacks_out,
    }


cdef int64_t _cutoff_ticks(int64_t span_ns):
    """The tick count span_ns ago (the recorder's clock)."""
    cdef et_capture* c = R.cap
    cdef int64_t now = et_read_ticks() if c.use_ticks else et_monotonic_ns()
    # at least span_ns: ticks per ns are known to ~0.1% (et_ns_to_ticks rounds down)
    return now - et_ns_to_ticks(c, span_ns + span_ns // 500) if span_ns > 0 else now


def flight_copy(int64_t span_ns):
    """Flight recorder: a copy of what the recording window retains of the
    last span_ns (fewer when the ring has wrapped, or started later), as a
    closed Capture; recording goes on.  Returns (Capture, info dict)."""
    if R.cap == NULL or not R.active:
        raise ExectraceError("no trace window is recording")
    cdef et_flight_info info
    cdef et_capture* c = et_flight_copy(_cutoff_ticks(span_ns), &info)
    cdef Capture capture = Capture.__new__(Capture)
    capture.c = c
    return capture, _flight_info(&info)


def flight_compact(int64_t span_ns):
    """Flight recorder: drops what the recording window holds from before
    the last span_ns and the functions, tasks, callstacks, GC records and
    annotations nothing kept refers to.  Returns an info dict."""
    if R.cap == NULL or not R.active:
        raise ExectraceError("no trace window is recording")
    cdef et_flight_info info
    et_flight_compact(_cutoff_ticks(span_ns), &info)
    return _flight_info(&info)


def flight_arm_slow_step(int wake_fd, int64_t slow_step_ns):
    """Flight recorder: while the recording window lasts, an asyncio step of
    slow_step_ns or more writes b"s" to wake_fd, once until armed again
    (wake_fd < 0 or slow_step_ns <= 0: never)."""
    if wake_fd < 0 or slow_step_ns <= 0 or R.cap == NULL:
        R.slow_step_ticks = 0
        R.wake_fd = 0
        R.slow_step_armed = 0
        return
    R.wake_fd = wake_fd + 1
    R.slow_step_ticks = et_ns_to_ticks(R.cap, slow_step_ns)
    R.slow_step_armed = 1


from posix.unistd cimport write as _posix_write


def poke(int fd):
    """Writes one byte (b"x") to fd without releasing the GIL: the flight
    recorder's snapshot() wakes its thread this way, so the woken thread
    cannot take the GIL (and hold it for the copy) before the caller goes on.
    Returns False when the write failed (a full pipe: a wake-up is pending)."""
    cdef char b = 120
    return _posix_write(fd, &b, 1) == 1
