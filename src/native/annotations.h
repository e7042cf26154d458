/* User annotations, the counterparts of Go's runtime/trace API:
 *
 *   with exectrace.region("checkout"): ...     a slice on the current thread
 *   with exectrace.task("order-42") as t: ...  a span that may cross threads
 *   exectrace.log("orders", "placed 3 orders") an instant on the current thread
 *
 * Outside a trace window each call is one check of R.active: region() and
 * task() hand out a shared idle object whose methods do nothing.  In a window
 * a region is pushed on the thread's shadow stack like a call, so it nests
 * with the calls around it and becomes an ordinary record; tasks, logs and
 * the regions of a task are kept as events (et_event) for the writer.
 *
 * The current task is a context variable: asyncio tasks started inside a
 * task inherit it; other threads see it only through task.region().
 */
#ifndef EXECTRACE_ANNOTATIONS_H
#define EXECTRACE_ANNOTATIONS_H

#include "recorder.h"

typedef struct {
    PyObject_HEAD
    PyObject *name; /* NULL: the idle region */
    PyObject *key;  /* the canonical name it was pushed with */
    uint64_t task;  /* user task id, 0: none */
    uint64_t epoch; /* the window it was entered in */
} et_region;

typedef struct {
    PyObject_HEAD
    PyObject *name;  /* NULL: the idle task */
    PyObject *token; /* ContextVar token while entered */
    uint64_t id;
    int ended;
} et_task;

static PyTypeObject et_region_type;
static PyTypeObject et_task_type;
static PyTypeObject et_idle_region_type;
static PyTypeObject et_idle_task_type;
static PyObject *et_region_idle;
static PyObject *et_task_idle;
static PyObject *et_task_var; /* ContextVar("exectrace.task") */
static uint64_t et_task_counter;

/* --------------------------------------------------------------- events */

static void et_event_add(int kind, int64_t ts, uint32_t thread, uint64_t task, PyObject *a,
                         PyObject *b)
{
    et_capture *c = R.cap;
    if (c->n_events == c->events_cap) {
        if (c->events_cap >= ET_MAX_EVENTS) {
            c->events_lost++;
            return;
        }
        uint32_t cap = c->events_cap ? 2 * c->events_cap : 256;
        et_event *events = (et_event *)realloc(c->events, cap * sizeof(et_event));
        if (events == NULL) {
            c->events_lost++;
            return;
        }
        c->events = events;
        c->events_cap = cap;
    }
    et_event *e = &c->events[c->n_events++];
    e->ts = ts;
    e->task = task;
    e->thread = thread;
    e->kind = (uint32_t)kind;
    e->a = a ? Py_NewRef(a) : NULL;
    e->b = b ? Py_NewRef(b) : NULL;
}

/* An exact str with the same text (a str subclass could run Python code
 * when hashed or compared later).  New reference, or NULL with an error. */
static PyObject *et_exact_str(PyObject *s)
{
    if (PyUnicode_CheckExact(s)) {
        return Py_NewRef(s);
    }
    return PyUnicode_FromObject(s);
}

/* The id of the task in the current context, 0 if none. */
static uint64_t et_current_task_id(void)
{
    PyObject *value = NULL;
    if (et_task_var == NULL || PyContextVar_Get(et_task_var, NULL, &value) < 0) {
        PyErr_Clear();
        return 0;
    }
    uint64_t id = 0;
    if (value != NULL && Py_IS_TYPE(value, &et_task_type)) {
        id = ((et_task *)value)->id;
    }
    Py_XDECREF(value);
    return id;
}

static PyObject *et_type_error(const char *what)
{
    PyErr_SetString(PyExc_TypeError, what);
    return NULL;
}

#define ET_REGION_USAGE \
    "exectrace.region() takes the region's name as a str, e.g. exectrace.region(\"checkout\")"
#define ET_TASK_USAGE \
    "exectrace.task() takes the task's name as a str, e.g. exectrace.task(\"order-42\")"
#define ET_LOG_USAGE                                                                      \
    "exectrace.log() takes a category and a message, both str, e.g. "                     \
    "exectrace.log(\"orders\", \"placed 3 orders\")"

/* --------------------------------------------------------------- region */

