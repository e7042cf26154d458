/* Traced locks: exectrace.Lock and exectrace.RLock.
 *
 * `with lock:` calls the lock's __enter__ through the with statement's
 * special-method lookup, which fires no CALL (3.12+) or C_CALL (<=3.11)
 * event: the commonest lock wait of a Python program is invisible to the
 * hooks in recorder.h.  These two types behave like _thread.lock and
 * _thread.RLock of the running CPython (3.9-3.13: same methods, arguments,
 * errors and messages, interruptible waits) and, while a window records C
 * calls, write their __enter__ as a C call slice, named by the same code
 * path as any C method: `exectrace.Lock.__enter__`, `exectrace.RLock.__enter__`.
 * exectrace.locks puts them in place of threading.Lock / threading.RLock.
 *
 * An explicit `lock.__enter__()` (Condition.__enter__ does that) is a C call
 * the hooks already recorded: the innermost open call of the thread's shadow
 * stack is then this very __enter__, and it is not recorded twice.  An
 * explicit acquire() is recorded by the hooks alone.
 *
 * Between windows the only extra work is reading R.active: no clock read.
 *
 * Included after recorder.h (through tracedlock.pxd, cimported by
 * src/core/recorder.pxi), in the same translation unit: it uses R, et_now,
 * et_on_c_call, et_on_c_return and et_current_thread.
 */
#ifndef EXECTRACE_TRACEDLOCK_H
#define EXECTRACE_TRACEDLOCK_H

#include "recorder.h"
#include "annotations.h"
#include "events.h"

/* Seconds (int or float) to nanoseconds, rounded away from zero, with the
 * running CPython's own conversion so errors and messages match _thread's.
 * 3.13 moved it to the internal headers; it is still exported there. */
#if PY_VERSION_HEX >= 0x030D0000
PyAPI_FUNC(int) _PyTime_FromSecondsObject(PyTime_t *t, PyObject *obj, int round);
#define ETL_ROUND_TIMEOUT 3 /* _PyTime_ROUND_TIMEOUT == _PyTime_ROUND_UP */
#define ETL_TIMEOUT_NEGATIVE_MSG "timeout value must be a non-negative number"
#else
#define ETL_ROUND_TIMEOUT _PyTime_ROUND_TIMEOUT
#define ETL_TIMEOUT_NEGATIVE_MSG "timeout value must be positive"
#endif

/* `blocking` is an int up to 3.11, a truth value from 3.12 on. */
#if PY_VERSION_HEX >= 0x030C0000
#define ETL_ACQUIRE_FORMAT "|pO:acquire"
#else
#define ETL_ACQUIRE_FORMAT "|iO:acquire"
#endif

#define ETL_UNSET_TIMEOUT (-1000000000LL) /* -1 s in ns: wait forever */

/* Lock hand-offs (`events` windows): a release while threads wait starts a
 * flow that the waiter whose wait it ended picks up, as Go's trace draws
 * the unblock edge from the goroutine that released to the one it woke. */
typedef struct {
    uint32_t waiters; /* threads in a recorded wait on the lock */
    uint32_t seq;     /* bumped by each release seen by waiters */
    uint64_t flow;    /* the flow id of the latest such release */
} etl_handoff;

static uint64_t etl_flows; /* flow ids handed out (unique per process) */

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    PyObject *weakrefs;
    char locked;
    etl_handoff handoff;
} etl_lock;

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    unsigned long owner;
    unsigned long count;
    PyObject *weakrefs;
    etl_handoff handoff;
} etl_rlock;

/* A release: when threads wait on the lock, the hand-off starts here. */
static void etl_handoff_release(etl_handoff *h)
{
    if (ET_LIKELY(h->waiters == 0) || !R.active || !R.events_mode) {
        return;
    }
    et_thread *t = et_current_thread();
    if (t == NULL) {
        return;
    }
    h->seq++;
    h->flow = ++etl_flows;
    uint32_t stack = et_current_callstack();
    et_event_add(ET_EV_HANDOFF_RELEASE, et_now(), t->index, (h->flow << 24) | stack, NULL, NULL);
}

