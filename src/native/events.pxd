# `events` mode: waits with callstacks, stack samples, asyncio steps (events.h).
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

cdef extern from "events.h":
    ctypedef struct et_stacks "struct et_stacks":
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

    # sys.monitoring callbacks of `events` mode by role (et_events_callback)
    ctypedef enum et_events_role:
        ET_EVENTS_CALL
        ET_EVENTS_C_RETURN

    int et_set_blocking(object callables, object reasons) except -1
    int et_set_asyncio_steps(object context_run, object handle_run_code, object task_type,
                             object py_task_type) except -1
    void et_set_min_block(int64_t ticks)
    object et_events_callback(et_events_role role)
    object et_make_wrapper(object func, object named_after)
    void et_sampler_loop(int64_t interval_ns)
    void et_sampler_reset()
    void et_sampler_stop()
    void et_events_after_fork_child()
    void et_events_stacks_of_open_waits()
