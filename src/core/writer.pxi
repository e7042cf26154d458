# The writer: a closed window (Capture) and its encoding as Perfetto TrackEvent
# protobuf (the schema: src/native/perfetto_schema.h).  Included by
# src/_tracecore.pyx.

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset

from events cimport et_stacks
from pbwire cimport *
from perfetto_schema cimport *
from recorder cimport *

cdef extern from "Python.h":
    object PyMemoryView_FromMemory(char* mem, Py_ssize_t size, int flags)
    int PyBUF_READ
    ctypedef struct PyMethodDef:
        const char* ml_name
    ctypedef struct PyCFunctionObject:
        PyMethodDef* m_ml
    ctypedef struct PyCodeObject:
        pass
    int PyCode_Addr2Line(PyCodeObject* code, int offset)

cdef extern from "zlib.h":
    ctypedef unsigned long uLong
    ctypedef unsigned long uLongf
    ctypedef unsigned char Bytef
    uLong compressBound(uLong sourceLen) nogil
    int compress2(Bytef* dest, uLongf* destLen, const Bytef* source, uLong sourceLen,
                  int level) nogil
    int Z_OK


# ----------------------------------------------------------------- writer
#
# A window becomes one Perfetto trace (protos/perfetto/trace/trace.proto):
#
#   sequence 1     clock snapshot (MONOTONIC, REALTIME), track descriptors
#                  (process, GC, exectrace, one per thread), the window slice
#                  carrying the metadata, GC slices (absolute MONOTONIC ns)
#   sequence 2+i   thread i's calls as SLICE_BEGIN/SLICE_END, timestamps as
#                  deltas on a sequence-scoped incremental clock (id 64),
#                  names and source locations interned on first use
#
# Records arrive in the order calls returned (children before parents); per
# thread they are rebuilt into a tree and walked in order to produce begin
# and end events with non-decreasing timestamps.

cdef struct Out:
    pb_buf chunk      # packets not yet flushed
    pb_buf out        # the file so far
    int compress      # zlib level, 0: no compression
    int failed
    PyObject* compressor  # a Python zlib-format compressor used instead of zlib's compress2


cdef int out_append_compressed(Out* o, const uint8_t* data, size_t clen) noexcept nogil:
    """Appends packet { compressed_packets = data }."""
    if pb_reserve(&o.out, clen + 32) < 0:
        return -1
    pb_varint(&o.out, PB_TAG(PF_TRACE_PACKET, PB_LEN))
    pb_varint(&o.out, 2 + pb_varint_size(clen) + clen)
    pb_varint(&o.out, PB_TAG(PF_PACKET_COMPRESSED_PACKETS, PB_LEN))
    pb_varint(&o.out, clen)
    memmove(o.out.data + o.out.len, data, clen)
    o.out.len += clen
    return 0


cdef int out_flush_with(Out* o) noexcept with gil:
    cdef const uint8_t[::1] view
    try:
        compressed = (<object>o.compressor)(
            PyMemoryView_FromMemory(<char*>o.chunk.data, o.chunk.len, PyBUF_READ))
        view = compressed
        if out_append_compressed(o, &view[0], view.shape[0]) < 0:
            return -1
    except BaseException:
        return -1
    o.chunk.len = 0
    return 0


cdef int out_flush(Out* o) noexcept nogil:
    """Moves the chunk into the file, zlib-compressed into a compressed_packets packet."""
    cdef uLongf clen
    cdef size_t inner, at
    if o.chunk.len == 0:
        return 0
    if o.compress <= 0:
        if pb_reserve(&o.out, o.chunk.len) < 0:
            return -1
        memcpy(o.out.data + o.out.len, o.chunk.data, o.chunk.len)
        o.out.len += o.chunk.len
        o.chunk.len = 0
        return 0
    if o.compressor != NULL:
        return out_flush_with(o)
    clen = compressBound(o.chunk.len)
    if pb_reserve(&o.out, clen + 32) < 0:
        return -1
    # The lengths are known only after compressing: compress past the largest
    # header, then move the bytes down behind the real one.
    at = o.out.len + 16
    if compress2(o.out.data + at, &clen, o.chunk.data, o.chunk.len, o.compress) != Z_OK:
        return -1
    if out_append_compressed(o, o.out.data + at, clen) < 0:
        return -1
    o.chunk.len = 0
    return 0


cdef inline int out_packet_done(Out* o) noexcept nogil:
    if o.chunk.len >= ET_CHUNK_BYTES:
        if out_flush(o) < 0:
            o.failed = 1
            return -1
    return 0


cdef inline int put_event(pb_buf* b, uint64_t delta, uint32_t seq, uint32_t type,
                          const uint8_t* tail, size_t tail_len,
                          const uint8_t* interned, size_t interned_len) noexcept nogil:
    """One TrackEvent packet on a thread's sequence (its track is the default).
    tail: the event's fields after its type (name, categories, source
    location, arguments), prebuilt per function."""
    cdef size_t te = 2 + tail_len
    cdef size_t body = 1 + pb_varint_size(delta) + 1 + pb_varint_size(seq) + 1 + pb_varint_size(te) + te
    if interned_len:
        body += 1 + pb_varint_size(interned_len) + interned_len
    if pb_reserve(b, body + 10) < 0:
        return -1
    pb_varint(b, PB_TAG(PF_TRACE_PACKET, PB_LEN))
    pb_varint(b, body)
    pb_field_varint(b, PF_PACKET_TIMESTAMP, delta)
    pb_field_varint(b, PF_PACKET_SEQUENCE_ID, seq)
    pb_varint(b, PB_TAG(PF_PACKET_TRACK_EVENT, PB_LEN))
    pb_varint(b, te)
    pb_field_varint(b, PF_EVENT_TYPE, type)
    if tail_len:
        memcpy(b.data + b.len, tail, tail_len)
        b.len += tail_len
    if interned_len:
        pb_field_bytes(b, PF_PACKET_INTERNED_DATA, interned, interned_len)
    return 0


