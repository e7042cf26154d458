/* The recorder: the hot path of exectrace.
 *
 * The hooks the interpreter calls while a window is open are in this file;
 * the user annotations' functions (annotations.h) and the traced locks
 * (tracedlock.h) record into the same state.  Everything runs with the GIL
 * held, which serialises it: the recorder's state is one global struct and
 * needs no locks of its own.  Nothing here creates a
 * Python object, takes a Python-level lock or calls into Python; names are
 * resolved when a window is written (src/core/writer.pxi).
 *
 * Hooks:
 *   3.12+   sys.monitoring callbacks (tool id chosen by the Cython layer):
 *           PY_START/PY_RESUME/PY_THROW push a frame, PY_RETURN/PY_YIELD/
 *           PY_UNWIND pop it; CALL pushes a C function call and returns
 *           DISABLE at call sites whose callee is not a C function (the
 *           Python callee is covered by PY_START); C_RETURN/C_RAISE pop it.
 *   <=3.11  one Py_tracefunc installed with _PyEval_SetProfile on every
 *           thread state; threads started later install it themselves from
 *           threading.setprofile's bootstrap callback.
 *
 * Per thread there is a shadow stack of open calls.  A call becomes one
 * fixed-size record (start, end, function id, depth, thread) when it returns,
 * written into one ring buffer shared by all threads; when the ring is full
 * the oldest records are overwritten and counted as lost.
 */
#ifndef EXECTRACE_RECORDER_H
#define EXECTRACE_RECORDER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <pythread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"

#if defined(Py_GIL_DISABLED)
#error "exectrace needs the GIL: the free-threaded build is not supported"
#endif

