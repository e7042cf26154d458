"""Hostile trace files for the CLI, fuzz and corpus tests: protobuf wire
helpers, a small real trace made by the real tracer, and the damaged,
malicious and odd files built from it."""

from __future__ import annotations

import gc
import io
import json
import os
import random
import threading
import zlib
from pathlib import Path
from typing import Callable, Optional

import exectrace
from exectrace import _tracecore, dumpstore, export
from exectrace.analysis import format_text, merge, summarize
from exectrace.commands import ls
from exectrace.commands.diff import diff
from exectrace.errors import ExectraceError
from exectrace.reader import Trace, read_metadata

# ---------------------------------------------------------------- wire helpers


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag(number, 2) + varint(len(payload)) + payload


def vi(number: int, value: int) -> bytes:
    """A varint field."""
    return tag(number, 0) + varint(value)


def packet(*fields: bytes) -> bytes:
    """One Trace.packet (field 1) holding `fields`."""
    return ld(1, b"".join(fields))


def nested(depth: int, number: int, leaf: bytes) -> bytes:
    """`depth` length-delimited fields `number`, each inside the previous one,
    built front to back (no quadratic re-copying)."""
    sizes = [len(leaf)]
    head = tag(number, 2)
    for _ in range(depth):
        sizes.append(len(head) + len(varint(sizes[-1])) + sizes[-1])
    return b"".join(head + varint(size) for size in reversed(sizes[:-1])) + leaf


def nested_annotation(depth: int) -> bytes:
    """A DebugAnnotation nesting `depth` dict entries (field 11)."""
    leaf = ld(10, b"leaf") + vi(3, 7)
    sizes = [len(leaf)]
    head = ld(10, b"k") + tag(11, 2)
    for _ in range(depth):
        sizes.append(len(head) + len(varint(sizes[-1])) + sizes[-1])
    return b"".join(head + varint(size) for size in reversed(sizes[:-1])) + leaf


def zlib_bomb(mib: int) -> bytes:
    """`mib` MiB of zero bytes, zlib-compressed at level 9 (about 1 KiB a MiB)."""
    co = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    return b"".join(co.compress(zeros) for _ in range(mib)) + co.flush()


# ------------------------------------------------------------ a real trace


def _leaf(i: int) -> int:
    return len(str(i))


def _middle(n: int) -> int:
    return sum(_leaf(i) for i in range(n))


def _workload(rounds: int) -> None:
    for _ in range(rounds):
        _middle(3)


def make_trace(path: str | os.PathLike[str], rounds: int = 30, **options: object) -> bytes:
    """A real trace of a small two-thread workload; returns its bytes."""
    with exectrace.tracing(path, **options):
        worker = threading.Thread(target=_workload, args=(rounds,), name="worker")
        worker.start()
        _workload(rounds)
        gc.collect()
        worker.join()
    return Path(path).read_bytes()


def packet_ends(data: bytes) -> list[int]:
    """Offsets where each top-level packet of a well-formed file ends."""
    ends, pos = [], 0
    while pos < len(data):
        _, pos = read_varint(data, pos)
        size, pos = read_varint(data, pos)
        pos += size
        ends.append(pos)
    return ends


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


# --------------------------------------------------------- hostile inputs


def flip_bits(data: bytes, seed: int, flips: int = 8) -> bytes:
    rng = random.Random(seed)
    b = bytearray(data)
    for _ in range(flips):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def splice(data: bytes, seed: int, n: int = 64) -> bytes:
    rng = random.Random(seed)
    at = rng.randrange(len(data))
    return data[:at] + bytes(rng.randrange(256) for _ in range(n)) + data[at:]


