/* The Perfetto trace schema as exectrace writes and reads it: the field
 * numbers of protos/perfetto/trace/ (.proto files) that the writer (src/core/writer.pxi)
 * and the reader (src/core/reader.pxi) use, and exectrace's own layout of a
 * file (sequences, track uuids, the names the reader looks for).
 *
 * The C side's only home for these numbers; the Python side's is
 * src/exectrace/_perfetto.py, with the same names.  The tests check every file
 * they write against Perfetto's compiled schema (tests/perfetto_check.py), the
 * two homes against each other (tests/unit/test_perfetto_schema.py) and the
 * bytes of a fixed window against golden files (tests/unit/test_encode_golden.py). */
#ifndef EXECTRACE_PERFETTO_SCHEMA_H
#define EXECTRACE_PERFETTO_SCHEMA_H

#include <stdint.h>

enum {
    /* Trace */
    PF_TRACE_PACKET = 1,

    /* TracePacket */
    PF_PACKET_CLOCK_SNAPSHOT = 6,
    PF_PACKET_TIMESTAMP = 8,
    PF_PACKET_SEQUENCE_ID = 10, /* trusted_packet_sequence_id */
    PF_PACKET_TRACK_EVENT = 11,
    PF_PACKET_INTERNED_DATA = 12,
    PF_PACKET_SEQUENCE_FLAGS = 13,
    PF_PACKET_INCREMENTAL_STATE_CLEARED = 41, /* the older form of sequence_flags = 1 */
    PF_PACKET_COMPRESSED_PACKETS = 50,
    PF_PACKET_TIMESTAMP_CLOCK_ID = 58,
    PF_PACKET_DEFAULTS = 59, /* trace_packet_defaults */
    PF_PACKET_TRACK_DESCRIPTOR = 60,
    PF_PACKET_PERF_SAMPLE = 66,

    /* TracePacketDefaults */
    PF_DEFAULTS_TIMESTAMP_CLOCK_ID = 58,
    PF_DEFAULTS_TRACK_EVENT = 11,
    /* TrackEventDefaults */
    PF_TRACK_EVENT_DEFAULTS_TRACK_UUID = 11,

    /* ClockSnapshot, ClockSnapshot.Clock */
    PF_CLOCK_SNAPSHOT_CLOCKS = 1,
    PF_CLOCK_SNAPSHOT_PRIMARY_TRACE_CLOCK = 2,
    PF_CLOCK_ID = 1,
    PF_CLOCK_TIMESTAMP = 2,
    PF_CLOCK_IS_INCREMENTAL = 3,

    /* TrackEvent */
    PF_EVENT_CATEGORY_IIDS = 3,
    PF_EVENT_DEBUG_ANNOTATIONS = 4,
    PF_EVENT_TYPE = 9,
    PF_EVENT_NAME_IID = 10,
    PF_EVENT_TRACK_UUID = 11,
    PF_EVENT_LOG_MESSAGE = 21,
    PF_EVENT_CATEGORIES = 22,
    PF_EVENT_NAME = 23,
    PF_EVENT_COUNTER_VALUE = 30,
    PF_EVENT_SOURCE_LOCATION_IID = 34,
    PF_EVENT_DOUBLE_COUNTER_VALUE = 44,
    PF_EVENT_FLOW_IDS = 47,
    PF_EVENT_TERMINATING_FLOW_IDS = 48,

    /* LogMessage */
    PF_LOG_MESSAGE_BODY_IID = 2,

    /* TrackDescriptor, ProcessDescriptor, ThreadDescriptor */
    PF_TRACK_UUID = 1,
    PF_TRACK_NAME = 2,
    PF_TRACK_PROCESS = 3,
    PF_TRACK_THREAD = 4,
    PF_TRACK_PARENT_UUID = 5,
    PF_TRACK_COUNTER = 8,
    PF_COUNTER_UNIT = 3, /* CounterDescriptor (the counter tracks of exectrace/_extras.py) */
    PF_PROCESS_PID = 1,
    PF_PROCESS_NAME = 6,
    PF_THREAD_PID = 1,
    PF_THREAD_TID = 2,
    PF_THREAD_NAME = 5,