#define ET_HAS_SYS_MONITORING (PY_VERSION_HEX >= 0x030C0000)

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *et_new_ref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) et_new_ref((PyObject *)(o))
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ET_LIKELY(x) __builtin_expect(!!(x), 1)
#define ET_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* initial-exec: a plain %fs-relative load instead of a __tls_get_addr call
 * (16 bytes of static TLS, which the loader reserves for dlopen'ed modules). */
#define ET_THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))
#else
#define ET_LIKELY(x) (x)
#define ET_UNLIKELY(x) (x)
#define ET_THREAD_LOCAL _Thread_local
#endif

/* ---------------------------------------------------------------- types */

/* One finished call.  32 bytes: 2M records in the default 64 MiB buffer. */
typedef struct {
    int64_t start; /* ticks */
    int64_t end;   /* ticks */
    uint32_t func; /* index into the function table */
    uint32_t thread;
    uint32_t depth; /* open calls below it on its thread's shadow stack */
    uint32_t flags; /* ET_REC_* kind in the low byte, an index above it */
} et_record;

/* Record kinds (et_record.flags & 0xFF); the index (flags >> 8) is an asyncio
 * task's number in the capture's task table. */
enum {
    ET_REC_CALL = 0,
    ET_REC_STEP = 1,   /* the outermost coroutine frame of an asyncio task step */
    ET_REC_CREATE = 2, /* a create_task call; the index is the task it created */
    /* `events` mode (events.h): */
    ET_REC_BLOCK = 3,  /* a wait in a blocking C function; the index is its callstack */
    ET_REC_SAMPLE = 4, /* a stack sample (start == end); the index is its callstack */
};
#define ET_REC_KIND(flags) ((flags) & 0xFFu)
#define ET_REC_INDEX(flags) ((flags) >> 8)
#define ET_MAX_TASKS 0xFFFFFFu

/* One garbage collection, kept apart from the ring: collections are rare
 * and must not be overwritten by a flood of calls. */
typedef struct {
    int64_t start;
    int64_t end;
    uint32_t thread;
    int32_t generation;
    int64_t collected;
    int64_t uncollectable;
} et_gc_record;

/* An open call on a thread's shadow stack. */
typedef struct {
    void *key; /* code object, or PyMethodDef of a C function */
    int64_t start;
    uint32_t func; /* ET_HIDDEN: pushed for matching only, never written */
    uint32_t flags; /* the record's flags, plus ET_FRAME_CORO */
} et_frame;

/* A coroutine's frame: a coroutine resumed on top of one is not a new step. */
#define ET_FRAME_CORO 0x80u

#define ET_HIDDEN 0xFFFFFFFFu

typedef struct {
    uint64_t ident;     /* threading.get_ident() */
    uint64_t native_id; /* the OS thread id */
    uint32_t index;
    uint32_t attached;  /* 0: created from a frame snapshot, not yet seen running */
    uint32_t depth;
    uint32_t capacity;
    et_frame *stack;
    PyObject *pythread; /* its threading.Thread, for its name at write time */
    uint32_t blocked;   /* `events` mode: open blocking calls (not sampled meanwhile) */
} et_thread;

/* PY: obj is the code object; C: key is the PyMethodDef, obj its owner;
 * REGION: a user region, key and obj are the canonical name string. */
enum { ET_FUNC_PY = 0, ET_FUNC_C = 1, ET_FUNC_REGION = 2 };

/* An interned function.  The recorder holds one reference to `obj` until the
 * capture is released, so an id never names freed memory.  For C functions
 * `key` is the PyMethodDef and `obj` its owner (a type, or the module name):
 * never the bound method, which would keep `self` alive. */
typedef struct {
    void *key;
    PyObject *obj;
    uint8_t kind;
    uint8_t excluded;
} et_func;

typedef struct {
    void *key; /* NULL: empty slot */
    uint32_t func;
    uint32_t excluded;
} et_slot;

/* A user annotation that is not a slice on a thread's stack: log entries,
 * tasks' begin and end, and regions inside a task (drawn on the task's track
 * too).  Holds a reference to its strings until the capture is freed. */
typedef struct {
    int64_t ts;
    uint64_t task; /* user task id, 0: none */
    uint32_t thread;
    uint32_t kind;
    PyObject *a; /* log: category; task: name; region: name */
    PyObject *b; /* log: message */
} et_event;

enum {
    ET_EV_LOG = 1,
    ET_EV_TASK_BEGIN = 2,
    ET_EV_TASK_END = 3,
    ET_EV_REGION_BEGIN = 4,
    ET_EV_REGION_END = 5,
    /* `events` mode: a traced lock released to a waiting thread, and that
     * thread's wait ending; task holds the hand-off's flow id (and, for the
     * release, the releaser's callstack id in the low 24 bits). */
    ET_EV_HANDOFF_RELEASE = 6,
    ET_EV_HANDOFF_ACQUIRE = 7,
};
#define ET_MAX_EVENTS (1u << 20)

typedef struct {
    char **items;
    Py_ssize_t *lengths;
    int count;
} et_prefixes;

/* Everything a window captured.  Handed over to the Cython layer at stop,
 * which owns it from then on (writes it, then frees it). */
typedef struct {
    et_record *ring;
    uint64_t capacity; /* records */
    uint64_t pos;      /* next slot to write */
    uint64_t written;  /* records ever written; lost = written - capacity */
    et_thread **threads;
    uint32_t n_threads, threads_cap;
    et_func *funcs;
    uint32_t n_funcs, funcs_cap;
    et_slot *slots;
    uint64_t slots_mask;
    et_gc_record *gc;
    uint32_t n_gc, gc_cap;
    uint64_t gc_lost;
    uint64_t dropped_calls; /* calls not recorded for lack of memory */
    /* asyncio tasks seen running a step or created (one reference each) */
    PyObject **tasks;
    uint32_t n_tasks, tasks_cap;
    et_slot *task_slots;
    uint64_t task_slots_mask;
    /* user annotations */
    et_event *events;
    uint32_t n_events, events_cap;
    uint64_t events_lost;
    PyObject *region_names; /* dict: region name -> canonical name object */
    et_clock_pair start_clock, stop_clock;
    int64_t start_realtime_ns, stop_realtime_ns;
    int use_ticks;
    int events_mode;
    struct et_stacks *stacks; /* `events` mode: interned callstacks (events.h) */
    uint64_t samples;         /* `events` mode: stack samples taken */
} et_capture;

struct et_stacks;
static void et_stacks_free(struct et_stacks *s);
static struct et_stacks *et_stacks_new(void);

/* ------------------------------------------------------------- the state */

static struct {
    int active;
    uint64_t epoch; /* bumped at each start: invalidates thread-local caches */
    int use_ticks;
    int c_calls;
    int events_mode; /* record state changes (events.h), not every call */
    int64_t min_ticks;
    uint32_t max_depth; /* 0: unlimited */
    et_prefixes include, exclude;
    et_capture *cap;
    /* The capture's hot fields, kept here while it records (one less pointer
     * to follow per event); written back to the capture at stop. */
    et_record *ring;
    uint64_t ring_pos, ring_capacity, written;
    et_slot *slots;
    uint64_t slots_mask;
    /* GC in progress */
    int64_t gc_start;
    uint32_t gc_thread;
    /* sys.monitoring's DISABLE sentinel (3.12+) */
    PyObject *disable;
    /* interned strings for the gc callback's info dict, and frame locals */
    PyObject *str_generation, *str_collected, *str_uncollectable, *str_self;
    PyObject *str_bootstrap;
    PyObject *threading_active; /* threading._active: {ident: Thread} */
    /* asyncio, when imported at start: _asyncio._get_running_loop and the
     * _asyncio._current_tasks dict ({loop: task}), and the code of
     * BaseEventLoop.create_task (its return value is the task it created) */
    PyObject *running_loop;
    PyObject *current_tasks;
    PyObject *create_task_code;
    /* threads never recorded: exectrace's own background threads */
    uint64_t ignored[8];
    int n_ignored;
    /* flight recorder: an asyncio step this long writes "s" to wake_fd - 1
     * (once until re-armed): the controller takes a snapshot (flight.h) */
    int64_t slow_step_ticks;
    int wake_fd;
    int slow_step_armed;
} R = {0, 1};

/* A slow asyncio step ended: wake the flight recorder's snapshot thread.
 * write(2) takes no lock: safe on any thread, under the GIL or not. */
static void et_flight_slow_step(void)
{
    if (R.wake_fd > 0 && R.slow_step_armed) {
        R.slow_step_armed = 0;
        ssize_t n = write(R.wake_fd - 1, "s", 1);
        (void)n;
    }
}

static ET_THREAD_LOCAL et_thread *et_tls_thread;
static ET_THREAD_LOCAL uint64_t et_tls_epoch;

static inline int64_t et_now(void)
{
    return ET_LIKELY(R.use_ticks) ? et_read_ticks() : et_monotonic_ns();
}

/* ----------------------------------------------------- capture lifecycle */

static void et_prefixes_free(et_prefixes *p)
{
    for (int i = 0; i < p->count; i++) {
        free(p->items[i]);
    }
    free(p->items);
    free(p->lengths);
    p->items = NULL;
    p->lengths = NULL;
    p->count = 0;
}

/* The ring is mapped, not malloc'ed: its pages are only touched (and only
 * count in RSS) once records reach them, and it goes back to the system when
 * the capture is freed.  (Huge pages would cut the page faults of filling it
 * 512-fold, but with THP defrag on madvise they made some runs stall in
 * compaction: measured 1.2x vs 2.2x the floor, bimodally.) */
static et_record *et_ring_alloc(uint64_t capacity)
{
    size_t bytes = (size_t)capacity * sizeof(et_record);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    return (et_record *)p;
}

static void et_ring_free(et_record *ring, uint64_t capacity)
{
    if (ring != NULL) {
        munmap(ring, (size_t)capacity * sizeof(et_record));
    }
}

/* Frees a capture.  The caller holds the GIL: function owners are released. */
static void et_capture_free(et_capture *c)
{
    if (c == NULL) {
        return;
    }
    for (uint32_t i = 0; i < c->n_threads; i++) {
        Py_XDECREF(c->threads[i]->pythread);
        free(c->threads[i]->stack);
        free(c->threads[i]);
    }
    for (uint32_t i = 0; i < c->n_funcs; i++) {
        Py_XDECREF(c->funcs[i].obj);
    }
    for (uint32_t i = 0; i < c->n_tasks; i++) {
        Py_XDECREF(c->tasks[i]);
    }
    for (uint32_t i = 0; i < c->n_events; i++) {
        Py_XDECREF(c->events[i].a);
        Py_XDECREF(c->events[i].b);
    }
    Py_XDECREF(c->region_names);
    et_stacks_free(c->stacks);
    free(c->tasks);
    free(c->task_slots);
    free(c->events);
    free(c->threads);
    free(c->funcs);
    free(c->slots);
    free(c->gc);
    et_ring_free(c->ring, c->capacity);
    free(c);
}

static et_capture *et_capture_new(uint64_t capacity)
{
    et_capture *c = (et_capture *)calloc(1, sizeof(et_capture));
    if (c == NULL) {
        return NULL;
    }
    c->capacity = capacity;
    c->ring = et_ring_alloc(capacity);
    c->slots_mask = 1024 - 1;
    c->slots = (et_slot *)calloc(c->slots_mask + 1, sizeof(et_slot));
    c->funcs_cap = 512;
    c->funcs = (et_func *)malloc(c->funcs_cap * sizeof(et_func));
    c->threads_cap = 16;
    c->threads = (et_thread **)malloc(c->threads_cap * sizeof(et_thread *));
    c->gc_cap = 4096;
    c->gc = (et_gc_record *)malloc(c->gc_cap * sizeof(et_gc_record));
    c->task_slots_mask = 64 - 1;
    c->task_slots = (et_slot *)calloc(c->task_slots_mask + 1, sizeof(et_slot));
    c->region_names = PyDict_New();
    if (!c->ring || !c->slots || !c->funcs || !c->threads || !c->gc || !c->task_slots ||
        !c->region_names) {
        PyErr_Clear();
        et_capture_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------- interning */

static inline uint64_t et_hash_ptr(const void *p)
{
    return ((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull;
}

static int et_slots_grow(et_capture *c)
{
    uint64_t new_mask = (c->slots_mask << 1) | 1;
    et_slot *slots = (et_slot *)calloc(new_mask + 1, sizeof(et_slot));
    if (slots == NULL) {
        return -1;
    }
    for (uint64_t i = 0; i <= c->slots_mask; i++) {
        et_slot *old = &c->slots[i];
        if (old->key == NULL) {
            continue;
        }
        uint64_t h = et_hash_ptr(old->key) >> 20;
        while (slots[h & new_mask].key != NULL) {
            h++;
        }
        slots[h & new_mask] = *old;
    }
    free(c->slots);
    c->slots = slots;
    c->slots_mask = new_mask;
    if (c == R.cap) {
        R.slots = slots;
        R.slots_mask = new_mask;
    }
    return 0;
}

static int et_prefix_match(const et_prefixes *p, const char *s, Py_ssize_t n)
{
    for (int i = 0; i < p->count; i++) {
        if (n >= p->lengths[i] && memcmp(s, p->items[i], (size_t)p->lengths[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Is a code object ruled out by the include/exclude file prefixes? */
static int et_code_excluded(PyObject *code)
{
    if (R.include.count == 0 && R.exclude.count == 0) {
        return 0;
    }
    Py_ssize_t n = 0;
    const char *file = PyUnicode_AsUTF8AndSize(((PyCodeObject *)code)->co_filename, &n);
    if (file == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (R.include.count && !et_prefix_match(&R.include, file, n)) {
        return 1;
    }
    return et_prefix_match(&R.exclude, file, n);
}

/* Finds or adds a function; returns its slot, or NULL when out of memory. */
static et_slot *et_intern_slow(et_capture *c, void *key, int kind, PyObject *obj)
{
    if ((uint64_t)(c->n_funcs + 1) * 2 > c->slots_mask + 1 && et_slots_grow(c) < 0) {
        return NULL;
    }
    if (c->n_funcs == c->funcs_cap) {
        if (c->funcs_cap >= 0x7FFFFFFFu) {
            return NULL;
        }
        et_func *funcs = (et_func *)realloc(c->funcs, 2 * c->funcs_cap * sizeof(et_func));
        if (funcs == NULL) {
            return NULL;
        }
        c->funcs = funcs;
        c->funcs_cap *= 2;
    }
    uint64_t h = et_hash_ptr(key) >> 20;
    while (c->slots[h & c->slots_mask].key != NULL) {
        h++;
    }
    et_slot *slot = &c->slots[h & c->slots_mask];
    et_func *f = &c->funcs[c->n_funcs];
    f->key = key;
    f->obj = obj;
    Py_XINCREF(obj);
    f->kind = (uint8_t)kind;
    f->excluded = (uint8_t)(kind == ET_FUNC_PY ? et_code_excluded(obj) : 0);
    slot->key = key;
    slot->func = c->n_funcs++;
    slot->excluded = f->excluded;
    return slot;
}

/* Only for the recording capture (R.cap): its slots are cached in R. */
static inline et_slot *et_intern(et_capture *c, void *key, int kind, PyObject *obj)
{
    uint64_t h = et_hash_ptr(key) >> 20;
    for (;;) {
        et_slot *slot = &R.slots[h & R.slots_mask];
        if (ET_LIKELY(slot->key == key)) {
            return slot;
        }
        if (slot->key == NULL) {
            return et_intern_slow(c, key, kind, obj);
        }
        h++;
    }
}

/* --------------------------------------------------------------- threads */

static et_thread *et_thread_new(et_capture *c, uint64_t ident, uint64_t native_id)
{
    if (c->n_threads == c->threads_cap) {
        et_thread **threads =
            (et_thread **)realloc(c->threads, 2 * c->threads_cap * sizeof(et_thread *));
        if (threads == NULL) {
            return NULL;
        }
        c->threads = threads;
        c->threads_cap *= 2;
    }
    et_thread *t = (et_thread *)calloc(1, sizeof(et_thread));
    if (t == NULL) {
        return NULL;
    }
    t->capacity = 64;
    t->stack = (et_frame *)malloc(t->capacity * sizeof(et_frame));
    if (t->stack == NULL) {
        free(t);
        return NULL;
    }
    t->ident = ident;
    t->native_id = native_id;
    t->index = c->n_threads;
    c->threads[c->n_threads++] = t;
    return t;
}

/* The threading.Thread object of the running thread, found once per thread
 * and window so the thread's name can be read when the window is written
 * (the thread may have ended by then).  A thread started during the window
 * is seen first in Thread._bootstrap, before threading registers it: its
 * `self` is read from that frame.  Returns a new reference or NULL. */
static PyObject *et_find_pythread(uint64_t ident)
{
    PyObject *found = NULL;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    if (R.threading_active != NULL) {
        PyObject *key = PyLong_FromUnsignedLongLong(ident);
        if (key != NULL) {
            found = PyDict_GetItem(R.threading_active, key); /* borrowed */
            Py_XINCREF(found);
            Py_DECREF(key);
        }
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (found == NULL) {
        PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
        if (frame != NULL) {
            PyCodeObject *code = PyFrame_GetCode(frame);
            if (PyUnicode_Compare(code->co_name, R.str_bootstrap) == 0) {
                found = PyFrame_GetVar(frame, R.str_self);
            }
            Py_DECREF(code);
        }
    }
#endif
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
    return found;
}

/* First event of this OS thread in this window: adopt the thread's entry
 * made from the frame snapshot at start, or make a new one. */
static et_thread *et_attach_thread(void)
{
    et_capture *c = R.cap;
    if (!R.active || c == NULL) {
        return NULL; /* between windows: the epoch changed at stop */
    }
    uint64_t ident = (uint64_t)PyThread_get_thread_ident();
    for (int i = 0; i < R.n_ignored; i++) {
        if (R.ignored[i] == ident) {
            et_tls_thread = NULL; /* cached: its events return at once */
            et_tls_epoch = R.epoch;
            return NULL;
        }
    }
    et_thread *t = NULL;
    for (uint32_t i = 0; i < c->n_threads; i++) {
        if (!c->threads[i]->attached && c->threads[i]->ident == ident) {
            t = c->threads[i];
            break;
        }
    }
    if (t == NULL) {
        t = et_thread_new(c, ident, 0);
        if (t == NULL) {
            return NULL;
        }
    }
    t->attached = 1;
    t->native_id = (uint64_t)PyThread_get_thread_native_id();
    if (t->pythread == NULL) {
        t->pythread = et_find_pythread(ident);
    }
    et_tls_thread = t;
    et_tls_epoch = R.epoch;
    return t;
}

static inline et_thread *et_current_thread(void)
{
    if (ET_LIKELY(et_tls_epoch == R.epoch)) {
        return et_tls_thread;
    }
    return et_attach_thread();
}

/* ------------------------------------------------------- push, pop, emit */

static int et_stack_grow(et_thread *t)
{
    if (t->capacity >= (1u << 24)) {
        return -1;
    }
    et_frame *stack = (et_frame *)realloc(t->stack, 2 * t->capacity * sizeof(et_frame));
    if (stack == NULL) {
        return -1;
    }
    t->stack = stack;
    t->capacity *= 2;
    return 0;
}

static inline et_frame *et_push(et_thread *t, void *key, uint32_t func, int64_t now)
{
    if (ET_UNLIKELY(t->depth == t->capacity) && et_stack_grow(t) < 0) {
        R.cap->dropped_calls++;
        return NULL;
    }
    if (ET_UNLIKELY(R.max_depth != 0 && t->depth >= R.max_depth)) {
        func = ET_HIDDEN;
    }
    et_frame *f = &t->stack[t->depth++];
    f->key = key;
    f->start = now;
    f->func = func;
    f->flags = 0;
    return f;
}

/* Writes the call in `f` (at `depth` on thread `t`) as ending at `end`. */
static inline void et_emit(et_thread *t, const et_frame *f, uint32_t depth, int64_t end)
{
    if (f->func == ET_HIDDEN) {
        return;
    }
    int64_t start = f->start;
    if (ET_UNLIKELY(end < start)) {
        end = start; /* a tick counter read on another core can lag by a few ticks */
    }
    if (end - start < R.min_ticks) {
        return;
    }
    if (ET_UNLIKELY(R.slow_step_ticks != 0) && ET_REC_KIND(f->flags & ~ET_FRAME_CORO) == ET_REC_STEP &&
        end - start >= R.slow_step_ticks) {
        et_flight_slow_step();
    }
    et_record *r = &R.ring[R.ring_pos];
    if (++R.ring_pos == R.ring_capacity) {
        R.ring_pos = 0;
    }
    R.written++;
    r->start = start;
    r->end = end;
    r->func = f->func;
    r->thread = t->index;
    r->depth = depth;
    r->flags = f->flags & ~ET_FRAME_CORO;
}

/* A return that is not for the innermost open call: calls above the matching
 * one lost their return event (a profiler swapped in and out, an exception in
 * a C call on <=3.11); they end now.  A return with no open call to match is
 * for a call that started before the window and is ignored. */
static void et_pop_mismatch(et_thread *t, void *key, int64_t now)
{
    uint32_t d = t->depth;
    while (d > 0 && t->stack[d - 1].key != key) {
        d--;
    }
    if (d == 0) {
        return;
    }
    while (t->depth >= d) {
        t->depth--;
        et_emit(t, &t->stack[t->depth], t->depth, now);
    }
}

static inline void et_pop(et_thread *t, void *key, int64_t now)
{
    uint32_t d = t->depth;
    if (ET_LIKELY(d != 0 && t->stack[d - 1].key == key)) {
        t->depth = d - 1;
        et_emit(t, &t->stack[d - 1], d - 1, now);
        return;
    }
    et_pop_mismatch(t, key, now);
}

/* Closes every open call of every thread at `end` (the window's stop). */
static void et_close_all(et_capture *c, int64_t end)
{
    for (uint32_t i = 0; i < c->n_threads; i++) {
        et_thread *t = c->threads[i];
        while (t->depth > 0) {
            t->depth--;
            et_emit(t, &t->stack[t->depth], t->depth, end);
        }
    }
}

/* ---------------------------------------------------------- asyncio */

/* The number of an asyncio task in the capture's task table (added with a
 * reference on first sight), or -1. */
static int64_t et_task_index(et_capture *c, PyObject *task)
{
    uint64_t h = et_hash_ptr(task) >> 20;
    for (;;) {
        et_slot *slot = &c->task_slots[h & c->task_slots_mask];
        if (slot->key == (void *)task) {
            return slot->func;
        }
        if (slot->key == NULL) {
            break;
        }
        h++;
    }
    if (c->n_tasks >= ET_MAX_TASKS) {
        return -1;
    }
    if ((uint64_t)(c->n_tasks + 1) * 2 > c->task_slots_mask + 1) {
        uint64_t mask = (c->task_slots_mask << 1) | 1;
        et_slot *slots = (et_slot *)calloc(mask + 1, sizeof(et_slot));
        if (slots == NULL) {
            return -1;
        }
        for (uint32_t i = 0; i < c->n_tasks; i++) {
            uint64_t g = et_hash_ptr(c->tasks[i]) >> 20;
            while (slots[g & mask].key != NULL) {
                g++;
            }
            slots[g & mask].key = c->tasks[i];
            slots[g & mask].func = i;
        }
        free(c->task_slots);
        c->task_slots = slots;
        c->task_slots_mask = mask;
    }
    if (c->n_tasks == c->tasks_cap) {
        uint32_t cap = c->tasks_cap ? 2 * c->tasks_cap : 64;
        PyObject **tasks = (PyObject **)realloc(c->tasks, cap * sizeof(PyObject *));
        if (tasks == NULL) {
            return -1;
        }
        c->tasks = tasks;
        c->tasks_cap = cap;
    }
    h = et_hash_ptr(task) >> 20;
    while (c->task_slots[h & c->task_slots_mask].key != NULL) {
        h++;
    }
    uint32_t index = c->n_tasks++;
    c->tasks[index] = Py_NewRef(task);
    c->task_slots[h & c->task_slots_mask].key = task;
    c->task_slots[h & c->task_slots_mask].func = index;
    return index;
}

/* A coroutine resumed by something that is not a coroutine (the task's step,
 * driven by the event loop) starts a step: asks asyncio which task runs it,
 * as asyncio.current_task() does: the running loop (a C function), then the
 * loop's entry in _current_tasks.  No Python code runs (loops hash by
 * identity), and the hooks do not fire inside a hook. */
static void et_mark_step(et_frame *f)
{
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *loop = PyObject_CallNoArgs(R.running_loop);
    if (loop != NULL && loop != Py_None) {
        PyObject *task = PyDict_GetItemWithError(R.current_tasks, loop); /* borrowed */
        if (task != NULL && task != Py_None) {
            int64_t index = et_task_index(R.cap, task);
            if (index >= 0) {
                f->flags |= ET_REC_STEP | ((uint32_t)index << 8);
            }
        }
    }
    Py_XDECREF(loop);
    PyErr_Clear(); /* no running loop: a coroutine driven by hand */
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

#ifndef CO_COROUTINE
#define CO_COROUTINE 0x0080
#endif

static void et_clear_asyncio(void)
{
    Py_CLEAR(R.running_loop);
    Py_CLEAR(R.current_tasks);
    Py_CLEAR(R.create_task_code);
}

/* Before et_activate: asyncio's _get_running_loop (a C function), its
 * _current_tasks dict and the code of BaseEventLoop.create_task; any of them
 * None when asyncio is not in use (then steps, resp. flows, are not seen). */
static void et_set_asyncio(PyObject *running_loop, PyObject *current_tasks,
                           PyObject *create_task_code)
{
    et_clear_asyncio();
    if (PyCFunction_Check(running_loop) && PyDict_Check(current_tasks)) {
        R.running_loop = Py_NewRef(running_loop);
        R.current_tasks = Py_NewRef(current_tasks);
    }
    if (PyCode_Check(create_task_code)) {
        R.create_task_code = Py_NewRef(create_task_code);
    }
}

/* Python code: returns 1 when the code is excluded by the filters. */
static inline int et_on_py_start(PyObject *code, int64_t now)
{
    et_thread *t = et_current_thread();
    if (ET_UNLIKELY(t == NULL)) {
        return 0;
    }
    et_slot *slot = et_intern(R.cap, code, ET_FUNC_PY, code);
    if (ET_UNLIKELY(slot == NULL)) {
        R.cap->dropped_calls++;
        return 0;
    }
    if (slot->excluded) {
        return 1;
    }
    et_frame *f = et_push(t, code, slot->func, now);
    if (ET_UNLIKELY(R.running_loop != NULL) && f != NULL &&
        (((PyCodeObject *)code)->co_flags & CO_COROUTINE)) {
        f->flags = ET_FRAME_CORO;
        if (t->depth < 2 || !(t->stack[t->depth - 2].flags & ET_FRAME_CORO)) {
            et_mark_step(f);
        }
    }
    return 0;
}

/* A create_task call returned the task it made: the record names it, so the
 * writer can draw a flow from the creating step to the task's first step. */
static void et_mark_created(et_frame *f, PyObject *task)
{
    if (task == NULL || task == Py_None || ET_REC_KIND(f->flags) != ET_REC_CALL) {
        return;
    }
    int64_t index = et_task_index(R.cap, task);
    if (index >= 0) {
        f->flags = (f->flags & ET_FRAME_CORO) | ET_REC_CREATE | ((uint32_t)index << 8);
    }
}

/* retval: the value returned, when known (NULL otherwise). */
static inline int et_on_py_return(PyObject *code, PyObject *retval, int64_t now)
{
    et_thread *t = et_current_thread();
    if (ET_UNLIKELY(t == NULL)) {
        return 0;
    }
    uint32_t d = t->depth;
    if (ET_LIKELY(d != 0 && t->stack[d - 1].key == (void *)code)) {
        t->depth = d - 1;
        if (ET_UNLIKELY(code == R.create_task_code)) {
            et_mark_created(&t->stack[d - 1], retval);
        }
        et_emit(t, &t->stack[d - 1], d - 1, now);
        return 0;
    }
    /* Not the innermost call: an excluded function, or a mismatch. */
    et_slot *slot = et_intern(R.cap, code, ET_FUNC_PY, code);
    if (slot != NULL && slot->excluded) {
        return 1;
    }
    et_pop_mismatch(t, code, now);
    return 0;
}

/* The user annotations' own methods (annotations.h): never recorded. */
static PyMethodDef *et_hidden_defs_lo, *et_hidden_defs_hi;

/* C functions are identified by their PyMethodDef; the owner names them. */
static inline PyMethodDef *et_c_function(PyObject *callable, PyObject **owner)
{
    if (PyCFunction_Check(callable)) {
        PyCFunctionObject *f = (PyCFunctionObject *)callable;
        PyObject *self = f->m_self;
        if (self == NULL || PyModule_Check(self)) {
            *owner = f->m_module;
        } else if (PyType_Check(self)) {
            *owner = self; /* a classmethod such as dict.fromkeys */
        } else {
            *owner = (PyObject *)Py_TYPE(self);
        }
        if (ET_UNLIKELY(f->m_ml >= et_hidden_defs_lo && f->m_ml < et_hidden_defs_hi)) {
            return NULL;
        }
        return f->m_ml;
    }
    if (Py_IS_TYPE(callable, &PyMethodDescr_Type)) {
        PyMethodDescrObject *d = (PyMethodDescrObject *)callable;
        *owner = (PyObject *)d->d_common.d_type;
        if (ET_UNLIKELY(d->d_method >= et_hidden_defs_lo && d->d_method < et_hidden_defs_hi)) {
            return NULL;
        }
        return d->d_method;
    }
    return NULL;
}

static void et_ev_c_call(PyMethodDef *ml, PyObject *owner, int64_t now);
static void et_ev_c_return(PyMethodDef *ml, int64_t now);

static inline void et_on_c_call(PyMethodDef *ml, PyObject *owner, int64_t now)
{
    if (R.events_mode) {
        et_ev_c_call(ml, owner, now);
        return;
    }
    et_thread *t = et_current_thread();
    if (ET_UNLIKELY(t == NULL)) {
        return;
    }
    et_slot *slot = et_intern(R.cap, ml, ET_FUNC_C, owner);
    if (ET_UNLIKELY(slot == NULL)) {
        R.cap->dropped_calls++;
        return;
    }
    et_push(t, ml, slot->func, now);
}

static inline void et_on_c_return(PyMethodDef *ml, int64_t now)
{
    if (R.events_mode) {
        et_ev_c_return(ml, now);
        return;
    }
    et_thread *t = et_current_thread();
    if (ET_LIKELY(t != NULL)) {
        et_pop(t, ml, now);
    }
}

/* ------------------------------------------------ the hook, 3.12 and on */

/* The sys.monitoring callbacks by role: which events each is registered for
 * is the Cython layer's choice (src/core/recorder.pxi). */
typedef enum {
    ET_MONITOR_PY_START,   /* PY_START, PY_RESUME */
    ET_MONITOR_PY_THROW,   /* PY_THROW */
    ET_MONITOR_PY_RETURN,  /* PY_RETURN, PY_YIELD */
    ET_MONITOR_PY_UNWIND,  /* PY_UNWIND */
    ET_MONITOR_CALL,       /* CALL (C functions only) */
    ET_MONITOR_C_RETURN,   /* C_RETURN, C_RAISE */
    ET_MONITOR_FLOOR_ANY,  /* the benchmarks' no-op hook: every event but CALL */
    ET_MONITOR_FLOOR_CALL, /* the no-op hook's CALL: keeps the same sites as ET_MONITOR_CALL */
    ET_MONITOR_ROLES
} et_monitor_role;

#if ET_HAS_SYS_MONITORING

#define ET_DISABLE_OR_NONE(cond)         \
    do {                                 \
        if (cond) {                      \
            return Py_NewRef(R.disable); \
        }                                \
        Py_RETURN_NONE;                  \
    } while (0)

/* PY_START, PY_RESUME (code, offset) */
static PyObject *et_mon_py_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_UNLIKELY(nargs < 1)) {
        Py_RETURN_NONE;
    }
    ET_DISABLE_OR_NONE(et_on_py_start(args[0], now));
}

/* PY_THROW (code, offset, exception): not a local event, cannot be disabled */
static PyObject *et_mon_py_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_LIKELY(nargs >= 1)) {
        et_on_py_start(args[0], now);
    }
    Py_RETURN_NONE;
}

/* PY_RETURN, PY_YIELD (code, offset, value) */
static PyObject *et_mon_py_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_UNLIKELY(nargs < 1)) {
        Py_RETURN_NONE;
    }
    ET_DISABLE_OR_NONE(et_on_py_return(args[0], nargs >= 3 ? args[2] : NULL, now));
}

/* PY_UNWIND (code, offset, exception): not a local event */
static PyObject *et_mon_py_unwind(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_LIKELY(nargs >= 1)) {
        et_on_py_return(args[0], NULL, now);
    }
    Py_RETURN_NONE;
}

/* CALL (code, offset, callable, arg0).  A site whose callee is not a C
 * function is disabled: a Python callee reports itself through PY_START.
 * (A site that later calls a C function stays disabled for the window:
 * polymorphic call sites can miss C calls.) */
static PyObject *et_mon_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_UNLIKELY(!R.active || nargs < 3)) {
        Py_RETURN_NONE;
    }
    PyObject *owner = NULL;
    PyMethodDef *ml = et_c_function(args[2], &owner);
    if (ml == NULL) {
        return Py_NewRef(R.disable);
    }
    et_on_c_call(ml, owner, now);
    Py_RETURN_NONE;
}

/* C_RETURN, C_RAISE (code, offset, callable, arg0) */
static PyObject *et_mon_c_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_LIKELY(R.active && nargs >= 3)) {
        PyObject *owner = NULL;
        PyMethodDef *ml = et_c_function(args[2], &owner);
        if (ml != NULL) {
            et_on_c_return(ml, now);
        }
    }
    Py_RETURN_NONE;
}

/* The floor for benchmarks: the same events, doing nothing but choosing the
 * same call sites to keep. */
static PyObject *et_floor_any(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_RETURN_NONE;
}

static PyObject *et_floor_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *owner;
    if (nargs >= 3 && et_c_function(args[2], &owner) == NULL) {
        return Py_NewRef(R.disable);
    }
    Py_RETURN_NONE;
}

#define ET_FASTCALL(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef et_monitor_defs[ET_MONITOR_ROLES] = {
    [ET_MONITOR_PY_START] = {"exectrace_py_start", ET_FASTCALL(et_mon_py_start), METH_FASTCALL, NULL},
    [ET_MONITOR_PY_THROW] = {"exectrace_py_throw", ET_FASTCALL(et_mon_py_throw), METH_FASTCALL, NULL},
    [ET_MONITOR_PY_RETURN] = {"exectrace_py_return", ET_FASTCALL(et_mon_py_return), METH_FASTCALL, NULL},
    [ET_MONITOR_PY_UNWIND] = {"exectrace_py_unwind", ET_FASTCALL(et_mon_py_unwind), METH_FASTCALL, NULL},
    [ET_MONITOR_CALL] = {"exectrace_call", ET_FASTCALL(et_mon_call), METH_FASTCALL, NULL},
    [ET_MONITOR_C_RETURN] = {"exectrace_c_return", ET_FASTCALL(et_mon_c_return), METH_FASTCALL, NULL},
    [ET_MONITOR_FLOOR_ANY] = {"exectrace_floor_any", ET_FASTCALL(et_floor_any), METH_FASTCALL, NULL},
    [ET_MONITOR_FLOOR_CALL] = {"exectrace_floor_call", ET_FASTCALL(et_floor_call), METH_FASTCALL, NULL},
};