/* ------------------------------------------------ arguments and waiting */

static int etl_parse_tuple(PyObject *args, PyObject *kwds, int64_t *timeout)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    PyObject *timeout_obj = NULL;
    *timeout = ETL_UNSET_TIMEOUT;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ETL_ACQUIRE_FORMAT, kwlist, &blocking,
                                     &timeout_obj)) {
        return -1;
    }
    if (timeout_obj != NULL &&
        _PyTime_FromSecondsObject(timeout, timeout_obj, ETL_ROUND_TIMEOUT) < 0) {
        return -1;
    }
    if (!blocking && *timeout != ETL_UNSET_TIMEOUT) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return -1;
    }
    if (*timeout < 0 && *timeout != ETL_UNSET_TIMEOUT) {
        PyErr_SetString(PyExc_ValueError, ETL_TIMEOUT_NEGATIVE_MSG);
        return -1;
    }
    if (!blocking) {
        *timeout = 0;
    } else if (*timeout != ETL_UNSET_TIMEOUT) {
        int64_t us = *timeout / 1000 + (*timeout % 1000 != 0); /* rounded up */
        if (us > PY_TIMEOUT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
            return -1;
        }
    }
    return 0;
}

/* acquire(blocking=True, timeout=-1) as vectorcall arguments: the common
 * shapes (), (True), (False) are read directly; anything else goes through
 * the same parser as _thread's, for the same errors. */
static int etl_parse(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                     int64_t *timeout)
{
    if (ET_LIKELY(kwnames == NULL)) {
        if (nargs == 0) {
            *timeout = ETL_UNSET_TIMEOUT;
            return 0;
        }
        if (nargs == 1 && PyBool_Check(args[0])) {
            *timeout = args[0] == Py_True ? ETL_UNSET_TIMEOUT : 0;
            return 0;
        }
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *tuple = PyTuple_New(nargs);
    PyObject *dict = nkw ? PyDict_New() : NULL;
    int r = -1;
    if (tuple == NULL || (nkw && dict == NULL)) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(tuple, i, args[i]);
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(dict, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            goto done;
        }
    }
    r = etl_parse_tuple(tuple, dict, timeout);
done:
    Py_XDECREF(tuple);
    Py_XDECREF(dict);
    return r;
}

/* _threadmodule.c's acquire_timed: a non-blocking try with the GIL held,
 * then a wait with the GIL released; a wait interrupted by a signal runs
 * the signal handlers (PY_LOCK_INTR when one raised: KeyboardInterrupt
 * ends a blocked `with lock:`) and goes on with the time left. */
static PyLockStatus etl_acquire_timed(PyThread_type_lock lock, int64_t timeout, etl_handoff *h)
{
    int64_t deadline = 0;
    int counted = 0;
    uint32_t seen = 0;
    if (timeout > 0) {
        int64_t now = et_monotonic_ns();
        deadline = timeout > INT64_MAX - now ? INT64_MAX : now + timeout;
    }
    PyLockStatus r;
    do {
        /* microseconds, rounded up (towards zero when negative: forever) */
        int64_t us = timeout / 1000 + (timeout > 0 && timeout % 1000 != 0);
        r = PyThread_acquire_lock_timed(lock, 0, 0);
        if (r == PY_LOCK_FAILURE && us != 0) {
            if (!counted && R.active && R.events_mode) {
                counted = 1;
                seen = h->seq;
                h->waiters++;
            }
            Py_BEGIN_ALLOW_THREADS
            r = PyThread_acquire_lock_timed(lock, (PY_TIMEOUT_T)us, 1);
            Py_END_ALLOW_THREADS
        }
        if (r == PY_LOCK_INTR) {
            if (Py_MakePendingCalls() < 0) {
                return PY_LOCK_INTR;
            }
            if (timeout > 0) {
                timeout = deadline - et_monotonic_ns();
                if (timeout < 0) {
                    r = PY_LOCK_FAILURE;
                }
            }
        }
    } while (r == PY_LOCK_INTR);
    if (counted) {
        h->waiters--;
        if (r == PY_LOCK_ACQUIRED && h->seq != seen && R.active) {
            et_thread *t = et_current_thread();
            if (t != NULL) {
                et_event_add(ET_EV_HANDOFF_ACQUIRE, et_now(), t->index, h->flow, NULL, NULL);
            }
        }
    }
    return r;
}

