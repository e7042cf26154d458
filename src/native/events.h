/* `events` mode: record what Go's execution trace records, not every call.
 *
 * A window in `events` mode keeps, per thread:
 *   - each wait in a blocking C function (the table in exectrace/blocking.py,
 *     resolved to PyMethodDef pointers at start) as a slice, with the Python
 *     callstack at the block (ET_REC_BLOCK);
 *   - stack samples every sample interval, taken by a sampler thread that
 *     holds the GIL while it walks every thread's frames (ET_REC_SAMPLE); a
 *     thread inside a recorded wait is not sampled (its block slice says
 *     where it is);
 *   - asyncio task steps: on 3.12+ the CALL of Context.run in Handle._run,
 *     the one place the event loop runs a callback (ET_REC_STEP);
 *   - regions, GC, user tasks and logs, through the same paths as `calls`.
 *
 * What makes it cheap on 3.12+: only CALL, C_RETURN and C_RAISE are
 * monitored, and a CALL site whose callee is neither a blocking C function
 * nor that Context.run returns DISABLE at its first call; C_RETURN/C_RAISE
 * only fire where CALL stays enabled.  Python functions cost nothing after
 * their call sites' first calls.  On <=3.11 no hook is installed at all:
 * waits are seen through the traced locks, plus the samples.
 *
 * Callstacks are interned per capture: a frame is (function id, bytecode
 * offset), a callstack a node (parent callstack, frame) of a tree, so a
 * sample or a block costs one 24-bit id in its record.  Lines are computed
 * from the offsets when the window is written.
 *
 * Included by src/_tracecore.pyx after recorder.h, in the same translation
 * unit.
 */
#ifndef EXECTRACE_EVENTS_H
#define EXECTRACE_EVENTS_H

#include <pthread.h>
#include <time.h>

#include "recorder.h"

/* Frames kept per callstack, innermost first; deeper stacks lose their
 * outermost frames (and are counted). */
#define ET_MAX_STACK 128
/* Callstack ids live in the 24 bits above a record's kind. */
#define ET_MAX_CALLSTACKS 0xFFFFFFu

/* ------------------------------------------------- a uint64 -> uint32 map */

/* Open addressing; a value of 0 marks an empty slot (stored values are >= 1). */
typedef struct {
    uint64_t *keys;
    uint32_t *vals;
    uint64_t mask;
    uint64_t n;
} et_map;

static int et_map_init(et_map *m, uint64_t slots)
{
    m->keys = (uint64_t *)calloc(slots, sizeof(uint64_t));
    m->vals = (uint32_t *)calloc(slots, sizeof(uint32_t));
    m->mask = slots - 1;
    m->n = 0;
    return (m->keys && m->vals) ? 0 : -1;
}

static void et_map_free(et_map *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
}

static inline uint64_t et_hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static inline uint32_t et_map_get(const et_map *m, uint64_t key)
{
    uint64_t h = et_hash64(key);
    for (;;) {
        uint64_t i = h & m->mask;
        if (m->vals[i] == 0) {
            return 0;
        }
        if (m->keys[i] == key) {
            return m->vals[i];
        }
        h++;
    }
}

static int et_map_put(et_map *m, uint64_t key, uint32_t val)
{
    if ((m->n + 1) * 2 > m->mask + 1) {
        et_map bigger;
        if (et_map_init(&bigger, (m->mask + 1) * 2) < 0) {
            et_map_free(&bigger);
            return -1;
        }
        for (uint64_t i = 0; i <= m->mask; i++) {
            if (m->vals[i] != 0) {
                et_map_put(&bigger, m->keys[i], m->vals[i]);
            }
        }
        et_map_free(m);
        *m = bigger;
    }
    uint64_t h = et_hash64(key);
    while (m->vals[h & m->mask] != 0 && m->keys[h & m->mask] != key) {
        h++;
    }
    if (m->vals[h & m->mask] == 0) {
        m->n++;
    }
    m->keys[h & m->mask] = key;
    m->vals[h & m->mask] = val;
    return 0;
}

/* ------------------------------------------------------ interned stacks */