cdef struct Clock:
    int64_t t0       # ticks at the window's start
    int64_t ns0      # monotonic ns at the window's start
    double scale     # ns per tick


cdef inline int64_t to_ns(const Clock* k, int64_t ticks) noexcept nogil:
    return k.ns0 + <int64_t>(<double>(ticks - k.t0) * k.scale)


cdef struct Begin:
    int64_t start
    uint32_t func
    uint32_t depth       # ancestors in the rebuilt forest
    uint32_t stack       # a wait's callstack id (`events` mode), 0: none


cdef struct ThreadPass:
    # scratch arrays sized for the largest thread
    int32_t* parent      # pass 1: parent (index in write order); pass 2: forest depth
    int32_t* size        # pass 1: subtree size; pass 2: next free pre-order slot from the end
    int32_t* pending
    Begin* pre           # the begins in pre-order
    uint8_t* defined     # per function: name interned on this sequence yet
    uint8_t* stack_defined  # per callstack id: its text interned on this sequence yet
    const StackBytes* stacks  # per callstack id (index 0 unused), or NULL
    uint32_t n_stacks
    pb_buf scratch       # an event's fields and interned data when a callstack adds to them


cdef struct FuncBytes:
    # per function: its begin events' fields after the type, and the
    # InternedData that defines its name (and source location) on a sequence
    const uint8_t* tail
    size_t tail_len
    const uint8_t* blob
    size_t blob_len


cdef struct StackBytes:
    # per callstack: InternedData defining its text as an annotation string
    const uint8_t* blob
    size_t blob_len


cdef int emit_with_stack(Out* o, uint64_t delta, uint32_t seq, uint32_t type, uint32_t f,
                         uint32_t stack, ThreadPass* w, const FuncBytes* fb) noexcept nogil:
    """A begin event with a `stack` argument naming an interned callstack text."""
    cdef pb_buf* b = &w.scratch
    cdef size_t tail_len, at
    b.len = 0
    if pb_reserve(b, fb[f].tail_len + 32) < 0:
        return -1
    memcpy(b.data, fb[f].tail, fb[f].tail_len)
    b.len = fb[f].tail_len
    at = pb_open(b, PF_EVENT_DEBUG_ANNOTATIONS)
    pb_field_varint(b, PF_ANNOTATION_NAME_IID, ET_ANNOTATION_STACK)
    pb_field_varint(b, PF_ANNOTATION_STRING_VALUE_IID, stack)
    pb_close(b, at)
    tail_len = b.len
    if not w.defined[f]:
        w.defined[f] = 1
        if pb_reserve(b, fb[f].blob_len) < 0:
            return -1
        memcpy(b.data + b.len, fb[f].blob, fb[f].blob_len)
        b.len += fb[f].blob_len
    if not w.stack_defined[stack]:
        w.stack_defined[stack] = 1
        if pb_reserve(b, w.stacks[stack].blob_len) < 0:
            return -1
        memcpy(b.data + b.len, w.stacks[stack].blob, w.stacks[stack].blob_len)
        b.len += w.stacks[stack].blob_len
    return put_event(&o.chunk, delta, seq, type, b.data, tail_len, b.data + tail_len,
                     b.len - tail_len)


cdef inline int emit(Out* o, const Clock* k, int64_t ticks, int64_t* prev_ns, uint32_t seq,
                     uint32_t type, uint32_t f, ThreadPass* w,
                     const FuncBytes* fb, uint32_t stack) noexcept nogil:
    cdef int64_t now_ns = to_ns(k, ticks)
    cdef int rc
    if now_ns < prev_ns[0]:
        now_ns = prev_ns[0]
    if stack != 0 and stack < w.n_stacks and type != PF_TYPE_SLICE_END:
        rc = emit_with_stack(o, <uint64_t>(now_ns - prev_ns[0]), seq, type, f, stack, w, fb)
    elif type == PF_TYPE_SLICE_END:
        rc = put_event(&o.chunk, <uint64_t>(now_ns - prev_ns[0]), seq, type, NULL, 0, NULL, 0)
    elif w.defined[f]:
        rc = put_event(&o.chunk, <uint64_t>(now_ns - prev_ns[0]), seq, type,
                       fb[f].tail, fb[f].tail_len, NULL, 0)
    else:
        w.defined[f] = 1
        rc = put_event(&o.chunk, <uint64_t>(now_ns - prev_ns[0]), seq, type,
                       fb[f].tail, fb[f].tail_len, fb[f].blob, fb[f].blob_len)
    prev_ns[0] = now_ns
    if rc < 0:
        return -1
    return out_packet_done(o)