    /* InternedData; EventCategory, EventName, DebugAnnotationName and
     * LogMessageBody are (iid = 1, name or body = 2); SourceLocation */
    PF_INTERNED_EVENT_CATEGORIES = 1,
    PF_INTERNED_EVENT_NAMES = 2,
    PF_INTERNED_DEBUG_ANNOTATION_NAMES = 3,
    PF_INTERNED_SOURCE_LOCATIONS = 4,
    PF_INTERNED_LOG_MESSAGE_BODY = 20,
    PF_INTERNED_IID = 1,
    PF_INTERNED_NAME = 2,
    PF_SOURCE_LOCATION_FILE_NAME = 2,
    PF_SOURCE_LOCATION_FUNCTION_NAME = 3,
    PF_SOURCE_LOCATION_LINE_NUMBER = 4,
    /* the InternedData of stack samples and waits' callstacks (`events` mode):
     * function names and mapping paths are InternedStrings (iid = 1, str = 2) */
    PF_INTERNED_FUNCTION_NAMES = 5,
    PF_INTERNED_FRAMES = 6,
    PF_INTERNED_CALLSTACKS = 7,
    PF_INTERNED_MAPPING_PATHS = 17,
    PF_INTERNED_MAPPINGS = 19,
    PF_INTERNED_ANNOTATION_STRINGS = 29, /* debug_annotation_string_values */
    PF_INTERNED_STRING = 2,
    PF_FRAME_FUNCTION_NAME_ID = 2, /* Frame; iid = 1 */
    PF_FRAME_MAPPING_ID = 3,
    PF_FRAME_REL_PC = 4,
    PF_CALLSTACK_FRAME_IDS = 2, /* Callstack; iid = 1 */
    PF_MAPPING_PATH_STRING_IDS = 7, /* Mapping; iid = 1 */
    PF_PERF_SAMPLE_PID = 2,         /* PerfSample */
    PF_PERF_SAMPLE_TID = 3,
    PF_PERF_SAMPLE_CALLSTACK_IID = 4,

    /* DebugAnnotation */
    PF_ANNOTATION_NAME_IID = 1,
    PF_ANNOTATION_BOOL = 2,
    PF_ANNOTATION_UINT = 3,
    PF_ANNOTATION_INT = 4,
    PF_ANNOTATION_DOUBLE = 5,
    PF_ANNOTATION_STRING = 6,
    PF_ANNOTATION_POINTER = 7,
    PF_ANNOTATION_NAME = 10,
    PF_ANNOTATION_DICT_ENTRIES = 11,
    PF_ANNOTATION_ARRAY_VALUES = 12,
    PF_ANNOTATION_STRING_VALUE_IID = 17,
};

/* Values of those fields */
enum {
    PF_TYPE_SLICE_BEGIN = 1, /* TrackEvent.Type */
    PF_TYPE_SLICE_END = 2,
    PF_TYPE_INSTANT = 3,
    PF_TYPE_COUNTER = 4,
    PF_SEQ_INCREMENTAL_STATE_CLEARED = 1, /* TracePacket.SequenceFlags */
    PF_SEQ_NEEDS_INCREMENTAL_STATE = 2,
    PF_CLOCK_REALTIME = 1,                /* BuiltinClock */
    PF_CLOCK_MONOTONIC = 3,
    PF_CLOCK_BOOTTIME = 6,                /* the default when a trace names none */
    PF_CLOCK_FIRST_SEQUENCE_SCOPED = 64,  /* 64..127: clocks of one sequence */
    PF_CLOCK_LAST_SEQUENCE_SCOPED = 127,
};

/* exectrace's layout of a file.  Sequence 1 holds the clocks, the track
 * descriptors, the window slice with the metadata and the GC slices; thread i
 * has sequence 2 + i, with the incremental clock ET_CLOCK_INCREMENTAL; the
 * extra packets (exectrace/_extras.py) take the next free sequence. */
enum {
    ET_SEQ_GLOBAL = 1,
    ET_SEQ_FIRST_THREAD = 2,
    ET_CLOCK_INCREMENTAL = PF_CLOCK_FIRST_SEQUENCE_SCOPED,
    /* interned ids on every thread sequence: categories, annotation names */
    ET_CATEGORY_C = 1,
    ET_CATEGORY_REGION = 2,
    ET_CATEGORY_FIRST_REASON = 3,
    ET_ANNOTATION_BLOCKING = 1,
    ET_ANNOTATION_STACK = 2, /* `events` mode: a wait's callstack as text */
    /* uncompressed bytes per compressed_packets chunk (Perfetto reads < 512 KiB) */
    ET_CHUNK_BYTES = 256 * 1024,
};

/* Track uuids: et_track_uuid_base(pid) + one of these (extra tracks from
 * ET_TRACK_EXTRA0 on): the files of several processes open together. */
static inline uint64_t et_track_uuid_base(int64_t pid) { return ((uint64_t)(pid & 0x3FFFFFFF) + 1) << 32; }
enum {
    ET_TRACK_PROCESS = 0,
    ET_TRACK_GC = 1,
    ET_TRACK_META = 2,
    ET_TRACK_THREAD0 = 16,
};
#define ET_TRACK_EXTRA0 0x80000000u

/* Names the reader looks for */
#define ET_WINDOW_SLICE_NAME "exectrace window"
#define ET_META_TRACK_NAME "exectrace"
#define ET_GC_TRACK_NAME "GC"

#endif /* EXECTRACE_PERFETTO_SCHEMA_H */
