/* The flight recorder's two native operations on the recording capture
 * (docs/flight-recorder.md):
 *
 *   et_flight_copy     a snapshot: a new, closed capture holding what the
 *                      recording one retains since a cutoff (the last
 *                      `flight_recorder`), open calls ending now.  The
 *                      recording goes on; the copy is encoded later, off the
 *                      application's threads, by the ordinary writer.
 *   et_flight_compact  compaction: the recording capture keeps only what
 *                      its ring retains since a cutoff, and the functions,
 *                      threads, asyncio tasks, callstacks, GC records and
 *                      annotations those reference (renumbered); the rest is
 *                      released.  Without it a recorder running for days
 *                      would hold every task and annotation ever seen.
 *
 * Both run with the GIL held, in one go: the hooks, the sampler and the
 * annotations (all under the GIL) never see a half-built capture.  Neither
 * drops a reference before the new state is complete (a DECREF can run a
 * finalizer, which can run Python code and release the GIL): compaction
 * frees the old tables last, after the swap.
 *
 * Compaction keeps the et_thread structs of live threads (threads cache a
 * pointer to theirs, and user regions the epoch, so neither may change):
 * their index and shadow stacks are renumbered in place.
 */
#ifndef EXECTRACE_FLIGHT_H
#define EXECTRACE_FLIGHT_H

#include "events.h"
#include "recorder.h"

/* Which bound limited what a copy covers. */
enum {
    ET_BOUND_FLIGHT = 0,  /* the cutoff asked for: at least the span asked for */
    ET_BOUND_BUFFER = 1,  /* the ring had wrapped past the cutoff: buffer_size */
    ET_BOUND_START = 2,   /* recording started after the cutoff: what exists */
};

typedef struct {
    int64_t from;          /* ticks: what the result covers starts here */
    int bound;             /* ET_BOUND_* */
    uint64_t records_in;   /* records retained by the ring before */
    uint64_t records_out;  /* records kept */
    uint32_t funcs_in, funcs_out;
    uint32_t threads_in, threads_out;
    uint32_t tasks_in, tasks_out;
    uint32_t events_in, events_out;
    uint32_t gc_in, gc_out;
    uint32_t stacks_in, stacks_out;
} et_flight_info;

/* Remapping tables: old id -> new id + 1 (0: dropped). */
typedef struct {
    uint32_t *funcs, *threads, *tasks, *nodes, *frames;
    uint8_t *alive; /* per old thread: a thread state exists for its ident */
} et_remap;

static void et_remap_free(et_remap *m)
{
    free(m->alive);
    free(m->funcs);
    free(m->threads);
    free(m->tasks);
    free(m->nodes);
    free(m->frames);
}

static inline const et_record *et_ring_at(const et_capture *c, uint64_t first, uint64_t i)
{
    return &c->ring[(first + i) % c->capacity];
}

/* The recording capture's hot fields back into it. */
static void et_flight_sync(et_capture *c)
{
    c->pos = R.ring_pos;
    c->written = R.written;
}

static void et_ring_span(const et_capture *c, uint64_t *first, uint64_t *count)
{
    if (c->written <= c->capacity) {
        *first = 0;
        *count = c->written;
    } else {
        *first = c->pos;
        *count = c->capacity;
    }
}

/* Where coverage starts: the cutoff, unless recording began later or the
 * ring already dropped records that ended after it. */
static int64_t et_flight_from(const et_capture *c, int64_t cutoff, int *bound)
{
    uint64_t first, count;
    int64_t from = cutoff;
    *bound = ET_BOUND_FLIGHT;
    if (from <= c->start_clock.ticks) {
        from = c->start_clock.ticks;
        *bound = ET_BOUND_START;
    }
    et_ring_span(c, &first, &count);
    if (c->written > c->capacity && count > 0) {
        int64_t oldest = et_ring_at(c, first, 0)->end;
        if (oldest > from) {
            from = oldest;
            *bound = ET_BOUND_BUFFER;
        }
    }
    return from;
}

static inline void et_mark(uint32_t *map, uint32_t id, uint32_t n)
{
    if (id < n) {
        map[id] = 1;
    }
}