struct et_stacks {
    et_map frames; /* (function id << 32 | offset) -> frame id */
    uint32_t *frame_func;
    int32_t *frame_offset; /* bytecode offset in bytes, -1: unknown */
    uint32_t n_frames, frames_cap; /* ids are 1..n_frames */
    et_map nodes; /* (parent callstack << 32 | frame id) -> callstack id */
    uint32_t *node_parent;
    uint32_t *node_frame;
    uint32_t n_nodes, nodes_cap; /* ids are 1..n_nodes; 0 is the empty stack */
    uint64_t truncated;          /* stacks cut at ET_MAX_STACK frames */
    uint64_t unrecorded;         /* stacks not interned for lack of memory or ids */
    uint32_t *task_func;         /* per asyncio task number: its coroutine's function id + 1 */
    uint32_t task_func_cap;
};

static void et_stacks_free(struct et_stacks *s)
{
    if (s == NULL) {
        return;
    }
    et_map_free(&s->frames);
    et_map_free(&s->nodes);
    free(s->frame_func);
    free(s->frame_offset);
    free(s->node_parent);
    free(s->node_frame);
    free(s->task_func);
    free(s);
}

static struct et_stacks *et_stacks_new(void)
{
    struct et_stacks *s = (struct et_stacks *)calloc(1, sizeof(struct et_stacks));
    if (s == NULL) {
        return NULL;
    }
    s->frames_cap = s->nodes_cap = 1024;
    s->frame_func = (uint32_t *)malloc((s->frames_cap + 1) * sizeof(uint32_t));
    s->frame_offset = (int32_t *)malloc((s->frames_cap + 1) * sizeof(int32_t));
    s->node_parent = (uint32_t *)malloc((s->nodes_cap + 1) * sizeof(uint32_t));
    s->node_frame = (uint32_t *)malloc((s->nodes_cap + 1) * sizeof(uint32_t));
    if (et_map_init(&s->frames, 2048) < 0 || et_map_init(&s->nodes, 2048) < 0 ||
        !s->frame_func || !s->frame_offset || !s->node_parent || !s->node_frame) {
        et_stacks_free(s);
        return NULL;
    }
    return s;
}

static int et_grow_u32(uint32_t **a, uint32_t cap)
{
    uint32_t *p = (uint32_t *)realloc(*a, ((size_t)cap + 1) * sizeof(uint32_t));
    if (p == NULL) {
        return -1;
    }
    *a = p;
    return 0;
}

static uint32_t et_frame_id(struct et_stacks *s, uint32_t func, int32_t offset)
{
    uint64_t key = ((uint64_t)func << 32) | (uint32_t)offset;
    uint32_t id = et_map_get(&s->frames, key);
    if (id != 0) {
        return id;
    }
    if (s->n_frames == s->frames_cap) {
        uint32_t cap = s->frames_cap * 2;
        if (et_grow_u32(&s->frame_func, cap) < 0 ||
            et_grow_u32((uint32_t **)&s->frame_offset, cap) < 0) {
            return 0;
        }
        s->frames_cap = cap;
    }
    id = ++s->n_frames;
    s->frame_func[id] = func;
    s->frame_offset[id] = offset;
    if (et_map_put(&s->frames, key, id) < 0) {
        s->n_frames--;
        return 0;
    }
    return id;
}

static uint32_t et_node_id(struct et_stacks *s, uint32_t parent, uint32_t frame)
{
    uint64_t key = ((uint64_t)parent << 32) | frame;
    uint32_t id = et_map_get(&s->nodes, key);
    if (id != 0) {
        return id;
    }
    if (s->n_nodes >= ET_MAX_CALLSTACKS) {
        return 0;
    }
    if (s->n_nodes == s->nodes_cap) {
        uint32_t cap = s->nodes_cap * 2;
        if (et_grow_u32(&s->node_parent, cap) < 0 || et_grow_u32(&s->node_frame, cap) < 0) {
            return 0;
        }
        s->nodes_cap = cap;
    }
    id = ++s->n_nodes;
    s->node_parent[id] = parent;
    s->node_frame[id] = frame;
    if (et_map_put(&s->nodes, key, id) < 0) {
        s->n_nodes--;
        return 0;
    }
    return id;
}