static PyObject *et_region_make(PyObject *name, uint64_t task)
{
    et_region *r = PyObject_New(et_region, &et_region_type);
    if (r == NULL) {
        return NULL;
    }
    r->name = et_exact_str(name);
    r->key = NULL;
    r->task = task;
    r->epoch = 0;
    if (r->name == NULL) {
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

static void et_region_dealloc(et_region *self)
{
    Py_XDECREF(self->name);
    Py_XDECREF(self->key);
    PyObject_Free(self);
}

static PyObject *et_region_enter(et_region *self, PyObject *unused)
{
    if (self->name != NULL && R.active) {
        int64_t now = et_now();
        et_thread *t = et_current_thread();
        PyObject *key = t ? PyDict_SetDefault(R.cap->region_names, self->name, self->name)
                          : NULL; /* borrowed */
        if (key == NULL) {
            PyErr_Clear();
        } else {
            et_slot *slot = et_intern(R.cap, key, ET_FUNC_REGION, key);
            if (slot == NULL) {
                R.cap->dropped_calls++;
            } else {
                et_push(t, key, slot->func, now);
                Py_INCREF(key);
                Py_XSETREF(self->key, key);
                self->epoch = R.epoch;
                if (self->task != 0) {
                    et_event_add(ET_EV_REGION_BEGIN, now, t->index, self->task, key, NULL);
                }
            }
        }
    }
    return Py_NewRef(self);
}

static PyObject *et_region_exit(et_region *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->key != NULL && R.active && self->epoch == R.epoch) {
        int64_t now = et_now();
        et_thread *t = et_current_thread();
        if (t != NULL) {
            et_pop(t, self->key, now);
            if (self->task != 0) {
                et_event_add(ET_EV_REGION_END, now, t->index, self->task, self->key, NULL);
            }
        }
    }
    Py_RETURN_FALSE; /* never swallows the block's exception */
}

static PyObject *et_region_repr(et_region *self)
{
    if (self->name == NULL) {
        return PyUnicode_FromString("<exectrace.Region (idle)>");
    }
    return PyUnicode_FromFormat("<exectrace.Region %R>", self->name);
}

/* ----------------------------------------------------------------- task */

static void et_task_dealloc(et_task *self)
{
    Py_XDECREF(self->name);
    Py_XDECREF(self->token);
    PyObject_Free(self);
}

static PyObject *et_task_end(et_task *self, PyObject *unused)
{
    if (self->name != NULL && !self->ended) {
        self->ended = 1;
        if (R.active) {
            int64_t now = et_now();
            et_thread *t = et_current_thread();
            et_event_add(ET_EV_TASK_END, now, t ? t->index : UINT32_MAX, self->id, self->name,
                         NULL);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *et_task_region(et_task *self, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        return et_type_error(ET_REGION_USAGE);
    }
    if (!R.active) {
        return Py_NewRef(et_region_idle);
    }
    return et_region_make(name, self->name != NULL ? self->id : 0);
}

static PyObject *et_task_enter(et_task *self, PyObject *unused)
{
    if (self->name != NULL && self->token == NULL && et_task_var != NULL) {
        self->token = PyContextVar_Set(et_task_var, (PyObject *)self);
        if (self->token == NULL) {
            PyErr_Clear();
        }
    }
    return Py_NewRef(self);
}

static PyObject *et_task_exit(et_task *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->token != NULL) {
        /* fails when exited in another context than entered: not the app's problem */
        if (PyContextVar_Reset(et_task_var, self->token) < 0) {
            PyErr_Clear();
        }
        Py_CLEAR(self->token);
    }
    PyObject *r = et_task_end(self, NULL);
    Py_XDECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *et_task_get_name(et_task *self, void *closure)
{
    return self->name ? Py_NewRef(self->name) : PyUnicode_FromString("");
}

static PyObject *et_task_get_id(et_task *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->id);
}

static PyObject *et_task_repr(et_task *self)
{
    if (self->name == NULL) {
        return PyUnicode_FromString("<exectrace.Task (idle)>");
    }
    return PyUnicode_FromFormat("<exectrace.Task %R id=%llu%s>", self->name,
                                (unsigned long long)self->id, self->ended ? " ended" : "");
}

/* The idle objects' __enter__ and __exit__ are plain functions in their
 * types' dicts, not methods: a with statement then calls them as they are,
 * without making a bound method for each (about 30 ns less per with). */
static PyObject *et_idle_region_enter(PyObject *unused, PyObject *ignored)
{
    return Py_NewRef(et_region_idle);
}

static PyObject *et_idle_task_enter(PyObject *unused, PyObject *ignored)
{
    return Py_NewRef(et_task_idle);
}

static PyObject *et_idle_exit(PyObject *unused, PyObject *const *args, Py_ssize_t nargs)
{
    Py_RETURN_FALSE;
}

/* ------------------------------------------------- module-level functions */

static PyObject *et_region_new(PyObject *module, PyObject *name)
{
    if (ET_UNLIKELY(!PyUnicode_Check(name))) {
        return et_type_error(ET_REGION_USAGE);
    }
    if (ET_LIKELY(!R.active)) {
        return Py_NewRef(et_region_idle);
    }
    return et_region_make(name, et_current_task_id());
}

static PyObject *et_task_new(PyObject *module, PyObject *name)
{
    if (ET_UNLIKELY(!PyUnicode_Check(name))) {
        return et_type_error(ET_TASK_USAGE);
    }
    if (ET_LIKELY(!R.active)) {
        return Py_NewRef(et_task_idle);
    }
    et_task *task = PyObject_New(et_task, &et_task_type);
    if (task == NULL) {
        return NULL;
    }
    task->name = et_exact_str(name);
    task->token = NULL;
    task->id = ++et_task_counter;
    task->ended = 0;
    if (task->name == NULL) {
        Py_DECREF(task);
        return NULL;
    }
    int64_t now = et_now();
    et_thread *t = et_current_thread();
    if (R.active) {
        et_event_add(ET_EV_TASK_BEGIN, now, t ? t->index : UINT32_MAX, task->id, task->name,
                     NULL);
    }
    return (PyObject *)task;
}

static PyObject *et_log(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (ET_UNLIKELY(nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1]))) {
        return et_type_error(ET_LOG_USAGE);
    }
    if (ET_LIKELY(!R.active)) {
        Py_RETURN_NONE;
    }
    int64_t now = et_now();
    et_thread *t = et_current_thread();
    if (t == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *category = et_exact_str(args[0]);
    PyObject *message = et_exact_str(args[1]);
    if (category != NULL && message != NULL && R.active) {
        et_event_add(ET_EV_LOG, now, t->index, et_current_task_id(), category, message);
    }
    Py_XDECREF(category);
    Py_XDECREF(message);
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* All of the annotations' methods, in one array so that the C-call hooks can
 * tell them apart with one range check (et_c_function): calling region() is
 * not itself recorded.  Each type's tp_methods points into it. */
#define ET_FASTCALL_FN(f) ((PyCFunction)(void (*)(void))(f))
static PyMethodDef et_annotation_defs[] = {
    /* 0: module functions */
    {"region", (PyCFunction)et_region_new, METH_O,
     "region(name) -> context manager: a slice named `name` on the current thread."},
    {"task", (PyCFunction)et_task_new, METH_O,
     "task(name) -> Task: a span that may cross threads; end() it or use it with `with`."},
    {"log", ET_FASTCALL_FN(et_log), METH_FASTCALL,
     "log(category, message): an instant log entry on the current thread."},
    {NULL, NULL, 0, NULL},
    /* 4: Region */
    {"__enter__", (PyCFunction)et_region_enter, METH_NOARGS, NULL},
    {"__exit__", ET_FASTCALL_FN(et_region_exit), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
    /* 7: Task */
    {"end", (PyCFunction)et_task_end, METH_NOARGS, "Ends the task (once; later calls do nothing)."},
    {"region", (PyCFunction)et_task_region, METH_O,
     "region(name): a region of this task on the current thread."},
    {"__enter__", (PyCFunction)et_task_enter, METH_NOARGS, NULL},
    {"__exit__", ET_FASTCALL_FN(et_task_exit), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
    /* 12: the idle objects' functions */
    {"__enter__", (PyCFunction)et_idle_region_enter, METH_NOARGS, NULL},
    {"__enter__", (PyCFunction)et_idle_task_enter, METH_NOARGS, NULL},
    {"__exit__", ET_FASTCALL_FN(et_idle_exit), METH_FASTCALL, NULL},
};
#define ET_ANNOTATION_DEFS (sizeof(et_annotation_defs) / sizeof(et_annotation_defs[0]))

static PyGetSetDef et_task_getset[] = {
    {"name", (getter)et_task_get_name, NULL, "The task's name.", NULL},
    {"id", (getter)et_task_get_id, NULL, "The task's id in this process (0: not recorded).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject et_region_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exectrace.Region",
    .tp_basicsize = sizeof(et_region),
    .tp_dealloc = (destructor)et_region_dealloc,
    .tp_repr = (reprfunc)et_region_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A user region: made by exectrace.region(name), used with `with`.",
    .tp_methods = &et_annotation_defs[4],
};

static PyTypeObject et_task_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exectrace.Task",
    .tp_basicsize = sizeof(et_task),
    .tp_dealloc = (destructor)et_task_dealloc,
    .tp_repr = (reprfunc)et_task_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A user task: made by exectrace.task(name).",
    .tp_methods = &et_annotation_defs[7],
    .tp_getset = et_task_getset,
};

/* What region() and task() return when no window is open: subtypes whose
 * __enter__/__exit__ are the plain functions above. */
static PyTypeObject et_idle_region_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exectrace.IdleRegion",
    .tp_basicsize = sizeof(et_region),
    .tp_dealloc = (destructor)et_region_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "exectrace.region() outside a trace window: does nothing.",
    .tp_base = &et_region_type,
};

static PyTypeObject et_idle_task_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exectrace.IdleTask",
    .tp_basicsize = sizeof(et_task),
    .tp_dealloc = (destructor)et_task_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "exectrace.task() outside a trace window: does nothing.",
    .tp_base = &et_task_type,
};

static int et_set_type_function(PyTypeObject *type, const char *name, PyMethodDef *def)
{
    PyObject *f = PyCFunction_New(def, NULL);
    if (f == NULL) {
        return -1;
    }
    int rc = PyDict_SetItemString(type->tp_dict, name, f);
    Py_DECREF(f);
    PyType_Modified(type);
    return rc;
}

/* What the annotations give the exectrace package (new references). */
typedef struct {
    PyObject *region; /* region(name) */
    PyObject *task;   /* task(name) */
    PyObject *log;    /* log(category, message) */
    PyObject *region_type;
    PyObject *task_type;
} et_annotation_api;

/* Readies the types and idle objects and fills `api`; returns -1 with an
 * exception set on failure. */
static int et_annotation_api_get(et_annotation_api *api)
{
    memset(api, 0, sizeof(*api));
    if (PyType_Ready(&et_region_type) < 0 || PyType_Ready(&et_task_type) < 0 ||
        PyType_Ready(&et_idle_region_type) < 0 || PyType_Ready(&et_idle_task_type) < 0) {
        return -1;
    }
    if (et_task_var == NULL) {
        if (et_set_type_function(&et_idle_region_type, "__enter__", &et_annotation_defs[12]) < 0 ||
            et_set_type_function(&et_idle_region_type, "__exit__", &et_annotation_defs[14]) < 0 ||
            et_set_type_function(&et_idle_task_type, "__enter__", &et_annotation_defs[13]) < 0 ||
            et_set_type_function(&et_idle_task_type, "__exit__", &et_annotation_defs[14]) < 0) {
            return -1;
        }
        et_task_var = PyContextVar_New("exectrace.task", NULL);
        et_region_idle = (PyObject *)PyObject_New(et_region, &et_idle_region_type);
        et_task_idle = (PyObject *)PyObject_New(et_task, &et_idle_task_type);
        if (et_task_var == NULL || et_region_idle == NULL || et_task_idle == NULL) {
            return -1;
        }
        ((et_region *)et_region_idle)->name = NULL;
        ((et_region *)et_region_idle)->key = NULL;
        ((et_region *)et_region_idle)->task = 0;
        ((et_region *)et_region_idle)->epoch = 0;
        ((et_task *)et_task_idle)->name = NULL;
        ((et_task *)et_task_idle)->token = NULL;
        ((et_task *)et_task_idle)->id = 0;
        ((et_task *)et_task_idle)->ended = 1;
        et_hidden_defs_lo = et_annotation_defs;
        et_hidden_defs_hi = et_annotation_defs + ET_ANNOTATION_DEFS;
    }
    api->region = PyCFunction_New(&et_annotation_defs[0], NULL);
    api->task = PyCFunction_New(&et_annotation_defs[1], NULL);
    api->log = PyCFunction_New(&et_annotation_defs[2], NULL);
    if (!api->region || !api->task || !api->log) {
        Py_CLEAR(api->region);
        Py_CLEAR(api->task);
        Py_CLEAR(api->log);
        return -1;
    }
    api->region_type = Py_NewRef(&et_region_type);
    api->task_type = Py_NewRef(&et_task_type);
    return 0;
}

#endif /* EXECTRACE_ANNOTATIONS_H */
