# exectrace.Lock / exectrace.RLock: locks that record `with lock:` waits (tracedlock.h).
from cpython.object cimport PyObject

cdef extern from "tracedlock.h":
    ctypedef struct et_lock_api:
        PyObject* lock_type
        PyObject* rlock_type
    int et_lock_api_get(et_lock_api* api) except -1
