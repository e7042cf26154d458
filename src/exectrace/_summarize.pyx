# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-slice aggregation for the analysis commands, in native code over the
decoder's columns (exectrace.analysis drives it; see _summarize.pyi).

keys()        one id per distinct (name, category, file, line) and per track
walk()        every thread's call tree (rebuilt from the columns' end order),
              clipped to a time range: per function calls, inclusive time
              (recursion counted once) and self time; per thread the split by
              kind of code; every blocking call with its caller
distribution() count, total, max and percentiles per group of durations

Nothing here allocates a Python object per slice.
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort, realloc
from libc.string cimport memset

import array

cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    x ^= x >> 33
    x *= <uint64_t>0xff51afd7ed558ccd
    x ^= x >> 33
    x *= <uint64_t>0xc4ceb9fe1a85ec53
    x ^= x >> 33
    return x


cdef struct Table:
    # open addressing: slot -> id + 1 (0 empty); the keys live in `keys`
    int32_t* slots
    uint64_t mask
    int64_t* keys      # 2 words per id
    int32_t n
    int32_t cap


cdef int table_init(Table* t) except -1:
    t.mask = 1023
    t.slots = <int32_t*>calloc(t.mask + 1, sizeof(int32_t))
    t.cap = 256
    t.keys = <int64_t*>malloc(2 * t.cap * sizeof(int64_t))
    t.n = 0
    if t.slots == NULL or t.keys == NULL:
        raise MemoryError()
    return 0


cdef void table_free(Table* t) noexcept:
    free(t.slots)
    free(t.keys)
    t.slots = NULL
    t.keys = NULL


cdef int32_t table_id(Table* t, int64_t a, int64_t b) except -2:
    """The id of (a, b), added if new."""
    cdef uint64_t h = _mix(<uint64_t>a * <uint64_t>0x9E3779B97F4A7C15 ^ <uint64_t>b)
    cdef uint64_t i = h & t.mask
    cdef int32_t id_
    cdef int32_t* grown
    cdef int64_t* more
    cdef uint64_t j, size
    while True:
        id_ = t.slots[i] - 1
        if id_ < 0:
            break
        if t.keys[2 * id_] == a and t.keys[2 * id_ + 1] == b:
            return id_
        i = (i + 1) & t.mask
    if t.n == t.cap:
        more = <int64_t*>malloc(4 * t.cap * sizeof(int64_t))
        if more == NULL:
            raise MemoryError()
        for j in range(2 * <uint64_t>t.n):
            more[j] = t.keys[j]
        free(t.keys)
        t.keys = more
        t.cap *= 2
    id_ = t.n
    t.keys[2 * id_] = a
    t.keys[2 * id_ + 1] = b
    t.n += 1
    t.slots[i] = id_ + 1
    if <uint64_t>t.n * 2 > t.mask:  # grow at half full
        size = (t.mask + 1) * 2
        grown = <int32_t*>calloc(size, sizeof(int32_t))
        if grown == NULL:
            raise MemoryError()
        free(t.slots)
        t.slots = grown
        t.mask = size - 1
        for j in range(<uint64_t>t.n):
            h = _mix(<uint64_t>t.keys[2 * j] * <uint64_t>0x9E3779B97F4A7C15 ^ <uint64_t>t.keys[2 * j + 1])
            i = h & t.mask
            while t.slots[i]:
                i = (i + 1) & t.mask
            t.slots[i] = <int32_t>j + 1
    return id_


def tracks(const uint64_t[::1] track):
    """(track index of each slice, [uuid of each index], [slices per index])."""
    cdef Py_ssize_t n = track.shape[0], i
    cdef Table tt
    slot = array.array("i", bytes(4 * n))
    cdef int32_t[::1] s = slot
    table_init(&tt)
    try:
        for i in range(n):
            s[i] = table_id(&tt, <int64_t>track[i], 0)
        uuids = [<uint64_t>tt.keys[2 * i] for i in range(tt.n)]
    finally:
        table_free(&tt)
    counts = array.array("q", bytes(8 * len(uuids)))
    cdef int64_t[::1] c = counts
    for i in range(n):
        c[s[i]] += 1
    return slot, uuids, counts


