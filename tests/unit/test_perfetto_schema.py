"""The two homes of the Perfetto schema agree: every field number and value
exectrace/_perfetto.py names has the same number in src/native/perfetto_schema.h
(as PF_<name>, or ET_<name> for exectrace's own layout)."""

from __future__ import annotations

import re
from pathlib import Path

from exectrace import _perfetto

HEADER = Path(__file__).resolve().parents[2] / "src" / "native" / "perfetto_schema.h"


def _header_numbers() -> dict[str, int]:
    text = HEADER.read_text(encoding="utf-8")
    return {name: int(value) for name, value in re.findall(r"^\s+((?:PF|ET)_\w+) = (\d+),", text, re.M)}


def _header_strings() -> dict[str, str]:
    text = HEADER.read_text(encoding="utf-8")
    return dict(re.findall(r'^#define (ET_\w+_NAME) "([^"]*)"', text, re.M))


def test_python_numbers_are_the_headers() -> None:
    header = _header_numbers()
    checked = 0
    for name, value in vars(_perfetto).items():
        if not name.isupper() or not isinstance(value, int):
            continue
        c_name = f"PF_{name}" if f"PF_{name}" in header else f"ET_{name}"
        assert header.get(c_name) == value, name
        checked += 1
    assert checked >= 30


def test_names_the_reader_looks_for_are_the_headers() -> None:
    strings = _header_strings()
    assert strings["ET_WINDOW_SLICE_NAME"] == _perfetto.WINDOW_SLICE_NAME
    assert strings["ET_META_TRACK_NAME"] == _perfetto.META_TRACK_NAME
    assert strings["ET_GC_TRACK_NAME"] == _perfetto.GC_TRACK_NAME


def test_track_uuids_are_the_headers() -> None:
    header = _header_numbers()
    base = _perfetto.track_uuid(4242, "process")
    assert base == ((4242 & 0x3FFFFFFF) + 1) << 32
    assert _perfetto.track_uuid(4242, "meta") == base + header["ET_TRACK_META"]
    assert _perfetto.track_uuid(4242, "thread", 3) == base + header["ET_TRACK_THREAD0"] + 3
    assert _perfetto.track_uuid(4242, "extra", 5) == base + 0x80000000 + 5
