/* Protocol-buffer wire format: the few primitives the trace writer and
 * reader need.  A buffer grows by doubling; writers reserve space first, so
 * the encoding calls themselves cannot fail. */
#ifndef EXECTRACE_PBWIRE_H
#define EXECTRACE_PBWIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Allocations of a MiB or more (the writer's per-window buffers) are mapped
 * directly, not malloc'ed: glibc raises its mmap threshold to the size of
 * every mmapped block freed, so after one window it would serve the next
 * window's buffers from its heap, and keep those pages (the RSS of a process
 * between windows wandered by ~10 MiB in bench/soak.py). */
#define PB_BIG (1u << 20)

static void *pb_alloc(size_t n)
{
    if (n < PB_BIG) {
        return malloc(n);
    }
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* n: the size given to pb_alloc */
static void pb_dealloc(void *p, size_t n)
{
    if (p == NULL) {
        return;
    }
    if (n < PB_BIG) {
        free(p);
    } else {
        munmap(p, n);
    }
}

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} pb_buf;

/* Makes room for `extra` more bytes; returns -1 when out of memory. */
static inline int pb_reserve(pb_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    uint8_t *data;
    if (cap < PB_BIG) {
        data = (uint8_t *)realloc(b->data, cap);
    } else {
        data = (uint8_t *)pb_alloc(cap);
        if (data != NULL && b->len) {
            memcpy(data, b->data, b->len);
        }
        if (data != NULL) {
            pb_dealloc(b->data, b->cap);
        }
    }
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline void pb_free(pb_buf *b)
{
    pb_dealloc(b->data, b->cap);
    b->data = NULL;
    b->len = b->cap = 0;
}

static inline size_t pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *pb_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

#define PB_TAG(field, wire) ((uint64_t)(((uint32_t)(field) << 3) | (wire)))

/* The unchecked writers: callers reserved room (at most 10 bytes a varint). */
static inline void pb_varint(pb_buf *b, uint64_t v) { b->len = pb_put_varint(b->data + b->len, v) - b->data; }

static inline void pb_field_varint(pb_buf *b, uint32_t field, uint64_t v)
{
    pb_varint(b, PB_TAG(field, PB_VARINT));
    pb_varint(b, v);
}

static inline void pb_field_double(pb_buf *b, uint32_t field, double v)
{
    pb_varint(b, PB_TAG(field, PB_FIXED64));
    memcpy(b->data + b->len, &v, 8);
    b->len += 8;
}

static inline void pb_field_bytes(pb_buf *b, uint32_t field, const void *data, size_t n)
{
    pb_varint(b, PB_TAG(field, PB_LEN));
    pb_varint(b, n);
    if (n) {
        memcpy(b->data + b->len, data, n);
    }
    b->len += n;
}

/* Length-delimited field whose size is only known after writing it: the
 * length gets a fixed 4-byte (redundant) varint, enough for 256 MiB, which
 * every protobuf parser accepts. */
static inline size_t pb_open(pb_buf *b, uint32_t field)
{
    pb_varint(b, PB_TAG(field, PB_LEN));
    size_t at = b->len;
    b->len += 4;
    return at;
}

static inline void pb_close(pb_buf *b, size_t at)
{
    uint32_t n = (uint32_t)(b->len - at - 4);
    b->data[at] = (uint8_t)(n | 0x80);
    b->data[at + 1] = (uint8_t)((n >> 7) | 0x80);
    b->data[at + 2] = (uint8_t)((n >> 14) | 0x80);
    b->data[at + 3] = (uint8_t)((n >> 21) & 0x7F);
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} pb_reader;

/* Reads a varint; returns -1 on truncation or a varint over 10 bytes. */
static inline int pb_read_varint(pb_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) {
            return -1;
        }
        uint8_t byte = *r->p++;
        v |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* One field.  For PB_LEN, `data`/`size` is the payload; else `value`. */
typedef struct {
    uint32_t number;
    uint32_t wire;
    uint64_t value;
    const uint8_t *data;
    size_t size;
} pb_field;

/* Returns 1 with a field, 0 at the end, -1 on malformed input. */
static inline int pb_next(pb_reader *r, pb_field *f)
{
    if (r->p >= r->end) {
        return 0;
    }
    uint64_t tag;
    if (pb_read_varint(r, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFF) {
        return -1;
    }
    f->number = (uint32_t)(tag >> 3);
    f->wire = (uint32_t)(tag & 7);
    f->data = NULL;
    f->size = 0;
    switch (f->wire) {
    case PB_VARINT:
        return pb_read_varint(r, &f->value) < 0 ? -1 : 1;
    case PB_FIXED64:
        if (r->end - r->p < 8) {
            return -1;
        }
        memcpy(&f->value, r->p, 8);
        r->p += 8;
        return 1;
    case PB_FIXED32: {
        uint32_t v;
        if (r->end - r->p < 4) {
            return -1;
        }
        memcpy(&v, r->p, 4);
        f->value = v;
        r->p += 4;
        return 1;
    }
    case PB_LEN: {
        uint64_t n;
        if (pb_read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) {
            return -1;
        }
        f->data = r->p;
        f->size = (size_t)n;
        r->p += n;
        return 1;
    }
    default:
        return -1; /* groups are not used by Perfetto */
    }
}

static inline pb_reader pb_sub(const pb_field *f)
{
    pb_reader r = {f->data, f->data + f->size};
    return r;
}

#endif /* EXECTRACE_PBWIRE_H */