def keys(const int32_t[::1] name, const int32_t[::1] cat, const int32_t[::1] file,
         const int32_t[::1] line):
    """(key of each slice, [(name, cat, file, line) of each key])."""
    cdef Py_ssize_t n = name.shape[0], i
    cdef Table kt
    key = array.array("i", bytes(4 * n))
    cdef int32_t[::1] k = key
    table_init(&kt)
    try:
        for i in range(n):
            k[i] = table_id(&kt, (<int64_t>name[i] << 32) | <uint64_t><uint32_t>cat[i],
                            (<int64_t>file[i] << 32) | <uint64_t><uint32_t>line[i])
        quads = [(<int32_t>(kt.keys[2 * i] >> 32), <int32_t><uint32_t>(kt.keys[2 * i] & 0xFFFFFFFF),
                  <int32_t>(kt.keys[2 * i + 1] >> 32), <int32_t><uint32_t>(kt.keys[2 * i + 1] & 0xFFFFFFFF))
                 for i in range(kt.n)]
    finally:
        table_free(&kt)
    return key, quads


def select(const int32_t[::1] ids, const int8_t[::1] wanted):
    """Indices (int64 array) of the slices whose id (a track index or a key)
    is wanted (wanted[id] != 0)."""
    cdef Py_ssize_t n = ids.shape[0], i
    cdef int32_t v
    cdef Py_ssize_t m = wanted.shape[0], count = 0
    for i in range(n):
        v = ids[i]
        if 0 <= v < m and wanted[v]:
            count += 1
    out = array.array("q", bytes(8 * count))
    cdef int64_t[::1] o = out
    count = 0
    for i in range(n):
        v = ids[i]
        if 0 <= v < m and wanted[v]:
            o[count] = i
            count += 1
    return out


def end_span(const int32_t[::1] ids, const int8_t[::1] wanted, const int64_t[::1] ts,
             const int64_t[::1] dur):
    """(earliest end, latest end) of the wanted slices (as select()), or None."""
    cdef Py_ssize_t n = ids.shape[0], i
    cdef Py_ssize_t m = wanted.shape[0]
    cdef int32_t v
    cdef int64_t e, lo = 0, hi = 0
    cdef bint seen = False
    for i in range(n):
        v = ids[i]
        if 0 <= v < m and wanted[v]:
            e = ts[i] + dur[i]
            if not seen:
                lo = hi = e
                seen = True
            elif e < lo:
                lo = e
            elif e > hi:
                hi = e
    return (lo, hi) if seen else None


cdef inline int64_t _overlap(int64_t start, int64_t end, int64_t lo, int64_t hi) noexcept nogil:
    if start < lo:
        start = lo
    if end > hi:
        end = hi
    return end - start if end > start else 0


# kinds of key (walk's `kind`): what its self time counts as; 2 + r:
# blocking for reason r (0..N_REASONS-1)
cdef enum:
    KIND_OTHER = -1
    KIND_PYTHON = 0
    KIND_C = 1
    N_REASONS = 4


