# The reader: Perfetto protobuf back into columns (the schema:
# src/native/perfetto_schema.h).  Included by src/_tracecore.pyx.

from libc.stdint cimport int64_t, uint8_t, uint64_t

from pbwire cimport *
from perfetto_schema cimport *

# ----------------------------------------------------------------- reader
#
# Perfetto protobuf back into columns, for exectrace.read() and the analysis
# commands.  It understands the TrackEvent subset trace files use (exectrace's
# own and any SDK-written track-event trace): packets, compressed_packets,
# sequence-scoped interning and incremental clocks, track descriptors,
# begin/end/instant/counter events, debug annotations and log messages.
# Damaged input never raises from the middle: decoding stops at the first
# malformed packet and `error` says where; what came before is kept.

# module-level C variables, not attributes of the extension module
import array
import zlib
cdef object _array = array
cdef object _zlib = zlib
del array, zlib

cdef enum:
    MAX_NESTING = 16
    MAX_INFLATED = 64 * 1024 * 1024
    INFLATE_RATIO = 32
    MAX_PROBLEMS = 1000

# Timestamps are int64 nanoseconds; outside [0, 2**63) a file is damaged.
cdef object _MAX_TS = 2**63 - 1


cdef str _WINDOW_SLICE_NAME = ET_WINDOW_SLICE_NAME.decode("ascii")


cdef inline bint _sequence_scoped(object clock_id):
    return PF_CLOCK_FIRST_SEQUENCE_SCOPED <= clock_id <= PF_CLOCK_LAST_SEQUENCE_SCOPED


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

    def __cinit__(self):
        self.names = {}
        self.categories = {}
        self.locations = {}
        self.annotation_names = {}
        self.log_bodies = {}
        self.clocks = {}
        self.annotation_strings = {}
        self.function_names = {}
        self.mapping_paths = {}
        self.mappings = {}
        self.frames = {}
        self.callstacks = {}
        self.default_clock = None
        self.default_track = None
        self.cleared = False

    cdef reset(self):
        self.names.clear()
        self.categories.clear()
        self.locations.clear()
        self.annotation_names.clear()
        self.log_bodies.clear()
        self.annotation_strings.clear()
        self.function_names.clear()
        self.mapping_paths.clear()
        self.mappings.clear()
        self.frames.clear()
        self.callstacks.clear()
        self.clocks.clear()
        self.cleared = True


class _DecodeError(Exception):
    pass


class _FoundWindow(Exception):
    """Ends a metadata-only decode."""




