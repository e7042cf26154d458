"""The Perfetto trace schema as exectrace writes and reads it, for Python.

The field numbers of protos/perfetto/trace/ that the Python side uses, and
exectrace's own layout of a file: its sequences, track uuids and the names a
reader looks for. The Python side's only home for them (the native core's is
src/native/perfetto_schema.h, with the same names prefixed PF_ or ET_); used by
the extra packets (_extras.py), the reader (reader.py) and `exectrace view`.
"""

from __future__ import annotations

from typing import Any

from exectrace._protowire import field_bytes, field_double, field_str, field_varint

# Trace
TRACE_PACKET = 1

# TracePacket
PACKET_TIMESTAMP = 8
PACKET_SEQUENCE_ID = 10  # trusted_packet_sequence_id
PACKET_TRACK_EVENT = 11
PACKET_SEQUENCE_FLAGS = 13
PACKET_TIMESTAMP_CLOCK_ID = 58
PACKET_DEFAULTS = 59  # trace_packet_defaults
PACKET_TRACK_DESCRIPTOR = 60
PACKET_INTERNED_DATA = 12
PACKET_PERF_SAMPLE = 66
SEQ_NEEDS_INCREMENTAL_STATE = 2  # TracePacket.SequenceFlags
# TracePacketDefaults
DEFAULTS_TIMESTAMP_CLOCK_ID = 58

# TrackEvent
EVENT_DEBUG_ANNOTATIONS = 4
EVENT_TYPE = 9
EVENT_TRACK_UUID = 11
EVENT_CATEGORIES = 22
EVENT_NAME = 23
EVENT_DOUBLE_COUNTER_VALUE = 44
EVENT_FLOW_IDS = 47
EVENT_TERMINATING_FLOW_IDS = 48
TYPE_SLICE_BEGIN, TYPE_SLICE_END, TYPE_INSTANT, TYPE_COUNTER = 1, 2, 3, 4

# TrackDescriptor, CounterDescriptor
TRACK_UUID = 1
TRACK_NAME = 2
TRACK_PARENT_UUID = 5
TRACK_COUNTER = 8
COUNTER_UNIT = 3
COUNTER_UNITS = {"ns": 1, "count": 2, "bytes": 3}  # CounterDescriptor.Unit

# InternedData of stack samples (`events` mode): function names and mapping
# paths are InternedStrings (iid, str)
INTERNED_FUNCTION_NAMES = 5
INTERNED_FRAMES = 6
INTERNED_CALLSTACKS = 7
INTERNED_MAPPING_PATHS = 17
INTERNED_MAPPINGS = 19
INTERNED_IID = 1
INTERNED_STRING = 2
FRAME_FUNCTION_NAME_ID = 2
FRAME_MAPPING_ID = 3
FRAME_REL_PC = 4
CALLSTACK_FRAME_IDS = 2
MAPPING_PATH_STRING_IDS = 7
PERF_SAMPLE_PID = 2
PERF_SAMPLE_TID = 3
PERF_SAMPLE_CALLSTACK_IID = 4

# DebugAnnotation
ANNOTATION_BOOL = 2
ANNOTATION_UINT = 3
ANNOTATION_INT = 4
ANNOTATION_DOUBLE = 5
ANNOTATION_STRING = 6
ANNOTATION_NAME = 10

SEQ_INCREMENTAL_STATE_CLEARED = 1  # TracePacket.SequenceFlags
CLOCK_MONOTONIC = 3  # BuiltinClock

# exectrace's layout of a file: sequence 1 holds the clocks, the track
# descriptors, the window slice and GC; thread i has sequence 2 + i; the
# extra packets take the next free one.
SEQ_FIRST_THREAD = 2
#: The slice on the exectrace track that spans the window and carries the metadata.
WINDOW_SLICE_NAME = "exectrace window"
META_TRACK_NAME = "exectrace"
GC_TRACK_NAME = "GC"
#: The name of the instant that ends every file (on the exectrace track).
TRAILER_NAME = "exectrace end of file"

# Track uuids: the process's base plus one of these, so that the files of
# several processes open together.
_TRACK_OFFSETS = {"process": 0, "meta": 2, "thread": 16, "extra": 0x80000000}


def track_uuid(pid: int, what: str, index: int = 0) -> int:
    """The uuid of a track of a file written for process `pid`: "process",
    "meta" (the exectrace track), "thread" (by thread index), or "extra"
    (tracks of extra packets, by index)."""
    offset = _TRACK_OFFSETS.get(what)
    if offset is None:
        raise ValueError(what)
    return (((pid & 0x3FFFFFFF) + 1) << 32) + offset + (index if what in ("thread", "extra") else 0)


def first_free_sequence(n_threads: int) -> int:
    """The first packet sequence id the native writer leaves to extra packets."""
    return SEQ_FIRST_THREAD + n_threads


def debug_annotation(name: str, value: Any) -> bytes:
    """A TrackEvent.debug_annotations field with a literal name."""
    body = field_str(ANNOTATION_NAME, name)
    if isinstance(value, bool):
        body += field_varint(ANNOTATION_BOOL, int(value))
    elif isinstance(value, int):
        body += field_varint(ANNOTATION_UINT if value >= 0 else ANNOTATION_INT, value)
    elif isinstance(value, float):
        body += field_double(ANNOTATION_DOUBLE, value)
    else:
        body += field_str(ANNOTATION_STRING, str(value))
    return field_bytes(EVENT_DEBUG_ANNOTATIONS, body)


def sequence_header(sequence: int, timestamp_ns: int) -> bytes:
    """The first packet of a sequence with absolute CLOCK_MONOTONIC timestamps:
    clears the sequence's state and makes that clock its default."""
    return (field_varint(PACKET_SEQUENCE_ID, sequence)
            + field_varint(PACKET_SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
            + field_varint(PACKET_TIMESTAMP, timestamp_ns)
            + field_varint(PACKET_TIMESTAMP_CLOCK_ID, CLOCK_MONOTONIC)
            + field_bytes(PACKET_DEFAULTS, field_varint(DEFAULTS_TIMESTAMP_CLOCK_ID, CLOCK_MONOTONIC)))