def walk(const int32_t[::1] slot, const int32_t[::1] thread_of_slot, const int64_t[::1] ts,
         const int64_t[::1] dur, const int32_t[::1] depth, const int32_t[::1] key, const int8_t[::1] kind,
         int n_threads, int64_t lo, int64_t hi):
    """Every thread's calls, clipped to [lo, hi).

    thread_of_slot[slot[i]]: the thread index of slice i (-1: not a thread's
    slice); the columns hold each track's slices in the order they ended
    (the decoder's).
    kind[k]: what the self time of key k counts as (KIND_*).

    Returns (per key: calls, inclusive ns, self ns as int64 arrays;
    per thread: calls, python ns, C ns, blocked ns per reason (array of
    n_threads * (3 + N_REASONS)); blocking calls: caller key (-1 at the
    bottom of a thread), callee key, thread, duration (full), overlap ns,
    start)."""
    cdef Py_ssize_t n = ts.shape[0], i
    cdef Py_ssize_t n_slots = thread_of_slot.shape[0]
    cdef int32_t sl
    cdef int n_keys = kind.shape[0]
    cdef int width = 3 + N_REASONS
    k_calls = array.array("q", bytes(8 * n_keys))
    k_incl = array.array("q", bytes(8 * n_keys))
    k_self = array.array("q", bytes(8 * n_keys))
    t_stats = array.array("q", bytes(8 * max(n_threads, 0) * width))
    b_caller = array.array("i")
    b_callee = array.array("i")
    b_thread = array.array("i")
    b_dur = array.array("q")
    b_clip = array.array("q")
    b_start = array.array("q")
    cdef int64_t[::1] kc = k_calls, ki = k_incl, ks = k_self, st = t_stats
    if n == 0 or n_threads <= 0:
        return k_calls, k_incl, k_self, t_stats, b_caller, b_callee, b_thread, b_dur, b_clip, b_start

    cdef int32_t* first_child = <int32_t*>malloc(n * sizeof(int32_t))
    # next_sibling[i]: the next child of i's parent. Until i has a parent it
    # is a pending root of its thread, and the same word links it to the
    # pending root below it (below[i]): a slice is adopted once, after which
    # its link below is not needed.
    cdef int32_t* next_sibling = <int32_t*>malloc(n * sizeof(int32_t))
    cdef int32_t* pending = NULL
    cdef int32_t* top = <int32_t*>malloc(n_threads * sizeof(int32_t))      # head of each thread's pending chain
    cdef int32_t* below = next_sibling
    cdef int32_t* active = <int32_t*>calloc(max(n_keys, 1), sizeof(int32_t))
    cdef int32_t* frames = NULL
    cdef int64_t* remaining = NULL
    cdef int32_t* cursor = NULL
    cdef int32_t t, d, j, c, node, level, cap, kk, kd, up
    cdef int64_t own, s0, e0
    try:
        if first_child == NULL or next_sibling == NULL or top == NULL or active == NULL:
            raise MemoryError()
        for t in range(n_threads):
            top[t] = -1
        # 1. the trees: in end order a slice's children are the pending roots
        #    deeper than it on its thread
        for i in range(n):
            sl = slot[i]
            t = thread_of_slot[sl] if 0 <= sl < n_slots else -1
            first_child[i] = -1
            next_sibling[i] = -1
            if t < 0 or t >= n_threads:
                continue
            d = depth[i]
            j = top[t]
            while j >= 0 and depth[j] > d:
                up = below[j]
                next_sibling[j] = first_child[i]
                first_child[i] = <int32_t>j
                j = up
            below[i] = j
            top[t] = <int32_t>i
        # 2. depth-first, each thread's roots in order (the pending chain is
        #    newest first: reverse it through next_sibling)
        cap = 64
        frames = <int32_t*>malloc(cap * sizeof(int32_t))
        remaining = <int64_t*>malloc(cap * sizeof(int64_t))
        cursor = <int32_t*>malloc(cap * sizeof(int32_t))
        if frames == NULL or remaining == NULL or cursor == NULL:
            raise MemoryError()
        for t in range(n_threads):
            node = -1
            j = top[t]
            while j >= 0:
                up = below[j]
                next_sibling[j] = node
                node = j
                j = up
            # node: the first root; roots chained through next_sibling
            while node >= 0:
                level = 0
                frames[0] = node
                cursor[0] = -2  # not entered yet
                while level >= 0:
                    j = frames[level]
                    if cursor[level] == -2:  # enter j
                        s0 = ts[j]
                        e0 = s0 + dur[j]
                        own = _overlap(s0, e0, lo, hi)
                        kk = key[j]
                        remaining[level] = own
                        if level > 0:
                            remaining[level - 1] -= own
                        if s0 <= hi and e0 >= lo:
                            kc[kk] += 1
                            st[t * width] += 1
                        if active[kk] == 0:
                            ki[kk] += own
                        active[kk] += 1
                        cursor[level] = first_child[j]
                    c = cursor[level]
                    if c >= 0:  # descend into the next child
                        cursor[level] = next_sibling[c]
                        level += 1
                        if level == cap:
                            cap *= 2
                            frames = <int32_t*>_grow(frames, cap * sizeof(int32_t))
                            remaining = <int64_t*>_grow(remaining, cap * sizeof(int64_t))
                            cursor = <int32_t*>_grow(cursor, cap * sizeof(int32_t))
                        frames[level] = c
                        cursor[level] = -2
                        continue
                    # leave j
                    kk = key[j]
                    active[kk] -= 1
                    own = remaining[level]
                    if own < 0:
                        own = 0
                    ks[kk] += own
                    kd = kind[kk]
                    if kd == KIND_PYTHON:
                        st[t * width + 1] += own
                    elif kd == KIND_C:
                        st[t * width + 2] += own
                    elif kd >= 2 and kd < 2 + N_REASONS:
                        st[t * width + 3 + kd - 2] += own
                        s0 = ts[j]
                        e0 = s0 + dur[j]
                        if s0 <= hi and e0 >= lo:
                            b_caller.append(key[frames[level - 1]] if level > 0 else -1)
                            b_callee.append(kk)
                            b_thread.append(t)
                            b_dur.append(dur[j])
                            b_clip.append(_overlap(s0, e0, lo, hi))
                            b_start.append(s0)
                    level -= 1
                node = next_sibling[node]
    finally:
        free(first_child)
        free(next_sibling)
        free(pending)
        free(top)
        free(active)
        free(frames)
        free(remaining)
        free(cursor)
    return k_calls, k_incl, k_self, t_stats, b_caller, b_callee, b_thread, b_dur, b_clip, b_start


