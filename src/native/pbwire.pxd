# Protocol-buffer wire primitives, the C side's only varint code (pbwire.h).
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "pbwire.h":
    ctypedef struct pb_buf:
        uint8_t* data
        size_t len
        size_t cap
    int pb_reserve(pb_buf* b, size_t extra) nogil
    void pb_free(pb_buf* b) nogil
    void* pb_alloc(size_t n) nogil
    void pb_dealloc(void* p, size_t n) nogil
    size_t pb_varint_size(uint64_t v) nogil
    void pb_varint(pb_buf* b, uint64_t v) nogil
    void pb_field_varint(pb_buf* b, uint32_t field, uint64_t v) nogil
    void pb_field_double(pb_buf* b, uint32_t field, double v) nogil
    void pb_field_bytes(pb_buf* b, uint32_t field, const void* data, size_t n) nogil
    size_t pb_open(pb_buf* b, uint32_t field) nogil
    void pb_close(pb_buf* b, size_t at) nogil
    uint64_t PB_TAG(uint32_t field, uint32_t wire) nogil
    ctypedef struct pb_reader:
        const uint8_t* p
        const uint8_t* end
    ctypedef struct pb_field:
        uint32_t number
        uint32_t wire
        uint64_t value
        const uint8_t* data
        size_t size
    int pb_next(pb_reader* r, pb_field* f) nogil
    pb_reader pb_sub(const pb_field* f) nogil
    int pb_read_varint(pb_reader* r, uint64_t* out) nogil
    enum:
        PB_VARINT
        PB_FIXED64
        PB_LEN
        PB_FIXED32