cdef int encode_thread(Out* o, const et_capture* c, const Clock* k, const uint32_t* idx,
                       uint32_t n, uint32_t seq, ThreadPass* w,
                       const FuncBytes* fb) noexcept nogil:
    """The events of one thread; idx lists its records in the order they were
    written, which is the post-order of its call forest (children before
    parents).  The ends go out in that order; the begins in pre-order, and a
    begin is preceded by exactly the ends of the nodes before it in pre-order
    that are not its ancestors.  Every pass reads its arrays in sequence."""
    cdef const et_record* ring = c.ring
    cdef const et_record* r
    cdef const et_record* top
    cdef int64_t npend = 0, i, j, p, pos, size, roots_end = n, ends = 0
    cdef int64_t prev_ns = k.ns0
    # locals, not w's fields: stores through them cannot alias w
    cdef int32_t* parent = w.parent
    cdef int32_t* sizes = w.size
    cdef int32_t* pending = w.pending
    cdef Begin* pre = w.pre
    # 1. Parents and subtree sizes: a record adopts the pending records that
    #    lie inside it (started later, or at the same tick deeper).
    for i in range(n):
        r = &ring[idx[i]]
        size = 1
        while npend > 0:
            j = pending[npend - 1]
            top = &ring[idx[j]]
            if top.start > r.start or (top.start == r.start and top.depth > r.depth):
                npend -= 1
                parent[j] = <int32_t>i
                size += sizes[j]
            else:
                break
        sizes[i] = <int32_t>size
        parent[i] = -1
        pending[npend] = <int32_t>i
        npend += 1
    # 2. Pre-order slots, parents before children: a node takes the last
    #    free slots of its parent's range (children come back to front).
    for i in range(n - 1, -1, -1):
        p = parent[i]
        size = sizes[i]
        if p < 0:
            roots_end -= size
            pos = roots_end
            parent[i] = 0
        else:
            sizes[p] -= <int32_t>size
            pos = sizes[p]
            parent[i] = parent[p] + 1
        r = &ring[idx[i]]
        pre[pos].start = r.start
        pre[pos].func = r.func
        pre[pos].stack = ET_REC_INDEX(r.flags) if ET_REC_KIND(r.flags) == ET_REC_BLOCK else 0
        pre[pos].depth = <uint32_t>parent[i]
        sizes[i] = <int32_t>(pos + size)
    # 3. Merge begins (pre-order) and ends (write order).
    for i in range(n):
        while ends < i - <int64_t>pre[i].depth:
            if emit(o, k, ring[idx[ends]].end, &prev_ns, seq, PF_TYPE_SLICE_END, 0, w,
                    fb, 0) < 0:
                return -1
            ends += 1
        if emit(o, k, pre[i].start, &prev_ns, seq, PF_TYPE_SLICE_BEGIN, pre[i].func, w,
                fb, pre[i].stack) < 0:
            return -1
    while ends < n:
        if emit(o, k, ring[idx[ends]].end, &prev_ns, seq, PF_TYPE_SLICE_END, 0, w,
                fb, 0) < 0:
            return -1
        ends += 1
    return 0


cdef bytes _utf8(object s):
    if isinstance(s, bytes):
        return s
    # Valid UTF-8 whatever the string holds: a lone surrogate (a name made
    # with exec, an undecodable byte of a path) is written as \udcxx.
    return str(s).encode("utf-8", "backslashreplace")


cdef enum:
    MSG_MAX_DEPTH = 16


cdef class _Msg:
    """A small protobuf message builder for the rare, structured packets."""
    cdef pb_buf b
    cdef size_t opened[MSG_MAX_DEPTH]   # where each open message's length goes
    cdef int depth

    def __dealloc__(self):
        pb_free(&self.b)

    cdef _Msg varint(self, uint32_t field, uint64_t value):
        if pb_reserve(&self.b, 20) < 0:
            raise MemoryError
        pb_field_varint(&self.b, field, value)
        return self

    cdef _Msg double(self, uint32_t field, double value):
        if pb_reserve(&self.b, 20) < 0:
            raise MemoryError
        pb_field_double(&self.b, field, value)
        return self

    cdef _Msg string(self, uint32_t field, object value):
        cdef bytes data = _utf8(value)
        if pb_reserve(&self.b, len(data) + 20) < 0:
            raise MemoryError
        pb_field_bytes(&self.b, field, <const char*>data, len(data))
        return self

    cdef _Msg open(self, uint32_t field):
        if self.depth == MSG_MAX_DEPTH:
            raise ValueError(f"messages nested deeper than {MSG_MAX_DEPTH}")
        if pb_reserve(&self.b, 20) < 0:
            raise MemoryError
        self.opened[self.depth] = pb_open(&self.b, field)
        self.depth += 1
        return self

    cdef _Msg close(self):
        if self.depth == 0:
            raise ValueError("close() without an open message")
        self.depth -= 1
        pb_close(&self.b, self.opened[self.depth])
        return self

    cdef bytes value(self):
        return (<char*>self.b.data)[:self.b.len] if self.b.len else b""


cdef _Msg _annotation(_Msg m, str name, object value):
    """A DebugAnnotation (TrackEvent.debug_annotations) with a literal name."""
    m.open(PF_EVENT_DEBUG_ANNOTATIONS).string(PF_ANNOTATION_NAME, name)
    if isinstance(value, bool):
        m.varint(PF_ANNOTATION_BOOL, 1 if value else 0)
    elif isinstance(value, int):
        if value < 0:
            m.varint(PF_ANNOTATION_INT, <uint64_t>(<int64_t>value))
        else:
            m.varint(PF_ANNOTATION_UINT, value)
    elif isinstance(value, float):
        m.double(PF_ANNOTATION_DOUBLE, value)
    else:
        m.string(PF_ANNOTATION_STRING, str(value))
    return m.close()


cdef int _append_packet(Out* o, _Msg m) except -1:
    if pb_reserve(&o.chunk, m.b.len + 10) < 0:
        raise MemoryError
    pb_varint(&o.chunk, PB_TAG(PF_TRACE_PACKET, PB_LEN))
    pb_varint(&o.chunk, m.b.len)
    memcpy(o.chunk.data + o.chunk.len, m.b.data, m.b.len)
    o.chunk.len += m.b.len
    if o.chunk.len >= ET_CHUNK_BYTES and out_flush(o) < 0:
        raise MemoryError
    return 0


def line_of(code, int offset):
    """The line a bytecode offset (bytes) of a code object is on, or its first line."""
    if offset < 0:
        return code.co_firstlineno
    return PyCode_Addr2Line(<PyCodeObject*>code, offset)


cdef _Msg _global_packet(int64_t ts):
    m = _Msg()
    m.varint(PF_PACKET_SEQUENCE_ID, ET_SEQ_GLOBAL).varint(PF_PACKET_TIMESTAMP, <uint64_t>ts)
    return m