/* A lock leaked by fork (held, maybe by a thread that does not exist in
 * the child) is abandoned, as _PyThread_at_fork_reinit does: freeing it
 * could be undefined behaviour. */
static int etl_reinit(PyThread_type_lock *lock)
{
    PyThread_type_lock fresh = PyThread_allocate_lock();
    if (fresh == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "failed to reinitialize lock at fork");
        return -1;
    }
    *lock = fresh;
    return 0;
}

/* ------------------------------------------------------------ recording */

/* Whether this __enter__ should be written as a C call slice: a window is
 * recording C calls, this thread is recorded, and the hooks did not already
 * open this very call (an explicit `lock.__enter__()`). */
static int etl_should_record(PyMethodDef *enter_def)
{
    if (!R.c_calls) {
        return 0;
    }
    et_thread *t = et_current_thread();
    if (t == NULL) {
        return 0;
    }
    return !(t->depth != 0 && t->stack[t->depth - 1].key == (void *)enter_def);
}

typedef PyObject *(*etl_acquire_fn)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);

static PyObject *etl_recorded_enter(etl_acquire_fn acquire, PyMethodDef *enter_def,
                                    PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    if (!etl_should_record(enter_def)) {
        return acquire(self, args, nargs, kwnames);
    }
    et_on_c_call(enter_def, (PyObject *)Py_TYPE(self), et_now());
    PyObject *result = acquire(self, args, nargs, kwnames);
    /* The window may have closed (and another opened) while this thread
     * waited: et_on_c_return then finds no matching call and does nothing. */
    if (R.active) {
        et_on_c_return(enter_def, et_now());
    }
    return result;
}

/* ----------------------------------------------------------------- Lock */

static PyObject *etl_lock_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    etl_lock *self = (etl_lock *)op;
    int64_t timeout;
    if (etl_parse(args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    PyLockStatus r = etl_acquire_timed(self->lock, timeout, &self->handoff);
    if (r == PY_LOCK_INTR) {
        return NULL;
    }
    if (r == PY_LOCK_ACQUIRED) {
        self->locked = 1;
    }
    return PyBool_FromLong(r == PY_LOCK_ACQUIRED);
}

static PyObject *etl_lock_enter(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames);

static PyObject *etl_lock_release(PyObject *op, PyObject *unused)
{
    etl_lock *self = (etl_lock *)op;
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    PyThread_release_lock(self->lock);
    self->locked = 0;
    etl_handoff_release(&self->handoff);
    Py_RETURN_NONE;
}

static PyObject *etl_lock_locked(PyObject *op, PyObject *unused)
{
    return PyBool_FromLong(((etl_lock *)op)->locked);
}

static PyObject *etl_lock_at_fork_reinit(PyObject *op, PyObject *unused)
{
    etl_lock *self = (etl_lock *)op;
    if (etl_reinit(&self->lock) < 0) {
        return NULL;
    }
    self->locked = 0;
    Py_RETURN_NONE;
}

static PyObject *etl_lock_repr(PyObject *op)
{
    etl_lock *self = (etl_lock *)op;
    return PyUnicode_FromFormat("<%s %s object at %p>", self->locked ? "locked" : "unlocked",
                                Py_TYPE(op)->tp_name, op);
}

static PyObject *etl_lock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Lock() takes no keyword arguments");
        return NULL;
    }
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError, "Lock() takes no arguments (%zd given)",
                     PyTuple_GET_SIZE(args));
        return NULL;
    }
    etl_lock *self = (etl_lock *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_RuntimeError, "can't allocate lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void etl_lock_dealloc(PyObject *op)
{
    etl_lock *self = (etl_lock *)op;
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock); /* so that it may be freed */
        }
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(op)->tp_free(op);
}

