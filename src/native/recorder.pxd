# The recorder's state, capture and hooks (recorder.h).
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from clock cimport et_clock_pair

cdef extern from "recorder.h":
    int ET_HAS_SYS_MONITORING

    # kinds of interned functions (et_func.kind)
    enum:
        ET_FUNC_PY
        ET_FUNC_C
        ET_FUNC_REGION

    # record kinds, and the asyncio task index, packed in et_record.flags
    enum:
        ET_REC_CALL
        ET_REC_STEP
        ET_REC_CREATE
        ET_REC_BLOCK
        ET_REC_SAMPLE
    uint32_t ET_REC_KIND(uint32_t flags) nogil
    uint32_t ET_REC_INDEX(uint32_t flags) nogil

    # kinds of user annotation events (et_event.kind)
    enum:
        ET_EV_LOG
        ET_EV_TASK_BEGIN
        ET_EV_TASK_END
        ET_EV_REGION_BEGIN
        ET_EV_REGION_END
        ET_EV_HANDOFF_RELEASE
        ET_EV_HANDOFF_ACQUIRE

    # sys.monitoring callbacks by role (et_monitor_callback)
    ctypedef enum et_monitor_role:
        ET_MONITOR_PY_START
        ET_MONITOR_PY_THROW
        ET_MONITOR_PY_RETURN
        ET_MONITOR_PY_UNWIND
        ET_MONITOR_CALL
        ET_MONITOR_C_RETURN
        ET_MONITOR_FLOOR_ANY
        ET_MONITOR_FLOOR_CALL

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
        uint32_t gc_cap
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
        void* stacks       # struct et_stacks* (events.pxd), NULL in `calls` mode
        uint64_t samples
    ctypedef int (*Py_tracefunc)(PyObject*, void*, int, PyObject*)
    struct _R:
        int active
        et_capture* cap
        uint64_t ring_pos
        uint64_t written
        int64_t slow_step_ticks
        int wake_fd
        int slow_step_armed
        PyObject* disable
        PyObject* threading_active
    _R R

    # capture lifecycle
    et_capture* et_capture_new(uint64_t capacity)
    void et_capture_free(et_capture* c)
    et_thread* et_thread_new(et_capture* c, uint64_t ident, uint64_t native_id)
    int et_begin(uint64_t capacity, int use_ticks, int c_calls, int64_t min_duration_ns,
                 uint32_t max_depth, object include_prefixes, object exclude_prefixes,
                 int events_mode) except -1
    int64_t et_ns_to_ticks(const et_capture* c, int64_t ns)
    int et_seed_frame(uint64_t ident, uint64_t native_id, object code, object pythread) except -1
    void et_activate()
    et_capture* et_end()
    void et_after_fork_child()
    int et_ignore_thread(uint64_t ident, int on) except -1
    void et_set_asyncio(object running_loop, object current_tasks, object create_task_code)
    int et_init_strings() except -1

    # hooks
    object et_monitor_callback(et_monitor_role role)
    object et_gc_callback_function()
    object et_thread_bootstrap_function(int floor)
    Py_tracefunc et_profile_func(int floor)
    # <= 3.11 only (compiled out on 3.12+, never called there)
    int et_set_profile_all(Py_tracefunc func, Py_tracefunc ours) except -1
    unsigned long et_foreign_profiler_thread(Py_tracefunc a, Py_tracefunc b)