cdef _Msg _clock(_Msg m, uint32_t clock_id, int64_t ts):
    """Opens a ClockSnapshot.Clock in m (the caller closes it)."""
    return m.open(PF_CLOCK_SNAPSHOT_CLOCKS).varint(PF_CLOCK_ID, clock_id).varint(PF_CLOCK_TIMESTAMP, <uint64_t>ts)


cdef bytes _interned_blob(uint32_t iid, bint has_location, object name, object file, int line):
    """InternedData defining a function's name (and source location, for Python)."""
    m = _Msg()
    m.open(PF_INTERNED_EVENT_NAMES).varint(PF_INTERNED_IID, iid).string(PF_INTERNED_NAME, name).close()
    if has_location:
        m.open(PF_INTERNED_SOURCE_LOCATIONS).varint(PF_INTERNED_IID, iid)
        m.string(PF_SOURCE_LOCATION_FILE_NAME, file).string(PF_SOURCE_LOCATION_FUNCTION_NAME, name)
        if line > 0:
            m.varint(PF_SOURCE_LOCATION_LINE_NUMBER, line)
        m.close()
    return m.value()


cdef bytes _event_tail(uint32_t iid, list category_iids, bint has_location, object reason):
    """A function's begin-event fields: categories, name, location, blocking reason."""
    m = _Msg()
    for category in category_iids:
        m.varint(PF_EVENT_CATEGORY_IIDS, category)
    m.varint(PF_EVENT_NAME_IID, iid)
    if has_location:
        m.varint(PF_EVENT_SOURCE_LOCATION_IID, iid)
    if reason:
        m.open(PF_EVENT_DEBUG_ANNOTATIONS).varint(PF_ANNOTATION_NAME_IID, ET_ANNOTATION_BLOCKING)
        m.string(PF_ANNOTATION_STRING, reason).close()
    return m.value()


# What Capture's accessors return: small named tuples (they unpack as before).
from collections import namedtuple
ThreadEntry = namedtuple("ThreadEntry", "thread_index ident native_id thread")
AsyncRecord = namedtuple("AsyncRecord", "kind task thread func start_ns end_ns")
AnnotationEvent = namedtuple("AnnotationEvent", "kind ts_ns thread task a b")
del namedtuple
cdef dict _EVENT_KINDS = {
    ET_EV_LOG: "log",
    ET_EV_TASK_BEGIN: "task_begin",
    ET_EV_TASK_END: "task_end",
    ET_EV_REGION_BEGIN: "region_begin",
    ET_EV_REGION_END: "region_end",
    ET_EV_HANDOFF_RELEASE: "handoff_release",
    ET_EV_HANDOFF_ACQUIRE: "handoff_acquire",
}