#define ETL_FASTCALL_KW(f) ((PyCFunction)(void (*)(void))(f))

PyDoc_STRVAR(etl_acquire_doc,
             "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"
             "Lock the lock.  Without argument, this blocks if the lock is already\n"
             "locked (even by the same thread), waiting for another thread to release\n"
             "the lock, and return True once the lock is acquired.\n"
             "With an argument, this will only block if the argument is true,\n"
             "and the return value reflects whether the lock is acquired.\n"
             "The blocking operation is interruptible.");
PyDoc_STRVAR(etl_enter_doc,
             "__enter__($self, /, blocking=True, timeout=-1)\n--\n\n"
             "Lock the lock (recorded as a C call while a trace window is open).");
PyDoc_STRVAR(etl_release_doc,
             "release($self, /)\n--\n\n"
             "Release the lock, allowing another thread that is blocked waiting for\n"
             "the lock to acquire the lock.  The lock must be in the locked state,\n"
             "but it needn't be locked by the same thread that unlocks it.");
PyDoc_STRVAR(etl_exit_doc, "__exit__($self, /, *exc_info)\n--\n\nRelease the lock.");
PyDoc_STRVAR(etl_locked_doc,
             "locked($self, /)\n--\n\nReturn whether the lock is in the locked state.");

/* __enter__ first: etl_lock_enter records under &etl_lock_methods[0]. */
static PyMethodDef etl_lock_methods[] = {
    {"__enter__", ETL_FASTCALL_KW(etl_lock_enter), METH_FASTCALL | METH_KEYWORDS, etl_enter_doc},
    {"acquire", ETL_FASTCALL_KW(etl_lock_acquire), METH_FASTCALL | METH_KEYWORDS,
     etl_acquire_doc},
    {"acquire_lock", ETL_FASTCALL_KW(etl_lock_acquire), METH_FASTCALL | METH_KEYWORDS,
     etl_acquire_doc},
    {"release", etl_lock_release, METH_NOARGS, etl_release_doc},
    {"release_lock", etl_lock_release, METH_NOARGS, etl_release_doc},
    {"locked", etl_lock_locked, METH_NOARGS, etl_locked_doc},
    {"locked_lock", etl_lock_locked, METH_NOARGS, etl_locked_doc},
    {"__exit__", etl_lock_release, METH_VARARGS, etl_exit_doc},
    {"_at_fork_reinit", etl_lock_at_fork_reinit, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* The slice is keyed by the PyMethodDef the type's __enter__ descriptor
 * holds, so that the hooks' C calls (explicit `lock.__enter__()`) and this
 * one are the same function, named `exectrace.Lock.__enter__`. */
static PyObject *etl_lock_enter(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    if (ET_UNLIKELY(R.active)) {
        return etl_recorded_enter(etl_lock_acquire, &etl_lock_methods[0], op, args, nargs,
                                  kwnames);
    }
    return etl_lock_acquire(op, args, nargs, kwnames);
}

PyDoc_STRVAR(etl_lock_doc,
             "Lock()\n--\n\n"
             "A lock that behaves like _thread.lock (threading.Lock) and, while an\n"
             "exectrace window is open, records `with lock:` waits as calls of\n"
             "exectrace.Lock.__enter__.");

static PyTypeObject etl_LockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "exectrace.Lock",
    .tp_basicsize = sizeof(etl_lock),
    .tp_dealloc = etl_lock_dealloc,
    .tp_repr = etl_lock_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = etl_lock_doc,
    .tp_weaklistoffset = offsetof(etl_lock, weakrefs),
    .tp_methods = etl_lock_methods,
    .tp_new = etl_lock_new,
};

/* ---------------------------------------------------------------- RLock */

static PyObject *etl_rlock_acquire(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    etl_rlock *self = (etl_rlock *)op;
    int64_t timeout;
    if (etl_parse(args, nargs, kwnames, &timeout) < 0) {
        return NULL;
    }
    unsigned long tid = PyThread_get_thread_ident();
    if (self->count > 0 && tid == self->owner) {
        unsigned long count = self->count + 1;
        if (count <= self->count) {
            PyErr_SetString(PyExc_OverflowError, "Internal lock count overflowed");
            return NULL;
        }
        self->count = count;
        Py_RETURN_TRUE;
    }
    PyLockStatus r = etl_acquire_timed(self->lock, timeout, &self->handoff);
    if (r == PY_LOCK_INTR) {
        return NULL;
    }
    if (r == PY_LOCK_ACQUIRED) {
        self->owner = tid;
        self->count = 1;
    }
    return PyBool_FromLong(r == PY_LOCK_ACQUIRED);
}

static PyObject *etl_rlock_enter(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames);

static PyObject *etl_rlock_release(PyObject *op, PyObject *unused)
{
    etl_rlock *self = (etl_rlock *)op;
    unsigned long tid = PyThread_get_thread_ident();
    if (self->count == 0 || self->owner != tid) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--self->count == 0) {
        self->owner = 0;
        PyThread_release_lock(self->lock);
        etl_handoff_release(&self->handoff);
    }
    Py_RETURN_NONE;
}

