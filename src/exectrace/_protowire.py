"""Protobuf wire encoding and decoding for the few messages handled in Python
(pprof profiles, a trace file's extra packets, checking a file's framing);
the bulk is encoded and decoded in C (src/native/pbwire.h)."""

from __future__ import annotations

import struct

VARINT, FIXED64, LEN = 0, 1, 2


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # a negative int64 is its two's complement: 10 bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire: int) -> int:
    return number << 3 | wire


def field_varint(number: int, value: int) -> bytes:
    return varint(tag(number, VARINT)) + varint(value)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(tag(number, LEN)) + varint(len(payload)) + payload


def field_str(number: int, value: str) -> bytes:
    # valid UTF-8 whatever the string holds: a lone surrogate is written as \udcxx
    return field_bytes(number, value.encode("utf-8", "backslashreplace"))


def field_fixed64(number: int, value: int) -> bytes:
    return varint(tag(number, FIXED64)) + struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)


def field_double(number: int, value: float) -> bytes:
    return varint(tag(number, FIXED64)) + struct.pack("<d", value)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it); (-1, pos) if `data` ends inside it."""
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, pos