static void et_mark_frame_refs(et_remap *m, const et_capture *c, const et_frame *f)
{
    if (f->func != ET_HIDDEN) {
        et_mark(m->funcs, f->func, c->n_funcs);
    }
    uint32_t kind = ET_REC_KIND(f->flags & ~ET_FRAME_CORO);
    uint32_t index = ET_REC_INDEX(f->flags);
    if (kind == ET_REC_STEP || kind == ET_REC_CREATE) {
        et_mark(m->tasks, index, c->n_tasks);
    } else if (kind == ET_REC_BLOCK && c->stacks != NULL && index != 0) {
        et_mark(m->nodes, index, c->stacks->n_nodes + 1);
    }
}

static void et_mark_record(et_remap *m, const et_capture *c, const et_record *r)
{
    uint32_t kind = ET_REC_KIND(r->flags);
    uint32_t index = ET_REC_INDEX(r->flags);
    if (kind != ET_REC_SAMPLE) {
        et_mark(m->funcs, r->func, c->n_funcs);
    }
    et_mark(m->threads, r->thread, c->n_threads);
    if (kind == ET_REC_STEP || kind == ET_REC_CREATE) {
        et_mark(m->tasks, index, c->n_tasks);
    } else if ((kind == ET_REC_BLOCK || kind == ET_REC_SAMPLE) && c->stacks != NULL && index != 0) {
        et_mark(m->nodes, index, c->stacks->n_nodes + 1);
    }
}

/* Numbers the marked entries of `map` (n of them) in order: map[i] = new id + 1.
 * `base` is the first new id (callstack and frame ids start at 1). */
static uint32_t et_number(uint32_t *map, uint32_t n, uint32_t base)
{
    uint32_t next = base;
    for (uint32_t i = 0; i < n; i++) {
        map[i] = map[i] ? ++next : 0;
    }
    return next - base;
}

static inline uint32_t et_remap_flags(const et_remap *m, uint32_t flags)
{
    uint32_t coro = flags & ET_FRAME_CORO;
    uint32_t kind = ET_REC_KIND(flags & ~ET_FRAME_CORO);
    uint32_t index = ET_REC_INDEX(flags);
    if (kind == ET_REC_STEP || kind == ET_REC_CREATE) {
        index = m->tasks[index] ? m->tasks[index] - 1 : 0;
    } else if (kind == ET_REC_BLOCK || kind == ET_REC_SAMPLE) {
        index = (index != 0 && m->nodes != NULL) ? m->nodes[index] - 1 : 0;
    }
    return kind | coro | (index << 8);
}

static inline uint32_t et_remap_func(const et_remap *m, uint32_t func)
{
    return func == ET_HIDDEN ? ET_HIDDEN : m->funcs[func] - 1;
}

/* Which threads of the capture are alive: for each thread state, the
 * newest entry with its ident (and OS thread id, where the thread state
 * keeps it).  Idents are pthread_t values, reused as soon as a thread ends:
 * older entries with the same ident are threads that ended (the recorder
 * makes a new entry for each thread it sees start). */
static void et_mark_alive(const et_capture *c, uint8_t *alive)
{
    PyThreadState *ts = PyInterpreterState_ThreadHead(PyInterpreterState_Get());
    for (; ts != NULL; ts = PyThreadState_Next(ts)) {
        uint64_t ident = (uint64_t)ts->thread_id;
#if PY_VERSION_HEX >= 0x030B0000
        uint64_t native_id = (uint64_t)ts->native_thread_id;
#else
        uint64_t native_id = 0;
#endif
        for (uint32_t i = c->n_threads; i-- > 0;) {
            const et_thread *t = c->threads[i];
            if (t->ident == ident && (native_id == 0 || t->native_id == 0 || t->native_id == native_id)) {
                alive[i] = 1;
                break;
            }
        }
    }
}

/* Marks everything kept since `from`, then numbers it: with the open frames
 * of live threads (a thread that ended inside a call never closes it: its
 * frames are dropped with it); keep_live: every live thread too. */