def byte_files(plain: bytes, packed: bytes) -> dict[str, bytes]:
    """Name -> content of hostile regular files, from a real uncompressed
    (`plain`) and compressed (`packed`) trace. Each is small except the
    zip bomb (about 200 KB) and the deep nesting (about 600 KB)."""
    files: dict[str, bytes] = {}
    for seed in range(3):
        files[f"bitflip-plain-{seed}"] = flip_bits(plain, seed)
        files[f"bitflip-packed-{seed}"] = flip_bits(packed, 100 + seed)
        files[f"splice-plain-{seed}"] = splice(plain, seed)
        files[f"splice-packed-{seed}"] = splice(packed, 100 + seed)
    for name, data in (("plain", plain), ("packed", packed)):
        for cut in sorted({1, 2, 3, 7, 33, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1}):
            files[f"truncated-{name}-at-{cut}"] = data[:cut]
    # varints: 10 bytes (2**64 - 1), 11 bytes (overlong), a value past 2**64
    files["varint-length-2**64-1"] = b"\x0a" + b"\xff" * 9 + b"\x01"
    files["varint-length-overlong-11-bytes"] = b"\x0a" + b"\xff" * 10 + b"\x01"
    files["varint-tag-overlong"] = b"\xff" * 10 + b"\x01" + plain
    files["varint-timestamp-past-2**64"] = plain + packet(b"\x40" + b"\xff" * 9 + b"\x7f", vi(10, 1),
                                                          ld(11, vi(9, 3) + ld(23, b"x")))
    files["varint-timestamp-2**64-1"] = plain + packet(vi(8, 2**64 - 1), vi(10, 1),
                                                       ld(11, vi(9, 3) + vi(11, 1) + ld(23, b"x")))
    files["varint-10-byte-everywhere"] = plain + packet(*(vi(n, 2**64 - 1) for n in (8, 10, 13, 58)))
    # lengths pointing past the end
    files["length-past-end"] = plain + b"\x0a" + varint(1000) + b"abc"
    files["length-2**63"] = packed + b"\x0a" + varint(2**63) + b"abc"
    files["inner-length-past-packet"] = plain + packet(b"\x5a\x7f\x48")
    # nesting
    files["nested-1e5-fields"] = packet(nested(100_000, 11, ld(23, b"deep")))
    files["nested-1e5-annotations"] = plain + packet(vi(8, 1), vi(10, 1), ld(11, vi(9, 3) + ld(4, nested_annotation(100_000))))
    files["nested-compressed-chunks"] = packed + packet(ld(50, zlib.compress(packet(ld(50, zlib.compress(plain[:200]))))))
    # zip bombs: one chunk, and a bomb after a real trace
    bomb = packet(ld(50, zlib_bomb(200)))
    files["zip-bomb"] = bomb
    files["zip-bomb-after-trace"] = packed + bomb
    files["corrupt-zlib"] = packed + packet(ld(50, b"\x78\x9c" + bytes(range(60))))
    rng = random.Random(7)
    files["random-bytes"] = bytes(rng.randrange(256) for _ in range(4096))
    files["text"] = b"hello, I am not a trace\n" * 20
    files["foreign-perfetto"] = (packet(ld(60, vi(1, 9) + ld(2, b"t"))) +
                                 packet(vi(8, 10), vi(10, 1), ld(11, vi(9, 1) + vi(11, 9) + ld(23, b"x"))) +
                                 packet(vi(8, 20), vi(10, 1), ld(11, vi(9, 2) + vi(11, 9))))
    files["empty-packets"] = b"\x0a\x00" * 1000
    files["zero-byte"] = b""
    return files