cdef class Capture:
    """One closed window's records, owned until released.

    Holds a reference to every code object (and C function owner) its records
    name, so encode() can name them; release() drops them.
    """
    cdef et_capture* c

    def __dealloc__(self):
        if self.c != NULL:
            et_capture_free(self.c)
            self.c = NULL

    cdef et_capture* _get(self) except NULL:
        if self.c == NULL:
            raise ExectraceError("this capture was released")
        return self.c

    def release(self):
        """Frees the records and drops the references they hold."""
        if self.c != NULL:
            et_capture_free(self.c)
            self.c = NULL

    @property
    def stats(self):
        return _capture_stats(self._get())

    @property
    def records_lost(self):
        cdef et_capture* c = self._get()
        return c.written - c.capacity if c.written > c.capacity else 0

    @property
    def start_monotonic_ns(self):
        return self._get().start_clock.mono_ns

    @property
    def stop_monotonic_ns(self):
        return self._get().stop_clock.mono_ns

    @property
    def start_realtime_ns(self):
        return self._get().start_realtime_ns

    @property
    def stop_realtime_ns(self):
        return self._get().stop_realtime_ns

    @property
    def used_ticks(self):
        return bool(self._get().use_ticks)

    def threads(self):
        """[ThreadEntry(thread_index, ident, native_id, Thread or None)] of every thread seen."""
        cdef et_capture* c = self._get()
        return [ThreadEntry(c.threads[i].index, c.threads[i].ident, c.threads[i].native_id,
                            <object>c.threads[i].pythread if c.threads[i].pythread != NULL else None)
                for i in range(c.n_threads)]

    def functions(self):
        """Per function id: ("py", code) or ("c", method name, owner, defining type or None)."""
        cdef et_capture* c = self._get()
        cdef list result = []
        cdef et_func* f
        for i in range(c.n_funcs):
            f = &c.funcs[i]
            if f.kind == ET_FUNC_PY:
                result.append(("py", <object>f.obj))
            elif f.kind == ET_FUNC_REGION:
                result.append(("region", <object>f.obj))
            else:
                owner = <object>f.obj if f.obj != NULL else None
                name = (<PyMethodDef*>f.key).ml_name.decode("utf-8", "replace")
                defining = None
                if isinstance(owner, type):
                    defining = _defining_type(owner, <PyMethodDef*>f.key)
                result.append(("c", name, owner, defining))
        return result

    def tasks(self):
        """The asyncio tasks that ran a step or were created, by their number."""
        cdef et_capture* c = self._get()
        return [<object>c.tasks[i] for i in range(c.n_tasks)]

    def async_records(self):
        """[AsyncRecord(kind, task number, thread index, func, start_ns, end_ns)]
        of the records that are asyncio task steps ("step") or create_task calls
        ("create"), oldest first."""
        cdef et_capture* c = self._get()
        cdef Clock k = self._clock()
        cdef uint64_t kept = c.written if c.written < c.capacity else c.capacity
        cdef uint64_t first = 0 if c.written <= c.capacity else c.pos
        cdef uint64_t j, pos
        cdef et_record* r
        cdef list result = []
        for j in range(kept):
            pos = (first + j) % kept
            r = &c.ring[pos]
            if ET_REC_KIND(r.flags) == ET_REC_STEP:
                kind = "step"
            elif ET_REC_KIND(r.flags) == ET_REC_CREATE:
                kind = "create"
            else:
                continue
            result.append(AsyncRecord(kind, ET_REC_INDEX(r.flags), r.thread, r.func,
                                      to_ns(&k, r.start), to_ns(&k, r.end)))
        return result

    def events(self):
        """[AnnotationEvent(kind, ts_ns, thread index or -1, user task id, a, b)] of the user
        annotations other than plain regions: kind is "log" (a: category, b:
        message), "task_begin"/"task_end" (a: name) or "region_begin"/
        "region_end" (a region of a task; a: name); and the hand-offs of
        traced locks (`events` mode): "handoff_release" (user task id: flow
        id << 24 | the releaser's callstack id), "handoff_acquire" (flow id)."""
        cdef et_capture* c = self._get()
        cdef Clock k = self._clock()
        cdef et_event* e
        result = []
        for i in range(c.n_events):
            e = &c.events[i]
            result.append(AnnotationEvent(_EVENT_KINDS.get(e.kind, "?"), to_ns(&k, e.ts),
                                          <int64_t>e.thread if e.thread < c.n_threads else -1,
                                          e.task, <object>e.a if e.a != NULL else None,
                                          <object>e.b if e.b != NULL else None))
        return result

    def samples(self):
        """[(thread index, ts_ns, callstack id)] of the stack samples
        (`events` mode), oldest first; callstack id 0: not recorded."""
        cdef et_capture* c = self._get()
        cdef Clock k = self._clock()
        cdef uint64_t kept = c.written if c.written < c.capacity else c.capacity
        cdef uint64_t first = 0 if c.written <= c.capacity else c.pos
        cdef uint64_t j, pos
        cdef et_record* r
        cdef list result = []
        if not c.events_mode:
            return result
        for j in range(kept):
            pos = (first + j) % kept
            r = &c.ring[pos]
            if ET_REC_KIND(r.flags) == ET_REC_SAMPLE:
                result.append((r.thread, to_ns(&k, r.start), ET_REC_INDEX(r.flags)))
        return result

    def callstacks(self):
        """The interned callstacks (`events` mode) as two lists: frames, where
        frames[i - 1] is (function id, bytecode offset or -1) of frame id i,
        and callstacks, where callstacks[i - 1] is (parent callstack id or 0,
        frame id) of callstack id i, the frame being its innermost."""
        cdef et_capture* c = self._get()
        cdef et_stacks* s = <et_stacks*>c.stacks
        if s == NULL:
            return [], []
        frames = [(s.frame_func[i], s.frame_offset[i]) for i in range(1, s.n_frames + 1)]
        stacks = [(s.node_parent[i], s.node_frame[i]) for i in range(1, s.n_nodes + 1)]
        return frames, stacks

    def block_callstacks(self):
        """The callstack ids the kept waits name (`events` mode)."""
        cdef et_capture* c = self._get()
        cdef uint64_t kept = c.written if c.written < c.capacity else c.capacity
        cdef uint64_t j
        cdef set result = set()
        if c.events_mode:
            for j in range(kept):
                if ET_REC_KIND(c.ring[j].flags) == ET_REC_BLOCK and ET_REC_INDEX(c.ring[j].flags):
                    result.add(ET_REC_INDEX(c.ring[j].flags))
        return result

    cdef Clock _clock(self):
        cdef et_capture* c = self.c
        cdef Clock k
        k.t0 = c.start_clock.ticks
        k.ns0 = c.start_clock.mono_ns
        k.scale = 1.0
        if c.use_ticks and c.stop_clock.ticks > c.start_clock.ticks:
            k.scale = (<double>(c.stop_clock.mono_ns - c.start_clock.mono_ns) /
                       <double>(c.stop_clock.ticks - c.start_clock.ticks))
        return k

    def encode(self, *, list names, list thread_names, int pid, str process_name,
               list metadata, int compress_level=1, object compressor=None,
               list blocking=None, list extra_packets=None, list stack_texts=None):
        """The window as Perfetto protobuf bytes.

        names: per function id, (name, file, first line);
        thread_names: per thread index; metadata: [(key, value)] shown on the
        window slice; compress_level: zlib level of compressed_packets, 0 for
        none; compressor: a callable turning bytes into zlib-format bytes, used
        instead of the built-in zlib when given (and compress_level > 0);
        blocking: per function id, the reason it blocks ("io", "lock", ...) or
        "" (the reason becomes a category and a "blocking" argument);
        extra_packets: encoded TracePackets appended after the threads'
        (on sequences from exectrace._perfetto.first_free_sequence(), tracks
        from _perfetto.track_uuid());
        stack_texts: per callstack id - 1, the text a wait's `stack` argument
        shows (`events` mode).
        """
        cdef et_capture* c = self._get()
        if len(names) != c.n_funcs or len(thread_names) != c.n_threads:
            raise ValueError("names and thread_names must cover every function and thread")
        if blocking is not None and len(blocking) != c.n_funcs:
            raise ValueError("blocking must cover every function")
        cdef Clock k = self._clock()
        cdef int64_t start_ns = c.start_clock.mono_ns
        cdef int64_t stop_ns = c.stop_clock.mono_ns
        cdef uint64_t base = et_track_uuid_base(pid)
        cdef Out o
        memset(&o, 0, sizeof(Out))
        o.compress = compress_level
        o.compressor = <PyObject*>compressor if (compressor is not None and compress_level > 0) else NULL
        if pb_reserve(&o.chunk, ET_CHUNK_BYTES + 65536) < 0:
            raise MemoryError
        cdef ThreadPass w
        memset(&w, 0, sizeof(ThreadPass))
        cdef uint32_t* order = NULL
        cdef uint64_t* offsets = NULL
        cdef FuncBytes* fb = NULL
        cdef StackBytes* sb = NULL
        cdef uint32_t n_stacks = len(stack_texts) + 1 if stack_texts else 0
        cdef bytes tail, blob
        cdef uint64_t kept, first, j, pos, largest = 0
        cdef size_t order_bytes = 0, scratch_bytes = 0
        cdef uint32_t t
        cdef int rc = 0
        cdef list blob_objects = []
        cdef _Msg m
        cdef et_gc_record* g
        try:
            # --- sequence 1: clocks, tracks, metadata, GC
            m = _global_packet(start_ns).varint(PF_PACKET_SEQUENCE_FLAGS, PF_SEQ_INCREMENTAL_STATE_CLEARED)
            m.varint(PF_PACKET_TIMESTAMP_CLOCK_ID, PF_CLOCK_MONOTONIC)
            m.open(PF_PACKET_CLOCK_SNAPSHOT)
            _clock(m, PF_CLOCK_MONOTONIC, start_ns).close()
            _clock(m, PF_CLOCK_REALTIME, c.start_realtime_ns).close()
            m.varint(PF_CLOCK_SNAPSHOT_PRIMARY_TRACE_CLOCK, PF_CLOCK_MONOTONIC).close()
            m.open(PF_PACKET_DEFAULTS).varint(PF_DEFAULTS_TIMESTAMP_CLOCK_ID, PF_CLOCK_MONOTONIC).close()
            _append_packet(&o, m)
            m = _global_packet(start_ns).open(PF_PACKET_TRACK_DESCRIPTOR)
            m.varint(PF_TRACK_UUID, base + ET_TRACK_PROCESS).open(PF_TRACK_PROCESS)
            m.varint(PF_PROCESS_PID, pid).string(PF_PROCESS_NAME, process_name).close().close()
            _append_packet(&o, m)
            for uuid, name in ((ET_TRACK_META, ET_META_TRACK_NAME), (ET_TRACK_GC, ET_GC_TRACK_NAME)):
                m = _global_packet(start_ns).open(PF_PACKET_TRACK_DESCRIPTOR)
                m.varint(PF_TRACK_UUID, base + uuid).varint(PF_TRACK_PARENT_UUID, base + ET_TRACK_PROCESS)
                m.string(PF_TRACK_NAME, name).close()
                _append_packet(&o, m)
            for t in range(c.n_threads):
                m = _global_packet(start_ns).open(PF_PACKET_TRACK_DESCRIPTOR)
                m.varint(PF_TRACK_UUID, base + ET_TRACK_THREAD0 + t).open(PF_TRACK_THREAD)
                m.varint(PF_THREAD_PID, pid)
                m.varint(PF_THREAD_TID, c.threads[t].native_id or c.threads[t].ident & 0x7FFFFFFF)
                m.string(PF_THREAD_NAME, thread_names[t]).close().close()
                _append_packet(&o, m)
            m = _global_packet(start_ns).open(PF_PACKET_TRACK_EVENT)
            m.varint(PF_EVENT_TYPE, PF_TYPE_SLICE_BEGIN).varint(PF_EVENT_TRACK_UUID, base + ET_TRACK_META)
            m.string(PF_EVENT_NAME, ET_WINDOW_SLICE_NAME)
            for key, value in metadata:
                _annotation(m, key, value)
            _append_packet(&o, m.close())
            if self.records_lost:
                m = _global_packet(start_ns).open(PF_PACKET_TRACK_EVENT)
                m.varint(PF_EVENT_TYPE, PF_TYPE_INSTANT).varint(PF_EVENT_TRACK_UUID, base + ET_TRACK_META)
                m.string(PF_EVENT_NAME, "records lost")
                _annotation(m, "count", self.records_lost)
                _append_packet(&o, m.close())
            for j in range(c.n_gc):
                g = &c.gc[j]
                m = _global_packet(to_ns(&k, g.start)).open(PF_PACKET_TRACK_EVENT)
                m.varint(PF_EVENT_TYPE, PF_TYPE_SLICE_BEGIN).varint(PF_EVENT_TRACK_UUID, base + ET_TRACK_GC)
                m.string(PF_EVENT_NAME, f"GC gen{g.generation}")
                _annotation(m, "generation", g.generation)
                _annotation(m, "collected", g.collected)
                _annotation(m, "uncollectable", g.uncollectable)
                if g.thread < c.n_threads:
                    _annotation(m, "thread", thread_names[g.thread])
                _append_packet(&o, m.close())
                m = _global_packet(max(to_ns(&k, g.end), to_ns(&k, g.start))).open(PF_PACKET_TRACK_EVENT)
                m.varint(PF_EVENT_TYPE, PF_TYPE_SLICE_END).varint(PF_EVENT_TRACK_UUID, base + ET_TRACK_GC)
                _append_packet(&o, m.close())
            m = _global_packet(stop_ns).open(PF_PACKET_TRACK_EVENT)
            m.varint(PF_EVENT_TYPE, PF_TYPE_SLICE_END).varint(PF_EVENT_TRACK_UUID, base + ET_TRACK_META)
            _append_packet(&o, m.close())

            # --- per function: interned name and begin-event fields, prebuilt
            categories = {"c": ET_CATEGORY_C, "region": ET_CATEGORY_REGION}
            fb = <FuncBytes*>calloc(c.n_funcs + 1, sizeof(FuncBytes))
            if fb == NULL:
                raise MemoryError
            for j in range(c.n_funcs):
                name, file, line = names[j]
                reason = blocking[j] if blocking is not None else ""
                kind = c.funcs[j].kind
                has_location = kind == ET_FUNC_PY
                cats = []
                if kind == ET_FUNC_C:
                    cats.append(ET_CATEGORY_C)
                elif kind == ET_FUNC_REGION:
                    cats.append(ET_CATEGORY_REGION)
                if reason:
                    if reason not in categories:
                        categories[reason] = ET_CATEGORY_FIRST_REASON + len(categories) - 2
                    cats.append(categories[reason])
                blob = _interned_blob(<uint32_t>(j + 1), has_location, name, file or "", line or 0)
                tail = _event_tail(<uint32_t>(j + 1), cats, has_location, reason)
                blob_objects.append(blob)
                blob_objects.append(tail)
                fb[j].blob = <const uint8_t*><const char*>blob
                fb[j].blob_len = len(blob)
                fb[j].tail = <const uint8_t*><const char*>tail
                fb[j].tail_len = len(tail)
            sequence_names = _sequence_interned(categories, n_stacks > 0)
            if n_stacks:
                sb = <StackBytes*>calloc(n_stacks, sizeof(StackBytes))
                w.stack_defined = <uint8_t*>malloc(n_stacks)
                if sb == NULL or w.stack_defined == NULL:
                    raise MemoryError
                for j in range(1, n_stacks):
                    m = _Msg().open(PF_INTERNED_ANNOTATION_STRINGS).varint(PF_INTERNED_IID, j)
                    blob = m.string(PF_INTERNED_STRING, stack_texts[j - 1]).close().value()
                    blob_objects.append(blob)
                    sb[j].blob = <const uint8_t*><const char*>blob
                    sb[j].blob_len = len(blob)
                w.stacks = sb
                w.n_stacks = n_stacks

            # --- group the ring's records by thread, oldest first
            kept = c.written if c.written < c.capacity else c.capacity
            first = 0 if c.written <= c.capacity else c.pos
            order_bytes = (kept + 1) * sizeof(uint32_t)
            order = <uint32_t*>pb_alloc(order_bytes)
            offsets = <uint64_t*>calloc(c.n_threads + 1, sizeof(uint64_t))
            if order == NULL or offsets == NULL:
                raise MemoryError
            with nogil:
                # the ring, oldest first, is [first, kept) then [0, first)
                for j in range(kept):
                    if ET_REC_KIND(c.ring[j].flags) != ET_REC_SAMPLE:  # samples: extra packets
                        offsets[c.ring[j].thread + 1] += 1
                for t in range(c.n_threads):
                    if offsets[t + 1] > largest:
                        largest = offsets[t + 1]
                    offsets[t + 1] += offsets[t]
                for pos in range(first, kept):
                    if ET_REC_KIND(c.ring[pos].flags) != ET_REC_SAMPLE:
                        t = c.ring[pos].thread
                        order[offsets[t]] = <uint32_t>pos
                        offsets[t] += 1
                for pos in range(first):
                    if ET_REC_KIND(c.ring[pos].flags) != ET_REC_SAMPLE:
                        t = c.ring[pos].thread
                        order[offsets[t]] = <uint32_t>pos
                        offsets[t] += 1
            # offsets[t] is now the end of thread t's run; its start is offsets[t-1]
            scratch_bytes = (largest + 1) * sizeof(int32_t)
            w.parent = <int32_t*>pb_alloc(scratch_bytes)
            w.size = <int32_t*>pb_alloc(scratch_bytes)
            w.pending = <int32_t*>pb_alloc(scratch_bytes)
            w.pre = <Begin*>pb_alloc((largest + 1) * sizeof(Begin))
            w.defined = <uint8_t*>malloc(c.n_funcs + 1)
            if not (w.parent and w.size and w.pending and w.pre and w.defined):
                raise MemoryError

            # --- one sequence per thread
            for t in range(c.n_threads):
                first = offsets[t - 1] if t > 0 else 0
                if offsets[t] == first:
                    continue
                m = _sequence_header(ET_SEQ_FIRST_THREAD + t, start_ns, base + ET_TRACK_THREAD0 + t,
                                     sequence_names)
                _append_packet(&o, m)
                with nogil:
                    memset(w.defined, 0, c.n_funcs + 1)
                    if n_stacks:
                        memset(w.stack_defined, 0, n_stacks)
                    rc = encode_thread(&o, c, &k, order + first, <uint32_t>(offsets[t] - first),
                                       ET_SEQ_FIRST_THREAD + t, &w, fb)
                if rc < 0 or o.failed:
                    raise MemoryError
            for packet in extra_packets or ():
                _append_raw_packet(&o, packet)
            with nogil:
                rc = out_flush(&o)
            if rc < 0:
                raise MemoryError
            return (<char*>o.out.data)[:o.out.len] if o.out.len else b""
        finally:
            pb_free(&o.chunk)
            pb_free(&o.out)
            pb_dealloc(order, order_bytes)
            free(offsets)
            free(fb)
            free(sb)
            free(w.stack_defined)
            pb_free(&w.scratch)
            pb_dealloc(w.parent, scratch_bytes)
            pb_dealloc(w.size, scratch_bytes)
            pb_dealloc(w.pending, scratch_bytes)
            pb_dealloc(w.pre, (largest + 1) * sizeof(Begin))
            free(w.defined)


