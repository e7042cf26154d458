# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""exectrace._tracecore: the native core.

A small API over the C recorder in src/native/recorder.h:

    start(...)      open a window: install the hooks, start recording
    stop()          close it: remove the hooks, return the Capture
    stats()         counters of the window in progress
    Capture.encode  the captured window as Perfetto protobuf bytes
    decode(data)    Perfetto protobuf bytes back into columns (the reader)

It takes validated plain values; every policy decision (settings, schedule,
files, names of things) is made in Python, in the exectrace package.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_DECREF
from libc.stdint cimport int64_t, uint64_t, uint32_t, int32_t, uint8_t
from libc.stdlib cimport malloc, free, calloc
from libc.string cimport memset, memcpy, memmove

import gc as _gc
import sys as _sys
import threading as _threading

from exectrace.errors import ExectraceError

cdef extern from "Python.h":
    object PyMemoryView_FromMemory(char* mem, Py_ssize_t size, int flags)
    int PyBUF_READ
    ctypedef struct PyMethodDef:
        const char* ml_name
    ctypedef struct PyCodeObject:
        pass
    int PyCode_Addr2Line(PyCodeObject* code, int offset)

cdef extern from "clock.h":
    ctypedef struct et_clock_pair:
        int64_t ticks
        int64_t mono_ns
    int ET_HAVE_TICKS
    int64_t et_monotonic_ns()
    int64_t et_realtime_ns()
    int64_t et_boottime_ns()

cdef extern from "pbwire.h":
    ctypedef struct pb_buf:
        uint8_t* data
        size_t len
        size_t cap
    int pb_reserve(pb_buf* b, size_t extra) nogil
    void pb_free(pb_buf* b) nogil
    void* pb_alloc(size_t n) nogil
    void pb_dealloc(void* p, size_t n) nogil
    size_t pb_varint_size(uint64_t v) nogil
    void pb_varint(pb_buf* b, uint64_t v) nogil
    void pb_field_varint(pb_buf* b, uint32_t field, uint64_t v) nogil
    void pb_field_double(pb_buf* b, uint32_t field, double v) nogil
    void pb_field_bytes(pb_buf* b, uint32_t field, const void* data, size_t n) nogil
    size_t pb_open(pb_buf* b, uint32_t field) nogil
    void pb_close(pb_buf* b, size_t at) nogil
    uint64_t PB_TAG(uint32_t field, uint32_t wire) nogil
    ctypedef struct pb_reader:
        const uint8_t* p
        const uint8_t* end
    ctypedef struct pb_field:
        uint32_t number
        uint32_t wire
        uint64_t value
        const uint8_t* data
        size_t size
    int pb_next(pb_reader* r, pb_field* f) nogil
    pb_reader pb_sub(const pb_field* f) nogil
    int pb_read_varint(pb_reader* r, uint64_t* out) nogil
    enum:
        PB_VARINT
        PB_FIXED64
        PB_LEN
        PB_FIXED32

cdef extern from "recorder.h":
    int ET_HAS_SYS_MONITORING
    uint32_t ET_HIDDEN
    enum:
        ET_FUNC_PY
        ET_FUNC_C
        ET_FUNC_REGION
        ET_REC_CALL
        ET_REC_STEP
        ET_REC_CREATE
        ET_REC_BLOCK
        ET_REC_SAMPLE
    ctypedef struct et_record:
        int64_t start
        int64_t end
        uint32_t func
        uint32_t thread
        uint32_t depth
        uint32_t flags
    ctypedef struct et_gc_record:
        int64_t start
        int64_t end
        uint32_t thread
        int32_t generation
        int64_t collected
        int64_t uncollectable
    ctypedef struct et_thread:
        PyObject* pythread
        uint64_t ident
        uint64_t native_id
        uint32_t index
        uint32_t attached
        uint32_t depth
    ctypedef struct et_func:
        void* key
        PyObject* obj
        uint8_t kind
        uint8_t excluded
    ctypedef struct et_event:
        int64_t ts
        uint64_t task
        uint32_t thread
        uint32_t kind
        PyObject* a
        PyObject* b
    ctypedef struct et_stacks:
        pass
    ctypedef struct et_capture:
        et_record* ring
        uint64_t capacity
        uint64_t pos
        uint64_t written
        et_thread** threads
        uint32_t n_threads
        et_func* funcs
        uint32_t n_funcs
        et_gc_record* gc
        uint32_t n_gc
        uint64_t gc_lost
        uint64_t dropped_calls
        PyObject** tasks
        uint32_t n_tasks
        et_event* events
        uint32_t n_events
        uint64_t events_lost
        et_clock_pair start_clock
        et_clock_pair stop_clock
        int64_t start_realtime_ns
        int64_t stop_realtime_ns
        int use_ticks
        int events_mode
        et_stacks* stacks
        uint64_t samples
    ctypedef int (*Py_tracefunc)(PyObject*, void*, int, PyObject*)
    struct _R:
        int active
        et_capture* cap
        PyObject* disable
        PyObject* threading_active
    _R R
    void et_capture_free(et_capture* c)
    int64_t et_ns_to_ticks(const et_capture* c, int64_t ns)
    int et_begin(uint64_t capacity, int use_ticks, int c_calls, int64_t min_duration_ns,
                 uint32_t max_depth, object include_prefixes, object exclude_prefixes,
                 int events_mode) except -1
    int et_seed_frame(uint64_t ident, uint64_t native_id, object code, object pythread) except -1
    void et_activate()
    et_capture* et_end()
    void et_after_fork_child()
    int et_ignore_thread(uint64_t ident, int on) except -1
    void et_set_asyncio(object running_loop, object current_tasks, object create_task_code)
    int et_init_strings() except -1
    object et_monitor_callback(int index)
    object et_make_function(int which)
    Py_tracefunc et_profile_func(int floor)
    # <= 3.11 only (compiled out on 3.12+, never called there)
    int et_set_profile_all(Py_tracefunc func, Py_tracefunc ours) except -1
    unsigned long et_foreign_profiler_thread(Py_tracefunc a, Py_tracefunc b)
    void PyEval_SetProfile(Py_tracefunc func, PyObject* obj)

# `events` mode: waits with callstacks, stack samples, asyncio steps
cdef extern from "events.h":
    ctypedef struct et_stacks_view "struct et_stacks":
        uint32_t* frame_func
        int32_t* frame_offset
        uint32_t n_frames
        uint32_t* node_parent
        uint32_t* node_frame
        uint32_t n_nodes
        uint64_t truncated
        uint64_t unrecorded
    struct _EV:
        uint64_t ticks_late
        uint64_t short_waits
    _EV EV
    int et_set_blocking(object callables, object reasons) except -1
    int et_set_asyncio_steps(object context_run, object handle_run_code, object task_type,
                             object py_task_type) except -1
    object et_events_callback(int role)
    void et_sampler_loop(int64_t interval_ns)
    void et_sampler_reset()
    void et_sampler_stop()
    void et_events_after_fork_child()
    void et_set_min_block(int64_t ticks)
    object et_make_wrapper(object func, object named_after)
    int ET_MAX_STACK

cdef extern from "annotations.h":
    object et_annotation_functions()

# exectrace.Lock / exectrace.RLock: locks that record `with lock:` waits
cdef extern from "tracedlock.h":
    object et_lock_types()

cdef extern from "zlib.h":
    ctypedef unsigned long uLong
    ctypedef unsigned long uLongf
    ctypedef unsigned char Bytef
    uLong compressBound(uLong sourceLen) nogil
    int compress2(Bytef* dest, uLongf* destLen, const Bytef* source, uLong sourceLen,
                  int level) nogil
    int Z_OK


if et_init_strings() < 0:
    raise MemoryError
_threading_active = getattr(_threading, "_active", None)
if isinstance(_threading_active, dict):
    Py_INCREF(_threading_active)
    R.threading_active = <PyObject*>_threading_active

HAS_TICKS = bool(ET_HAVE_TICKS)

# User annotations (src/native/annotations.h): one flag check when no window is open.
region, task, log, Region, Task = et_annotation_functions()
HAS_SYS_MONITORING = bool(ET_HAS_SYS_MONITORING)
Lock, RLock = et_lock_types()

# ------------------------------------------------------------------ hooks

cdef object _gc_callback = et_make_function(0)
cdef object _monitor_tool = None     # tool id in use, 3.12+
cdef object _saved_thread_hook = None
cdef bint _hooks_installed = False
cdef bint _floor_installed = False
cdef bint _events_hooks = False      # the hooks installed are `events` mode's
cdef object _local_events_code = None  # code given local events (3.12+ `events` mode)

# sys.monitoring event roles: (events, callback index in recorder.h)
_MONITOR_ROLES = (
    (("PY_START", "PY_RESUME"), 0),
    (("PY_THROW",), 1),
    (("PY_RETURN", "PY_YIELD"), 2),
    (("PY_UNWIND",), 3),
)
_MONITOR_C_ROLES = (
    (("CALL",), 4),
    (("C_RETURN", "C_RAISE"), 5),
)


def _threading_profile_hook():
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
    roles = _MONITOR_ROLES + (_MONITOR_C_ROLES if c_calls else ())
    for names, index in roles:
        if floor:
            index = 7 if names == ("CALL",) else 6
        callback = et_monitor_callback(index)
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
    _threading.setprofile(et_make_function(2 if floor else 1))


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