/* A new reference to the callback of `role` (an et_monitor_role). */
static PyObject *et_monitor_callback(int role)
{
    if (role < 0 || role >= ET_MONITOR_ROLES) {
        PyErr_SetString(PyExc_ValueError, "no such sys.monitoring callback role");
        return NULL;
    }
    return PyCFunction_New(&et_monitor_defs[role], NULL);
}

#else
static PyObject *et_monitor_callback(int role)
{
    PyErr_SetString(PyExc_RuntimeError, "sys.monitoring needs Python 3.12");
    return NULL;
}
#endif /* ET_HAS_SYS_MONITORING */

/* ------------------------------------------------- the hook, up to 3.11 */

static int et_profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    int64_t now = et_now();
    if (ET_UNLIKELY(!R.active)) {
        return 0;
    }
    switch (what) {
    case PyTrace_CALL: {
        PyCodeObject *code = PyFrame_GetCode(frame);
        Py_DECREF(code); /* the frame keeps it alive */
        et_on_py_start((PyObject *)code, now);
        break;
    }
    case PyTrace_RETURN: {
        PyCodeObject *code = PyFrame_GetCode(frame);
        Py_DECREF(code);
        et_on_py_return((PyObject *)code, arg, now);
        break;
    }
    case PyTrace_C_CALL:
        if (R.c_calls) {
            PyObject *owner = NULL;
            PyMethodDef *ml = et_c_function(arg, &owner);
            if (ml != NULL) {
                et_on_c_call(ml, owner, now);
            }
        }
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if (R.c_calls) {
            PyObject *owner = NULL;
            PyMethodDef *ml = et_c_function(arg, &owner);
            if (ml != NULL) {
                et_on_c_return(ml, now);
            }
        }
        break;
    default:
        break;
    }
    return 0;
}