cdef bytes _sequence_interned(dict categories, bint with_stack):
    """InternedData every thread sequence starts with: the event categories and
    the debug annotation names its begin events use (`stack`: `events` mode's)."""
    m = _Msg()
    for name, iid in categories.items():
        m.open(PF_INTERNED_EVENT_CATEGORIES).varint(PF_INTERNED_IID, iid)
        m.string(PF_INTERNED_NAME, name).close()
    m.open(PF_INTERNED_DEBUG_ANNOTATION_NAMES).varint(PF_INTERNED_IID, ET_ANNOTATION_BLOCKING)
    m.string(PF_INTERNED_NAME, "blocking").close()
    if with_stack:
        m.open(PF_INTERNED_DEBUG_ANNOTATION_NAMES).varint(PF_INTERNED_IID, ET_ANNOTATION_STACK)
        m.string(PF_INTERNED_NAME, "stack").close()
    return m.value()


cdef int _append_raw_packet(Out* o, bytes packet) except -1:
    cdef size_t n = len(packet)
    if pb_reserve(&o.chunk, n + 10) < 0:
        raise MemoryError
    pb_varint(&o.chunk, PB_TAG(PF_TRACE_PACKET, PB_LEN))
    pb_varint(&o.chunk, n)
    memcpy(o.chunk.data + o.chunk.len, <const char*>packet, n)
    o.chunk.len += n
    if o.chunk.len >= ET_CHUNK_BYTES and out_flush(o) < 0:
        raise MemoryError
    return 0


