# User annotations: region(), task(), log() (annotations.h).
from cpython.object cimport PyObject

cdef extern from "annotations.h":
    ctypedef struct et_annotation_api:
        PyObject* region
        PyObject* task
        PyObject* log
        PyObject* region_type
        PyObject* task_type
    int et_annotation_api_get(et_annotation_api* api) except -1