static int et_flight_mark(et_remap *m, const et_capture *c, int64_t from, int keep_live)
{
    uint32_t n_nodes = c->stacks ? c->stacks->n_nodes : 0;
    uint32_t n_frames = c->stacks ? c->stacks->n_frames : 0;
    m->funcs = (uint32_t *)calloc((size_t)c->n_funcs + 1, sizeof(uint32_t));
    m->threads = (uint32_t *)calloc((size_t)c->n_threads + 1, sizeof(uint32_t));
    m->tasks = (uint32_t *)calloc((size_t)c->n_tasks + 1, sizeof(uint32_t));
    m->nodes = (uint32_t *)calloc((size_t)n_nodes + 2, sizeof(uint32_t));
    m->frames = (uint32_t *)calloc((size_t)n_frames + 2, sizeof(uint32_t));
    m->alive = (uint8_t *)calloc((size_t)c->n_threads + 1, 1);
    if (!m->funcs || !m->threads || !m->tasks || !m->nodes || !m->frames || !m->alive) {
        return -1;
    }
    uint64_t first, count;
    et_ring_span(c, &first, &count);
    for (uint64_t i = 0; i < count; i++) {
        const et_record *r = et_ring_at(c, first, i);
        if (r->end >= from) {
            et_mark_record(m, c, r);
        }
    }
    et_mark_alive(c, m->alive);
    for (uint32_t i = 0; i < c->n_threads; i++) {
        et_thread *t = c->threads[i];
        if (m->alive[i] && (t->depth > 0 || keep_live)) {
            m->threads[i] = 1;
        }
        if (m->threads[i] && m->alive[i]) {
            for (uint32_t d = 0; d < t->depth; d++) {
                et_mark_frame_refs(m, c, &t->stack[d]);
            }
        }
    }
    for (uint32_t i = 0; i < c->n_gc; i++) {
        if (c->gc[i].end >= from) {
            et_mark(m->threads, c->gc[i].thread, c->n_threads);
        }
    }
    if (keep_live && R.gc_start != 0) {
        et_mark(m->threads, R.gc_thread, c->n_threads);
    }
    for (uint32_t i = 0; i < c->n_events; i++) {
        const et_event *e = &c->events[i];
        if (e->ts < from) {
            continue;
        }
        et_mark(m->threads, e->thread, c->n_threads);
        if (e->kind == ET_EV_HANDOFF_RELEASE && c->stacks != NULL) {
            et_mark(m->nodes, (uint32_t)(e->task & 0xFFFFFFu), n_nodes + 1);
        }
    }
    if (c->stacks != NULL) {
        struct et_stacks *s = c->stacks;
        m->nodes[0] = 0;
        /* a callstack keeps its callers (a parent's id is below its child's) */
        for (uint32_t id = n_nodes; id >= 1; id--) {
            if (m->nodes[id]) {
                m->nodes[s->node_parent[id]] = 1;
                m->frames[s->node_frame[id]] = 1;
            }
        }
        m->nodes[0] = 0;
        m->frames[0] = 0;
        for (uint32_t id = 1; id <= n_frames; id++) {
            if (m->frames[id]) {
                et_mark(m->funcs, s->frame_func[id], c->n_funcs);
            }
        }
        /* a kept task keeps its coroutine's function (the step's name) */
        for (uint32_t i = 0; i < c->n_tasks && i < s->task_func_cap; i++) {
            if (m->tasks[i] && s->task_func[i] != 0) {
                et_mark(m->funcs, s->task_func[i] - 1, c->n_funcs);
            }
        }
        /* ids 1..n: map[id] = new id + 1 with new ids from 1 */
        et_number(m->nodes + 1, n_nodes, 0);
        et_number(m->frames + 1, n_frames, 0);
        for (uint32_t id = 1; id <= n_nodes; id++) {
            if (m->nodes[id]) {
                m->nodes[id]++; /* new ids start at 1: stored + 1 */
            }
        }
        for (uint32_t id = 1; id <= n_frames; id++) {
            if (m->frames[id]) {
                m->frames[id]++;
            }
        }
    }
    et_number(m->funcs, c->n_funcs, 0);
    et_number(m->threads, c->n_threads, 0);
    et_number(m->tasks, c->n_tasks, 0);
    return 0;
}

static uint32_t et_count_marked(const uint32_t *map, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        k += map[i] != 0;
    }
    return k;
}

/* The new callstack tables for the marked ids. */
static struct et_stacks *et_stacks_remapped(const struct et_stacks *s, const et_remap *m)
{
    struct et_stacks *n = et_stacks_new();
    if (n == NULL) {
        return NULL;
    }
    for (uint32_t id = 1; id <= s->n_frames; id++) {
        if (m->frames[id] && et_frame_id(n, m->funcs[s->frame_func[id]] - 1, s->frame_offset[id]) == 0) {
            et_stacks_free(n);
            return NULL;
        }
    }
    for (uint32_t id = 1; id <= s->n_nodes; id++) {
        if (m->nodes[id]) {
            uint32_t parent = s->node_parent[id] ? m->nodes[s->node_parent[id]] - 1 : 0;
            if (et_node_id(n, parent, m->frames[s->node_frame[id]] - 1) == 0) {
                et_stacks_free(n);
                return NULL;
            }
        }
    }
    n->truncated = s->truncated;
    n->unrecorded = s->unrecorded;
    if (s->task_func != NULL) {
        uint32_t cap = 64;
        while (cap < s->task_func_cap) {
            cap *= 2;
        }
        n->task_func = (uint32_t *)calloc(cap, sizeof(uint32_t));
        if (n->task_func == NULL) {
            et_stacks_free(n);
            return NULL;
        }
        n->task_func_cap = cap;
        for (uint32_t i = 0; i < s->task_func_cap; i++) {
            if (m->tasks[i] && s->task_func[i] != 0 && m->funcs[s->task_func[i] - 1]) {
                n->task_func[m->tasks[i] - 1] = m->funcs[s->task_func[i] - 1];
            }
        }
    }
    return n;
}