cdef _Msg _sequence_header(uint32_t seq, int64_t start_ns, uint64_t track_uuid, bytes interned):
    """Clears the sequence's state and declares its incremental clock and track."""
    m = _Msg()
    m.varint(PF_PACKET_SEQUENCE_ID, seq).varint(PF_PACKET_SEQUENCE_FLAGS, PF_SEQ_INCREMENTAL_STATE_CLEARED)
    m.varint(PF_PACKET_TIMESTAMP, <uint64_t>start_ns).varint(PF_PACKET_TIMESTAMP_CLOCK_ID, PF_CLOCK_MONOTONIC)
    m.open(PF_PACKET_CLOCK_SNAPSHOT)
    _clock(m, PF_CLOCK_MONOTONIC, start_ns).close()
    _clock(m, ET_CLOCK_INCREMENTAL, start_ns).varint(PF_CLOCK_IS_INCREMENTAL, 1).close()
    m.close()
    m.open(PF_PACKET_DEFAULTS).varint(PF_DEFAULTS_TIMESTAMP_CLOCK_ID, ET_CLOCK_INCREMENTAL)
    m.open(PF_DEFAULTS_TRACK_EVENT).varint(PF_TRACK_EVENT_DEFAULTS_TRACK_UUID, track_uuid).close().close()
    if interned:
        if pb_reserve(&m.b, len(interned) + 20) < 0:
            raise MemoryError
        pb_field_bytes(&m.b, PF_PACKET_INTERNED_DATA, <const char*>interned, len(interned))
    return m