cdef void* _grow(void* p, size_t size) except NULL:
    cdef void* q = realloc(p, size)
    if q == NULL:
        raise MemoryError()
    return q


cdef struct Pair:
    int32_t group
    int64_t value


cdef int _by_group_value(const void* a, const void* b) noexcept nogil:
    cdef const Pair* x = <const Pair*>a
    cdef const Pair* y = <const Pair*>b
    if x.group != y.group:
        return -1 if x.group < y.group else 1
    if x.value != y.value:
        return -1 if x.value < y.value else 1
    return 0


cdef inline int64_t _rank(const Pair* p, Py_ssize_t count, double q) noexcept nogil:
    """The nearest-rank q-quantile of count sorted values."""
    cdef Py_ssize_t r = <Py_ssize_t>(q * count + 0.999999999)
    if r < 1:
        r = 1
    if r > count:
        r = count
    return p[r - 1].value


def count(const int32_t[::1] ids, Py_ssize_t n):
    """How many times each id in range(n) occurs (int64 array)."""
    out = array.array("q", bytes(8 * max(n, 0)))
    cdef int64_t[::1] o = out
    cdef Py_ssize_t i
    cdef int32_t v
    for i in range(ids.shape[0]):
        v = ids[i]
        if 0 <= v < n:
            o[v] += 1
    return out


def distribution(const int32_t[::1] group, const int64_t[::1] value):
    """{group: (count, total, max, p50, p90, p99)} of the values of each
    group (nearest-rank percentiles)."""
    cdef Py_ssize_t n = group.shape[0], i, start
    if value.shape[0] != n:
        raise ValueError("group and value differ in length")
    out = {}
    if n == 0:
        return out
    cdef Pair* p = <Pair*>malloc(n * sizeof(Pair))
    cdef int64_t total
    if p == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            p[i].group = group[i]
            p[i].value = value[i]
        qsort(p, n, sizeof(Pair), _by_group_value)
        start = 0
        while start < n:
            i = start
            total = 0
            while i < n and p[i].group == p[start].group:
                total += p[i].value
                i += 1
            out[p[start].group] = (i - start, total, p[i - 1].value, _rank(p + start, i - start, 0.5),
                                   _rank(p + start, i - start, 0.9), _rank(p + start, i - start, 0.99))
            start = i
    finally:
        free(p)
    return out



