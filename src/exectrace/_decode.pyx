# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""exectrace._decode: Perfetto protobuf back into columns, fast.

The same decoder as exectrace._tracecore.decode (same columns, strings,
tracks, errors and problems, byte for byte: tests/unit/test_decode.py checks
it on real, damaged and hostile files), with its per-event path in C: the
sequence's interned names, categories and locations, its default track and
incremental clock, every track's open slices and last timestamp are C state,
and the slice columns are appended to without a Python object per event. The
rare parts (interned data, descriptors, clock snapshots, debug annotations,
logs, stack samples) are the original code.

exectrace.read() and the analysis commands use it; _tracecore's decoder is
left as it was (another part of the project owns that file).
"""

from cpython cimport array as carray
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from pbwire cimport *
from perfetto_schema cimport *

import array as _array
import zlib as _zlib

# Field numbers: the schema's one home for C and Cython (src/native/perfetto_schema.h)
cdef enum:
    F_CLOCK_SNAPSHOT = PF_PACKET_CLOCK_SNAPSHOT
    F_TIMESTAMP = PF_PACKET_TIMESTAMP
    F_SEQUENCE_ID = PF_PACKET_SEQUENCE_ID
    F_TRACK_EVENT = PF_PACKET_TRACK_EVENT
    F_INTERNED_DATA = PF_PACKET_INTERNED_DATA
    F_SEQUENCE_FLAGS = PF_PACKET_SEQUENCE_FLAGS
    F_COMPRESSED_PACKETS = PF_PACKET_COMPRESSED_PACKETS
    F_TIMESTAMP_CLOCK_ID = PF_PACKET_TIMESTAMP_CLOCK_ID
    F_PACKET_DEFAULTS = PF_PACKET_DEFAULTS
    F_TRACK_DESCRIPTOR = PF_PACKET_TRACK_DESCRIPTOR
    F_TE_CATEGORY_IIDS = PF_EVENT_CATEGORY_IIDS
    F_TE_DEBUG_ANNOTATIONS = PF_EVENT_DEBUG_ANNOTATIONS
    F_TE_TYPE = PF_EVENT_TYPE
    F_TE_NAME_IID = PF_EVENT_NAME_IID
    F_TE_TRACK_UUID = PF_EVENT_TRACK_UUID
    F_TE_NAME = PF_EVENT_NAME
    F_TE_SOURCE_LOCATION_IID = PF_EVENT_SOURCE_LOCATION_IID
    TYPE_SLICE_BEGIN = PF_TYPE_SLICE_BEGIN
    TYPE_SLICE_END = PF_TYPE_SLICE_END
    TYPE_INSTANT = PF_TYPE_INSTANT
    SEQ_INCREMENTAL_STATE_CLEARED = PF_SEQ_INCREMENTAL_STATE_CLEARED
    F_INTERNED_ANNOTATION_STRINGS = PF_INTERNED_ANNOTATION_STRINGS
    F_INTERNED_FUNCTION_NAMES = PF_INTERNED_FUNCTION_NAMES
    F_INTERNED_FRAMES = PF_INTERNED_FRAMES
    F_INTERNED_CALLSTACKS = PF_INTERNED_CALLSTACKS
    F_INTERNED_MAPPING_PATHS = PF_INTERNED_MAPPING_PATHS
    F_INTERNED_MAPPINGS = PF_INTERNED_MAPPINGS
    F_PERF_SAMPLE = PF_PACKET_PERF_SAMPLE
    F_DA_STRING_VALUE_IID = PF_ANNOTATION_STRING_VALUE_IID

cdef enum:
    MAX_NESTING = 16
    MAX_INFLATED = 64 * 1024 * 1024
    INFLATE_RATIO = 32
    MAX_PROBLEMS = 1000
    # interned ids below this are also kept in C arrays (others: the dicts)
    MAP_LIMIT = 1 << 20

# Timestamps are int64 nanoseconds; outside [0, 2**63) a file is damaged.
_MAX_TS = 2**63 - 1
# the C fast paths take values below this (no overflow in a sum of two)
cdef int64_t FAST_LIMIT = (<int64_t>1) << 62

WINDOW_SLICE_NAME = "exectrace window"


class DecodeError(Exception):
    pass


class _FoundWindow(Exception):
    """Ends a metadata-only decode."""


cdef struct Open:
    int64_t ts
    int32_t name
    int32_t cat
    int32_t file
    int32_t line
    Py_ssize_t args       # index into the decoder's pending args, -1: none


cdef struct TrackState:
    uint64_t uuid
    int64_t last_ts
    bint has_last
    bint has_stack        # a slice began on it (its place in the close order)
    Open* stack
    Py_ssize_t depth
    Py_ssize_t cap


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

    # C mirrors of the above for the per-event path
    cdef int32_t* name_c
    cdef uint64_t name_cap
    cdef int32_t* cat_c
    cdef uint64_t cat_cap
    cdef int32_t* loc_file_c      # -2: no such location
    cdef uint64_t loc_cap_f
    cdef int32_t* loc_line_c
    cdef uint64_t loc_cap_l
    cdef bint has_default_track
    cdef uint64_t default_track_c
    cdef int64_t default_clock_c  # -1: none (or too large)
    # the incremental clock in use: clocks[inc_id] == inc_value while inc_valid
    cdef bint inc_valid
    cdef uint64_t inc_id
    cdef int64_t inc_value
    # clock_offsets' entry for off_clock, as of offsets generation off_gen
    cdef int64_t off_gen
    cdef uint64_t off_clock
    cdef bint off_present
    cdef bint off_quiet           # absent, and no problem to note for it
    cdef int64_t off_value

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
        self.name_c = self.cat_c = self.loc_file_c = self.loc_line_c = NULL
        self.name_cap = self.cat_cap = self.loc_cap_f = self.loc_cap_l = 0
        self.has_default_track = False
        self.default_clock_c = -1
        self.inc_valid = False
        self.off_gen = -1

    def __dealloc__(self):
        free(self.name_c)
        free(self.cat_c)
        free(self.loc_file_c)
        free(self.loc_line_c)

    cdef int set_map(self, int32_t** m, uint64_t* cap, object iid, object value, int32_t empty) except -1:
        cdef uint64_t i, n, j
        cdef int32_t* grown
        if iid >= MAP_LIMIT:
            return 0
        i = iid
        if i >= cap[0]:
            n = max(<uint64_t>64, cap[0] * 2)
            while n <= i:
                n *= 2
            grown = <int32_t*>realloc(m[0], n * sizeof(int32_t))
            if grown == NULL:
                raise MemoryError()
            for j in range(cap[0], n):
                grown[j] = empty
            m[0] = grown
            cap[0] = n
        m[0][i] = value
        return 0

    cdef reset(self):
        cdef uint64_t j
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
        for j in range(self.name_cap):
            self.name_c[j] = -1
        for j in range(self.cat_cap):
            self.cat_c[j] = -1
        for j in range(self.loc_cap_f):
            self.loc_file_c[j] = -2
        self.inc_valid = False
        self.off_gen = -1

    cdef inline int32_t name_of(self, uint64_t iid) noexcept:
        """The string index of a name iid; -2: look in the dict."""
        if iid < self.name_cap and self.name_c[iid] >= 0:
            return self.name_c[iid]
        return -2

    cdef inline int32_t category_of(self, uint64_t iid) except -3:
        if iid < self.cat_cap:
            return self.cat_c[iid]
        return self.categories.get(iid, -1)


cdef class Decoder:
    cdef public list strings
    cdef dict string_index
    cdef dict sequences
    cdef public dict tracks           # uuid -> dict
    # slice columns
    # Per slice: its track as an index (s_slot, into slot_uuids) and its
    # (name, category, file, line) as a key (s_key, into key_quads): 32 bytes
    # a slice. s_track, s_name, s_cat, s_file and s_line, the core decoder's
    # columns, are made from them when first asked for.
    cdef public object s_ts, s_dur, s_depth, s_args, s_slot, s_key
    cdef carray.array c_slot, c_ts, c_dur, c_depth, c_key, c_args
    cdef object _s_track, _s_name, _s_cat, _s_file, _s_line
    cdef int32_t* key_slots
    cdef uint64_t key_mask
    cdef int32_t* quads
    cdef Py_ssize_t n_keys, cap_keys
    cdef Py_ssize_t n_slices
    cdef public list args             # list of dicts, referenced by s_args
    cdef public list instants         # (track uuid, ts, name, category, args, log)
    cdef public list counters         # (track uuid, ts, value)
    cdef public list samples          # (ts, pid, tid, stack index): stack samples
    cdef public list stacks           # per stack index: ((function, file, line) string indexes, ...), outermost first
    cdef dict stack_index
    cdef public list clock_snapshots
    cdef public object primary_clock
    cdef dict clock_offsets           # clock key -> offset to the primary clock
    cdef int64_t offsets_gen
    cdef public object error
    cdef public Py_ssize_t packets
    cdef public Py_ssize_t unfinished
    cdef int64_t last_ts_c
    cdef bint has_last
    cdef public list problems
    cdef Py_ssize_t inflate_budget
    cdef public bint metadata_only
    cdef public object window_begin   # (ts, args) of the "exectrace window" slice
    # tracks' C state: uuid -> index (open addressing), states by index
    cdef TrackState* states
    cdef Py_ssize_t n_states, cap_states
    cdef int32_t* slots
    cdef uint64_t slot_mask
    cdef list stack_order             # track indexes in the order their first slice began
    cdef list pending                 # args of open slices
    cdef int32_t empty_name           # string index of "" (-1 until interned)
    cdef int32_t window_name          # string index of WINDOW_SLICE_NAME (-1 until interned)
    cdef uint64_t cached_seq
    cdef _Sequence cached

    def __cinit__(self):
        self.strings = []
        self.string_index = {}
        self.sequences = {}
        self.tracks = {}
        self.c_slot = _array.array("i")
        self.c_ts = _array.array("q")
        self.c_dur = _array.array("q")
        self.c_depth = _array.array("i")
        self.c_key = _array.array("i")
        self.c_args = _array.array("i")
        self.s_slot, self.s_ts, self.s_dur, self.s_depth = self.c_slot, self.c_ts, self.c_dur, self.c_depth
        self.s_key, self.s_args = self.c_key, self.c_args
        self._s_track = self._s_name = self._s_cat = self._s_file = self._s_line = None
        self.key_slots = NULL
        self.key_mask = 0
        self.quads = NULL
        self.n_keys = self.cap_keys = 0
        self.n_slices = 0
        self.args = []
        self.instants = []
        self.counters = []
        self.samples = []
        self.stacks = []
        self.stack_index = {}
        self.clock_snapshots = []
        self.primary_clock = None
        self.clock_offsets = {}
        self.offsets_gen = 0
        self.error = None
        self.packets = 0
        self.unfinished = 0
        self.has_last = False
        self.problems = []
        self.states = NULL
        self.n_states = self.cap_states = 0
        self.slots = NULL
        self.slot_mask = 0
        self.stack_order = []
        self.pending = []
        self.empty_name = -1
        self.window_name = -1
        self.cached = None

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.states != NULL:
            for i in range(self.n_states):
                free(self.states[i].stack)
            free(self.states)
        free(self.slots)
        free(self.key_slots)
        free(self.quads)

    # -- the core decoder's columns, made on demand
    @property
    def slot_uuids(self):
        """The track uuid of each s_slot value."""
        return [self.states[i].uuid for i in range(self.n_states)]

    @property
    def key_quads(self):
        """(name, category, file, line) string indexes of each s_key value."""
        return [(self.quads[4 * i], self.quads[4 * i + 1], self.quads[4 * i + 2], self.quads[4 * i + 3])
                for i in range(self.n_keys)]

    cdef object _from_key(self, int part):
        cdef Py_ssize_t n = self.n_slices, i
        out = _array.array("i", bytes(4 * n))
        cdef int32_t[::1] o = out
        for i in range(n):
            o[i] = self.quads[4 * self.c_key.data.as_ints[i] + part]
        return out

    @property
    def s_track(self):
        cdef Py_ssize_t n = self.n_slices, i
        cdef uint64_t[::1] o
        if self._s_track is None:
            out = _array.array("Q", bytes(8 * n))
            o = out
            for i in range(n):
                o[i] = self.states[self.c_slot.data.as_ints[i]].uuid
            self._s_track = out
        return self._s_track

    @property
    def s_name(self):
        if self._s_name is None:
            self._s_name = self._from_key(0)
        return self._s_name

    @property
    def s_cat(self):
        if self._s_cat is None:
            self._s_cat = self._from_key(1)
        return self._s_cat

    @property
    def s_file(self):
        if self._s_file is None:
            self._s_file = self._from_key(2)
        return self._s_file

    @property
    def s_line(self):
        if self._s_line is None:
            self._s_line = self._from_key(3)
        return self._s_line

    cdef int32_t _key(self, int32_t name, int32_t cat, int32_t file, int32_t line) except -1:
        cdef uint64_t h, i, size, j
        cdef int32_t k
        cdef int32_t* grown
        cdef int32_t* q
        if self.key_slots == NULL:
            self.key_mask = 1023
            self.key_slots = <int32_t*>calloc(1024, sizeof(int32_t))
            if self.key_slots == NULL:
                raise MemoryError()
        h = (<uint64_t><uint32_t>name * <uint64_t>0x9E3779B97F4A7C15) ^ (<uint64_t><uint32_t>cat << 17) \
            ^ (<uint64_t><uint32_t>file * <uint64_t>0xC2B2AE3D27D4EB4F) ^ <uint64_t><uint32_t>line
        h ^= h >> 31
        i = h & self.key_mask
        while True:
            k = self.key_slots[i] - 1
            if k < 0:
                break
            q = &self.quads[4 * k]
            if q[0] == name and q[1] == cat and q[2] == file and q[3] == line:
                return k
            i = (i + 1) & self.key_mask
        if self.n_keys == self.cap_keys:
            self.cap_keys = max(256, self.cap_keys * 2)
            q = <int32_t*>realloc(self.quads, 4 * self.cap_keys * sizeof(int32_t))
            if q == NULL:
                raise MemoryError()
            self.quads = q
        k = <int32_t>self.n_keys
        self.n_keys += 1
        q = &self.quads[4 * k]
        q[0], q[1], q[2], q[3] = name, cat, file, line
        self.key_slots[i] = k + 1
        if <uint64_t>self.n_keys * 2 > self.key_mask:
            size = (self.key_mask + 1) * 2
            grown = <int32_t*>calloc(size, sizeof(int32_t))
            if grown == NULL:
                raise MemoryError()
            free(self.key_slots)
            self.key_slots = grown
            self.key_mask = size - 1
            for j in range(<uint64_t>self.n_keys):
                q = &self.quads[4 * j]
                h = (<uint64_t><uint32_t>q[0] * <uint64_t>0x9E3779B97F4A7C15) ^ (<uint64_t><uint32_t>q[1] << 17) \
                    ^ (<uint64_t><uint32_t>q[2] * <uint64_t>0xC2B2AE3D27D4EB4F) ^ <uint64_t><uint32_t>q[3]
                h ^= h >> 31
                i = h & self.key_mask
                while self.key_slots[i]:
                    i = (i + 1) & self.key_mask
                self.key_slots[i] = <int32_t>j + 1
        return k

    @property
    def last_timestamp(self):
        return self.last_ts_c if self.has_last else None

    cdef inline void _set_last(self, int64_t ts) noexcept:
        self.last_ts_c = ts
        self.has_last = True

    cdef int intern(self, object s) except -1:
        cdef object i = self.string_index.get(s)
        if i is None:
            i = len(self.strings)
            self.strings.append(s)
            self.string_index[s] = i
            if s == WINDOW_SLICE_NAME:
                self.window_name = i
        return i

    cdef str text(self, const pb_field* f):
        return (<const char*>f.data)[:f.size].decode("utf-8", "replace")

    cdef _problem(self, str message):
        """Notes something odd but readable; a flood of them is not kept."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... (further problems not listed)")

    # -- tracks' C state
    cdef TrackState* _state(self, uint64_t uuid) except NULL:
        cdef uint64_t h, i, size, j
        cdef int32_t k
        cdef int32_t* grown
        cdef TrackState* more
        if self.slots == NULL:
            self.slot_mask = 63
            self.slots = <int32_t*>calloc(64, sizeof(int32_t))
            if self.slots == NULL:
                raise MemoryError()
        h = uuid * <uint64_t>0x9E3779B97F4A7C15
        h ^= h >> 29
        i = h & self.slot_mask
        while True:
            k = self.slots[i] - 1
            if k < 0:
                break
            if self.states[k].uuid == uuid:
                return &self.states[k]
            i = (i + 1) & self.slot_mask
        if self.n_states == self.cap_states:
            self.cap_states = max(16, self.cap_states * 2)
            more = <TrackState*>realloc(self.states, self.cap_states * sizeof(TrackState))
            if more == NULL:
                raise MemoryError()
            self.states = more
        k = <int32_t>self.n_states
        self.n_states += 1
        self.states[k].uuid = uuid
        self.states[k].has_last = False
        self.states[k].has_stack = False
        self.states[k].stack = NULL
        self.states[k].depth = 0
        self.states[k].cap = 0
        self.slots[i] = k + 1
        if <uint64_t>self.n_states * 2 > self.slot_mask:
            size = (self.slot_mask + 1) * 2
            grown = <int32_t*>calloc(size, sizeof(int32_t))
            if grown == NULL:
                raise MemoryError()
            free(self.slots)
            self.slots = grown
            self.slot_mask = size - 1
            for j in range(<uint64_t>self.n_states):
                h = self.states[j].uuid * <uint64_t>0x9E3779B97F4A7C15
                h ^= h >> 29
                i = h & self.slot_mask
                while self.slots[i]:
                    i = (i + 1) & self.slot_mask
                self.slots[i] = <int32_t>j + 1
        return &self.states[k]

    cdef int _push(self, TrackState* t, Py_ssize_t index, Open* o) except -1:
        cdef Open* grown
        if t.depth == t.cap:
            t.cap = max(16, t.cap * 2)
            grown = <Open*>realloc(t.stack, t.cap * sizeof(Open))
            if grown == NULL:
                raise MemoryError()
            t.stack = grown
        if not t.has_stack:
            t.has_stack = True
            self.stack_order.append(index)
        t.stack[t.depth] = o[0]
        t.depth += 1
        return 0

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
        cdef bint has_ts = False, has_clock = False
        cdef uint64_t ts_raw = 0, clock_raw = 0
        cdef uint64_t seq = 0
        cdef uint64_t flags = 0
        cdef int parts = 0
        self.packets += 1
        while True:
            rc = pb_next(&r, &f)
            if rc == 0:
                break
            if rc < 0:
                raise DecodeError(f"malformed packet #{self.packets}")
            if f.number == F_TIMESTAMP and f.wire == PB_VARINT:
                ts_raw = f.value
                has_ts = True
            elif f.number == F_TIMESTAMP_CLOCK_ID and f.wire == PB_VARINT:
                clock_raw = f.value
                has_clock = True
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
            elif f.wire == PB_LEN and (f.number == F_TRACK_EVENT or f.number == F_TRACK_DESCRIPTOR
                                       or f.number == F_INTERNED_DATA or f.number == F_PACKET_DEFAULTS
                                       or f.number == F_CLOCK_SNAPSHOT or f.number == F_PERF_SAMPLE):
                parts += 1
        if not parts:
            return
        cdef _Sequence s
        if self.cached is not None and self.cached_seq == seq:
            s = self.cached
        else:
            s = self.sequences.get(seq)
            if s is None:
                s = _Sequence()
                self.sequences[seq] = s
            self.cached = s
            self.cached_seq = seq
        if flags & SEQ_INCREMENTAL_STATE_CLEARED:
            s.reset()
        # interned data and defaults first: a packet may use what it defines
        r = pb_sub(pf)
        while pb_next(&r, &f) == 1:
            if f.wire != PB_LEN:
                continue
            if f.number == F_INTERNED_DATA:
                self._interned(s, &f)
            elif f.number == F_PACKET_DEFAULTS:
                self._defaults(s, &f)
            elif f.number == F_CLOCK_SNAPSHOT:
                self._clock_snapshot(seq, s, &f)
        cdef int64_t ts
        cdef bint ok
        r = pb_sub(pf)
        while pb_next(&r, &f) == 1:
            if f.wire != PB_LEN:
                continue
            if f.number == F_TRACK_DESCRIPTOR:
                self._track_descriptor(&f)
            elif f.number == F_TRACK_EVENT:
                ok = self._timestamp(seq, s, has_ts, ts_raw, has_clock, clock_raw, &ts)
                self._track_event(seq, s, &f, ok, ts)
            elif f.number == F_PERF_SAMPLE and not self.metadata_only:
                ok = self._timestamp(seq, s, has_ts, ts_raw, has_clock, clock_raw, &ts)
                self._perf_sample(s, &f, ts if ok else None)

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
    cdef bint _timestamp(self, uint64_t seq, _Sequence s, bint has_ts, uint64_t raw, bint has_clock,
                         uint64_t clock_raw, int64_t* out) except -1:
        """The packet's timestamp in the trace clock into out; False: none
        (no timestamp on the packet and none before it). The common case
        (the sequence's incremental clock, its offset known) in C; anything
        else by _timestamp_slow, the original code."""
        cdef uint64_t cid
        cdef int64_t v, t
        if not has_ts:
            if self.has_last:
                out[0] = self.last_ts_c
                return True
            return False
        if has_clock:
            cid = clock_raw
        elif s.default_clock is not None:
            if s.default_clock_c < 0:
                return self._slow(seq, s, raw, has_clock, clock_raw, out)
            cid = <uint64_t>s.default_clock_c
        else:
            cid = 6
        if raw >= <uint64_t>FAST_LIMIT:
            return self._slow(seq, s, raw, has_clock, clock_raw, out)
        if 64 <= cid <= 127:
            if s.inc_valid and s.inc_id == cid and s.inc_value < FAST_LIMIT:
                v = s.inc_value + <int64_t>raw
            elif s.inc_valid or s.clocks:  # another clock of the sequence, or not cached yet
                return self._slow(seq, s, raw, has_clock, clock_raw, out)
            else:
                v = <int64_t>raw
        else:
            v = <int64_t>raw
        if s.off_gen != self.offsets_gen or s.off_clock != cid:
            return self._slow(seq, s, raw, has_clock, clock_raw, out)
        if s.off_present:
            t = v + s.off_value
        elif s.off_quiet:
            t = v
        else:
            return self._slow(seq, s, raw, has_clock, clock_raw, out)
        if t < 0:
            return self._slow(seq, s, raw, has_clock, clock_raw, out)
        if 64 <= cid <= 127 and s.inc_valid:
            s.inc_value = v
        self.last_ts_c = t
        self.has_last = True
        out[0] = t
        return True

    cdef bint _slow(self, uint64_t seq, _Sequence s, uint64_t raw, bint has_clock, uint64_t clock_raw,
                    int64_t* out) except -1:
        ts = self._timestamp_slow(seq, s, raw, clock_raw if has_clock else None)
        if ts is None:
            return False
        out[0] = ts
        return True

    cdef _sync(self, _Sequence s):
        """The C copy of the incremental clock back into s.clocks."""
        if s.inc_valid:
            s.clocks[s.inc_id] = s.inc_value

    cdef _refresh(self, uint64_t seq, _Sequence s, object clock_id):
        """After the slow path: cache its clock and offset for the fast one."""
        cdef object value
        if clock_id is None or not (0 <= clock_id < FAST_LIMIT):
            s.inc_valid = False
            s.off_gen = -1
            return
        value = s.clocks.get(clock_id) if 64 <= clock_id <= 127 else None
        if value is not None and len(s.clocks) == 1 and 0 <= value < FAST_LIMIT:
            s.inc_valid = True
            s.inc_id = clock_id
            s.inc_value = value
        else:
            s.inc_valid = False
            if s.clocks:
                s.off_gen = -1
                return
        key = (seq, clock_id) if 64 <= clock_id <= 127 else clock_id
        offset = self.clock_offsets.get(key)
        s.off_clock = clock_id
        s.off_gen = self.offsets_gen
        s.off_present = False
        s.off_quiet = False
        if offset is not None:
            if -FAST_LIMIT < offset < FAST_LIMIT:
                s.off_present = True
                s.off_value = offset
            else:
                s.off_gen = -1
        elif self.primary_clock is None or key == self.primary_clock:
            s.off_quiet = True

    cdef object _timestamp_slow(self, uint64_t seq, _Sequence s, object ts, object clock_id):
        if ts is None:
            return self.last_timestamp
        self._sync(s)
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
        self._set_last(ts)
        self._refresh(seq, s, clock_id)
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
        self._sync(s)
        s.inc_valid = False
        self.offsets_gen += 1
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
                s.default_clock_c = f.value if f.value < 0x7FFFFFFF else -1
            elif f.number == 11 and f.wire == PB_LEN:
                tr = pb_sub(&f)
                while pb_next(&tr, &g) == 1:
                    if g.number == 11 and g.wire == PB_VARINT:
                        s.default_track = g.value
                        s.has_default_track = True
                        s.default_track_c = g.value

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
                s.set_map(&s.cat_c, &s.cat_cap, iid, s.categories[iid], -1)
            elif f.number == 2:
                s.names[iid] = self.intern(name)
                s.set_map(&s.name_c, &s.name_cap, iid, s.names[iid], -1)
            elif f.number == 3:
                s.annotation_names[iid] = name
            elif f.number == 4:
                s.locations[iid] = (self.intern(file), self.intern(name), line)
                s.set_map(&s.loc_file_c, &s.loc_cap_f, iid, s.locations[iid][0], -2)
                s.set_map(&s.loc_line_c, &s.loc_cap_l, iid, line, 0)
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
    cdef _track_event(self, uint64_t seq, _Sequence s, const pb_field* pf, bint has_ts, int64_t ts):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        cdef uint64_t type = 0
        cdef int32_t name = -1
        cdef bint has_name = False
        cdef object category = -1
        cdef int32_t loc_file = -1, loc_line = 0
        cdef bint has_track = s.has_default_track
        cdef uint64_t track = s.default_track_c
        cdef object args = None
        cdef object log = None
        cdef object counter = None
        cdef object flows = None
        cdef pb_reader pr
        cdef uint64_t v
        cdef int32_t found
        cdef object named
        cdef int n_categories
        while pb_next(&r, &f) == 1:
            if f.number == F_TE_TYPE and f.wire == PB_VARINT:
                type = f.value
            elif f.number == F_TE_NAME_IID and f.wire == PB_VARINT:
                found = s.name_of(f.value)
                if found == -2:
                    named = s.names.get(f.value)
                    if named is None:
                        raise DecodeError(
                            f"packet #{self.packets}: event name iid {f.value} is not defined on "
                            f"sequence {seq}")
                    found = named
                name = found
                has_name = True
            elif f.number == F_TE_NAME and f.wire == PB_LEN:
                name = self.intern(self.text(&f))
                has_name = True
            elif f.number == F_TE_TRACK_UUID and f.wire == PB_VARINT:
                track = f.value
                has_track = True
            elif f.number == F_TE_CATEGORY_IIDS:
                # several categories read as one, comma-separated (as Perfetto shows them)
                if f.wire == PB_VARINT:
                    category = self._add_category(category, s.category_of(f.value))
                elif f.wire == PB_LEN:
                    pr = pb_sub(&f)
                    n_categories = 0
                    while n_categories < 16 and pb_read_varint(&pr, &v) == 0:
                        category = self._add_category(category, s.category_of(v))
                        n_categories += 1
            elif f.number == 22 and f.wire == PB_LEN:
                category = self._add_category(category, self.intern(self.text(&f)))
            elif f.number == F_TE_SOURCE_LOCATION_IID and f.wire == PB_VARINT:
                if f.value < s.loc_cap_f:
                    loc_file = s.loc_file_c[f.value]
                    if loc_file == -2:
                        loc_file, loc_line = -1, 0
                    else:
                        loc_line = s.loc_line_c[f.value]
                else:
                    location = s.locations.get(f.value)
                    if location is None:
                        loc_file, loc_line = -1, 0
                    else:
                        loc_file, loc_line = location[0], location[2]
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
        if not has_track:
            self._problem(f"packet #{self.packets}: track event without a track")
            return
        if not has_ts:
            ts = 0
        cdef TrackState* t = self._state(track)
        if t.has_last and ts < t.last_ts:
            self._problem(f"timestamps go backwards on track {track}")
        t.last_ts = ts
        t.has_last = True
        if flows:
            if args is None:
                args = {}
            args["flows"] = flows
        cdef Open o
        cdef Py_ssize_t index
        if type == TYPE_SLICE_BEGIN:
            if self.metadata_only and has_name and name == self.window_name:
                self.window_begin = (ts, args or {})
                raise _FoundWindow()
            if not has_name:
                if self.empty_name < 0:
                    self.empty_name = self.intern("")
                name = self.empty_name
            o.ts = ts
            o.name = name
            o.cat = category
            o.file = loc_file
            o.line = loc_line
            if args is None:
                o.args = -1
            else:
                o.args = len(self.pending)
                self.pending.append(args)
            index = t - self.states
            self._push(t, index, &o)
        elif type == TYPE_SLICE_END:
            if t.depth == 0:
                self._problem(f"slice end with no open slice on track {track}")
                return
            t.depth -= 1
            o = t.stack[t.depth]
            begin_args = None
            if o.args >= 0:
                begin_args = self.pending[o.args]
                self.pending[o.args] = None
                if o.args == len(self.pending) - 1:
                    self.pending.pop()
            if args is not None:  # arguments given at the end merge into the slice
                merged = dict(begin_args or {})
                merged.update(args)
                begin_args = merged
            self._add_slice(<int32_t>(t - self.states), &o, begin_args, ts, t.depth)
        elif type == TYPE_INSTANT:
            if not has_name:
                name = self.intern("")
            self.instants.append((track, ts, name, category, args, log))
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

    cdef int _add_slice(self, int32_t slot, const Open* o, object args, int64_t end, Py_ssize_t depth) except -1:
        cdef Py_ssize_t n = self.n_slices
        cdef int32_t key = self._key(o.name, o.cat, o.file, o.line)
        carray.resize_smart(self.c_slot, n + 1)
        carray.resize_smart(self.c_ts, n + 1)
        carray.resize_smart(self.c_dur, n + 1)
        carray.resize_smart(self.c_depth, n + 1)
        carray.resize_smart(self.c_key, n + 1)
        carray.resize_smart(self.c_args, n + 1)
        self.c_slot.data.as_ints[n] = slot
        self.c_ts.data.as_longlongs[n] = o.ts
        self.c_dur.data.as_longlongs[n] = end - o.ts if end >= o.ts else 0
        self.c_depth.data.as_ints[n] = <int>depth
        self.c_key.data.as_ints[n] = key
        if args is None:
            self.c_args.data.as_ints[n] = -1
        else:
            self.c_args.data.as_ints[n] = len(self.args)
            self.args.append(args)
        self.n_slices = n + 1
        return 0

    cdef _close_open_slices(self):
        """Slices still open at the end (a truncated trace) end at the last timestamp."""
        cdef TrackState* t
        cdef Open o
        cdef int64_t end
        for index in self.stack_order:
            t = &self.states[<Py_ssize_t>index]
            end = self.last_ts_c if self.has_last else 0
            while t.depth:
                t.depth -= 1
                o = t.stack[t.depth]
                args = dict((self.pending[o.args] if o.args >= 0 else None) or {})
                args["unfinished"] = True
                self._add_slice(<int32_t>index, &o, args, max(end, o.ts), t.depth)
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
    decoder = Decoder()
    decoder.metadata_only = metadata_only
    decoder.decode(memoryview(data).cast("B") if not isinstance(data, bytes) else data)
    return decoder