/* A new capture with the tables of `c` that `m` keeps (functions, tasks,
 * callstacks, GC records and annotations since `from`), no threads and an
 * empty ring of `capacity` records.  References are new ones. */
static et_capture *et_capture_remapped(const et_capture *c, const et_remap *m, int64_t from,
                                       uint64_t capacity)
{
    et_capture *n = et_capture_new(capacity < 16 ? 16 : capacity);
    if (n == NULL) {
        return NULL;
    }
    n->use_ticks = c->use_ticks;
    n->events_mode = c->events_mode;
    n->start_clock = c->start_clock;
    n->start_realtime_ns = c->start_realtime_ns;
    n->dropped_calls = c->dropped_calls;
    n->gc_lost = c->gc_lost;
    n->events_lost = c->events_lost;
    n->samples = c->samples;
    Py_XDECREF(n->region_names);
    n->region_names = Py_NewRef(c->region_names);
    for (uint32_t i = 0; i < c->n_funcs; i++) {
        if (!m->funcs[i]) {
            continue;
        }
        const et_func *f = &c->funcs[i];
        et_slot *slot = et_intern_slow(n, f->key, f->kind, f->obj);
        if (slot == NULL) {
            goto fail;
        }
        n->funcs[slot->func].excluded = f->excluded;
        slot->excluded = f->excluded;
    }
    for (uint32_t i = 0; i < c->n_tasks; i++) {
        if (m->tasks[i] && et_task_index(n, c->tasks[i]) < 0) {
            goto fail;
        }
    }
    if (c->stacks != NULL && (n->stacks = et_stacks_remapped(c->stacks, m)) == NULL) {
        goto fail;
    }
    for (uint32_t i = 0; i < c->n_gc; i++) {
        const et_gc_record *g = &c->gc[i];
        if (g->end < from) {
            continue;
        }
        if (n->n_gc == n->gc_cap) {
            n->gc_lost++;
            continue;
        }
        et_gc_record *h = &n->gc[n->n_gc++];
        *h = *g;
        if (h->start < from) {
            h->start = from;
        }
        h->thread = g->thread < c->n_threads && m->threads[g->thread] ? m->threads[g->thread] - 1
                                                                        : UINT32_MAX;
    }
    uint32_t kept = 0;
    for (uint32_t i = 0; i < c->n_events; i++) {
        kept += c->events[i].ts >= from;
    }
    if (kept > 0) {
        n->events = (et_event *)malloc(kept * sizeof(et_event));
        if (n->events == NULL) {
            goto fail;
        }
        n->events_cap = kept;
        for (uint32_t i = 0; i < c->n_events; i++) {
            const et_event *e = &c->events[i];
            if (e->ts < from) {
                continue;
            }
            et_event *d = &n->events[n->n_events++];
            *d = *e;
            Py_XINCREF(d->a);
            Py_XINCREF(d->b);
            d->thread = e->thread < c->n_threads && m->threads[e->thread] ? m->threads[e->thread] - 1
                                                                           : UINT32_MAX;
            if (e->kind == ET_EV_HANDOFF_RELEASE) {
                uint32_t stack = (uint32_t)(e->task & 0xFFFFFFu);
                stack = stack && m->nodes ? m->nodes[stack] - 1 : 0;
                d->task = (e->task & ~(uint64_t)0xFFFFFFu) | stack;
            }
        }
    }
    return n;
fail:
    et_capture_free(n);
    return NULL;
}

static void et_remap_record(const et_remap *m, et_record *r)
{
    if (ET_REC_KIND(r->flags) != ET_REC_SAMPLE) {
        r->func = et_remap_func(m, r->func);
    }
    r->thread = m->threads[r->thread] - 1;
    r->flags = et_remap_flags(m, r->flags);
}