cdef class _Decoder:
    cdef public list strings
    cdef dict string_index
    cdef dict sequences
    cdef public dict tracks           # uuid -> dict
    cdef dict open_slices             # uuid -> list of open begin tuples
    cdef dict last_ts                 # uuid -> last timestamp on the track
    # slice columns
    cdef public object s_track, s_ts, s_dur, s_depth, s_name, s_cat, s_file, s_line, s_args
    cdef public list args             # list of dicts, referenced by s_args
    cdef public list instants         # (track uuid, ts, name, category, args, log)
    cdef public list counters         # (track uuid, ts, value)
    cdef public list samples          # (ts, pid, tid, stack index): stack samples
    cdef public list stacks           # per stack index: ((function, file, line) string indexes, ...), outermost first
    cdef dict stack_index
    cdef public list clock_snapshots
    cdef public object primary_clock
    cdef dict clock_offsets           # clock key -> offset to the primary clock
    cdef public object error
    cdef public Py_ssize_t packets
    cdef public Py_ssize_t unfinished
    cdef public object last_timestamp
    cdef public list problems
    cdef Py_ssize_t inflate_budget
    # metadata-only decoding stops at the window slice's begin (about the
    # first 20 KB of an exectrace file)
    cdef public bint metadata_only
    cdef public object window_begin   # (ts, args) of the "exectrace window" slice

    def __cinit__(self):
        self.strings = []
        self.string_index = {}
        self.sequences = {}
        self.tracks = {}
        self.open_slices = {}
        self.last_ts = {}
        self.s_track = _array.array("Q")   # track uuids are uint64
        self.s_ts = _array.array("q")
        self.s_dur = _array.array("q")
        self.s_depth = _array.array("i")
        self.s_name = _array.array("i")
        self.s_cat = _array.array("i")
        self.s_file = _array.array("i")
        self.s_line = _array.array("i")
        self.s_args = _array.array("i")
        self.args = []
        self.instants = []
        self.counters = []
        self.samples = []
        self.stacks = []
        self.stack_index = {}
        self.clock_snapshots = []
        self.primary_clock = None
        self.clock_offsets = {}
        self.error = None
        self.packets = 0
        self.unfinished = 0
        self.last_timestamp = None
        self.problems = []

    cdef int intern(self, object s) except -1:
        cdef object i = self.string_index.get(s)
        if i is None:
            i = len(self.strings)
            self.strings.append(s)
            self.string_index[s] = i
        return i

    cdef str text(self, const pb_field* f):
        return (<const char*>f.data)[:f.size].decode("utf-8", "replace")

    cdef _problem(self, str message):
        """Notes something odd but readable; a flood of them is not kept."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == MAX_PROBLEMS:
            self.problems.append("... (further problems not listed)")

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
        except _DecodeError as e:
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
                raise _DecodeError(
                    f"malformed or truncated data at byte {where} of {size}"
                    + (" (inside a compressed chunk)" if depth else ""))
            if f.number == PF_TRACE_PACKET and f.wire == PB_LEN:
                self._packet(&f, depth)

    cdef _packet(self, const pb_field* pf, int depth):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        cdef int rc
        cdef object ts = None
        cdef object clock_id = None
        cdef uint64_t seq = 0
        cdef uint64_t flags = 0
        cdef const uint8_t* event = NULL
        cdef size_t event_size = 0
        cdef list parts = []
        self.packets += 1
        while True:
            rc = pb_next(&r, &f)
            if rc == 0:
                break
            if rc < 0:
                raise _DecodeError(f"malformed packet #{self.packets}")
            if f.number == PF_PACKET_TIMESTAMP and f.wire == PB_VARINT:
                ts = f.value
            elif f.number == PF_PACKET_TIMESTAMP_CLOCK_ID and f.wire == PB_VARINT:
                clock_id = f.value
            elif f.number == PF_PACKET_SEQUENCE_ID and f.wire == PB_VARINT:
                seq = f.value
            elif f.number == PF_PACKET_SEQUENCE_FLAGS and f.wire == PB_VARINT:
                flags = f.value
            elif f.number == PF_PACKET_INCREMENTAL_STATE_CLEARED and f.wire == PB_VARINT and f.value:
                flags |= PF_SEQ_INCREMENTAL_STATE_CLEARED
            elif f.number == PF_PACKET_COMPRESSED_PACKETS and f.wire == PB_LEN:
                if depth > 0:
                    raise _DecodeError("compressed packets nested inside compressed packets")
                self._inflate(&f)
            elif f.wire == PB_LEN and f.number in (PF_PACKET_TRACK_EVENT, PF_PACKET_TRACK_DESCRIPTOR,
                                                 PF_PACKET_INTERNED_DATA, PF_PACKET_DEFAULTS,
                                                 PF_PACKET_CLOCK_SNAPSHOT, PF_PACKET_PERF_SAMPLE):
                parts.append((f.number, <size_t>(f.data - pf.data), f.size))
        if not parts:
            return
        cdef _Sequence s = self.sequences.get(seq)
        if s is None:
            s = _Sequence()
            self.sequences[seq] = s
        if flags & PF_SEQ_INCREMENTAL_STATE_CLEARED:
            s.reset()
        cdef pb_field sub
        # interned data and defaults first: a packet may use what it defines
        for number, offset, length in parts:
            sub.data = pf.data + <size_t>offset
            sub.size = length
            if number == PF_PACKET_INTERNED_DATA:
                self._interned(s, &sub)
            elif number == PF_PACKET_DEFAULTS:
                self._defaults(s, &sub)
            elif number == PF_PACKET_CLOCK_SNAPSHOT:
                self._clock_snapshot(seq, s, &sub)
        for number, offset, length in parts:
            sub.data = pf.data + <size_t>offset
            sub.size = length
            if number == PF_PACKET_TRACK_DESCRIPTOR:
                self._track_descriptor(&sub)
            elif number == PF_PACKET_TRACK_EVENT:
                self._track_event(seq, s, &sub, self._timestamp(seq, s, ts, clock_id))
            elif number == PF_PACKET_PERF_SAMPLE and not self.metadata_only:
                self._perf_sample(s, &sub, self._timestamp(seq, s, ts, clock_id))

    cdef _inflate(self, const pb_field* f):
        inflater = _zlib.decompressobj()
        cdef Py_ssize_t room = min(<Py_ssize_t>MAX_INFLATED, self.inflate_budget)
        if room <= 0:
            raise _DecodeError(
                f"compressed chunks inflate to more than {INFLATE_RATIO}x the file's size: "
                "not a trace written by exectrace")
        try:
            inner = inflater.decompress((<const char*>f.data)[:f.size], room)
        except _zlib.error as e:
            raise _DecodeError(f"corrupt compressed chunk in packet #{self.packets}: {e}")
        if inflater.unconsumed_tail:
            raise _DecodeError(
                f"compressed chunk in packet #{self.packets} inflates past "
                + ("64 MiB" if room == MAX_INFLATED else f"{INFLATE_RATIO}x the file's size"))
        self.inflate_budget -= len(inner)
        if not inflater.eof:
            raise _DecodeError(f"truncated compressed chunk in packet #{self.packets}")
        cdef const uint8_t[::1] view = inner
        if view.shape[0]:
            self._packets(&view[0], view.shape[0], 1)

    # -- clocks
    cdef object _timestamp(self, uint64_t seq, _Sequence s, object ts, object clock_id):
        if ts is None:
            return self.last_timestamp
        if clock_id is None:
            clock_id = s.default_clock if s.default_clock is not None else PF_CLOCK_BOOTTIME
        cdef object key = clock_id
        if _sequence_scoped(clock_id):
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
            raise _DecodeError(f"packet #{self.packets}: timestamp {ts} is out of range")
        self.last_timestamp = ts
        return ts

    cdef _clock_snapshot(self, uint64_t seq, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader cr
        cdef pb_field f, g
        clocks = []
        primary = None
        while pb_next(&r, &f) == 1:
            if f.number == PF_CLOCK_SNAPSHOT_CLOCKS and f.wire == PB_LEN:
                cr = pb_sub(&f)
                cid, cts, incremental = None, 0, False
                while pb_next(&cr, &g) == 1:
                    if g.wire != PB_VARINT:   # g.value is only set for scalars
                        continue
                    if g.number == PF_CLOCK_ID:
                        cid = g.value
                    elif g.number == PF_CLOCK_TIMESTAMP:
                        cts = g.value
                    elif g.number == PF_CLOCK_IS_INCREMENTAL:
                        incremental = bool(g.value)
                if cid is not None:
                    clocks.append((cid, cts, incremental))
            elif f.number == PF_CLOCK_SNAPSHOT_PRIMARY_TRACE_CLOCK and f.wire == PB_VARINT:
                primary = f.value
        if not clocks:
            return
        if self.primary_clock is None:
            self.primary_clock = primary if primary is not None else PF_CLOCK_BOOTTIME
            self.clock_offsets[self.primary_clock] = 0
        self.clock_snapshots.append(clocks)
        # Anchor: a clock of the snapshot whose offset is known already.
        anchor = None
        for cid, cts, incremental in clocks:
            key = (seq, cid) if _sequence_scoped(cid) else cid
            if key in self.clock_offsets:
                anchor = cts + self.clock_offsets[key]
                break
        if anchor is None:
            cid, cts, incremental = clocks[0]
            anchor = cts   # unrelated to anything known: taken as the primary domain
        for cid, cts, incremental in clocks:
            key = (seq, cid) if _sequence_scoped(cid) else cid
            self.clock_offsets[key] = anchor - cts
            if incremental and _sequence_scoped(cid):
                s.clocks[cid] = cts

    # -- sequence state
    cdef _defaults(self, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader tr
        cdef pb_field f, g
        while pb_next(&r, &f) == 1:
            if f.number == PF_DEFAULTS_TIMESTAMP_CLOCK_ID and f.wire == PB_VARINT:
                s.default_clock = f.value
            elif f.number == PF_DEFAULTS_TRACK_EVENT and f.wire == PB_LEN:
                tr = pb_sub(&f)
                while pb_next(&tr, &g) == 1:
                    if g.number == PF_TRACK_EVENT_DEFAULTS_TRACK_UUID and g.wire == PB_VARINT:
                        s.default_track = g.value

    cdef _interned(self, _Sequence s, const pb_field* pf):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_reader er
        cdef pb_field f, g
        cdef object iid
        while pb_next(&r, &f) == 1:
            if f.wire == PB_LEN and f.number in (
                    PF_INTERNED_FUNCTION_NAMES, PF_INTERNED_FRAMES, PF_INTERNED_CALLSTACKS,
                    PF_INTERNED_MAPPING_PATHS, PF_INTERNED_MAPPINGS, PF_INTERNED_ANNOTATION_STRINGS):
                self._interned_profile(s, &f)
                continue
            if f.wire != PB_LEN or f.number not in (
                    PF_INTERNED_EVENT_CATEGORIES, PF_INTERNED_EVENT_NAMES,
                    PF_INTERNED_DEBUG_ANNOTATION_NAMES, PF_INTERNED_SOURCE_LOCATIONS,
                    PF_INTERNED_LOG_MESSAGE_BODY):
                continue
            location = f.number == PF_INTERNED_SOURCE_LOCATIONS
            er = pb_sub(&f)
            iid = None
            name = ""
            file = ""
            line = 0
            while pb_next(&er, &g) == 1:
                if g.number == PF_INTERNED_IID and g.wire == PB_VARINT:
                    iid = g.value
                elif location and g.number == PF_SOURCE_LOCATION_FILE_NAME and g.wire == PB_LEN:
                    file = self.text(&g)
                elif location and g.number == PF_SOURCE_LOCATION_FUNCTION_NAME and g.wire == PB_LEN:
                    name = self.text(&g)
                elif location and g.number == PF_SOURCE_LOCATION_LINE_NUMBER and g.wire == PB_VARINT:
                    line = g.value if g.value <= 0x7FFFFFFF else 0  # s_line is int32
                elif not location and g.number == PF_INTERNED_NAME and g.wire == PB_LEN:
                    name = self.text(&g)
            if iid is None:
                continue
            if f.number == PF_INTERNED_EVENT_CATEGORIES:
                s.categories[iid] = self.intern(name)
            elif f.number == PF_INTERNED_EVENT_NAMES:
                s.names[iid] = self.intern(name)
            elif f.number == PF_INTERNED_DEBUG_ANNOTATION_NAMES:
                s.annotation_names[iid] = name
            elif location:
                s.locations[iid] = (self.intern(file), self.intern(name), line)
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
            if g.number == PF_INTERNED_IID and g.wire == PB_VARINT:
                iid = g.value
            elif pf.number == PF_INTERNED_CALLSTACKS and g.number == PF_CALLSTACK_FRAME_IDS:
                if g.wire == PB_VARINT:
                    frame_ids.append(g.value)
                elif g.wire == PB_LEN:  # packed
                    ids = pb_sub(&g)
                    while ids.p < ids.end and pb_read_varint(&ids, &v) == 1:
                        frame_ids.append(v)
            elif g.number == PF_INTERNED_STRING and g.wire == PB_LEN:
                text = self.text(&g)
            elif pf.number == PF_INTERNED_MAPPINGS and g.number == PF_MAPPING_PATH_STRING_IDS:
                if g.wire == PB_VARINT:
                    numbers.setdefault(g.number, g.value)
                elif g.wire == PB_LEN:
                    ids = pb_sub(&g)
                    if pb_read_varint(&ids, &v) == 1:
                        numbers.setdefault(g.number, v)
            elif g.wire == PB_VARINT:
                numbers[g.number] = g.value
        if iid is None:
            return
        if pf.number == PF_INTERNED_ANNOTATION_STRINGS:
            s.annotation_strings[iid] = text or ""
        elif pf.number == PF_INTERNED_FUNCTION_NAMES:
            s.function_names[iid] = self.intern(text or "")
        elif pf.number == PF_INTERNED_MAPPING_PATHS:
            s.mapping_paths[iid] = self.intern(text or "")
        elif pf.number == PF_INTERNED_MAPPINGS:
            s.mappings[iid] = s.mapping_paths.get(numbers.get(PF_MAPPING_PATH_STRING_IDS), self.intern(""))
        elif pf.number == PF_INTERNED_FRAMES:
            line = numbers.get(PF_FRAME_REL_PC, 0)
            s.frames[iid] = (s.function_names.get(numbers.get(PF_FRAME_FUNCTION_NAME_ID), self.intern("?")),
                             s.mappings.get(numbers.get(PF_FRAME_MAPPING_ID), self.intern("")),
                             line if line <= 0x7FFFFFFF else 0)
        elif pf.number == PF_INTERNED_CALLSTACKS:
            s.callstacks[iid] = tuple(frame_ids)

    cdef _perf_sample(self, _Sequence s, const pb_field* pf, object ts):
        """A stack sample: (ts, pid, tid, callstack index) in self.samples."""
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field g
        pid = tid = stack = 0
        while pb_next(&r, &g) == 1:
            if g.wire != PB_VARINT:
                continue
            if g.number == PF_PERF_SAMPLE_PID:
                pid = g.value
            elif g.number == PF_PERF_SAMPLE_TID:
                tid = g.value
            elif g.number == PF_PERF_SAMPLE_CALLSTACK_IID:
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
            if f.number == PF_TRACK_UUID and f.wire == PB_VARINT:
                track["uuid"] = f.value
            elif f.number == PF_TRACK_PARENT_UUID and f.wire == PB_VARINT:
                track["parent"] = f.value
            elif f.number == PF_TRACK_NAME and f.wire == PB_LEN:
                track["name"] = self.text(&f)
            elif f.number == PF_TRACK_COUNTER and f.wire == PB_LEN:
                track["kind"] = "counter"
            elif f.number == PF_TRACK_PROCESS and f.wire == PB_LEN:
                track["kind"] = "process"
                dr = pb_sub(&f)
                while pb_next(&dr, &g) == 1:
                    if g.number == PF_PROCESS_PID and g.wire == PB_VARINT:
                        track["pid"] = g.value
                    elif g.number == PF_PROCESS_NAME and g.wire == PB_LEN:
                        track["name"] = self.text(&g)
            elif f.number == PF_TRACK_THREAD and f.wire == PB_LEN:
                track["kind"] = "thread"
                dr = pb_sub(&f)
                while pb_next(&dr, &g) == 1:
                    if g.number == PF_THREAD_PID and g.wire == PB_VARINT:
                        track["pid"] = g.value
                    elif g.number == PF_THREAD_TID and g.wire == PB_VARINT:
                        track["tid"] = g.value
                    elif g.number == PF_THREAD_NAME and g.wire == PB_LEN:
                        track["name"] = self.text(&g)
        if track["uuid"] is not None:
            known = self.tracks.get(track["uuid"])
            if known is None:
                self.tracks[track["uuid"]] = track
            else:
                known.update({k: v for k, v in track.items() if v is not None})

    # -- events
    cdef _track_event(self, uint64_t seq, _Sequence s, const pb_field* pf, object ts):
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        cdef uint64_t type = 0
        cdef object name = None
        cdef object category = -1
        cdef object location = None
        cdef object track = s.default_track
        cdef object args = None
        cdef object log = None
        cdef object counter = None
        cdef object flows = None
        cdef pb_reader pr
        cdef uint64_t v
        while pb_next(&r, &f) == 1:
            if f.number == PF_EVENT_TYPE and f.wire == PB_VARINT:
                type = f.value
            elif f.number == PF_EVENT_NAME_IID and f.wire == PB_VARINT:
                name = s.names.get(f.value)
                if name is None:
                    raise _DecodeError(
                        f"packet #{self.packets}: event name iid {f.value} is not defined on "
                        f"sequence {seq}")
            elif f.number == PF_EVENT_NAME and f.wire == PB_LEN:
                name = self.intern(self.text(&f))
            elif f.number == PF_EVENT_TRACK_UUID and f.wire == PB_VARINT:
                track = f.value
            elif f.number == PF_EVENT_CATEGORY_IIDS:
                # several categories read as one, comma-separated (as Perfetto shows them)
                if f.wire == PB_VARINT:
                    category = self._add_category(category, s.categories.get(f.value, -1))
                elif f.wire == PB_LEN:
                    pr = pb_sub(&f)
                    n_categories = 0
                    while n_categories < 16 and pb_read_varint(&pr, &v) == 0:
                        category = self._add_category(category, s.categories.get(v, -1))
                        n_categories += 1
            elif f.number == PF_EVENT_CATEGORIES and f.wire == PB_LEN:
                category = self._add_category(category, self.intern(self.text(&f)))
            elif f.number == PF_EVENT_SOURCE_LOCATION_IID and f.wire == PB_VARINT:
                location = s.locations.get(f.value)
            elif f.number == PF_EVENT_DEBUG_ANNOTATIONS and f.wire == PB_LEN:
                if args is None:
                    args = {}
                key, value = self._annotation(s, &f, 0)
                args[key] = value
            elif f.number == PF_EVENT_LOG_MESSAGE and f.wire == PB_LEN:
                log = self._log_message(s, &f)
            elif f.number == PF_EVENT_COUNTER_VALUE and f.wire == PB_VARINT:
                counter = <int64_t>f.value
            elif f.number == PF_EVENT_DOUBLE_COUNTER_VALUE and f.wire == PB_FIXED64:
                counter = (<double*>&f.value)[0]
            elif (f.number == PF_EVENT_FLOW_IDS or f.number == PF_EVENT_TERMINATING_FLOW_IDS) and \
                    f.wire in (PB_FIXED64, PB_VARINT):
                if flows is None:
                    flows = []
                flows.append(("in" if f.number == PF_EVENT_TERMINATING_FLOW_IDS else "out", f.value))
        if track is None:
            self._problem(f"packet #{self.packets}: track event without a track")
            return
        if ts is None:
            ts = 0
        last = self.last_ts.get(track)
        if last is not None and ts < last:
            self._problem(f"timestamps go backwards on track {track}")
        self.last_ts[track] = ts
        if flows:
            if args is None:
                args = {}
            args["flows"] = flows
        if type == PF_TYPE_SLICE_BEGIN:
            if self.metadata_only and name is not None and self.strings[name] == _WINDOW_SLICE_NAME:
                self.window_begin = (ts, args or {})
                raise _FoundWindow()
            stack = self.open_slices.get(track)
            if stack is None:
                stack = self.open_slices[track] = []
            stack.append((ts, name if name is not None else self.intern(""), category,
                          location, args))
        elif type == PF_TYPE_SLICE_END:
            stack = self.open_slices.get(track)
            if not stack:
                self._problem(f"slice end with no open slice on track {track}")
                return
            begin = stack.pop()
            if args is not None:  # arguments given at the end merge into the slice
                merged = dict(begin[4] or {})
                merged.update(args)
                begin = begin[:4] + (merged,)
            self._add_slice(track, begin, ts, len(stack))
        elif type == PF_TYPE_INSTANT:
            self.instants.append((track, ts, name if name is not None else self.intern(""),
                                  category, args, log))
        elif type == PF_TYPE_COUNTER:
            self.counters.append((track, ts, counter if counter is not None else 0))

    cdef object _add_category(self, object current, object added):
        if added == -1 or current == added:
            return current
        if current == -1:
            return added
        if len(self.strings[current]) > 256:  # a hostile file repeating categories
            return current
        return self.intern(self.strings[current] + "," + self.strings[added])

    cdef _add_slice(self, object track, tuple begin, object end, int depth):
        start, name, category, location, args = begin
        self.s_track.append(track)
        self.s_ts.append(start)
        self.s_dur.append(end - start if end >= start else 0)
        self.s_depth.append(depth)
        self.s_name.append(name)
        self.s_cat.append(category)
        if location is None:
            self.s_file.append(-1)
            self.s_line.append(0)
        else:
            self.s_file.append(location[0])
            self.s_line.append(location[2])
        if args is None:
            self.s_args.append(-1)
        else:
            self.s_args.append(len(self.args))
            self.args.append(args)

    cdef _close_open_slices(self):
        """Slices still open at the end (a truncated trace) end at the last timestamp."""
        for track, stack in self.open_slices.items():
            end = self.last_timestamp or 0
            while stack:
                begin = stack.pop()
                args = dict(begin[4] or {})
                args["unfinished"] = True
                self._add_slice(track, begin[:4] + (args,), max(end, begin[0]), len(stack))
                self.unfinished += 1

    cdef tuple _annotation(self, _Sequence s, const pb_field* pf, int depth):
        if depth > MAX_NESTING:
            raise _DecodeError("debug annotation nested too deeply")
        cdef pb_reader r = pb_sub(pf)
        cdef pb_field f
        name = ""   # keys are always strings, even when the name is missing
        value = None
        entries = None
        while pb_next(&r, &f) == 1:
            if f.number == PF_ANNOTATION_NAME and f.wire == PB_LEN:
                name = self.text(&f)
            elif f.number == PF_ANNOTATION_NAME_IID and f.wire == PB_VARINT:
                name = s.annotation_names.get(f.value, f"#{f.value}")
            elif f.number == PF_ANNOTATION_BOOL and f.wire == PB_VARINT:
                value = bool(f.value)
            elif (f.number == PF_ANNOTATION_UINT or f.number == PF_ANNOTATION_POINTER) and \
                    f.wire == PB_VARINT:
                value = f.value
            elif f.number == PF_ANNOTATION_INT and f.wire == PB_VARINT:
                value = <int64_t>f.value
            elif f.number == PF_ANNOTATION_DOUBLE and f.wire == PB_FIXED64:
                value = (<double*>&f.value)[0]
            elif f.number == PF_ANNOTATION_STRING_VALUE_IID and f.wire == PB_VARINT:
                value = s.annotation_strings.get(f.value, "")
            elif f.number == PF_ANNOTATION_STRING and f.wire == PB_LEN:
                value = self.text(&f)
            elif f.number == PF_ANNOTATION_DICT_ENTRIES and f.wire == PB_LEN:
                if not isinstance(entries, dict):
                    entries = {}
                k, v = self._annotation(s, &f, depth + 1)
                entries[k] = v
            elif f.number == PF_ANNOTATION_ARRAY_VALUES and f.wire == PB_LEN:
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
            if f.number == PF_LOG_MESSAGE_BODY_IID and f.wire == PB_VARINT:
                return s.log_bodies.get(f.value)
        return None


def decode(data, bint metadata_only=False):
    """Decodes Perfetto protobuf bytes; returns the decoder with its columns.
    metadata_only: stop at the "exectrace window" slice (see window_begin)."""
    decoder = _Decoder()
    decoder.metadata_only = metadata_only
    decoder.decode(memoryview(data).cast("B") if not isinstance(data, bytes) else data)
    return decoder