static PyObject *etl_rlock_acquire_restore(PyObject *op, PyObject *args)
{
    etl_rlock *self = (etl_rlock *)op;
    unsigned long owner, count;
    int r = 1;
    if (!PyArg_ParseTuple(args, "(kk):_acquire_restore", &count, &owner)) {
        return NULL;
    }
    if (!PyThread_acquire_lock(self->lock, 0)) {
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock(self->lock, 1);
        Py_END_ALLOW_THREADS
    }
    if (!r) {
        PyErr_SetString(PyExc_RuntimeError, "couldn't acquire lock");
        return NULL;
    }
    self->owner = owner;
    self->count = count;
    Py_RETURN_NONE;
}

static PyObject *etl_rlock_release_save(PyObject *op, PyObject *unused)
{
    etl_rlock *self = (etl_rlock *)op;
    if (self->count == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    unsigned long owner = self->owner;
    unsigned long count = self->count;
    self->count = 0;
    self->owner = 0;
    PyThread_release_lock(self->lock);
    etl_handoff_release(&self->handoff);
    return Py_BuildValue("kk", count, owner);
}

static PyObject *etl_rlock_recursion_count(PyObject *op, PyObject *unused)
{
    etl_rlock *self = (etl_rlock *)op;
    unsigned long tid = PyThread_get_thread_ident();
    return PyLong_FromUnsignedLong(self->owner == tid ? self->count : 0UL);
}

static PyObject *etl_rlock_is_owned(PyObject *op, PyObject *unused)
{
    etl_rlock *self = (etl_rlock *)op;
    unsigned long tid = PyThread_get_thread_ident();
    return PyBool_FromLong(self->count > 0 && self->owner == tid);
}

static PyObject *etl_rlock_at_fork_reinit(PyObject *op, PyObject *unused)
{
    etl_rlock *self = (etl_rlock *)op;
    if (etl_reinit(&self->lock) < 0) {
        return NULL;
    }
    self->owner = 0;
    self->count = 0;
    Py_RETURN_NONE;
}

static PyObject *etl_rlock_repr(PyObject *op)
{
    etl_rlock *self = (etl_rlock *)op;
    return PyUnicode_FromFormat("<%s %s object owner=%lu count=%lu at %p>",
                                self->count ? "locked" : "unlocked", Py_TYPE(op)->tp_name,
                                self->owner, self->count, op);
}

/* Arguments are accepted and ignored, as by _thread.RLock. */
static PyObject *etl_rlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    etl_rlock *self = (etl_rlock *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_RuntimeError, "can't allocate lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void etl_rlock_dealloc(PyObject *op)
{
    etl_rlock *self = (etl_rlock *)op;
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    if (self->lock != NULL) {
        if (self->count > 0) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(op)->tp_free(op);
}

PyDoc_STRVAR(etl_rlock_release_doc,
             "release($self, /)\n--\n\n"
             "Release the lock, allowing another thread that is blocked waiting for\n"
             "the lock to acquire the lock.  The lock must be in the locked state,\n"
             "and must be locked by the same thread that unlocks it; otherwise a\n"
             "`RuntimeError` is raised.");
PyDoc_STRVAR(etl_internal_doc, "For internal use by `threading.Condition`.");

/* __enter__ first: etl_rlock_enter records under &etl_rlock_methods[0]. */
static PyMethodDef etl_rlock_methods[] = {
    {"__enter__", ETL_FASTCALL_KW(etl_rlock_enter), METH_FASTCALL | METH_KEYWORDS,
     etl_enter_doc},
    {"acquire", ETL_FASTCALL_KW(etl_rlock_acquire), METH_FASTCALL | METH_KEYWORDS,
     etl_acquire_doc},
    {"release", etl_rlock_release, METH_NOARGS, etl_rlock_release_doc},
    {"__exit__", etl_rlock_release, METH_VARARGS, etl_exit_doc},
    {"_is_owned", etl_rlock_is_owned, METH_NOARGS, etl_internal_doc},
    {"_acquire_restore", etl_rlock_acquire_restore, METH_VARARGS, etl_internal_doc},
    {"_release_save", etl_rlock_release_save, METH_NOARGS, etl_internal_doc},
    {"_recursion_count", etl_rlock_recursion_count, METH_NOARGS,
     "For internal use by reentrancy checks."},
    {"_at_fork_reinit", etl_rlock_at_fork_reinit, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *etl_rlock_enter(PyObject *op, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    if (ET_UNLIKELY(R.active)) {
        return etl_recorded_enter(etl_rlock_acquire, &etl_rlock_methods[0], op, args, nargs,
                                  kwnames);
    }
    return etl_rlock_acquire(op, args, nargs, kwnames);
}

PyDoc_STRVAR(etl_rlock_doc,
             "A reentrant lock that behaves like _thread.RLock (threading.RLock) and,\n"
             "while an exectrace window is open, records `with rlock:` waits as calls\n"
             "of exectrace.RLock.__enter__.");

static PyTypeObject etl_RLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "exectrace.RLock",
    .tp_basicsize = sizeof(etl_rlock),
    .tp_dealloc = etl_rlock_dealloc,
    .tp_repr = etl_rlock_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = etl_rlock_doc,
    .tp_weaklistoffset = offsetof(etl_rlock, weakrefs),
    .tp_methods = etl_rlock_methods,
    .tp_new = etl_rlock_new,
};

/* (Lock, RLock), the types readied once. */
/* The lock types, readied (new references). */
typedef struct {
    PyObject *lock_type;  /* exectrace.Lock */
    PyObject *rlock_type; /* exectrace.RLock */
} et_lock_api;

/* Fills `api`; returns -1 with an exception set on failure. */
static int et_lock_api_get(et_lock_api *api)
{
    static int ready = 0;
    if (!ready) {
        if (PyType_Ready(&etl_LockType) < 0 || PyType_Ready(&etl_RLockType) < 0) {
            return -1;
        }
        ready = 1;
    }
    api->lock_type = Py_NewRef(&etl_LockType);
    api->rlock_type = Py_NewRef(&etl_RLockType);
    return 0;
}

#endif /* EXECTRACE_TRACEDLOCK_H */