cdef int _grow_nodes(int64_t** wall, int64_t** blocked, int8_t** reason, Py_ssize_t* cap,
                     Py_ssize_t need) except -1:
    cdef Py_ssize_t n = cap[0], j
    if need <= n:
        return 0
    while n < need:
        n = max(<Py_ssize_t>1024, n * 2)
    wall[0] = <int64_t*>_grow(wall[0], n * sizeof(int64_t))
    blocked[0] = <int64_t*>_grow(blocked[0], n * sizeof(int64_t))
    reason[0] = <int8_t*>_grow(reason[0], n * sizeof(int8_t))
    for j in range(cap[0], n):
        wall[0][j] = 0
        blocked[0][j] = 0
        reason[0][j] = -1
    cap[0] = n
    return 0


def call_tree(const int32_t[::1] slot, const int32_t[::1] thread_of_slot, const int64_t[::1] ts,
              const int64_t[::1] dur, const int32_t[::1] depth, const int32_t[::1] key,
              const int32_t[::1] loc_of_key, const int8_t[::1] reason_of_key, int n_threads,
              int64_t covered_from):
    """The merged call tree of every thread (pprof's samples): nodes 0 ..
    n_threads - 1 are the threads' roots; every other node is a (parent node,
    location) with the self time of the calls at that stack, clipped to
    start no earlier than covered_from, and the part of it blocked.

    Returns (parent, location, wall ns, blocked ns, reason) per node (arrays;
    reason -1: the location does not block)."""
    cdef Py_ssize_t n = ts.shape[0], i
    cdef Py_ssize_t n_slots = thread_of_slot.shape[0]
    cdef int n_keys = loc_of_key.shape[0]
    cdef int32_t sl, t, d, j, c, up, node, level, cap, parent_node, kk
    cdef int64_t own, s0, e0
    cdef Table nodes
    cdef int64_t* wall = NULL
    cdef int64_t* blocked = NULL
    cdef int8_t* reason = NULL
    cdef Py_ssize_t node_cap = 0
    cdef int32_t* first_child = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    cdef int32_t* next_sibling = <int32_t*>malloc(max(n, 1) * sizeof(int32_t))
    cdef int32_t* below = next_sibling
    cdef int32_t* top = <int32_t*>malloc(max(n_threads, 1) * sizeof(int32_t))
    cdef int32_t* frames = NULL      # slice at each level
    cdef int32_t* at = NULL          # node at each level
    cdef int32_t* cursor = NULL
    cdef int8_t* blocking = NULL     # the slice at each level blocks
    table_init(&nodes)
    try:
        if first_child == NULL or next_sibling == NULL or top == NULL:
            raise MemoryError()
        _grow_nodes(&wall, &blocked, &reason, &node_cap, n_threads + 1)
        for t in range(n_threads):
            top[t] = -1
        for i in range(n):
            sl = slot[i]
            t = thread_of_slot[sl] if 0 <= sl < n_slots else -1
            first_child[i] = -1
            next_sibling[i] = -1
            if t < 0 or t >= n_threads:
                continue
            d = depth[i]
            j = top[t]
            while j >= 0 and depth[j] > d:
                up = below[j]
                next_sibling[j] = first_child[i]
                first_child[i] = <int32_t>j
                j = up
            below[i] = j
            top[t] = <int32_t>i
        cap = 64
        frames = <int32_t*>malloc(cap * sizeof(int32_t))
        at = <int32_t*>malloc(cap * sizeof(int32_t))
        cursor = <int32_t*>malloc(cap * sizeof(int32_t))
        blocking = <int8_t*>malloc(cap * sizeof(int8_t))
        if frames == NULL or at == NULL or cursor == NULL or blocking == NULL:
            raise MemoryError()
        for t in range(n_threads):
            node = -1
            j = top[t]
            while j >= 0:
                up = below[j]
                next_sibling[j] = node
                node = j
                j = up
            while node >= 0:
                # level 0 is the thread's root node; slices from level 1
                level = 1
                at[0] = t
                blocking[0] = 0
                frames[1] = node
                cursor[1] = -2
                while level >= 1:
                    j = frames[level]
                    if cursor[level] == -2:  # enter j
                        kk = key[j]
                        s0 = ts[j]
                        e0 = s0 + dur[j]
                        if s0 < covered_from:
                            s0 = covered_from
                        own = e0 - s0 if e0 > s0 else 0
                        parent_node = at[level - 1]
                        c = -1
                        if 0 <= kk < n_keys:
                            c = n_threads + table_id(&nodes, parent_node, loc_of_key[kk])
                            _grow_nodes(&wall, &blocked, &reason, &node_cap, c + 1)
                            reason[c] = reason_of_key[kk]
                        if c >= 0:
                            at[level] = c
                            wall[c] += own
                            wall[parent_node] -= own
                            blocking[level] = reason_of_key[kk] >= 0
                            if blocking[level]:
                                blocked[c] += own
                            if blocking[level - 1]:
                                blocked[parent_node] -= own
                        else:
                            at[level] = parent_node
                            blocking[level] = blocking[level - 1]
                        cursor[level] = first_child[j]
                    c = cursor[level]
                    if c >= 0:
                        cursor[level] = next_sibling[c]
                        level += 1
                        if level == cap:
                            cap *= 2
                            frames = <int32_t*>_grow(frames, cap * sizeof(int32_t))
                            at = <int32_t*>_grow(at, cap * sizeof(int32_t))
                            cursor = <int32_t*>_grow(cursor, cap * sizeof(int32_t))
                            blocking = <int8_t*>_grow(blocking, cap * sizeof(int8_t))
                        frames[level] = c
                        cursor[level] = -2
                        continue
                    level -= 1
                node = next_sibling[node]
        total = n_threads + nodes.n
        parent = array.array("i", bytes(4 * total))
        location = array.array("i", bytes(4 * total))
        walls = array.array("q", bytes(8 * total))
        blockeds = array.array("q", bytes(8 * total))
        reasons = array.array("b", bytes(total))
        for i in range(total):
            walls[i] = wall[i]
            blockeds[i] = blocked[i]
            reasons[i] = reason[i]
            if i < n_threads:
                parent[i] = -1
                location[i] = 0
            else:
                parent[i] = <int32_t>nodes.keys[2 * (i - n_threads)]
                location[i] = <int32_t>nodes.keys[2 * (i - n_threads) + 1]
    finally:
        table_free(&nodes)
        free(wall)
        free(blocked)
        free(reason)
        free(first_child)
        free(next_sibling)
        free(top)
        free(frames)
        free(at)
        free(cursor)
        free(blocking)
    return parent, location, walls, blockeds, reasons