static void et_flight_info_fill(et_flight_info *info, const et_capture *c, const et_capture *n,
                                uint64_t records_in)
{
    if (info == NULL) {
        return;
    }
    info->records_in = records_in;
    info->records_out = n->written;
    info->funcs_in = c->n_funcs;
    info->funcs_out = n->n_funcs;
    info->threads_in = c->n_threads;
    info->threads_out = n->n_threads;
    info->tasks_in = c->n_tasks;
    info->tasks_out = n->n_tasks;
    info->events_in = c->n_events;
    info->events_out = n->n_events;
    info->gc_in = c->n_gc;
    info->gc_out = n->n_gc;
    info->stacks_in = c->stacks ? c->stacks->n_nodes : 0;
    info->stacks_out = n->stacks ? n->stacks->n_nodes : 0;
}

/* The clock pair at `ticks`, on the line through the start and `now`. */
static et_clock_pair et_clock_at(const et_capture *c, et_clock_pair now, int64_t ticks)
{
    et_clock_pair p = {ticks, 0};
    double scale = 1.0;
    if (c->use_ticks && now.ticks > c->start_clock.ticks) {
        scale = (double)(now.mono_ns - c->start_clock.mono_ns) / (double)(now.ticks - c->start_clock.ticks);
    }
    p.mono_ns = c->start_clock.mono_ns + (int64_t)((double)(ticks - c->start_clock.ticks) * scale);
    return p;
}

/* A snapshot of the recording capture since `cutoff` (ticks): a new closed
 * capture (the caller owns it), or NULL with an exception set. */
static et_capture *et_flight_copy(int64_t cutoff, et_flight_info *info)
{
    et_capture *c = R.cap;
    if (c == NULL || !R.active) {
        PyErr_SetString(PyExc_RuntimeError, "the recorder is not running");
        return NULL;
    }
    et_flight_sync(c);
    et_clock_pair now = et_read_clock_pair(c->use_ticks);
    int64_t now_real = et_realtime_ns();
    int bound;
    int64_t from = et_flight_from(c, cutoff, &bound);
    et_remap m = {0};
    if (et_flight_mark(&m, c, from, 0) < 0) {
        et_remap_free(&m);
        PyErr_NoMemory();
        return NULL;
    }
    uint64_t first, count, kept = 0, open = 0;
    et_ring_span(c, &first, &count);
    for (uint64_t i = 0; i < count; i++) {
        kept += et_ring_at(c, first, i)->end >= from;
    }
    for (uint32_t i = 0; i < c->n_threads; i++) {
        open += m.threads[i] && m.alive[i] ? c->threads[i]->depth : 0;
    }
    et_capture *n = et_capture_remapped(c, &m, from, kept + open);
    if (n == NULL) {
        et_remap_free(&m);
        PyErr_NoMemory();
        return NULL;
    }
    /* threads: copies, without shadow stacks (open calls become records) */
    for (uint32_t i = 0; i < c->n_threads; i++) {
        if (!m.threads[i]) {
            continue;
        }
        const et_thread *t = c->threads[i];
        et_thread *u = et_thread_new(n, t->ident, t->native_id);
        if (u == NULL) {
            goto fail;
        }
        u->attached = t->attached;
        u->pythread = t->pythread;
        Py_XINCREF(u->pythread);
    }
    for (uint64_t i = 0; i < count; i++) {
        const et_record *r = et_ring_at(c, first, i);
        if (r->end < from) {
            continue;
        }
        et_record *d = &n->ring[n->pos++];
        *d = *r;
        if (d->start < from) {
            d->start = from;
        }
        et_remap_record(&m, d);
    }
    /* open calls end now, innermost first (as et_close_all writes them) */
    int64_t min_ticks = R.min_ticks;
    for (uint32_t i = 0; i < c->n_threads; i++) {
        if (!m.threads[i] || !m.alive[i]) {
            continue;
        }
        const et_thread *t = c->threads[i];
        for (uint32_t d = t->depth; d-- > 0;) {
            const et_frame *f = &t->stack[d];
            if (f->func == ET_HIDDEN) {
                continue;
            }
            /* a wait still in progress: no callstack yet (et_ev_pop takes it at the end) */
            if (ET_REC_KIND(f->flags) == ET_REC_BLOCK && now.ticks - f->start < EV.min_block_ticks) {
                continue;
            }
            int64_t start = f->start < from ? from : f->start;
            int64_t end = now.ticks < start ? start : now.ticks;
            if (end - start < min_ticks) {
                continue;
            }
            et_record *r = &n->ring[n->pos++];
            r->start = start;
            r->end = end;
            r->func = f->func;
            r->thread = i;
            r->depth = d;
            r->flags = f->flags & ~ET_FRAME_CORO;
            et_remap_record(&m, r);
        }
    }
    n->written = n->pos;
    if (n->pos == n->capacity) {
        n->pos = 0;
    }
    n->start_clock = et_clock_at(c, now, from);
    n->start_realtime_ns = now_real - (now.mono_ns - n->start_clock.mono_ns);
    n->stop_clock = now;
    n->stop_realtime_ns = now_real;
    if (info != NULL) {
        info->from = from;
        info->bound = bound;
    }
    et_flight_info_fill(info, c, n, count);
    et_remap_free(&m);
    return n;
fail:
    et_remap_free(&m);
    et_capture_free(n);
    PyErr_NoMemory();
    return NULL;
}

