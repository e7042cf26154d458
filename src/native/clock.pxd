# The monotonic clock of the recorder (clock.h).
from libc.stdint cimport int64_t

cdef extern from "clock.h":
    ctypedef struct et_clock_pair:
        int64_t ticks
        int64_t mono_ns
    int ET_HAVE_TICKS
    int64_t et_read_ticks() nogil
    int64_t et_monotonic_ns() nogil