# the columns time_order's comparator reads (set while it sorts, under the GIL)
cdef const int64_t* _order_ts = NULL
cdef const int32_t* _order_depth = NULL


cdef int _by_time(const void* a, const void* b) noexcept nogil:
    cdef int32_t x = (<const int32_t*>a)[0]
    cdef int32_t y = (<const int32_t*>b)[0]
    if _order_ts[x] != _order_ts[y]:
        return -1 if _order_ts[x] < _order_ts[y] else 1
    if _order_depth[x] != _order_depth[y]:
        return -1 if _order_depth[x] < _order_depth[y] else 1
    return -1 if x < y else (1 if x > y else 0)


def time_order(const int64_t[::1] ts, const int32_t[::1] depth):
    """Slice indices (int32 array) by (start, depth, index): on every track an
    enclosing call before the calls it encloses, even at the same ns."""
    global _order_ts, _order_depth
    cdef Py_ssize_t n = ts.shape[0], i
    if depth.shape[0] != n:
        raise ValueError("ts and depth differ in length")
    out = array.array("i", bytes(4 * n))
    if n == 0:
        return out
    cdef int32_t[::1] r = out
    for i in range(n):
        r[i] = <int32_t>i
    _order_ts = &ts[0]
    _order_depth = &depth[0]
    try:
        qsort(&r[0], n, sizeof(int32_t), _by_time)
    finally:
        _order_ts = NULL
        _order_depth = NULL
    return out