def _seed_current_frames():
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
    min_block_ns: waits shorter than this are not recorded.
    Samples are taken by sample_loop(), run in a thread of the caller's.
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
        if events_mode:
            if HAS_SYS_MONITORING:
                _install_events_monitoring(tool_id, asyncio_create_task_code)
        else:
            _install_hooks(tool_id, c_calls, False)
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
    mon.register_callback(tool_id, events.CALL, et_events_callback(0))
    c_return = et_events_callback(1)
    mon.register_callback(tool_id, events.C_RETURN, c_return)
    mon.register_callback(tool_id, events.C_RAISE, c_return)
    mon.restart_events()
    mon.set_events(tool_id, events.CALL | events.C_RETURN | events.C_RAISE)
    if create_task_code is not None:
        mon.register_callback(tool_id, events.PY_START, et_monitor_callback(0))
        mon.register_callback(tool_id, events.PY_RETURN, et_monitor_callback(2))
        mon.set_local_events(tool_id, create_task_code, events.PY_START | events.PY_RETURN)
        global _local_events_code
        _local_events_code = create_task_code


def wait_wrapper(func, named_after):
    """<= 3.11 `events` windows: a callable that calls func and records each
    call as a wait in the C function named_after (exectrace/_waits.py puts
    them in place for a window). Binds like a function in a class."""
    return et_make_wrapper(func, named_after)


def step_wrapper(func):
    """<= 3.11 `events` windows: wraps asyncio's Handle._run to record task steps."""
    return et_make_wrapper(func, None)


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
        "callstacks": (<et_stacks_view*>c.stacks).n_nodes if c.stacks != NULL else 0,
        "callstacks_truncated": (<et_stacks_view*>c.stacks).truncated if c.stacks != NULL else 0,
        "sampler_ticks_late": EV.ticks_late if c.events_mode else 0,
        "short_waits": EV.short_waits if c.events_mode else 0,
    }


def line_of(code, int offset):
    """The line a bytecode offset (bytes) of a code object is on, or its first line."""
    if offset < 0:
        return code.co_firstlineno
    return PyCode_Addr2Line(<PyCodeObject*>code, offset)


def after_fork_child():
    """In a forked child: drop the parent's window and hooks without writing."""
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


# ----------------------------------------------------------------- writer
#
# A window becomes one Perfetto trace (protos/perfetto/trace/trace.proto):
#
#   sequence 1     clock snapshot (MONOTONIC, REALTIME), track descriptors
#                  (process, GC, exectrace, one per thread), the window slice
#                  carrying the metadata, GC slices (absolute MONOTONIC ns)
#   sequence 2+i   thread i's calls as SLICE_BEGIN/SLICE_END, timestamps as
#                  deltas on a sequence-scoped incremental clock (id 64),
#                  names and source locations interned on first use
#
# Records arrive in the order calls returned (children before parents); per
# thread they are rebuilt into a tree and walked in order to produce begin
# and end events with non-decreasing timestamps.

cdef enum:
    # TracePacket
    F_PACKET = 1
    F_CLOCK_SNAPSHOT = 6
    F_TIMESTAMP = 8
    F_SEQUENCE_ID = 10
    F_TRACK_EVENT = 11
    F_INTERNED_DATA = 12
    F_SEQUENCE_FLAGS = 13
    F_COMPRESSED_PACKETS = 50
    F_TIMESTAMP_CLOCK_ID = 58
    F_PACKET_DEFAULTS = 59
    F_TRACK_DESCRIPTOR = 60
    # TrackEvent
    F_TE_CATEGORY_IIDS = 3
    F_TE_DEBUG_ANNOTATIONS = 4
    F_TE_TYPE = 9
    F_TE_NAME_IID = 10
    F_TE_TRACK_UUID = 11
    F_TE_NAME = 23
    F_TE_SOURCE_LOCATION_IID = 34
    # values
    TYPE_SLICE_BEGIN = 1
    TYPE_SLICE_END = 2
    TYPE_INSTANT = 3
    SEQ_INCREMENTAL_STATE_CLEARED = 1
    CLOCK_REALTIME = 1
    CLOCK_MONOTONIC = 3
    CLOCK_INCREMENTAL = 64
    SEQ_GLOBAL = 1
    SEQ_FIRST_THREAD = 2
    CATEGORY_C = 1
    CATEGORY_REGION = 2
    CATEGORY_FIRST_REASON = 3
    ANNOTATION_BLOCKING = 1
    ANNOTATION_STACK = 2
    # InternedData.debug_annotation_string_values; DebugAnnotation.string_value_iid
    F_INTERNED_ANNOTATION_STRINGS = 29
    F_INTERNED_FUNCTION_NAMES = 5
    F_INTERNED_FRAMES = 6
    F_INTERNED_CALLSTACKS = 7
    F_INTERNED_MAPPING_PATHS = 17
    F_INTERNED_MAPPINGS = 19
    F_PERF_SAMPLE = 66
    F_DA_STRING_VALUE_IID = 17
    # uncompressed bytes per compressed_packets chunk (Perfetto reads < 512 KiB)
    CHUNK_BYTES = 256 * 1024

UUID_PROCESS = 0
UUID_GC = 1
UUID_META = 2
UUID_THREAD0 = 16


cdef struct Out:
    pb_buf chunk      # packets not yet flushed
    pb_buf out        # the file so far
    int compress      # zlib level, 0: no compression
    int failed
    PyObject* compressor  # a Python zlib-format compressor used instead of zlib's compress2


cdef int out_append_compressed(Out* o, const uint8_t* data, size_t clen) noexcept nogil:
    """Appends packet { compressed_packets = data }."""
    if pb_reserve(&o.out, clen + 32) < 0:
        return -1
    pb_varint(&o.out, PB_TAG(F_PACKET, PB_LEN))
    pb_varint(&o.out, 2 + pb_varint_size(clen) + clen)
    pb_varint(&o.out, PB_TAG(F_COMPRESSED_PACKETS, PB_LEN))
    pb_varint(&o.out, clen)
    memmove(o.out.data + o.out.len, data, clen)
    o.out.len += clen
    return 0


cdef int out_flush_with(Out* o) noexcept with gil:
    cdef const uint8_t[::1] view
    try:
        compressed = (<object>o.compressor)(
            PyMemoryView_FromMemory(<char*>o.chunk.data, o.chunk.len, PyBUF_READ))
        view = compressed
        if out_append_compressed(o, &view[0], view.shape[0]) < 0:
            return -1
    except BaseException:
        return -1
    o.chunk.len = 0
    return 0


cdef int out_flush(Out* o) noexcept nogil:
    """Moves the chunk into the file, zlib-compressed into a compressed_packets packet."""
    cdef uLongf clen
    cdef size_t inner, at
    if o.chunk.len == 0:
        return 0
    if o.compress <= 0:
        if pb_reserve(&o.out, o.chunk.len) < 0:
            return -1
        memcpy(o.out.data + o.out.len, o.chunk.data, o.chunk.len)
        o.out.len += o.chunk.len
        o.chunk.len = 0
        return 0
    if o.compressor != NULL:
        return out_flush_with(o)
    clen = compressBound(o.chunk.len)
    if pb_reserve(&o.out, clen + 32) < 0:
        return -1
    # The lengths are known only after compressing: compress past the largest
    # header, then move the bytes down behind the real one.
    at = o.out.len + 16
    if compress2(o.out.data + at, &clen, o.chunk.data, o.chunk.len, o.compress) != Z_OK:
        return -1
    if out_append_compressed(o, o.out.data + at, clen) < 0:
        return -1
    o.chunk.len = 0
    return 0


cdef inline int out_packet_done(Out* o) noexcept nogil:
    if o.chunk.len >= CHUNK_BYTES:
        if out_flush(o) < 0:
            o.failed = 1
            return -1
    return 0


cdef inline int put_event(pb_buf* b, uint64_t delta, uint32_t seq, uint32_t type,
                          const uint8_t* tail, size_t tail_len,
                          const uint8_t* interned, size_t interned_len) noexcept nogil:
    """One TrackEvent packet on a thread's sequence (its track is the default).
    tail: the event's fields after its type (name, categories, source
    location, arguments), prebuilt per function."""
    cdef size_t te = 2 + tail_len
    cdef size_t body = 1 + pb_varint_size(delta) + 1 + pb_varint_size(seq) + 1 + pb_varint_size(te) + te
    if interned_len:
        body += 1 + pb_varint_size(interned_len) + interned_len
    if pb_reserve(b, body + 10) < 0:
        return -1
    pb_varint(b, PB_TAG(F_PACKET, PB_LEN))
    pb_varint(b, body)
    pb_field_varint(b, F_TIMESTAMP, delta)
    pb_field_varint(b, F_SEQUENCE_ID, seq)
    pb_varint(b, PB_TAG(F_TRACK_EVENT, PB_LEN))
    pb_varint(b, te)
    pb_field_varint(b, F_TE_TYPE, type)
    if tail_len:
        memcpy(b.data + b.len, tail, tail_len)
        b.len += tail_len
    if interned_len:
        pb_field_bytes(b, F_INTERNED_DATA, interned, interned_len)
    return 0


cdef struct Clock:
    int64_t t0       # ticks at the window's start
    int64_t ns0      # monotonic ns at the window's start
    double scale     # ns per tick


cdef inline int64_t to_ns(const Clock* k, int64_t ticks) noexcept nogil:
    return k.ns0 + <int64_t>(<double>(ticks - k.t0) * k.scale)


cdef struct Begin:
    int64_t start
    uint32_t func
    uint32_t depth       # ancestors in the rebuilt forest
    uint32_t stack       # a wait's callstack id (`events` mode), 0: none


cdef struct ThreadPass:
    # scratch arrays sized for the largest thread
    int32_t* parent      # pass 1: parent (index in write order); pass 2: forest depth
    int32_t* size        # pass 1: subtree size; pass 2: next free pre-order slot from the end
    int32_t* pending
    Begin* pre           # the begins in pre-order
    uint8_t* defined     # per function: name interned on this sequence yet
    uint8_t* stack_defined  # per callstack id: its text interned on this sequence yet
    const StackBytes* stacks  # per callstack id (index 0 unused), or NULL
    uint32_t n_stacks
    pb_buf scratch       # an event's fields and interned data when a callstack adds to them