/* Compacts the recording capture to what it retains since `cutoff` (ticks)
 * and what live threads' open calls reference.  0, or -1 with an exception
 * set (the recording capture is then unchanged). */
static int et_flight_compact(int64_t cutoff, et_flight_info *info)
{
    et_capture *c = R.cap;
    if (c == NULL || !R.active) {
        PyErr_SetString(PyExc_RuntimeError, "the recorder is not running");
        return -1;
    }
    et_flight_sync(c);
    int bound;
    int64_t from = et_flight_from(c, cutoff, &bound);
    et_remap m = {0};
    if (et_flight_mark(&m, c, from, 1) < 0) {
        et_remap_free(&m);
        PyErr_NoMemory();
        return -1;
    }
    et_capture *n = et_capture_remapped(c, &m, from, c->capacity);
    if (n == NULL) {
        et_remap_free(&m);
        PyErr_NoMemory();
        return -1;
    }
    uint32_t keep = et_count_marked(m.threads, c->n_threads);
    if (keep > n->threads_cap) {
        et_thread **threads = (et_thread **)realloc(n->threads, keep * sizeof(et_thread *));
        if (threads == NULL) {
            et_remap_free(&m);
            et_capture_free(n);
            PyErr_NoMemory();
            return -1;
        }
        n->threads = threads;
        n->threads_cap = keep;
    }
    /* From here nothing fails.  The ring: kept records, oldest first. */
    uint64_t first, count;
    et_ring_span(c, &first, &count);
    for (uint64_t i = 0; i < count; i++) {
        const et_record *r = et_ring_at(c, first, i);
        if (r->end < from) {
            continue;
        }
        et_record *d = &n->ring[n->pos++];
        *d = *r;
        et_remap_record(&m, d);
    }
    n->written = n->pos;
    if (n->pos == n->capacity) {
        n->pos = 0;
    }
    /* threads: kept ones move over (renumbered in place), the rest stay in c */
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < c->n_threads; i++) {
        et_thread *t = c->threads[i];
        if (!m.threads[i]) {
            c->threads[dropped++] = t;
            continue;
        }
        t->index = m.threads[i] - 1;
        if (!m.alive[i]) {
            t->depth = 0; /* ended inside calls that will never return */
            t->blocked = 0;
        }
        for (uint32_t d = 0; d < t->depth; d++) {
            et_frame *f = &t->stack[d];
            f->func = et_remap_func(&m, f->func);
            f->flags = et_remap_flags(&m, f->flags);
        }
        n->threads[n->n_threads++] = t;
    }
    if (R.gc_start != 0) {
        R.gc_thread = R.gc_thread < c->n_threads && m.threads[R.gc_thread] ? m.threads[R.gc_thread] - 1
                                                                          : UINT32_MAX;
    }
    et_flight_info_fill(info, c, n, count);
    c->n_threads = dropped;
    if (info != NULL) {
        info->from = from;
        info->bound = bound;
    }
    /* the swap: the hooks record into n from the next event on */
    R.cap = n;
    R.ring = n->ring;
    R.ring_pos = n->pos;
    R.ring_capacity = n->capacity;
    R.written = n->written;
    R.slots = n->slots;
    R.slots_mask = n->slots_mask;
    et_remap_free(&m);
    et_capture_free(c); /* may run finalizers: last */
    return 0;
}

#endif /* EXECTRACE_FLIGHT_H */