def events_files(events: bytes) -> dict[str, bytes]:
    """Name -> content of hostile variants of an `events` file: its callstacks,
    frames and samples damaged, cut and spliced."""
    files: dict[str, bytes] = {}
    for seed in range(4):
        files[f"events-bitflip-{seed}"] = flip_bits(events, 200 + seed)
        files[f"events-splice-{seed}"] = splice(events, 200 + seed)
    for cut in sorted({len(events) // 4, len(events) // 2, 3 * len(events) // 4, len(events) - 1}):
        files[f"events-truncated-at-{cut}"] = events[:cut]
    # a sample naming a callstack that no interned data defines
    files["events-undefined-callstack"] = events + packet(vi(8, 1), vi(10, 1), vi(13, 2),
                                                          ld(66, vi(2, 1) + vi(3, 1) + vi(4, 99999)))
    return files


def special_files(directory: Path) -> dict[str, Path]:
    """Name -> path of entries that are not regular files: a directory, a
    FIFO, symlinks to /dev/zero and /dev/urandom, a dangling symlink and a
    symlink loop (those the platform has)."""
    made: dict[str, Path] = {}
    d = directory / "a-directory.out"
    d.mkdir()
    made["directory"] = d
    if hasattr(os, "mkfifo"):
        fifo = directory / "fifo.out"
        os.mkfifo(fifo)
        made["fifo"] = fifo
    if hasattr(os, "symlink"):
        for target in ("/dev/zero", "/dev/urandom"):
            if os.path.exists(target):
                link = directory / f"link-to-{os.path.basename(target)}.out"
                os.symlink(target, link)
                made[f"symlink-to-{target}"] = link
        os.symlink(directory / "nowhere", directory / "dangling.out")
        made["dangling-symlink"] = directory / "dangling.out"
        os.symlink(directory / "loop.out", directory / "loop.out")
        made["symlink-loop"] = directory / "loop.out"
    return made


def write_all(directory: Path, files: dict[str, bytes],
              name: Optional[Callable[[int, str], str]] = None) -> dict[str, Path]:
    """Writes each file into `directory` (as name(index, key), default key.out)."""
    paths = {}
    for i, (key, data) in enumerate(sorted(files.items())):
        path = directory / (name(i, key) if name else f"{key}.out")
        path.write_bytes(data)
        paths[key] = path
    return paths


# ------------------------------------------------- what a command does


def exercise(data: bytes, path: Path) -> None:
    """Everything the CLI does with a file; only ExectraceError may escape."""
    d = _tracecore.decode(data)
    assert d.error is None or (isinstance(d.error, str) and d.error)
    m = _tracecore.decode(data, metadata_only=True)
    assert m.window_begin is None or isinstance(m.window_begin[1], dict)
    downstream(Trace(str(path), d))
    path.write_bytes(data)
    for allow_damaged in (False, True):
        try:
            trace = exectrace.read(path, allow_damaged=allow_damaged)
        except ExectraceError as e:
            assert str(path) in str(e)
            continue
        downstream(trace)
    try:
        meta = read_metadata(path)
        assert isinstance(meta.values, dict)
    except ExectraceError as e:
        assert str(path) in str(e)
    if data:
        owned = path.parent / dumpstore.file_name(1_795_000_000_000_000_000, 1)
        owned.write_bytes(data)
        (entry,) = dumpstore.owned_files(str(path.parent))
        for verify in (False, True):
            row = ls.describe(entry, verify=verify)
            json.dumps(row, allow_nan=False)
            ls._format_row(row)
        ls.total_line([row], None)
        owned.unlink()


def downstream(trace: Trace) -> None:
    """What summary, convert and the typed API do with a decoded trace."""
    events = list(trace)
    assert isinstance(events[0], exectrace.Metadata)
    trace.metadata.settings  # noqa: B018
    assert isinstance(trace.metadata.records_lost, int)
    summary = summarize(trace, top=5)
    json.dumps(summary, allow_nan=False)  # --json prints strict JSON
    format_text(summary, top=5)
    zoomed = summarize(trace, top=5, since_ns=1_000_000, until_ns=2_000_000_000, raw=True)
    merged = merge([zoomed, zoomed], top=5)
    json.dumps(merged, allow_nan=False)
    format_text(merged, top=5)
    json.dumps(diff(zoomed, merged), allow_nan=False)
    text = io.StringIO()
    export.to_chrome_json(trace, text, progress=False)
    json.loads(text.getvalue())
    export.build_pprof(trace, progress=False)
    export.build_pprof(trace, progress=False, reason="all")
    export.build_events_pprof(trace)
    export.build_events_pprof(trace, reason="io")
    begin, end = trace.coverage
    assert begin <= end
    for sample in trace.samples():
        assert isinstance(sample.stack, tuple)