cdef struct FuncBytes:
    # per function: its begin events' fields after the type, and the
    # InternedData that defines its name (and source location) on a sequence
    const uint8_t* tail
    size_t tail_len
    const uint8_t* blob
    size_t blob_len


cdef struct StackBytes:
    # per callstack: InternedData defining its text as an annotation string
    const uint8_t* blob
    size_t blob_len


cdef int emit_with_stack(Out* o, uint64_t delta, uint32_t seq, uint32_t type, uint32_t f,
                         uint32_t stack, ThreadPass* w, const FuncBytes* fb) noexcept nogil:
    """A begin event with a `stack` argument naming an interned callstack text."""
    cdef pb_buf* b = &w.scratch
    cdef size_t tail_len, at
    b.len = 0
    if pb_reserve(b, fb[f].tail_len + 32) < 0:
        return -1
    memcpy(b.data, fb[f].tail, fb[f].tail_len)
    b.len = fb[f].tail_len
    at = pb_open(b, F_TE_DEBUG_ANNOTATIONS)
    pb_field_varint(b, 1, ANNOTATION_STACK)
    pb_field_varint(b, F_DA_STRING_VALUE_IID, stack)
    pb_close(b, at)
    tail_len = b.len
    if not w.defined[f]:
        w.defined[f] = 1
        if pb_reserve(b, fb[f].blob_len) < 0:
            return -1
        memcpy(b.data + b.len, fb[f].blob, fb[f].blob_len)
        b.len += fb[f].blob_len
    if not w.stack_defined[stack]:
        w.stack_defined[stack] = 1
        if pb_reserve(b, w.stacks[stack].blob_len) < 0:
            return -1
        memcpy(b.data + b.len, w.stacks[stack].blob, w.stacks[stack].blob_len)
        b.len += w.stacks[stack].blob_len
    return put_event(&o.chunk, delta, seq, type, b.data, tail_len, b.data + tail_len,
                     b.len - tail_len)


cdef inline int emit(Out* o, const Clock* k, int64_t ticks, int64_t* prev_ns, uint32_t seq,
                     uint32_t type, uint32_t f, ThreadPass* w,
                     const FuncBytes* fb, uint32_t stack) noexcept nogil:
    cdef int64_t now_ns = to_ns(k, ticks)
    cdef int rc
    if now_ns < prev_ns[0]:
        now_ns = prev_ns[0]
    if stack != 0 and stack < w.n_stacks and type != TYPE_SLICE_END:
        rc = emit_with_stack(o, <uint64_t>(now_ns - prev_ns[0]), seq, type, f, stack, w, fb)
    elif type == TYPE_SLICE_END:
        rc = put_event(&o.chunk, <uint64_t>(now_ns - prev_ns[0]), seq, type, NULL, 0, NULL, 0)
    elif w.defined[f]:
        rc = put_event(&o.chunk, <uint64_t>(now_ns - prev_ns[0]), seq, type,
                       fb[f].tail, fb[f].tail_len, NULL, 0)
    else:
        w.defined[f] = 1
        rc = put_event(&o.chunk, <uint64_t>(now_ns - prev_ns[0]), seq, type,
                       fb[f].tail, fb[f].tail_len, fb[f].blob, fb[f].blob_len)
    prev_ns[0] = now_ns
    if rc < 0:
        return -1
    return out_packet_done(o)


cdef int encode_thread(Out* o, const et_capture* c, const Clock* k, const uint32_t* idx,
                       uint32_t n, uint32_t seq, ThreadPass* w,
                       const FuncBytes* fb) noexcept nogil:
    """The events of one thread; idx lists its records in the order they were
    written, which is the post-order of its call forest (children before
    parents).  The ends go out in that order; the begins in pre-order, and a
    begin is preceded by exactly the ends of the nodes before it in pre-order
    that are not its ancestors.  Every pass reads its arrays in sequence."""
    cdef const et_record* ring = c.ring
    cdef const et_record* r
    cdef const et_record* top
    cdef int64_t npend = 0, i, j, p, pos, size, roots_end = n, ends = 0
    cdef int64_t prev_ns = k.ns0
    # locals, not w's fields: stores through them cannot alias w
    cdef int32_t* parent = w.parent
    cdef int32_t* sizes = w.size
    cdef int32_t* pending = w.pending
    cdef Begin* pre = w.pre
    # 1. Parents and subtree sizes: a record adopts the pending records that
    #    lie inside it (started later, or at the same tick deeper).
    for i in range(n):
        r = &ring[idx[i]]
        size = 1
        while npend > 0:
            j = pending[npend - 1]
            top = &ring[idx[j]]
            if top.start > r.start or (top.start == r.start and top.depth > r.depth):
                npend -= 1
                parent[j] = <int32_t>i
                size += sizes[j]
            else:
                break
        sizes[i] = <int32_t>size
        parent[i] = -1
        pending[npend] = <int32_t>i
        npend += 1
    # 2. Pre-order slots, parents before children: a node takes the last
    #    free slots of its parent's range (children come back to front).
    for i in range(n - 1, -1, -1):
        p = parent[i]
        size = sizes[i]
        if p < 0:
            roots_end -= size
            pos = roots_end
            parent[i] = 0
        else:
            sizes[p] -= <int32_t>size
            pos = sizes[p]
            parent[i] = parent[p] + 1
        r = &ring[idx[i]]
        pre[pos].start = r.start
        pre[pos].func = r.func
        pre[pos].depth = <uint32_t>parent[i]
        pre[pos].stack = r.flags >> 8 if r.flags & 0xFF == ET_REC_BLOCK else 0
        sizes[i] = <int32_t>(pos + size)
    # 3. Merge begins (pre-order) and ends (write order).
    for i in range(n):
        while ends < i - <int64_t>pre[i].depth:
            if emit(o, k, ring[idx[ends]].end, &prev_ns, seq, TYPE_SLICE_END, 0, w,
                    fb, 0) < 0:
                return -1
            ends += 1
        if emit(o, k, pre[i].start, &prev_ns, seq, TYPE_SLICE_BEGIN, pre[i].func, w,
                fb, pre[i].stack) < 0:
            return -1
    while ends < n:
        if emit(o, k, ring[idx[ends]].end, &prev_ns, seq, TYPE_SLICE_END, 0, w,
                fb, 0) < 0:
            return -1
        ends += 1
    return 0


cdef bytes _utf8(object s):
    if isinstance(s, bytes):
        return s
    # Valid UTF-8 whatever the string holds: a lone surrogate (a name made
    # with exec, an undecodable byte of a path) is written as \udcxx.
    return str(s).encode("utf-8", "backslashreplace")


cdef class _Msg:
    """A small protobuf message builder for the rare, structured packets."""
    cdef pb_buf b
    cdef size_t opened[16]
    cdef int depth

    def __dealloc__(self):
        pb_free(&self.b)

    cdef _Msg varint(self, uint32_t field, uint64_t value):
        if pb_reserve(&self.b, 20) < 0:
            raise MemoryError
        pb_field_varint(&self.b, field, value)
        return self

    cdef _Msg double(self, uint32_t field, double value):
        if pb_reserve(&self.b, 20) < 0:
            raise MemoryError
        pb_field_double(&self.b, field, value)
        return self

    cdef _Msg string(self, uint32_t field, object value):
        cdef bytes data = _utf8(value)
        if pb_reserve(&self.b, len(data) + 20) < 0:
            raise MemoryError
        pb_field_bytes(&self.b, field, <const char*>data, len(data))
        return self

    cdef _Msg open(self, uint32_t field):
        if pb_reserve(&self.b, 20) < 0:
            raise MemoryError
        self.opened[self.depth] = pb_open(&self.b, field)
        self.depth += 1
        return self

    cdef _Msg close(self):
        self.depth -= 1
        pb_close(&self.b, self.opened[self.depth])
        return self

    cdef bytes value(self):
        return (<char*>self.b.data)[:self.b.len] if self.b.len else b""


cdef _Msg _annotation(_Msg m, str name, object value):
    """A DebugAnnotation (TrackEvent.debug_annotations) with a literal name."""
    m.open(F_TE_DEBUG_ANNOTATIONS).string(10, name)
    if isinstance(value, bool):
        m.varint(2, 1 if value else 0)
    elif isinstance(value, int):
        if value < 0:
            m.varint(4, <uint64_t>(<int64_t>value))
        else:
            m.varint(3, value)
    elif isinstance(value, float):
        m.double(5, value)
    else:
        m.string(6, str(value))
    return m.close()


cdef int _append_packet(Out* o, _Msg m) except -1:
    if pb_reserve(&o.chunk, m.b.len + 10) < 0:
        raise MemoryError
    pb_varint(&o.chunk, PB_TAG(F_PACKET, PB_LEN))
    pb_varint(&o.chunk, m.b.len)
    memcpy(o.chunk.data + o.chunk.len, m.b.data, m.b.len)
    o.chunk.len += m.b.len
    if o.chunk.len >= CHUNK_BYTES and out_flush(o) < 0:
        raise MemoryError
    return 0


cdef _Msg _global_packet(int64_t ts):
    m = _Msg()
    m.varint(F_SEQUENCE_ID, SEQ_GLOBAL).varint(F_TIMESTAMP, <uint64_t>ts)
    return m


cdef bytes _interned_blob(uint32_t iid, bint has_location, object name, object file, int line):
    """InternedData defining a function's name (and source location, for Python)."""
    m = _Msg()
    m.open(2).varint(1, iid).string(2, name).close()          # event_names
    if has_location:
        m.open(4).varint(1, iid).string(2, file).string(3, name)  # source_locations
        if line > 0:
            m.varint(4, line)
        m.close()
    return m.value()