/* The bytecode offset (bytes) a frame is at. */
static inline int32_t et_frame_offset(PyFrameObject *f)
{
#if PY_VERSION_HEX >= 0x030B0000
    return (int32_t)PyFrame_GetLasti(f);
#elif PY_VERSION_HEX >= 0x030A0000
    return f->f_lasti < 0 ? -1 : f->f_lasti * 2; /* 3.10 counts code units */
#else
    return f->f_lasti;
#endif
}

/* Interns the callstack ending at `frame` (borrowed); returns its id, or 0
 * (empty or not recorded).  Runs with the GIL; creates no Python object
 * beyond the frame objects CPython materialises for the walk. */
static uint32_t et_callstack(PyFrameObject *frame)
{
    struct et_stacks *s = R.cap->stacks;
    PyObject *codes[ET_MAX_STACK];
    int32_t offsets[ET_MAX_STACK];
    int n = 0;
    PyFrameObject *f = frame;
    Py_XINCREF(f);
    while (f != NULL && n < ET_MAX_STACK) {
        codes[n] = (PyObject *)PyFrame_GetCode(f);
        offsets[n] = et_frame_offset(f);
        n++;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    if (f != NULL) {
        s->truncated++;
        Py_DECREF(f);
    }
    uint32_t node = 0;
    int failed = 0;
    for (int i = n - 1; i >= 0; i--) {
        if (!failed) {
            et_slot *slot = et_intern(R.cap, codes[i], ET_FUNC_PY, codes[i]);
            uint32_t fid = slot ? et_frame_id(s, slot->func, offsets[i]) : 0;
            uint32_t next = fid ? et_node_id(s, node, fid) : 0;
            if (next == 0) {
                failed = 1;
                s->unrecorded++;
                node = 0;
            } else {
                node = next;
            }
        }
        Py_DECREF(codes[i]);
    }
    return node;
}

/* ------------------------------------------------------------ the state */

static struct {
    et_map blocking;        /* PyMethodDef pointer -> reason number (1-based) */
    PyMethodDef *context_run; /* Context.run: asyncio runs every callback through it */
    PyObject *handle_run_code; /* the code of asyncio.events.Handle._run */
    PyTypeObject *task_type;   /* asyncio.Task (the C one when present) */
    PyTypeObject *py_task_type; /* asyncio.tasks._PyTask */
    PyObject *str_self, *str_coro, *str_cr_code;
    /* the sampler */
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    int stop;
    uint64_t sampler_ident;
    uint64_t ticks_late; /* samples skipped because the GIL came back too late */
    int64_t min_block_ticks; /* waits shorter than this are not recorded */
    uint64_t short_waits;    /* calls of blocking functions that returned sooner */
} EV = {{0}, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};

static inline uint32_t et_blocking_reason(PyMethodDef *ml)
{
    if (EV.blocking.vals == NULL) {
        return 0;
    }
    return et_map_get(&EV.blocking, (uint64_t)(uintptr_t)ml);
}

/* Sets the blocking functions: parallel sequences of callables (C functions
 * or method descriptors) and reason numbers >= 1.  Before et_activate. */
static int et_set_blocking(PyObject *callables, PyObject *reasons)
{
    et_map_free(&EV.blocking);
    if (et_map_init(&EV.blocking, 256) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t n = PySequence_Size(callables);
    if (n < 0 || PySequence_Size(reasons) != n) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "callables and reasons differ in length");
        }
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *callable = PySequence_GetItem(callables, i);
        PyObject *reason = PySequence_GetItem(reasons, i);
        long r = reason ? PyLong_AsLong(reason) : -1;
        PyObject *owner = NULL;
        PyMethodDef *ml = callable ? et_c_function(callable, &owner) : NULL;
        Py_XDECREF(callable);
        Py_XDECREF(reason);
        if (PyErr_Occurred()) {
            return -1;
        }
        if (ml != NULL && r >= 1 && et_map_put(&EV.blocking, (uint64_t)(uintptr_t)ml, (uint32_t)r) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* asyncio's step machinery, any of them None when asyncio is not in use. */
static int et_set_asyncio_steps(PyObject *context_run, PyObject *handle_run_code,
                                PyObject *task_type, PyObject *py_task_type)
{
    PyObject *owner = NULL;
    Py_CLEAR(EV.handle_run_code);
    Py_CLEAR(EV.task_type);
    Py_CLEAR(EV.py_task_type);
    EV.context_run = NULL;
    if (EV.str_self == NULL) {
        EV.str_self = PyUnicode_InternFromString("__self__");
        EV.str_coro = PyUnicode_InternFromString("_coro");
        EV.str_cr_code = PyUnicode_InternFromString("cr_code");
        if (!EV.str_self || !EV.str_coro || !EV.str_cr_code) {
            return -1;
        }
    }
    if (context_run != Py_None && PyCode_Check(handle_run_code) && PyType_Check(task_type)) {
        EV.context_run = et_c_function(context_run, &owner);
        EV.handle_run_code = Py_NewRef(handle_run_code);
        EV.task_type = (PyTypeObject *)Py_NewRef(task_type);
        if (PyType_Check(py_task_type)) {
            EV.py_task_type = (PyTypeObject *)Py_NewRef(py_task_type);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- waits */

/* A call of a blocking function: pushed with no callstack.  Most such calls
 * do not wait (a socket with data ready, a free lock): whether this one did
 * is known at its return, which is where its callstack is taken (the
 * calling frame is still at the call then), for waits of min_block or more. */
static void et_ev_c_call(PyMethodDef *ml, PyObject *owner, int64_t now)
{
    if (et_blocking_reason(ml) == 0) {
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
    et_frame *f = et_push(t, ml, slot->func, now);
    if (f != NULL) {
        f->flags = ET_REC_BLOCK;
        t->blocked++;
    }
}

/* The callstack of the running thread's current frame, or 0. */
static uint32_t et_current_callstack(void)
{
    uint32_t stack = 0;
    PyFrameObject *caller = PyEval_GetFrame(); /* borrowed */
    if (caller != NULL) {
        PyObject *exc_type, *exc_value, *exc_tb;
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        stack = et_callstack(caller);
        PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    return stack;
}

/* Pops the innermost open call with `key` and every call above it. */
static void et_ev_pop(et_thread *t, void *key, int64_t now)
{
    uint32_t d = t->depth;
    uint32_t stack = 0;
    int have_stack = 0;
    while (d > 0 && t->stack[d - 1].key != key) {
        d--;
    }
    if (d == 0) {
        return; /* began before the window */
    }
    while (t->depth >= d) {
        t->depth--;
        et_frame *f = &t->stack[t->depth];
        if (ET_REC_KIND(f->flags) == ET_REC_BLOCK) {
            if (t->blocked > 0) {
                t->blocked--;
            }
            if (now - f->start < EV.min_block_ticks) {
                EV.short_waits++;
                continue;
            }
            if (!have_stack) {
                stack = et_current_callstack();
                have_stack = 1;
            }
            f->flags = ET_REC_BLOCK | (stack << 8);
        }
        et_emit(t, f, t->depth, now);
    }
}

static void et_ev_c_return(PyMethodDef *ml, int64_t now)
{
    if (et_blocking_reason(ml) == 0) {
        return;
    }
    et_thread *t = et_current_thread();
    if (ET_LIKELY(t != NULL)) {
        et_ev_pop(t, ml, now);
    }
}

/* Is the thread in a wait that has lasted min_block already? */
static inline int et_thread_waiting(const et_thread *t, int64_t now)
{
    if (t->blocked == 0 || t->depth == 0) {
        return 0;
    }
    const et_frame *top = &t->stack[t->depth - 1];
    return ET_REC_KIND(top->flags) == ET_REC_BLOCK && now - top->start >= EV.min_block_ticks;
}

/* -------------------------------------------------------- asyncio steps */

/* The task a callback run by Handle._run steps, or NULL (borrowed). */
static PyObject *et_callback_task(PyObject *callback)
{
    PyObject *self = NULL, *owned = NULL;
    if (callback == NULL) {
        return NULL;
    }
    if (PyCFunction_Check(callback)) {
        self = PyCFunction_GET_SELF(callback); /* C tasks' wakeup */
    } else if (PyMethod_Check(callback)) {
        self = PyMethod_GET_SELF(callback); /* pure-Python tasks */
    } else if (strstr(Py_TYPE(callback)->tp_name, "MethWrapper") != NULL) {
        /* TaskStepMethWrapper; TaskWakeupMethWrapper up to 3.10 */
        owned = PyObject_GetAttr(callback, EV.str_self);
        if (owned == NULL) {
            PyErr_Clear();
        }
        self = owned;
    }
    if (self != NULL && ((EV.task_type && PyObject_TypeCheck(self, EV.task_type)) ||
                         (EV.py_task_type && PyObject_TypeCheck(self, EV.py_task_type)))) {
        Py_XDECREF(owned); /* the task holds its own wrapper alive while it runs */
        return self;
    }
    Py_XDECREF(owned);
    return NULL;
}

/* The function id of a task's coroutine code, cached per task number. */
static int64_t et_task_coro_func(uint32_t index, PyObject *task)
{
    struct et_stacks *s = R.cap->stacks;
    if (index >= s->task_func_cap) {
        uint32_t cap = s->task_func_cap ? s->task_func_cap : 64;
        while (cap <= index) {
            cap *= 2;
        }
        uint32_t *p = (uint32_t *)realloc(s->task_func, cap * sizeof(uint32_t));
        if (p == NULL) {
            return -1;
        }
        memset(p + s->task_func_cap, 0, (cap - s->task_func_cap) * sizeof(uint32_t));
        s->task_func = p;
        s->task_func_cap = cap;
    }
    if (s->task_func[index] != 0) {
        return (int64_t)s->task_func[index] - 1;
    }
    int64_t func = -1;
    PyObject *coro = PyObject_GetAttr(task, EV.str_coro);
    PyObject *code = coro ? PyObject_GetAttr(coro, EV.str_cr_code) : NULL;
    if (code != NULL && PyCode_Check(code)) {
        et_slot *slot = et_intern(R.cap, code, ET_FUNC_PY, code);
        if (slot != NULL) {
            func = slot->func;
            s->task_func[index] = slot->func + 1;
        }
    }
    Py_XDECREF(code);
    Py_XDECREF(coro);
    PyErr_Clear();
    return func;
}

static void et_ev_step_begin(PyObject *callback, int64_t now)
{
    et_thread *t = et_current_thread();
    if (t == NULL) {
        return;
    }
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *task = et_callback_task(callback);
    int64_t index = task ? et_task_index(R.cap, task) : -1;
    int64_t func = index >= 0 ? et_task_coro_func((uint32_t)index, task) : -1;
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
    if (func < 0) {
        return; /* not a task's step: a plain callback */
    }
    et_frame *f = et_push(t, EV.context_run, (uint32_t)func, now);
    if (f != NULL) {
        f->flags = ET_REC_STEP | ((uint32_t)index << 8);
    }
}

static void et_ev_step_end(int64_t now)
{
    et_thread *t = et_current_thread();
    if (t != NULL && t->depth > 0) {
        /* only a step pushed by et_ev_step_begin has this key */
        et_ev_pop(t, EV.context_run, now);
    }
}

/* ----------------------------------------- the sys.monitoring callbacks */

#if ET_HAS_SYS_MONITORING
/* CALL (code, offset, callable, arg0) */
static PyObject *et_ev_mon_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
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
    if (et_blocking_reason(ml) != 0) {
        et_ev_c_call(ml, owner, now);
        Py_RETURN_NONE;
    }
    if (ml == EV.context_run && ml != NULL && args[0] == EV.handle_run_code) {
        et_ev_step_begin(nargs >= 4 ? args[3] : NULL, now);
        Py_RETURN_NONE;
    }
    return Py_NewRef(R.disable);
}

/* C_RETURN, C_RAISE (code, offset, callable, arg0) */
static PyObject *et_ev_mon_c_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t now = et_now();
    if (ET_LIKELY(R.active && nargs >= 3)) {
        PyObject *owner = NULL;
        PyMethodDef *ml = et_c_function(args[2], &owner);
        if (ml == NULL) {
            Py_RETURN_NONE;
        }
        if (ml == EV.context_run && args[0] == EV.handle_run_code) {
            et_ev_step_end(now);
        } else {
            et_ev_c_return(ml, now);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef et_ev_monitor_defs[] = {
    {"exectrace_events_call", ET_FASTCALL(et_ev_mon_call), METH_FASTCALL, NULL},
    {"exectrace_events_c_return", ET_FASTCALL(et_ev_mon_c_return), METH_FASTCALL, NULL},
};
#endif

/* Callbacks of `events` mode by role. */
typedef enum {
    ET_EVENTS_CALL = 0,     /* CALL */
    ET_EVENTS_C_RETURN = 1, /* C_RETURN, C_RAISE */
} et_events_role;

static PyObject *et_events_callback(et_events_role role)
{
#if ET_HAS_SYS_MONITORING
    if ((int)role < 0 || (int)role > 1) {
        PyErr_SetString(PyExc_IndexError, "no such callback");
        return NULL;
    }
    return PyCFunction_New(&et_ev_monitor_defs[role], NULL);
#else
    PyErr_SetString(PyExc_RuntimeError, "sys.monitoring needs Python 3.12");
    return NULL;
#endif
}

/* At the window's stop, before et_end: waits still open get the callstack
 * their thread is at (it is blocked in the call, so its current frame is the
 * caller's); et_end then writes them as ending at the stop. */
static void et_events_stacks_of_open_waits(void)
{
    et_capture *c = R.cap;
    if (c == NULL || !c->events_mode) {
        return;
    }
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get());
    for (; ts != NULL; ts = PyThreadState_Next(ts)) {
        uint64_t ident = (uint64_t)ts->thread_id;
        for (uint32_t i = 0; i < c->n_threads; i++) {
            et_thread *t = c->threads[i];
            if (t->ident != ident || t->blocked == 0 || t->depth == 0) {
                continue;
            }
            et_frame *top = &t->stack[t->depth - 1];
            if (ET_REC_KIND(top->flags) != ET_REC_BLOCK || ET_REC_INDEX(top->flags) != 0) {
                continue;
            }
            PyFrameObject *frame = PyThreadState_GetFrame(ts); /* new reference */
            if (frame != NULL) {
                top->flags = ET_REC_BLOCK | (et_callstack(frame) << 8);
                Py_DECREF(frame);
            }
        }
    }
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

/* ------------------------------------------- wrappers for <= 3.11 windows */

/* Without a cheap hook, an `events` window on <= 3.11 sees waits through
 * wrappers that exectrace puts in place of blocking functions for the
 * window (module functions, methods of Python classes: exectrace/_waits.py)
 * and asyncio steps through one around Handle._run.  A wrapper records
 * exactly what the 3.12+ hooks record for the function it is named after;
 * outside a window it is one flag check and the call. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *func;    /* what is called */
    PyMethodDef *ml;   /* the C function the wait is named after (NULL: a step wrapper) */
    PyObject *owner;   /* its owner, as the hooks would see it */
} et_wrapper;

static PyTypeObject et_wrapper_type;
static PyObject *et_str_callback;

static PyObject *et_wrapper_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames)
{
    et_wrapper *w = (et_wrapper *)op;
    if (ET_LIKELY(!R.active || !R.events_mode)) {
        return PyObject_Vectorcall(w->func, args, nargsf, kwnames);
    }
    PyObject *result;
    if (w->ml != NULL) {
        et_ev_c_call(w->ml, w->owner, et_now());
        result = PyObject_Vectorcall(w->func, args, nargsf, kwnames);
        if (R.active) {
            et_ev_c_return(w->ml, et_now());
        }
        return result;
    }
    /* Handle._run(self): the callback it runs tells the task */
    PyObject *callback = NULL;
    if (PyVectorcall_NARGS(nargsf) >= 1 && EV.context_run != NULL) {
        PyObject *exc_type, *exc_value, *exc_tb;
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
        callback = PyObject_GetAttr(args[0], et_str_callback);
        PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
        et_ev_step_begin(callback, et_now());
    }
    result = PyObject_Vectorcall(w->func, args, nargsf, kwnames);
    if (callback != NULL) {
        if (R.active) {
            et_ev_step_end(et_now());
        }
        Py_DECREF(callback);
    }
    return result;
}

/* A wrapper stored in a class binds like the function it replaces. */
static PyObject *et_wrapper_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static void et_wrapper_dealloc(et_wrapper *w)
{
    Py_XDECREF(w->func);
    Py_XDECREF(w->owner);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyObject *et_wrapper_repr(et_wrapper *w)
{
    return PyUnicode_FromFormat("<exectrace wrapper of %R>", w->func);
}

static PyObject *et_wrapper_get_wrapped(et_wrapper *w, void *closure)
{
    return Py_NewRef(w->func);
}

/* Anything else (__name__, __doc__, __module__, ...) is the wrapped function's. */
static PyObject *et_wrapper_getattro(PyObject *self, PyObject *name)
{
    PyObject *found = PyObject_GenericGetAttr(self, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    PyErr_Clear();
    return PyObject_GetAttr(((et_wrapper *)self)->func, name);
}

/* Pickles as the function it wraps. */
static PyObject *et_wrapper_reduce(PyObject *self, PyObject *unused)
{
    return PyObject_CallMethod(((et_wrapper *)self)->func, "__reduce__", NULL);
}

static PyMethodDef et_wrapper_methods[] = {
    {"__reduce__", (PyCFunction)et_wrapper_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyGetSetDef et_wrapper_getset[] = {
    {"__wrapped__", (getter)et_wrapper_get_wrapped, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject et_wrapper_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "exectrace.Wrapper",
    .tp_basicsize = sizeof(et_wrapper),
    .tp_dealloc = (destructor)et_wrapper_dealloc,
    .tp_repr = (reprfunc)et_wrapper_repr,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(et_wrapper, vectorcall),
    .tp_descr_get = et_wrapper_get,
    .tp_getattro = et_wrapper_getattro,
    .tp_methods = et_wrapper_methods,
    .tp_getset = et_wrapper_getset,
#if PY_VERSION_HEX >= 0x030C0000
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
#else
    .tp_flags = Py_TPFLAGS_DEFAULT | _Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
#endif
};

/* wrapper(func, named_after): calls of func recorded as waits in the C
 * function named_after (a builtin or method descriptor of the blocking
 * table); named_after None: func is Handle._run, recorded as steps. */
static PyObject *et_make_wrapper(PyObject *func, PyObject *named_after)
{
    if (et_wrapper_type.tp_flags & Py_TPFLAGS_READY) {
        /* ready */
    } else if (PyType_Ready(&et_wrapper_type) < 0) {
        return NULL;
    }
    if (et_str_callback == NULL && (et_str_callback = PyUnicode_InternFromString("_callback")) == NULL) {
        return NULL;
    }
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "func must be callable");
        return NULL;
    }
    PyMethodDef *ml = NULL;
    PyObject *owner = NULL;
    if (named_after != Py_None) {
        ml = et_c_function(named_after, &owner);
        if (ml == NULL) {
            PyErr_SetString(PyExc_TypeError, "named_after must be a C function or method descriptor");
            return NULL;
        }
    }
    et_wrapper *w = PyObject_New(et_wrapper, &et_wrapper_type);
    if (w == NULL) {
        return NULL;
    }
    w->vectorcall = et_wrapper_vectorcall;
    w->func = Py_NewRef(func);
    w->ml = ml;
    w->owner = owner;
    Py_XINCREF(owner);
    return (PyObject *)w;
}

/* ------------------------------------------------------------ the sampler */

/* The newest entry of the thread: idents are reused as soon as a thread ends,
 * so older entries with the same ident can be threads that ended (their OS
 * thread id tells them apart where it is known). */
static et_thread *et_thread_by_ident(et_capture *c, uint64_t ident, uint64_t native_id)
{
    for (uint32_t i = c->n_threads; i-- > 0;) {
        et_thread *t = c->threads[i];
        if (t->ident == ident) {
            if (native_id == 0 || t->native_id == 0 || t->native_id == native_id) {
                return t;
            }
            break; /* the newest entry of this ident is another (ended) thread */
        }
    }
    return et_thread_new(c, ident, native_id);
}

/* A thread first seen by the sampler has not been through et_attach_thread:
 * its threading.Thread is looked up until found (it registers itself in
 * threading._active a little after it starts). */
static void et_thread_find_pythread(et_thread *t)
{
    if (t->pythread == NULL && R.threading_active != NULL) {
        uint64_t ident = t->ident;
        PyObject *key = PyLong_FromUnsignedLongLong(ident);
        if (key != NULL) {
            PyObject *found = PyDict_GetItem(R.threading_active, key); /* borrowed */
            Py_XINCREF(found);
            t->pythread = found;
            Py_DECREF(key);
        }
        PyErr_Clear();
    }
}

/* One sample of every thread but the sampler's own, the ignored ones and
 * those inside a recorded wait.  With the GIL: every other thread is
 * stopped at a point where it released it. */
static void et_sample_threads(void)
{
    et_capture *c = R.cap;
    if (!R.active || c == NULL || !c->events_mode) {
        return;
    }
    int64_t now = et_now();
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get());
    for (; ts != NULL; ts = PyThreadState_Next(ts)) {
        uint64_t ident = (uint64_t)ts->thread_id;
        if (ident == EV.sampler_ident || et_is_ignored(ident)) {
            continue;
        }
        PyFrameObject *frame = PyThreadState_GetFrame(ts); /* new reference */
        if (frame == NULL) {
            continue;
        }
#if PY_VERSION_HEX >= 0x030B0000
        uint64_t native_id = (uint64_t)ts->native_thread_id;
#else
        uint64_t native_id = 0; /* not kept by <= 3.10: learnt when the thread itself runs a hook */
#endif
        et_thread *t = et_thread_by_ident(c, ident, native_id);
        if (t != NULL && t->pythread == NULL) {
            et_thread_find_pythread(t);
        }
        if (t != NULL && !et_thread_waiting(t, now)) {
            uint32_t stack = et_callstack(frame);
            et_record *r = &R.ring[R.ring_pos];
            if (++R.ring_pos == R.ring_capacity) {
                R.ring_pos = 0;
            }
            R.written++;
            r->start = now;
            r->end = now;
            r->func = 0;
            r->thread = t->index;
            r->depth = 0;
            r->flags = ET_REC_SAMPLE | (stack << 8);
            c->samples++;
        }
        Py_DECREF(frame);
    }
    PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

/* The sampler's loop, run by a Python thread (with the GIL on entry and on
 * return): sleeps without the GIL until the next tick, takes the GIL,
 * samples, and so on until et_sampler_stop().  Ticks are start-to-start on
 * the monotonic clock; a tick whose GIL came back after the next one was
 * due is skipped (counted in ticks_late), never bunched. */
static void et_sampler_loop(int64_t interval_ns)
{
    EV.sampler_ident = (uint64_t)PyThread_get_thread_ident();
    int64_t next = et_monotonic_ns() + interval_ns;
    for (;;) {
        int stop;
        Py_BEGIN_ALLOW_THREADS
        struct timespec deadline;
        pthread_mutex_lock(&EV.mutex);
        while (!EV.stop) {
            int64_t now = et_monotonic_ns();
            if (now >= next) {
                break;
            }
            /* the condition variable waits on CLOCK_REALTIME: convert */
            struct timespec rt;
            clock_gettime(CLOCK_REALTIME, &rt);
            int64_t until = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec + (next - now);
            deadline.tv_sec = until / 1000000000;
            deadline.tv_nsec = until % 1000000000;
            pthread_cond_timedwait(&EV.wake, &EV.mutex, &deadline);
        }
        stop = EV.stop;
        pthread_mutex_unlock(&EV.mutex);
        Py_END_ALLOW_THREADS
        if (stop) {
            break;
        }
        et_sample_threads();
        next += interval_ns;
        int64_t now = et_monotonic_ns();
        if (next <= now) {
            EV.ticks_late += (uint64_t)((now - next) / interval_ns) + 1;
            next += ((now - next) / interval_ns + 1) * interval_ns;
        }
    }
    EV.sampler_ident = 0;
}

/* min_block in the recorder's time unit (ticks or ns). */
static void et_set_min_block(int64_t ticks)
{
    EV.min_block_ticks = ticks;
    EV.short_waits = 0;
}

static void et_sampler_reset(void)
{
    pthread_mutex_lock(&EV.mutex);
    EV.stop = 0;
    EV.ticks_late = 0;
    pthread_mutex_unlock(&EV.mutex);
}

static void et_sampler_stop(void)
{
    pthread_mutex_lock(&EV.mutex);
    EV.stop = 1;
    pthread_cond_broadcast(&EV.wake);
    pthread_mutex_unlock(&EV.mutex);
}

/* In a forked child: the sampler thread is gone, maybe with the mutex. */
static void et_events_after_fork_child(void)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t w = PTHREAD_COND_INITIALIZER;
    EV.mutex = m;
    EV.wake = w;
    EV.stop = 0;
    EV.sampler_ident = 0;
}

#endif /* EXECTRACE_EVENTS_H */
