# The flight recorder's snapshot copy and compaction (flight.h).
from libc.stdint cimport int64_t, uint32_t, uint64_t

from recorder cimport et_capture

cdef extern from "flight.h":
    enum:
        ET_BOUND_FLIGHT
        ET_BOUND_BUFFER
        ET_BOUND_START

    ctypedef struct et_flight_info:
        int64_t from_ "from"
        int bound
        uint64_t records_in
        uint64_t records_out
        uint32_t funcs_in, funcs_out
        uint32_t threads_in, threads_out
        uint32_t tasks_in, tasks_out
        uint32_t events_in, events_out
        uint32_t gc_in, gc_out
        uint32_t stacks_in, stacks_out

    et_capture* et_flight_copy(int64_t cutoff, et_flight_info* info) except NULL
    int et_flight_compact(int64_t cutoff, et_flight_info* info) except -1