static int et_profile_floor(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    return 0;
}

static Py_tracefunc et_profile_func(int floor) { return floor ? et_profile_floor : et_profile; }

/* Installs (or, with func NULL, removes where it is ours) a profile function
 * on every thread of this interpreter.  Returns -1 with an exception set. */
#if !ET_HAS_SYS_MONITORING
static int et_set_profile_all(Py_tracefunc func, Py_tracefunc ours)
{
    PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get());
    for (; ts != NULL; ts = PyThreadState_Next(ts)) {
        if (func == NULL && ts->c_profilefunc != ours) {
            continue;
        }
        if (_PyEval_SetProfile(ts, func, NULL) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The native id of a thread with another profile function, or 0. */
static unsigned long et_foreign_profiler_thread(Py_tracefunc a, Py_tracefunc b)
{
    PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get());
    for (; ts != NULL; ts = PyThreadState_Next(ts)) {
        if (ts->c_profilefunc != NULL && ts->c_profilefunc != a && ts->c_profilefunc != b) {
            return ts->thread_id ? ts->thread_id : 1;
        }
    }
    return 0;
}
#else
/* 3.12+ records through sys.monitoring; these are never called there. */
static int et_set_profile_all(Py_tracefunc func, Py_tracefunc ours)
{
    PyErr_SetString(PyExc_RuntimeError, "PyEval_SetProfile hooks are not used on 3.12+");
    return -1;
}

static unsigned long et_foreign_profiler_thread(Py_tracefunc a, Py_tracefunc b) { return 0; }
#endif

#if !ET_HAS_SYS_MONITORING
/* The frames that called `frame` (Thread._bootstrap, _bootstrap_inner) ran
 * before the hook was installed on their thread: push them, outermost first,
 * so depths count from the thread's first frame as they do on 3.12+. */
static void et_seed_callers(et_thread *t, PyFrameObject *frame, int64_t now)
{
    PyCodeObject *codes[64];
    int n = 0;
    PyFrameObject *back = PyFrame_GetBack(frame);
    while (back != NULL && n < 64) {
        codes[n++] = PyFrame_GetCode(back);
        PyFrameObject *next = PyFrame_GetBack(back);
        Py_DECREF(back);
        back = next;
    }
    Py_XDECREF(back);
    while (n > 0) {
        PyObject *code = (PyObject *)codes[--n];
        et_slot *slot = et_intern(R.cap, code, ET_FUNC_PY, code);
        if (slot != NULL && !slot->excluded) {
            et_push(t, code, slot->func, now);
        }
        Py_DECREF(code); /* the frame, still running, keeps it alive */
    }
}
#endif

/* threading.setprofile callback: runs in a thread started during a window,
 * installs the C hook for that thread and records the call it was woken by. */
static PyObject *et_thread_bootstrap(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
#if !ET_HAS_SYS_MONITORING
    if (nargs >= 2 && PyFrame_Check(args[0])) {
        int floor = (self != NULL);
        if (R.active || floor) {
            PyEval_SetProfile(et_profile_func(floor), NULL);
            if (!floor) {
                et_thread *t = et_current_thread();
                if (t != NULL && t->pythread == NULL) {
                    t->pythread = et_find_pythread(t->ident);
                }
                if (t != NULL && t->depth == 0) {
                    et_seed_callers(t, (PyFrameObject *)args[0], et_now());
                }
            }
            if (!floor && PyUnicode_Check(args[1]) &&
                PyUnicode_CompareWithASCIIString(args[1], "call") == 0) {
                et_profile(NULL, (PyFrameObject *)args[0], PyTrace_CALL, Py_None);
            }
        } else {
            PyEval_SetProfile(NULL, NULL);
        }
    }
#endif
    Py_RETURN_NONE;
}

static PyMethodDef et_bootstrap_def = {
    "exectrace_thread_bootstrap", (PyCFunction)(void (*)(void))et_thread_bootstrap,
    METH_FASTCALL, NULL};

/* ------------------------------------------------------------------- GC */

static PyObject *et_dict_int(PyObject *dict, PyObject *key, int64_t *out)
{
    PyObject *v = PyDict_GetItem(dict, key); /* borrowed; never raises */
    if (v != NULL && PyLong_Check(v)) {
        *out = PyLong_AsLongLong(v);
        if (*out == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            *out = -1;
        }
    }
    return v;
}

/* gc.callbacks entry: (phase, info) */
static PyObject *et_gc_callback(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (!R.active || nargs < 2 || !PyUnicode_Check(args[0]) || !PyDict_Check(args[1])) {
        Py_RETURN_NONE;
    }
    if (PyUnicode_CompareWithASCIIString(args[0], "start") == 0) {
        et_thread *t = et_current_thread();
        R.gc_start = now;
        R.gc_thread = t ? t->index : UINT32_MAX; /* no thread: not attributed */
        Py_RETURN_NONE;
    }
    if (R.gc_start == 0) {
        Py_RETURN_NONE; /* began before the window */
    }
    et_capture *c = R.cap;
    if (c->n_gc == c->gc_cap) {
        c->gc_lost++;
    } else {
        et_gc_record *g = &c->gc[c->n_gc++];
        int64_t v = -1;
        g->start = R.gc_start;
        g->end = now < R.gc_start ? R.gc_start : now;
        g->thread = R.gc_thread;
        et_dict_int(args[1], R.str_generation, &v);
        g->generation = (int32_t)v;
        v = -1;
        et_dict_int(args[1], R.str_collected, &v);
        g->collected = v;
        v = -1;
        et_dict_int(args[1], R.str_uncollectable, &v);
        g->uncollectable = v;
    }
    R.gc_start = 0;
    Py_RETURN_NONE;
}

static PyMethodDef et_gc_def = {
    "exectrace_gc_callback", (PyCFunction)(void (*)(void))et_gc_callback, METH_FASTCALL, NULL};

/* The gc.callbacks entry that records collections. */
static PyObject *et_gc_callback_function(void) { return PyCFunction_New(&et_gc_def, NULL); }

/* The threading.setprofile callback that hooks new threads (<= 3.11): the
 * recorder's, or with `floor` the benchmarks' no-op hook's (told apart by a
 * non-NULL self). */
static PyObject *et_thread_bootstrap_function(int floor)
{
    return PyCFunction_New(&et_bootstrap_def, floor ? Py_True : NULL);
}

/* ------------------------------------------------- start, stop, seeding */

static int et_prefixes_set(et_prefixes *p, PyObject *seq)
{
    et_prefixes_free(p);
    Py_ssize_t n = PySequence_Size(seq);
    if (n < 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    p->items = (char **)calloc((size_t)n, sizeof(char *));
    p->lengths = (Py_ssize_t *)calloc((size_t)n, sizeof(Py_ssize_t));
    if (!p->items || !p->lengths) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(seq, i);
        if (item == NULL) {
            return -1;
        }
        char *data;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(item, &data, &len) < 0) {
            Py_DECREF(item);
            return -1;
        }
        p->items[i] = (char *)malloc((size_t)len + 1);
        if (p->items[i] == NULL) {
            Py_DECREF(item);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(p->items[i], data, (size_t)len + 1);
        p->lengths[i] = len;
        p->count = (int)i + 1;
        Py_DECREF(item);
    }
    return 0;
}

static int64_t et_ns_to_ticks(const et_capture *c, int64_t ns);

/* Prepares a capture; the hooks are installed by the Cython layer after. */
static int et_begin(uint64_t capacity, int use_ticks, int c_calls, int64_t min_duration_ns,
                    uint32_t max_depth, PyObject *include, PyObject *exclude, int events_mode)
{
    if (R.cap != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a capture is already in progress");
        return -1;
    }
    if (et_prefixes_set(&R.include, include) < 0 || et_prefixes_set(&R.exclude, exclude) < 0) {
        return -1;
    }
    et_capture *c = et_capture_new(capacity);
    if (c == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->use_ticks = use_ticks && ET_HAVE_TICKS;
    c->events_mode = events_mode;
    if (events_mode && (c->stacks = et_stacks_new()) == NULL) {
        et_capture_free(c);
        PyErr_NoMemory();
        return -1;
    }
    R.use_ticks = c->use_ticks;
    R.c_calls = c_calls || events_mode;
    R.events_mode = events_mode;
    R.max_depth = max_depth;
    R.gc_start = 0;
    R.cap = c;
    R.ring = c->ring;
    R.ring_pos = 0;
    R.ring_capacity = c->capacity;
    R.written = 0;
    R.slots = c->slots;
    R.slots_mask = c->slots_mask;
    R.epoch++;
    c->start_realtime_ns = et_realtime_ns();
    c->start_clock = et_read_clock_pair(c->use_ticks);
    R.min_ticks = et_ns_to_ticks(c, min_duration_ns);
    return 0;
}

/* A duration in the capture's time unit: calibrated for the TSC (once per
 * process: 2 ms of spinning), rounded down so that exactly `ns` is kept. */
static int64_t et_ns_to_ticks(const et_capture *c, int64_t ns)
{
    static double ticks_per_ns = 0.0;
    if (ns <= 0) {
        return 0;
    }
    if (!c->use_ticks) {
        return ns;
    }
    if (ticks_per_ns == 0.0) {
        et_clock_pair a = et_read_clock_pair(1), b;
        do {
            b = et_read_clock_pair(1);
        } while (b.mono_ns - a.mono_ns < 2000000);
        ticks_per_ns = (double)(b.ticks - a.ticks) / (double)(b.mono_ns - a.mono_ns);
    }
    return (int64_t)((double)ns * ticks_per_ns * 0.999);
}

/* Adds the call stack a thread had at start, outermost first: calls already
 * running when the window opened start at the window's start. */
static int et_is_ignored(uint64_t ident)
{
    for (int i = 0; i < R.n_ignored; i++) {
        if (R.ignored[i] == ident) {
            return 1;
        }
    }
    return 0;
}

/* Marks a thread as never recorded (on != 0) or recorded again. */
static int et_ignore_thread(uint64_t ident, int on)
{
    for (int i = 0; i < R.n_ignored; i++) {
        if (R.ignored[i] == ident) {
            if (!on) {
                R.ignored[i] = R.ignored[--R.n_ignored];
            }
            return 0;
        }
    }
    if (on) {
        if (R.n_ignored == (int)(sizeof(R.ignored) / sizeof(R.ignored[0]))) {
            PyErr_SetString(PyExc_RuntimeError, "too many ignored threads");
            return -1;
        }
        R.ignored[R.n_ignored++] = ident;
    }
    return 0;
}

static int et_seed_frame(uint64_t ident, uint64_t native_id, PyObject *code, PyObject *pythread)
{
    et_capture *c = R.cap;
    if (et_is_ignored(ident)) {
        return 0;
    }
    et_thread *t = NULL;
    for (uint32_t i = 0; i < c->n_threads; i++) {
        if (c->threads[i]->ident == ident) {
            t = c->threads[i];
        }
    }
    if (t == NULL && (t = et_thread_new(c, ident, native_id)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (t->pythread == NULL && pythread != Py_None) {
        Py_INCREF(pythread);
        t->pythread = pythread;
    }
    et_slot *slot = et_intern(c, code, ET_FUNC_PY, code);
    if (slot == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (!slot->excluded) {
        et_push(t, code, slot->func, c->start_clock.ticks);
    }
    return 0;
}

static void et_activate(void) { R.active = 1; }

/* Stops recording and hands the capture over to the caller. */
static et_capture *et_end(void)
{
    et_capture *c = R.cap;
    R.active = 0;
    if (c == NULL) {
        return NULL;
    }
    c->stop_clock = et_read_clock_pair(c->use_ticks);
    c->stop_realtime_ns = et_realtime_ns();
    et_close_all(c, c->stop_clock.ticks);
    c->pos = R.ring_pos;
    c->written = R.written;
    R.events_mode = 0;
    R.cap = NULL;
    R.epoch++;
    et_prefixes_free(&R.include);
    et_prefixes_free(&R.exclude);
    et_clear_asyncio();
    return c;
}

/* In a child after fork: forget the parent's capture without touching the
 * objects it refers to beyond dropping references. */
static void et_after_fork_child(void)
{
    et_capture *c = R.cap;
    R.n_ignored = 0;
    R.active = 0;
    R.events_mode = 0;
    R.cap = NULL;
    R.epoch++;
    et_prefixes_free(&R.include);
    et_prefixes_free(&R.exclude);
    et_clear_asyncio();
    et_capture_free(c);
}

static int et_init_strings(void)
{
    R.str_generation = PyUnicode_InternFromString("generation");
    R.str_collected = PyUnicode_InternFromString("collected");
    R.str_uncollectable = PyUnicode_InternFromString("uncollectable");
    R.str_self = PyUnicode_InternFromString("self");
    R.str_bootstrap = PyUnicode_InternFromString("_bootstrap");
    return (R.str_generation && R.str_collected && R.str_uncollectable && R.str_self &&
            R.str_bootstrap)
               ? 0
               : -1;
}

#endif /* EXECTRACE_RECORDER_H */