def nonnegative(const int32_t[::1] values):
    """Indices (int64 array) of the values >= 0."""
    cdef Py_ssize_t n = values.shape[0], i, count = 0
    for i in range(n):
        if values[i] >= 0:
            count += 1
    out = array.array("q", bytes(8 * count))
    cdef int64_t[::1] o = out
    count = 0
    for i in range(n):
        if values[i] >= 0:
            o[count] = i
            count += 1
    return out


cdef inline char* _put(char* p, const char* s, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        p[i] = s[i]
    return p + n


cdef inline char* _put_us(char* p, int64_t ns) noexcept:
    """ns as microseconds with three decimals ("-" first when negative)."""
    cdef char digits[24]
    cdef int k = 0
    cdef uint64_t v
    if ns < 0:
        p[0] = 45  # '-'
        p += 1
        v = <uint64_t>(-(ns + 1)) + 1
    else:
        v = <uint64_t>ns
    cdef uint64_t whole = v // 1000, frac = v % 1000
    if whole == 0:
        digits[k] = 48
        k += 1
    while whole:
        digits[k] = <char>(48 + whole % 10)
        whole //= 10
        k += 1
    while k:
        k -= 1
        p[0] = digits[k]
        p += 1
    p[0] = 46  # '.'
    p[1] = <char>(48 + frac // 100)
    p[2] = <char>(48 + (frac // 10) % 10)
    p[3] = <char>(48 + frac % 10)
    return p + 4


def chrome_x(const int32_t[::1] order, Py_ssize_t start, Py_ssize_t stop, const int32_t[::1] slot,
             const int32_t[::1] key, const int64_t[::1] ts, const int64_t[::1] dur, list prefixes,
             list tails, dict overrides):
    """Chrome "X" events of the slices order[start:stop], joined by ",\\n":
    prefixes[slot] + ts + ',"dur":' + dur + "," + tail, where the tail is
    overrides[index] if present, else tails[key] (ASCII bytes throughout)."""
    cdef Py_ssize_t i, j, size = 0, n_slots = len(prefixes), n_keys = len(tails)
    cdef bytes pre, tail
    cdef dict none = {}
    stop = min(stop, order.shape[0])
    if start >= stop:
        return ""
    for i in range(start, stop):
        j = order[i]
        pre = prefixes[slot[j]]
        tail = overrides.get(j) if overrides else None
        if tail is None:
            tail = tails[key[j]]
        size += len(pre) + len(tail) + 64
    buf = bytearray(size)
    cdef char* base = buf
    cdef char* p = base
    for i in range(start, stop):
        j = order[i]
        if i > start:
            p[0] = 44  # ','
            p[1] = 10  # '\n'
            p += 2
        pre = prefixes[slot[j]]
        tail = overrides.get(j) if overrides else None
        if tail is None:
            tail = tails[key[j]]
        p = _put(p, pre, len(pre))
        p = _put_us(p, ts[j])
        p = _put(p, b',"dur":', 7)
        p = _put_us(p, dur[j] if dur[j] > 0 else 0)
        p[0] = 44
        p += 1
        p = _put(p, tail, len(tail))
    return buf[:p - base].decode("ascii")


def below(const int64_t[::1] values, int64_t limit):
    """Indices (int64 array) of the values < limit."""
    cdef Py_ssize_t n = values.shape[0], i, count = 0
    for i in range(n):
        if values[i] < limit:
            count += 1
    out = array.array("q", bytes(8 * count))
    cdef int64_t[::1] o = out
    count = 0
    for i in range(n):
        if values[i] < limit:
            o[count] = i
            count += 1
    return out
