# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""exectrace._tracecore: the native core.

A small API over the C recorder in src/native/recorder.h, in three parts
included here (one extension, one C file):

    src/core/recorder.pxi   the hooks, start/stop, annotations, traced locks
    src/core/writer.pxi     Capture: a closed window, encoded as Perfetto protobuf
    src/core/reader.pxi     decode(): Perfetto protobuf back into columns

Each C header in src/native/ has a .pxd beside it declaring it to Cython; the
Perfetto schema (field numbers, exectrace's file layout) is perfetto_schema.h.

    start(...)      open a window: install the hooks, start recording
    stop()          close it: remove the hooks, return the Capture
    stats()         counters of the window in progress
    Capture.encode  the captured window as Perfetto protobuf bytes
    decode(data)    Perfetto protobuf bytes back into columns

It takes validated plain values; every policy decision (settings, schedule,
files, names of things) is made in Python, in the exectrace package.
"""

include "core/recorder.pxi"
include "core/writer.pxi"
include "core/reader.pxi"