cdef bytes _event_tail(uint32_t iid, list category_iids, bint has_location, object reason):
    """A function's begin-event fields: categories, name, location, blocking reason."""
    m = _Msg()
    for category in category_iids:
        m.varint(F_TE_CATEGORY_IIDS, category)
    m.varint(F_TE_NAME_IID, iid)
    if has_location:
        m.varint(F_TE_SOURCE_LOCATION_IID, iid)
    if reason:
        m.open(F_TE_DEBUG_ANNOTATIONS).varint(1, ANNOTATION_BLOCKING).string(6, reason).close()
    return m.value()


cdef class Capture:
    """One closed window's records, owned until released.

    Holds a reference to every code object (and C function owner) its records
    name, so encode() can name them; release() drops them.
    """
    cdef et_capture* c

    def __dealloc__(self):
        if self.c != NULL:
            et_capture_free(self.c)
            self.c = NULL

    cdef et_capture* _get(self) except NULL:
        if self.c == NULL:
            raise ExectraceError("this capture was released")
        return self.c

    def release(self):
        """Frees the records and drops the references they hold."""
        if self.c != NULL:
            et_capture_free(self.c)
            self.c = NULL

    @property
    def stats(self):
        return _capture_stats(self._get())

    @property
    def records_lost(self):
        cdef et_capture* c = self._get()
        return c.written - c.capacity if c.written > c.capacity else 0

    @property
    def start_monotonic_ns(self):
        return self._get().start_clock.mono_ns

    @property
    def stop_monotonic_ns(self):
        return self._get().stop_clock.mono_ns

    @property
    def start_realtime_ns(self):
        return self._get().start_realtime_ns

    @property
    def stop_realtime_ns(self):
        return self._get().stop_realtime_ns

    @property
    def used_ticks(self):
        return bool(self._get().use_ticks)

    def threads(self):
        """[(index, ident, native_id, Thread or None)] of every thread seen."""
        cdef et_capture* c = self._get()
        return [(c.threads[i].index, c.threads[i].ident, c.threads[i].native_id,
                 <object>c.threads[i].pythread if c.threads[i].pythread != NULL else None)
                for i in range(c.n_threads)]

    def functions(self):
        """Per function id: ("py", code) or ("c", method name, owner, defining type or None)."""
        cdef et_capture* c = self._get()
        cdef list result = []
        cdef et_func* f
        for i in range(c.n_funcs):
            f = &c.funcs[i]
            if f.kind == ET_FUNC_PY:
                result.append(("py", <object>f.obj))
            elif f.kind == ET_FUNC_REGION:
                result.append(("region", <object>f.obj))
            else:
                owner = <object>f.obj if f.obj != NULL else None
                name = (<PyMethodDef*>f.key).ml_name.decode("utf-8", "replace")
                defining = None
                if isinstance(owner, type):
                    defining = _defining_type(owner, <PyMethodDef*>f.key)
                result.append(("c", name, owner, defining))
        return result

    def tasks(self):
        """The asyncio tasks that ran a step or were created, by their number."""
        cdef et_capture* c = self._get()
        return [<object>c.tasks[i] for i in range(c.n_tasks)]

    def async_records(self):
        """[(kind, task number, thread index, func, start_ns, end_ns)] of the
        records that are asyncio task steps ("step") or create_task calls
        ("create"), oldest first."""
        cdef et_capture* c = self._get()
        cdef Clock k = self._clock()
        cdef uint64_t kept = c.written if c.written < c.capacity else c.capacity
        cdef uint64_t first = 0 if c.written <= c.capacity else c.pos
        cdef uint64_t j, pos
        cdef et_record* r
        cdef list result = []
        for j in range(kept):
            pos = (first + j) % kept
            r = &c.ring[pos]
            if r.flags & 0xFF == ET_REC_STEP:
                kind = "step"
            elif r.flags & 0xFF == ET_REC_CREATE:
                kind = "create"
            else:
                continue
            result.append((kind, r.flags >> 8, r.thread, r.func, to_ns(&k, r.start),
                           to_ns(&k, r.end)))
        return result

    def events(self):
        """[(kind, ts_ns, thread index or -1, user task id, a, b)] of the user
        annotations other than plain regions: kind is "log" (a: category, b:
        message), "task_begin"/"task_end" (a: name) or "region_begin"/
        "region_end" (a region of a task; a: name); and the hand-offs of
        traced locks (`events` mode): "handoff_release" (user task id: flow
        id << 24 | the releaser's callstack id), "handoff_acquire" (flow id)."""
        cdef et_capture* c = self._get()
        cdef Clock k = self._clock()
        cdef et_event* e
        kinds = {1: "log", 2: "task_begin", 3: "task_end", 4: "region_begin", 5: "region_end",
                 6: "handoff_release", 7: "handoff_acquire"}
        result = []
        for i in range(c.n_events):
            e = &c.events[i]
            result.append((kinds.get(e.kind, "?"), to_ns(&k, e.ts),
                           <int64_t>e.thread if e.thread < c.n_threads else -1, e.task,
                           <object>e.a if e.a != NULL else None,
                           <object>e.b if e.b != NULL else None))
        return result

    def samples(self):
        """[(thread index, ts_ns, callstack id)] of the stack samples
        (`events` mode), oldest first; callstack id 0: not recorded."""
        cdef et_capture* c = self._get()
        cdef Clock k = self._clock()
        cdef uint64_t kept = c.written if c.written < c.capacity else c.capacity
        cdef uint64_t first = 0 if c.written <= c.capacity else c.pos
        cdef uint64_t j, pos
        cdef et_record* r
        cdef list result = []
        if not c.events_mode:
            return result
        for j in range(kept):
            pos = (first + j) % kept
            r = &c.ring[pos]
            if r.flags & 0xFF == ET_REC_SAMPLE:
                result.append((r.thread, to_ns(&k, r.start), r.flags >> 8))
        return result

    def callstacks(self):
        """The interned callstacks (`events` mode) as two lists: frames, where
        frames[i - 1] is (function id, bytecode offset or -1) of frame id i,
        and callstacks, where callstacks[i - 1] is (parent callstack id or 0,
        frame id) of callstack id i, the frame being its innermost."""
        cdef et_capture* c = self._get()
        cdef et_stacks_view* s = <et_stacks_view*>c.stacks
        if s == NULL:
            return [], []
        frames = [(s.frame_func[i], s.frame_offset[i]) for i in range(1, s.n_frames + 1)]
        stacks = [(s.node_parent[i], s.node_frame[i]) for i in range(1, s.n_nodes + 1)]
        return frames, stacks

    def block_callstacks(self):
        """The callstack ids the kept waits name (`events` mode)."""
        cdef et_capture* c = self._get()
        cdef uint64_t kept = c.written if c.written < c.capacity else c.capacity
        cdef uint64_t j
        cdef set result = set()
        if c.events_mode:
            for j in range(kept):
                if c.ring[j].flags & 0xFF == ET_REC_BLOCK and c.ring[j].flags >> 8:
                    result.add(c.ring[j].flags >> 8)
        return result

    cdef Clock _clock(self):
        cdef et_capture* c = self.c
        cdef Clock k
        k.t0 = c.start_clock.ticks
        k.ns0 = c.start_clock.mono_ns
        k.scale = 1.0
        if c.use_ticks and c.stop_clock.ticks > c.start_clock.ticks:
            k.scale = (<double>(c.stop_clock.mono_ns - c.start_clock.mono_ns) /
                       <double>(c.stop_clock.ticks - c.start_clock.ticks))
        return k

    def encode(self, *, list names, list thread_names, int pid, str process_name,
               list metadata, int compress_level=1, object compressor=None,
               list blocking=None, list extra_packets=None, list stack_texts=None):
        """The window as Perfetto protobuf bytes.

        names: per function id, (name, file, first line);
        thread_names: per thread index; metadata: [(key, value)] shown on the
        window slice; compress_level: zlib level of compressed_packets, 0 for
        none; compressor: a callable turning bytes into zlib-format bytes, used
        instead of the built-in zlib when given (and compress_level > 0);
        blocking: per function id, the reason it blocks ("io", "lock", ...) or
        "" (the reason becomes a category and a "blocking" argument);
        extra_packets: encoded TracePackets appended after the threads'
        (on sequences from first_free_sequence(), see track_uuid());
        stack_texts: per callstack id - 1, the text a wait's `stack` argument
        shows (`events` mode).
        """
        cdef et_capture* c = self._get()
        if len(names) != c.n_funcs or len(thread_names) != c.n_threads:
            raise ValueError("names and thread_names must cover every function and thread")
        if blocking is not None and len(blocking) != c.n_funcs:
            raise ValueError("blocking must cover every function")
        cdef Clock k = self._clock()
        cdef int64_t start_ns = c.start_clock.mono_ns
        cdef int64_t stop_ns = c.stop_clock.mono_ns
        cdef uint64_t base = (<uint64_t>(pid & 0x3FFFFFFF) + 1) << 32
        cdef Out o
        memset(&o, 0, sizeof(Out))
        o.compress = compress_level
        o.compressor = <PyObject*>compressor if (compressor is not None and compress_level > 0) else NULL
        if pb_reserve(&o.chunk, CHUNK_BYTES + 65536) < 0:
            raise MemoryError
        cdef ThreadPass w
        memset(&w, 0, sizeof(ThreadPass))
        cdef uint32_t* order = NULL
        cdef uint64_t* offsets = NULL
        cdef FuncBytes* fb = NULL
        cdef StackBytes* sb = NULL
        cdef uint32_t n_stacks = len(stack_texts) + 1 if stack_texts else 0
        cdef bytes tail, blob
        cdef uint64_t kept, first, j, pos, largest = 0
        cdef size_t order_bytes = 0, scratch_bytes = 0
        cdef uint32_t t
        cdef int rc = 0
        cdef list blob_objects = []
        cdef _Msg m
        cdef et_gc_record* g
        try:
            # --- sequence 1: clocks, tracks, metadata, GC
            m = _global_packet(start_ns).varint(F_SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
            m.varint(F_TIMESTAMP_CLOCK_ID, CLOCK_MONOTONIC)
            m.open(F_CLOCK_SNAPSHOT)
            m.open(1).varint(1, CLOCK_MONOTONIC).varint(2, <uint64_t>start_ns).close()
            m.open(1).varint(1, CLOCK_REALTIME).varint(2, <uint64_t>c.start_realtime_ns).close()
            m.varint(2, CLOCK_MONOTONIC).close()
            m.open(F_PACKET_DEFAULTS).varint(F_TIMESTAMP_CLOCK_ID, CLOCK_MONOTONIC).close()
            _append_packet(&o, m)
            m = _global_packet(start_ns).open(F_TRACK_DESCRIPTOR).varint(1, base + UUID_PROCESS)
            m.open(3).varint(1, pid).string(6, process_name).close().close()
            _append_packet(&o, m)
            for uuid, name in ((UUID_META, "exectrace"), (UUID_GC, "GC")):
                m = _global_packet(start_ns).open(F_TRACK_DESCRIPTOR).varint(1, base + uuid)
                m.varint(5, base + UUID_PROCESS).string(2, name).close()
                _append_packet(&o, m)
            for t in range(c.n_threads):
                m = _global_packet(start_ns).open(F_TRACK_DESCRIPTOR)
                m.varint(1, base + UUID_THREAD0 + t).open(4).varint(1, pid)
                m.varint(2, c.threads[t].native_id or c.threads[t].ident & 0x7FFFFFFF)
                m.string(5, thread_names[t]).close().close()
                _append_packet(&o, m)
            m = _global_packet(start_ns).open(F_TRACK_EVENT)
            m.varint(F_TE_TYPE, TYPE_SLICE_BEGIN).varint(F_TE_TRACK_UUID, base + UUID_META)
            m.string(F_TE_NAME, "exectrace window")
            for key, value in metadata:
                _annotation(m, key, value)
            _append_packet(&o, m.close())
            if self.records_lost:
                m = _global_packet(start_ns).open(F_TRACK_EVENT)
                m.varint(F_TE_TYPE, TYPE_INSTANT).varint(F_TE_TRACK_UUID, base + UUID_META)
                m.string(F_TE_NAME, "records lost")
                _annotation(m, "count", self.records_lost)
                _append_packet(&o, m.close())
            for j in range(c.n_gc):
                g = &c.gc[j]
                m = _global_packet(to_ns(&k, g.start)).open(F_TRACK_EVENT)
                m.varint(F_TE_TYPE, TYPE_SLICE_BEGIN).varint(F_TE_TRACK_UUID, base + UUID_GC)
                m.string(F_TE_NAME, f"GC gen{g.generation}")
                _annotation(m, "generation", g.generation)
                _annotation(m, "collected", g.collected)
                _annotation(m, "uncollectable", g.uncollectable)
                if g.thread < c.n_threads:
                    _annotation(m, "thread", thread_names[g.thread])
                _append_packet(&o, m.close())
                m = _global_packet(max(to_ns(&k, g.end), to_ns(&k, g.start))).open(F_TRACK_EVENT)
                m.varint(F_TE_TYPE, TYPE_SLICE_END).varint(F_TE_TRACK_UUID, base + UUID_GC)
                _append_packet(&o, m.close())
            m = _global_packet(stop_ns).open(F_TRACK_EVENT)
            m.varint(F_TE_TYPE, TYPE_SLICE_END).varint(F_TE_TRACK_UUID, base + UUID_META)
            _append_packet(&o, m.close())

            # --- per function: interned name and begin-event fields, prebuilt
            categories = {"c": CATEGORY_C, "region": CATEGORY_REGION}
            fb = <FuncBytes*>calloc(c.n_funcs + 1, sizeof(FuncBytes))
            if fb == NULL:
                raise MemoryError
            for j in range(c.n_funcs):
                name, file, line = names[j]
                reason = blocking[j] if blocking is not None else ""
                kind = c.funcs[j].kind
                has_location = kind == ET_FUNC_PY
                cats = []
                if kind == ET_FUNC_C:
                    cats.append(CATEGORY_C)
                elif kind == ET_FUNC_REGION:
                    cats.append(CATEGORY_REGION)
                if reason:
                    if reason not in categories:
                        categories[reason] = CATEGORY_FIRST_REASON + len(categories) - 2
                    cats.append(categories[reason])
                blob = _interned_blob(<uint32_t>(j + 1), has_location, name, file or "", line or 0)
                tail = _event_tail(<uint32_t>(j + 1), cats, has_location, reason)
                blob_objects.append(blob)
                blob_objects.append(tail)
                fb[j].blob = <const uint8_t*><const char*>blob
                fb[j].blob_len = len(blob)
                fb[j].tail = <const uint8_t*><const char*>tail
                fb[j].tail_len = len(tail)
            sequence_names = _sequence_interned(categories, n_stacks > 0)
            if n_stacks:
                sb = <StackBytes*>calloc(n_stacks, sizeof(StackBytes))
                w.stack_defined = <uint8_t*>malloc(n_stacks)
                if sb == NULL or w.stack_defined == NULL:
                    raise MemoryError
                for j in range(1, n_stacks):
                    m = _Msg().open(F_INTERNED_ANNOTATION_STRINGS).varint(1, j)
                    blob = m.string(2, stack_texts[j - 1]).close().value()
                    blob_objects.append(blob)
                    sb[j].blob = <const uint8_t*><const char*>blob
                    sb[j].blob_len = len(blob)
                w.stacks = sb
                w.n_stacks = n_stacks

            # --- group the ring's records by thread, oldest first
            kept = c.written if c.written < c.capacity else c.capacity
            first = 0 if c.written <= c.capacity else c.pos
            order_bytes = (kept + 1) * sizeof(uint32_t)
            order = <uint32_t*>pb_alloc(order_bytes)
            offsets = <uint64_t*>calloc(c.n_threads + 1, sizeof(uint64_t))
            if order == NULL or offsets == NULL:
                raise MemoryError
            with nogil:
                # the ring, oldest first, is [first, kept) then [0, first)
                for j in range(kept):
                    if c.ring[j].flags & 0xFF != ET_REC_SAMPLE:
                        offsets[c.ring[j].thread + 1] += 1
                for t in range(c.n_threads):
                    if offsets[t + 1] > largest:
                        largest = offsets[t + 1]
                    offsets[t + 1] += offsets[t]
                for pos in range(first, kept):
                    if c.ring[pos].flags & 0xFF != ET_REC_SAMPLE:
                        t = c.ring[pos].thread
                        order[offsets[t]] = <uint32_t>pos
                        offsets[t] += 1
                for pos in range(first):
                    if c.ring[pos].flags & 0xFF != ET_REC_SAMPLE:
                        t = c.ring[pos].thread
                        order[offsets[t]] = <uint32_t>pos
                        offsets[t] += 1
            # offsets[t] is now the end of thread t's run; its start is offsets[t-1]
            scratch_bytes = (largest + 1) * sizeof(int32_t)
            w.parent = <int32_t*>pb_alloc(scratch_bytes)
            w.size = <int32_t*>pb_alloc(scratch_bytes)
            w.pending = <int32_t*>pb_alloc(scratch_bytes)
            w.pre = <Begin*>pb_alloc((largest + 1) * sizeof(Begin))
            w.defined = <uint8_t*>malloc(c.n_funcs + 1)
            if not (w.parent and w.size and w.pending and w.pre and w.defined):
                raise MemoryError

            # --- one sequence per thread
            for t in range(c.n_threads):
                first = offsets[t - 1] if t > 0 else 0
                if offsets[t] == first:
                    continue
                m = Msg_first_on_sequence(SEQ_FIRST_THREAD + t, start_ns, base + UUID_THREAD0 + t,
                                          sequence_names)
                _append_packet(&o, m)
                with nogil:
                    memset(w.defined, 0, c.n_funcs + 1)
                    if n_stacks:
                        memset(w.stack_defined, 0, n_stacks)
                    rc = encode_thread(&o, c, &k, order + first, <uint32_t>(offsets[t] - first),
                                       SEQ_FIRST_THREAD + t, &w, fb)
                if rc < 0 or o.failed:
                    raise MemoryError
            for packet in extra_packets or ():
                _append_raw_packet(&o, packet)
            with nogil:
                rc = out_flush(&o)
            if rc < 0:
                raise MemoryError
            return (<char*>o.out.data)[:o.out.len] if o.out.len else b""
        finally:
            pb_free(&o.chunk)
            pb_free(&o.out)
            pb_dealloc(order, order_bytes)
            free(offsets)
            free(fb)
            free(sb)
            free(w.stack_defined)
            pb_free(&w.scratch)
            pb_dealloc(w.parent, scratch_bytes)
            pb_dealloc(w.size, scratch_bytes)
            pb_dealloc(w.pending, scratch_bytes)
            pb_dealloc(w.pre, (largest + 1) * sizeof(Begin))
            free(w.defined)


cdef bytes _sequence_interned(dict categories, bint with_stack):
    """InternedData every thread sequence starts with: the event categories and
    the debug annotation names its begin events use."""
    m = _Msg()
    for name, iid in categories.items():
        m.open(1).varint(1, iid).string(2, name).close()
    m.open(3).varint(1, ANNOTATION_BLOCKING).string(2, "blocking").close()
    if with_stack:
        m.open(3).varint(1, ANNOTATION_STACK).string(2, "stack").close()
    return m.value()


cdef int _append_raw_packet(Out* o, bytes packet) except -1:
    cdef size_t n = len(packet)
    if pb_reserve(&o.chunk, n + 10) < 0:
        raise MemoryError
    pb_varint(&o.chunk, PB_TAG(F_PACKET, PB_LEN))
    pb_varint(&o.chunk, n)
    memcpy(o.chunk.data + o.chunk.len, <const char*>packet, n)
    o.chunk.len += n
    if o.chunk.len >= CHUNK_BYTES and out_flush(o) < 0:
        raise MemoryError
    return 0


def track_uuid(int pid, str what, int index=0):
    """The uuid of a track of a file written for process `pid`: "process",
    "meta" (the exectrace track), "thread" (by thread index), or "extra"
    (tracks of extra packets, by index)."""
    cdef uint64_t base = (<uint64_t>(pid & 0x3FFFFFFF) + 1) << 32
    if what == "process":
        return base + UUID_PROCESS
    if what == "thread":
        return base + UUID_THREAD0 + index
    if what == "meta":
        return base + UUID_META
    if what == "extra":
        return base + 0x80000000 + index
    raise ValueError(what)


def first_free_sequence(int n_threads):
    """The first packet sequence id encode() leaves to extra packets."""
    return SEQ_FIRST_THREAD + n_threads


cdef _Msg Msg_first_on_sequence(uint32_t seq, int64_t start_ns, uint64_t track_uuid,
                                bytes interned):
    """Clears the sequence's state and declares its incremental clock and track."""
    m = _Msg()
    m.varint(F_SEQUENCE_ID, seq).varint(F_SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
    m.varint(F_TIMESTAMP, <uint64_t>start_ns).varint(F_TIMESTAMP_CLOCK_ID, CLOCK_MONOTONIC)
    m.open(F_CLOCK_SNAPSHOT)
    m.open(1).varint(1, CLOCK_MONOTONIC).varint(2, <uint64_t>start_ns).close()
    m.open(1).varint(1, CLOCK_INCREMENTAL).varint(2, <uint64_t>start_ns).varint(3, 1).close()
    m.close()
    m.open(F_PACKET_DEFAULTS).varint(F_TIMESTAMP_CLOCK_ID, CLOCK_INCREMENTAL)
    m.open(11).varint(11, track_uuid).close().close()
    if interned:
        if pb_reserve(&m.b, len(interned) + 20) < 0:
            raise MemoryError
        pb_field_bytes(&m.b, F_INTERNED_DATA, <const char*>interned, len(interned))
    return m


cdef object _defining_type(object cls, PyMethodDef* ml):
    """The class in cls's MRO whose method table holds ml (else cls)."""
    cdef PyTypeObject* t
    cdef PyMethodDef* defs
    for klass in getattr(cls, "__mro__", (cls,)):
        t = <PyTypeObject*>klass
        defs = <PyMethodDef*>t.tp_methods
        if defs == NULL:
            continue
        while defs.ml_name != NULL:
            if defs == ml:
                return klass
            defs += 1
    return cls



# ----------------------------------------------------------------- reader
#
# Perfetto protobuf back into columns, for exectrace.read() and the analysis
# commands.  It understands the TrackEvent subset trace files use (exectrace's
# own and any SDK-written track-event trace): packets, compressed_packets,
# sequence-scoped interning and incremental clocks, track descriptors,
# begin/end/instant/counter events, debug annotations and log messages.
# Damaged input never raises from the middle: decoding stops at the first
# malformed packet and `error` says where; what came before is kept.

import array as _array
import zlib as _zlib

cdef enum:
    MAX_NESTING = 16
    MAX_INFLATED = 64 * 1024 * 1024
    INFLATE_RATIO = 32
    MAX_PROBLEMS = 1000

# Timestamps are int64 nanoseconds; outside [0, 2**63) a file is damaged.
_MAX_TS = 2**63 - 1


cdef class _Sequence:
    cdef dict names          # iid -> string index
    cdef dict categories     # iid -> string index
    cdef dict locations      # iid -> (file index, function index, line)
    cdef dict annotation_names
    cdef dict log_bodies
    cdef object default_clock
    cdef object default_track
    cdef dict clocks         # incremental clock id -> last value
    cdef bint cleared

    cdef dict annotation_strings  # iid -> str (debug annotation string values)
    cdef dict function_names      # iid -> string index
    cdef dict mapping_paths       # iid -> string index
    cdef dict mappings            # iid -> string index of its path
    cdef dict frames              # iid -> (function string index, file string index, line)
    cdef dict callstacks          # iid -> tuple of frame iids, outermost first

    def __cinit__(self):
        self.annotation_strings = {}
        self.function_names = {}
        self.mapping_paths = {}
        self.mappings = {}
        self.frames = {}
        self.callstacks = {}
        self.names = {}
        self.categories = {}
        self.locations = {}
        self.annotation_names = {}
        self.log_bodies = {}
        self.clocks = {}
        self.default_clock = None
        self.default_track = None
        self.cleared = False

    cdef reset(self):
        self.names.clear()
        self.categories.clear()
        self.locations.clear()
        self.annotation_names.clear()
        self.log_bodies.clear()
        self.clocks.clear()
        self.annotation_strings.clear()
        self.function_names.clear()
        self.mapping_paths.clear()
        self.mappings.clear()
        self.frames.clear()
        self.callstacks.clear()
        self.cleared = True


class DecodeError(Exception):
    pass


class _FoundWindow(Exception):
    """Ends a metadata-only decode."""


WINDOW_SLICE_NAME = "exectrace window"


cdef class _Decoder:
    cdef public list strings
    cdef dict string_index
    cdef dict sequences
    cdef public dict tracks           # uuid -> dict
    cdef dict open_slices             # uuid -> list of open begin tuples
    cdef dict last_ts                 # uuid -> last timestamp on the track
    # slice columns
    cdef public object s_track, s_ts, s_dur, s_depth, s_name, s_cat, s_file, s_line, s_args
    cdef public list args             # list of dicts, referenced by s_args
    cdef public list instants         # (track uuid, ts, name, category, args, log)
    cdef public list counters         # (track uuid, ts, value)
    cdef public list samples          # (ts, pid, tid, stack index): stack samples
    cdef public list stacks           # per stack index: ((function, file, line) string indexes, ...), outermost first
    cdef dict stack_index
    cdef public list clock_snapshots
    cdef public object primary_clock
    cdef dict clock_offsets           # clock key -> offset to the primary clock
    cdef public object error
    cdef public Py_ssize_t packets
    cdef public Py_ssize_t unfinished
    cdef public object last_timestamp
    cdef public list problems
    cdef Py_ssize_t inflate_budget
    # metadata-only decoding stops at the window slice's begin (about the
    # first 20 KB of an exectrace file)
    cdef public bint metadata_only
    cdef public object window_begin   # (ts, args) of the "exectrace window" slice

    def __cinit__(self):
        self.strings = []
        self.string_index = {}
        self.sequences = {}
        self.tracks = {}
        self.open_slices = {}
        self.last_ts = {}
        self.s_track = _array.array("Q")   # track uuids are uint64
        self.s_ts = _array.array("q")
        self.s_dur = _array.array("q")
        self.s_depth = _array.array("i")
        self.s_name = _array.array("i")
        self.s_cat = _array.array("i")
        self.s_file = _array.array("i")
        self.s_line = _array.array("i")
        self.s_args = _array.array("i")
        self.args = []
        self.instants = []
        self.counters = []
        self.samples = []
        self.stacks = []
        self.stack_index = {}
        self.clock_snapshots = []
        self.primary_clock = None
        self.clock_offsets = {}
        self.error = None
        self.packets = 0
        self.unfinished = 0
        self.last_timestamp = None
        self.problems = []

    cdef int intern(self, object s) except -1:
        cdef object i = self.string_index.get(s)
        if i is None:
            i = len(self.strings)
            self.strings.append(s)
            self.string_index[s] = i
        return i

    cdef str text(self, const pb_field* f):
        return (<const char*>f.data)[:f.size].decode("utf-8", "replace")

    cdef _problem(self, str message):
        """Notes something odd but readable; a flood of them is not kept."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... (further problems not listed)")

    # -- the trace
    cpdef decode(self, const uint8_t[::1] data):
        cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
        # Bounds memory on hostile input: exectrace's chunks inflate about 6x
        # (at most ~12x for very repetitive calls), so 32x the file plus one
        # chunk's worth is never reached by a real trace.
        self.inflate_budget = <Py_ssize_t>MAX_INFLATED + INFLATE_RATIO * data.shape[0]
        try:
            self._packets(base, data.shape[0], 0)
        except _FoundWindow:
            return self
        except DecodeError as e:
            self.error = str(e)
        except (MemoryError, RecursionError) as e:
            self.error = f"trace too large or too deeply nested to read ({type(e).__name__})"
        if not self.metadata_only:
            self._close_open_slices()
        return self

    cdef _packets(self, const uint8_t* data, size_t size, int depth):
        cdef pb_reader r
        r.p = data
        r.end = data + size
        cdef pb_field f
        cdef int rc
        while True:
            rc = pb_next(&r, &f)
            if rc == 0:
                break
            if rc < 0:
                where = <size_t>(r.p - data)
                raise DecodeError(
                    f"malformed or truncated data at byte {where} of {size}"
                    + (" (inside a compressed chunk)" if depth else ""))
            if f.number == 1 and f.wire == PB_LEN:
                self._packet(&f, depth)

    cdef _packet(self, const pb_field* pf, int depth):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        cdef int rc
        cdef object ts = None
        cdef object clock_id = None
        cdef uint64_t seq = 0
        cdef uint64_t flags = 0
        cdef const uint8_t* event = NULL
        cdef size_t event_size = 0
        cdef list parts = []
        self.packets += 1
        while True:
            rc = pb_next(&r, &f)
            if rc == 0:
                break
            if rc < 0:
                raise DecodeError(f"malformed packet #{self.packets}")
            if f.number == F_TIMESTAMP and f.wire == PB_VARINT:
                ts = f.value
            elif f.number == F_TIMESTAMP_CLOCK_ID and f.wire == PB_VARINT:
                clock_id = f.value
            elif f.number == F_SEQUENCE_ID and f.wire == PB_VARINT:
                seq = f.value
            elif f.number == F_SEQUENCE_FLAGS and f.wire == PB_VARINT:
                flags = f.value
            elif f.number == 41 and f.wire == PB_VARINT and f.value:  # incremental_state_cleared
                flags |= SEQ_INCREMENTAL_STATE_CLEARED
            elif f.number == F_COMPRESSED_PACKETS and f.wire == PB_LEN:
                if depth > 0:
                    raise DecodeError("compressed packets nested inside compressed packets")
                self._inflate(&f)
            elif f.wire == PB_LEN and f.number in (F_TRACK_EVENT, F_TRACK_DESCRIPTOR,
                                                 F_INTERNED_DATA, F_PACKET_DEFAULTS,
                                                 F_CLOCK_SNAPSHOT, F_PERF_SAMPLE):
                parts.append((f.number, <size_t>(f.data - pf.data), f.size))
        if not parts:
            return
        cdef _Sequence s = self.sequences.get(seq)
        if s is None:
            s = _Sequence()
            self.sequences[seq] = s
        if flags & SEQ_INCREMENTAL_STATE_CLEARED:
            s.reset()
        cdef pb_field sub
        # interned data and defaults first: a packet may use what it defines
        for number, offset, length in parts:
            sub.data = pf.data + <size_t>offset
            sub.size = length
            if number == F_INTERNED_DATA:
                self._interned(s, &sub)
            elif number == F_PACKET_DEFAULTS:
                self._defaults(s, &sub)
            elif number == F_CLOCK_SNAPSHOT:
                self._clock_snapshot(seq, s, &sub)
        for number, offset, length in parts:
            sub.data = pf.data + <size_t>offset
            sub.size = length
            if number == F_TRACK_DESCRIPTOR:
                self._track_descriptor(&sub)
            elif number == F_TRACK_EVENT:
                self._track_event(seq, s, &sub, self._timestamp(seq, s, ts, clock_id))
            elif number == F_PERF_SAMPLE and not self.metadata_only:
                self._perf_sample(s, &sub, self._timestamp(seq, s, ts, clock_id))

    cdef _inflate(self, const pb_field* f):
        inflater = _zlib.decompressobj()
        cdef Py_ssize_t room = min(<Py_ssize_t>MAX_INFLATED, self.inflate_budget)
        if room <= 0:
            raise DecodeError(
                f"compressed chunks inflate to more than {INFLATE_RATIO}x the file's size: "
                "not a trace written by exectrace")
        try:
            inner = inflater.decompress((<const char*>f.data)[:f.size], room)
        except _zlib.error as e:
            raise DecodeError(f"corrupt compressed chunk in packet #{self.packets}: {e}")
        if inflater.unconsumed_tail:
            raise DecodeError(
                f"compressed chunk in packet #{self.packets} inflates past "
                + ("64 MiB" if room == MAX_INFLATED else f"{INFLATE_RATIO}x the file's size"))
        self.inflate_budget -= len(inner)
        if not inflater.eof:
            raise DecodeError(f"truncated compressed chunk in packet #{self.packets}")
        cdef const uint8_t[::1] view = inner
        if view.shape[0]:
            self._packets(&view[0], view.shape[0], 1)

    # -- clocks
    cdef object _timestamp(self, uint64_t seq, _Sequence s, object ts, object clock_id):
        if ts is None:
            return self.last_timestamp
        if clock_id is None:
            clock_id = s.default_clock if s.default_clock is not None else 6
        cdef object key = clock_id
        if 64 <= clock_id <= 127:
            key = (seq, clock_id)
            if clock_id in s.clocks:
                ts = s.clocks[clock_id] + ts
                s.clocks[clock_id] = ts
        offset = self.clock_offsets.get(key)
        if offset is not None:
            ts = ts + offset
        elif self.primary_clock is not None and key != self.primary_clock:
            self._problem(f"timestamp in clock {clock_id} with no snapshot relating it")
        if not 0 <= ts <= _MAX_TS:
            raise DecodeError(f"packet #{self.packets}: timestamp {ts} is out of range")
        self.last_timestamp = ts
        return ts

    cdef _clock_snapshot(self, uint64_t seq, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader cr
        cdef pb_field f, g
        clocks = []
        primary = None
        while pb_next(&r, &f) == 1:
            if f.number == 1 and f.wire == PB_LEN:
                cr = pb_sub(&f)
                cid, cts, incremental = None, 0, False
                while pb_next(&cr, &g) == 1:
                    if g.wire != PB_VARINT:   # g.value is only set for scalars
                        continue
                    if g.number == 1:
                        cid = g.value
                    elif g.number == 2:
                        cts = g.value
                    elif g.number == 3:
                        incremental = bool(g.value)
                if cid is not None:
                    clocks.append((cid, cts, incremental))
            elif f.number == 2 and f.wire == PB_VARINT:
                primary = f.value
        if not clocks:
            return
        if self.primary_clock is None:
            self.primary_clock = primary if primary is not None else 6
            self.clock_offsets[self.primary_clock] = 0
        self.clock_snapshots.append(clocks)
        # Anchor: a clock of the snapshot whose offset is known already.
        anchor = None
        for cid, cts, incremental in clocks:
            key = (seq, cid) if 64 <= cid <= 127 else cid
            if key in self.clock_offsets:
                anchor = cts + self.clock_offsets[key]
                break
        if anchor is None:
            cid, cts, incremental = clocks[0]
            anchor = cts   # unrelated to anything known: taken as the primary domain
        for cid, cts, incremental in clocks:
            key = (seq, cid) if 64 <= cid <= 127 else cid
            self.clock_offsets[key] = anchor - cts
            if incremental and 64 <= cid <= 127:
                s.clocks[cid] = cts

    # -- sequence state
    cdef _defaults(self, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader tr
        cdef pb_field f, g
        while pb_next(&r, &f) == 1:
            if f.number == F_TIMESTAMP_CLOCK_ID and f.wire == PB_VARINT:
                s.default_clock = f.value
            elif f.number == 11 and f.wire == PB_LEN:
                tr = pb_sub(&f)
                while pb_next(&tr, &g) == 1:
                    if g.number == 11 and g.wire == PB_VARINT:
                        s.default_track = g.value

    cdef _interned(self, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader er
        cdef pb_field f, g
        cdef object iid
        while pb_next(&r, &f) == 1:
            if f.wire == PB_LEN and f.number in (F_INTERNED_FUNCTION_NAMES, F_INTERNED_FRAMES,
                                                 F_INTERNED_CALLSTACKS, F_INTERNED_MAPPING_PATHS,
                                                 F_INTERNED_MAPPINGS,
                                                 F_INTERNED_ANNOTATION_STRINGS):
                self._interned_profile(s, &f)
                continue
            if f.wire != PB_LEN or f.number not in (1, 2, 3, 4, 20):
                continue
            er = pb_sub(&f)
            iid = None
            name = ""
            file = ""
            line = 0
            while pb_next(&er, &g) == 1:
                if g.number == 1 and g.wire == PB_VARINT:
                    iid = g.value
                elif g.wire == PB_LEN and g.number == 2:
                    if f.number == 4:
                        file = self.text(&g)
                    else:
                        name = self.text(&g)
                elif f.number == 4 and g.number == 3 and g.wire == PB_LEN:
                    name = self.text(&g)
                elif f.number == 4 and g.number == 4 and g.wire == PB_VARINT:
                    line = g.value if g.value <= 0x7FFFFFFF else 0  # s_line is int32
            if iid is None:
                continue
            if f.number == 1:
                s.categories[iid] = self.intern(name)
            elif f.number == 2:
                s.names[iid] = self.intern(name)
            elif f.number == 3:
                s.annotation_names[iid] = name
            elif f.number == 4:
                s.locations[iid] = (self.intern(file), self.intern(name), line)
            else:
                s.log_bodies[iid] = name

    cdef _interned_profile(self, _Sequence s, const pb_field* pf):
        """One entry of the InternedData that stack samples and waits' stacks use."""
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader ids
        cdef pb_field g
        cdef uint64_t v
        iid = None
        text = None
        numbers = {}
        frame_ids = []
        while pb_next(&r, &g) == 1:
            if g.number == 1 and g.wire == PB_VARINT:
                iid = g.value
            elif g.number == 2 and g.wire == PB_LEN and pf.number != F_INTERNED_CALLSTACKS:
                text = self.text(&g)
            elif pf.number == F_INTERNED_CALLSTACKS and g.number == 2:
                if g.wire == PB_VARINT:
                    frame_ids.append(g.value)
                elif g.wire == PB_LEN:  # packed
                    ids = pb_sub(&g)
                    while ids.p < ids.end and pb_read_varint(&ids, &v) == 1:
                        frame_ids.append(v)
            elif g.wire == PB_VARINT:
                numbers[g.number] = g.value
            elif pf.number == F_INTERNED_MAPPINGS and g.number == 7 and g.wire == PB_LEN:
                ids = pb_sub(&g)
                if pb_read_varint(&ids, &v) == 1:
                    numbers[7] = v
        if iid is None:
            return
        if pf.number == F_INTERNED_ANNOTATION_STRINGS:
            s.annotation_strings[iid] = text or ""
        elif pf.number == F_INTERNED_FUNCTION_NAMES:
            s.function_names[iid] = self.intern(text or "")
        elif pf.number == F_INTERNED_MAPPING_PATHS:
            s.mapping_paths[iid] = self.intern(text or "")
        elif pf.number == F_INTERNED_MAPPINGS:
            s.mappings[iid] = s.mapping_paths.get(numbers.get(7), self.intern(""))
        elif pf.number == F_INTERNED_FRAMES:
            line = numbers.get(4, 0)
            s.frames[iid] = (s.function_names.get(numbers.get(2), self.intern("?")),
                             s.mappings.get(numbers.get(3), self.intern("")),
                             line if line <= 0x7FFFFFFF else 0)
        elif pf.number == F_INTERNED_CALLSTACKS:
            s.callstacks[iid] = tuple(frame_ids)

    cdef _perf_sample(self, _Sequence s, const pb_field* pf, object ts):
        """A stack sample: (ts, pid, tid, callstack index) in self.samples."""
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field g
        pid = tid = stack = 0
        while pb_next(&r, &g) == 1:
            if g.wire != PB_VARINT:
                continue
            if g.number == 2:
                pid = g.value
            elif g.number == 3:
                tid = g.value
            elif g.number == 4:
                stack = g.value
        frame_ids = s.callstacks.get(stack)
        if frame_ids is None or ts is None:
            self._problem(f"a stack sample names callstack {stack}, which is not defined")
            return
        frames = tuple(s.frames.get(f, (self.intern("?"), self.intern(""), 0)) for f in frame_ids)
        index = self.stack_index.get(frames)
        if index is None:
            index = len(self.stacks)
            self.stack_index[frames] = index
            self.stacks.append(frames)
        self.samples.append((ts, pid, tid, index))

    cdef _track_descriptor(self, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader dr
        cdef pb_field f, g
        track = {"uuid": None, "name": None, "kind": "other", "pid": None, "tid": None,
                 "parent": None}
        while pb_next(&r, &f) == 1:
            if f.number == 1 and f.wire == PB_VARINT:
                track["uuid"] = f.value
            elif f.number == 5 and f.wire == PB_VARINT:
                track["parent"] = f.value
            elif f.number == 2 and f.wire == PB_LEN:
                track["name"] = self.text(&f)
            elif f.number in (3, 4, 8) and f.wire == PB_LEN:
                track["kind"] = {3: "process", 4: "thread", 8: "counter"}[f.number]
                dr = pb_sub(&f)
                while pb_next(&dr, &g) == 1:
                    if g.number == 1 and g.wire == PB_VARINT and f.number != 8:
                        track["pid"] = g.value
                    elif g.number == 2 and g.wire == PB_VARINT and f.number == 4:
                        track["tid"] = g.value
                    elif g.wire == PB_LEN and ((f.number == 4 and g.number == 5) or
                                               (f.number == 3 and g.number == 6)):
                        track["name"] = self.text(&g)
        if track["uuid"] is not None:
            known = self.tracks.get(track["uuid"])
            if known is None:
                self.tracks[track["uuid"]] = track
            else:
                known.update({k: v for k, v in track.items() if v is not None})

    # -- events
    cdef _track_event(self, uint64_t seq, _Sequence s, const pb_field* pf, object ts):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        cdef uint64_t type = 0
        cdef object name = None
        cdef object category = -1
        cdef object location = None
        cdef object track = s.default_track
        cdef object args = None
        cdef object log = None
        cdef object counter = None
        cdef object flows = None
        cdef pb_reader pr
        cdef uint64_t v
        while pb_next(&r, &f) == 1:
            if f.number == F_TE_TYPE and f.wire == PB_VARINT:
                type = f.value
            elif f.number == F_TE_NAME_IID and f.wire == PB_VARINT:
                name = s.names.get(f.value)
                if name is None:
                    raise DecodeError(
                        f"packet #{self.packets}: event name iid {f.value} is not defined on "
                        f"sequence {seq}")
            elif f.number == F_TE_NAME and f.wire == PB_LEN:
                name = self.intern(self.text(&f))
            elif f.number == F_TE_TRACK_UUID and f.wire == PB_VARINT:
                track = f.value
            elif f.number == F_TE_CATEGORY_IIDS:
                # several categories read as one, comma-separated (as Perfetto shows them)
                if f.wire == PB_VARINT:
                    category = self._add_category(category, s.categories.get(f.value, -1))
                elif f.wire == PB_LEN:
                    pr = pb_sub(&f)
                    n_categories = 0
                    while n_categories < 16 and pb_read_varint(&pr, &v) == 0:
                        category = self._add_category(category, s.categories.get(v, -1))
                        n_categories += 1
            elif f.number == 22 and f.wire == PB_LEN:
                category = self._add_category(category, self.intern(self.text(&f)))
            elif f.number == F_TE_SOURCE_LOCATION_IID and f.wire == PB_VARINT:
                location = s.locations.get(f.value)
            elif f.number == F_TE_DEBUG_ANNOTATIONS and f.wire == PB_LEN:
                if args is None:
                    args = {}
                key, value = self._annotation(s, &f, 0)
                args[key] = value
            elif f.number == 21 and f.wire == PB_LEN:
                log = self._log_message(s, &f)
            elif f.number == 30 and f.wire == PB_VARINT:
                counter = <int64_t>f.value
            elif f.number == 44 and f.wire == PB_FIXED64:
                counter = (<double*>&f.value)[0]
            elif f.number in (47, 48) and f.wire in (PB_FIXED64, PB_VARINT):
                if flows is None:
                    flows = []
                flows.append(("in" if f.number == 48 else "out", f.value))
        if track is None:
            self._problem(f"packet #{self.packets}: track event without a track")
            return
        if ts is None:
            ts = 0
        last = self.last_ts.get(track)
        if last is not None and ts < last:
            self._problem(f"timestamps go backwards on track {track}")
        self.last_ts[track] = ts
        if flows:
            if args is None:
                args = {}
            args["flows"] = flows
        if type == TYPE_SLICE_BEGIN:
            if self.metadata_only and name is not None and self.strings[name] == WINDOW_SLICE_NAME:
                self.window_begin = (ts, args or {})
                raise _FoundWindow()
            stack = self.open_slices.get(track)
            if stack is None:
                stack = self.open_slices[track] = []
            stack.append((ts, name if name is not None else self.intern(""), category,
                          location, args))
        elif type == TYPE_SLICE_END:
            stack = self.open_slices.get(track)
            if not stack:
                self._problem(f"slice end with no open slice on track {track}")
                return
            begin = stack.pop()
            if args is not None:  # arguments given at the end merge into the slice
                merged = dict(begin[4] or {})
                merged.update(args)
                begin = begin[:4] + (merged,)
            self._add_slice(track, begin, ts, len(stack))
        elif type == TYPE_INSTANT:
            self.instants.append((track, ts, name if name is not None else self.intern(""),
                                  category, args, log))
        elif type == 4:  # TYPE_COUNTER
            self.counters.append((track, ts, counter if counter is not None else 0))

    cdef object _add_category(self, object current, object added):
        if added == -1 or current == added:
            return current
        if current == -1:
            return added
        if len(self.strings[current]) > 256:  # a hostile file repeating categories
            return current
        return self.intern(self.strings[current] + "," + self.strings[added])

    cdef _add_slice(self, object track, tuple begin, object end, int depth):
        start, name, category, location, args = begin
        self.s_track.append(track)
        self.s_ts.append(start)
        self.s_dur.append(end - start if end >= start else 0)
        self.s_depth.append(depth)
        self.s_name.append(name)
        self.s_cat.append(category)
        if location is None:
            self.s_file.append(-1)
            self.s_line.append(0)
        else:
            self.s_file.append(location[0])
            self.s_line.append(location[2])
        if args is None:
            self.s_args.append(-1)
        else:
            self.s_args.append(len(self.args))
            self.args.append(args)

    cdef _close_open_slices(self):
        """Slices still open at the end (a truncated trace) end at the last timestamp."""
        for track, stack in self.open_slices.items():
            end = self.last_timestamp or 0
            while stack:
                begin = stack.pop()
                args = dict(begin[4] or {})
                args["unfinished"] = True
                self._add_slice(track, begin[:4] + (args,), max(end, begin[0]), len(stack))
                self.unfinished += 1

    cdef tuple _annotation(self, _Sequence s, const pb_field* pf, int depth):
        if depth > MAX_NESTING:
            raise DecodeError("debug annotation nested too deeply")
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        name = ""   # keys are always strings, even when the name is missing
        value = None
        entries = None
        while pb_next(&r, &f) == 1:
            if f.number == 10 and f.wire == PB_LEN:
                name = self.text(&f)
            elif f.number == 1 and f.wire == PB_VARINT:
                name = s.annotation_names.get(f.value, f"#{f.value}")
            elif f.number == 2 and f.wire == PB_VARINT:
                value = bool(f.value)
            elif f.number in (3, 7) and f.wire == PB_VARINT:
                value = f.value
            elif f.number == 4 and f.wire == PB_VARINT:
                value = <int64_t>f.value
            elif f.number == 5 and f.wire == PB_FIXED64:
                value = (<double*>&f.value)[0]
            elif f.number == 6 and f.wire == PB_LEN:
                value = self.text(&f)
            elif f.number == F_DA_STRING_VALUE_IID and f.wire == PB_VARINT:
                value = s.annotation_strings.get(f.value, "")
            elif f.number == 11 and f.wire == PB_LEN:
                if not isinstance(entries, dict):
                    entries = {}
                k, v = self._annotation(s, &f, depth + 1)
                entries[k] = v
            elif f.number == 12 and f.wire == PB_LEN:
                if not isinstance(entries, list):
                    entries = []
                entries.append(self._annotation(s, &f, depth + 1)[1])
        if entries is not None:
            value = entries
        return name, value

    cdef object _log_message(self, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        while pb_next(&r, &f) == 1:
            if f.number == 2 and f.wire == PB_VARINT:
                return s.log_bodies.get(f.value)
        return None


def decode(data, bint metadata_only=False):
    """Decodes Perfetto protobuf bytes; returns the decoder with its columns.
    metadata_only: stop at the "exectrace window" slice (see window_begin)."""
    decoder = _Decoder()
    decoder.metadata_only = metadata_only
    decoder.decode(memoryview(data).cast("B") if not isinstance(data, bytes) else data)
    return decoder