cdef object _defining_type(object cls, PyMethodDef* ml):
    """The class in cls's MRO whose method table holds ml (else cls)."""
    cdef PyTypeObject* t
    cdef PyMethodDef* defs
    for klass in getattr(cls, "__mro__", (cls,)):
        t = <PyTypeObject*>klass
        defs = <PyMethodDef*>t.tp_methods
        if defs == NULL:
            continue
        while defs.ml_name != NULL:
            if defs == ml:
                return klass
            defs += 1
    return cls


# ------------------------------------------------------------ tests only

def _capture_for_tests(*, list threads, list functions, const uint8_t[::1] records,
                       const uint8_t[::1] gc, int64_t start_ns, int64_t stop_ns,
                       int64_t start_realtime_ns, int64_t stop_realtime_ns,
                       uint64_t capacity=0):
    """Tests only: a Capture made from given records instead of a recording.
    threads: [(ident, native_id)]; functions: [(kind, object)]: "py" and a
    code object, "c" and a builtin function, or "region" and a str;
    records: et_record structs (start_ns, end_ns, function, thread, depth,
    flags: struct format "=qqIIII"), written into the ring in this order (a
    ring of `capacity` records keeps the last ones); gc: et_gc_record structs
    (start_ns, end_ns, thread, generation, collected, uncollectable:
    "=qqIiqq").  Clock: nanoseconds, no ticks."""
    cdef uint64_t n = records.shape[0] // sizeof(et_record)
    cdef uint64_t n_gc = gc.shape[0] // sizeof(et_gc_record)
    if records.shape[0] % sizeof(et_record) or gc.shape[0] % sizeof(et_gc_record):
        raise ValueError("records and gc must be whole structs")
    cdef uint64_t cap = capacity or max(16, n)
    cdef et_capture* c = et_capture_new(cap)
    if c == NULL:
        raise MemoryError
    cdef Capture capture = Capture.__new__(Capture)
    capture.c = c
    c.use_ticks = 0
    c.start_clock.ticks = c.start_clock.mono_ns = start_ns
    c.stop_clock.ticks = c.stop_clock.mono_ns = stop_ns
    c.start_realtime_ns = start_realtime_ns
    c.stop_realtime_ns = stop_realtime_ns
    for ident, native_id in threads:
        if et_thread_new(c, ident, native_id) == NULL:
            raise MemoryError
    if len(functions) > 512 or n_gc > c.gc_cap:
        raise ValueError("at most 512 functions and 4096 collections")
    kinds = {"py": ET_FUNC_PY, "c": ET_FUNC_C, "region": ET_FUNC_REGION}
    for kind, obj in functions:
        if kind == "c" and type(obj) is not type(len):
            raise TypeError("a C function must be a builtin function")
        Py_INCREF(obj)
        c.funcs[c.n_funcs].key = (<void*>(<PyCFunctionObject*>obj).m_ml if kind == "c"
                                  else <void*>obj)
        c.funcs[c.n_funcs].obj = <PyObject*>obj
        c.funcs[c.n_funcs].kind = kinds[kind]
        c.funcs[c.n_funcs].excluded = 0
        c.n_funcs += 1
    cdef const et_record* given = <const et_record*>&records[0] if n else NULL
    cdef uint64_t i
    for i in range(n):
        if given[i].func >= c.n_funcs or given[i].thread >= c.n_threads:
            raise ValueError("a record names a function or thread not given")
        c.ring[i % cap] = given[i]
    c.written = n
    c.pos = n % cap
    if n_gc:
        memcpy(c.gc, &gc[0], n_gc * sizeof(et_gc_record))
        c.n_gc = <uint32_t>n_gc
    return capture
