"""Collect the trace files of this host and how they were made into one zip
file, to attach to a bug report (like CockroachDB's `cockroach debug zip`):

  nodes/<node>/executiontrace/<trace file>   the trace files of the dump dirs
  nodes/<node>/settings.json                 the settings in force (from the
                                             environment), the dump dirs and
                                             what was taken from each (with
                                             what closed each file's window, and
                                             a snapshot's reason)
  versions.json                              exectrace, Python, platform

<node> is this host's name (--node to choose another). Only files exectrace
owns are taken: regular files (never symlinks) named exactly
executiontrace.<UTC end time>.<pid>.out; nothing else in a dump dir is read.

Several --dump-dir may be given; all go under the same node. A file name
found in more than one of them is kept once per directory, each copy under a
subdirectory named after its dump dir's basename
(nodes/<node>/executiontrace/<basename>/<trace file>, with -2, -3, ...
appended when basenames collide too); names found once stay at the top, and
settings.json records which directory every file came from.

The zip is written to a temporary file next to OUT and renamed, so OUT is
never left half-written; an existing OUT is replaced only with --force. The
default dump dir is the environment's (EXECTRACE_DIR, else
./executiontrace_dump)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import platform
import socket
import stat
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any, Optional

from exectrace import dumpstore
from exectrace._files import output_file
from exectrace._version import __version__
from exectrace.errors import ExectraceError
from exectrace.fleet import layout
from exectrace.reader import read_metadata
from exectrace.settings import from_env

HELP = "zip the dump dirs' trace files with settings and versions for a bug report"

_CHUNK = 1024 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _node(text: str) -> str:
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"not a usable node name: {text!r} (e.g. --node web-1)")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT.zip", help="the zip file to write")
    parser.add_argument("--dump-dir", action="append", metavar="DIR", dest="dump_dirs",
                        help="a dump directory to take trace files from; repeat for several "
                             "(default: EXECTRACE_DIR, else ./executiontrace_dump)")
    parser.add_argument("--node", type=_node, help="the node's name in the zip (default: this host's name)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    group = parser.add_argument_group(
        "from object storage: every selected host's shipped traces as nodes/<host>/executiontrace/ "
        "(see docs/fleet.md)")
    group.add_argument("--from", dest="source", metavar="s3://BUCKET/PREFIX",
                       help="take the trace files exectrace ship shipped there, not the local dump dirs")
    layout.add_selection_options(group)
    layout.add_store_options(parser)


def default_node() -> str:
    """The host name, made safe as one path component."""
    name = socket.gethostname() or "localhost"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return safe or "localhost"


@dataclass
class _Entry:
    source: dumpstore.TraceFile
    directory: str
    arcname: str


def _check_dirs(dirs: list[str]) -> list[str]:
    """The dump dirs, checked and without duplicates (by real path), in order."""
    seen: set[str] = set()
    result: list[str] = []
    for d in dirs:
        try:
            info = os.stat(d)
        except FileNotFoundError:
            raise ExectraceError(f"no such dump directory: {d} (give one with --dump-dir, "
                                 "e.g. --dump-dir ./executiontrace_dump)") from None
        except OSError as e:
            raise ExectraceError(f"cannot read dump directory {d}: {e.strerror or e}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise ExectraceError(f"{d} is not a directory (give a dump directory, e.g. --dump-dir ./executiontrace_dump)")
        real = os.path.realpath(d)
        if real not in seen:
            seen.add(real)
            result.append(d)
    return result


def _labels(dirs: list[str]) -> dict[str, str]:
    """A distinct subdirectory name per dump dir: its basename, then -2, -3..."""
    labels: dict[str, str] = {}
    used: set[str] = set()
    for d in dirs:
        base = os.path.basename(os.path.normpath(os.path.abspath(d))) or "root"
        base = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in base)
        label, n = base, 1
        while label in used:
            n += 1
            label = f"{base}-{n}"
        used.add(label)
        labels[d] = label
    return labels


def plan(dirs: list[str], node: str) -> list[_Entry]:
    """Which owned file goes where in the zip."""
    listed: list[tuple[str, list[dumpstore.TraceFile]]] = []
    for d in dirs:
        try:
            listed.append((d, dumpstore.owned_files(d)))
        except OSError as e:
            raise ExectraceError(f"cannot list dump directory {d}: {e.strerror or e}") from None
    names = Counter(f.name for _, files in listed for f in files)
    labels = _labels(dirs)
    prefix = f"nodes/{node}/executiontrace/"
    entries = []
    for d, files in listed:
        for f in files:
            sub = f"{labels[d]}/" if names[f.name] > 1 else ""
            entries.append(_Entry(f, d, prefix + sub + f.name))
    return entries


def _settings_doc(dirs: list[str], taken: dict[str, list[dict[str, Any]]],
                  skipped: list[dict[str, str]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    try:
        settings, used = from_env(os.environ)
        doc["environment"] = settings.as_display_dict()
        doc["environment_variables"] = {v: os.environ[v] for v in used}
    except ExectraceError as e:
        doc["environment"] = None
        doc["environment_error"] = str(e)
    doc["dump_dirs"] = [{"path": os.path.abspath(d), "files": taken.get(d, [])} for d in dirs]
    doc["skipped"] = skipped
    return doc


def _how_closed(path: str) -> dict[str, Any]:
    """What closed the file's window, and a flight recorder snapshot's reason
    (from its metadata; nothing when it cannot be read)."""
    try:
        meta = read_metadata(path)
    except (ExectraceError, OSError, ValueError, MemoryError):
        return {}
    closed_by = meta.get("window.closed_by")
    doc: dict[str, Any] = {"closed_by": closed_by if isinstance(closed_by, str) else None}
    if closed_by == "snapshot":
        doc["snapshot_reason"] = str(meta.get("snapshot.reason", ""))
    return doc


def _versions_doc() -> dict[str, Any]:
    return {
        "exectrace": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(mtime)[:6]  # zip times are local, as zipfile writes them
    return max((t[0], t[1], t[2], t[3], t[4], t[5]), _ZIP_EPOCH)


@contextlib.contextmanager
def _open_owned(entry: _Entry) -> Iterator[Optional[tuple[IO[bytes], os.stat_result]]]:
    """The file opened without following a symlink, if it still is a regular
    file; None if it was deleted (a tracer's GC) or replaced meanwhile."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(entry.source.path, flags)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            yield None
            return
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        yield (f, info) if stat.S_ISREG(info.st_mode) else None


def _add_json(zf: zipfile.ZipFile, name: str, doc: dict[str, Any]) -> None:
    info = zipfile.ZipInfo(name, _zip_time(time.time()))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    zf.writestr(info, json.dumps(doc, indent=2, default=str) + "\n")


def _write_zip(f: IO[bytes], entries: list[_Entry], dirs: list[str], node: str) -> tuple[int, int]:
    """Writes the zip into `f`; returns (files, bytes) of traces taken."""
    taken: dict[str, list[dict[str, Any]]] = {}
    skipped: list[dict[str, str]] = []
    count = total = 0
    with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        for entry in entries:
            try:
                with _open_owned(entry) as opened:
                    if opened is None:
                        skipped.append({"path": entry.source.path, "reason": "deleted or replaced while zipping"})
                        continue
                    src, st = opened
                    info = zipfile.ZipInfo(entry.arcname, _zip_time(st.st_mtime))
                    # Trace packets are usually zlib-compressed already: a fast level.
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info._compresslevel = 1  # type: ignore[attr-defined]  # the level, 3.9-3.13
                    info.external_attr = 0o600 << 16
                    info.file_size = st.st_size
                    size = 0
                    with zf.open(info, "w", force_zip64=st.st_size > 1 << 30) as dst:
                        while True:
                            chunk = src.read(_CHUNK)
                            if not chunk:
                                break
                            dst.write(chunk)
                            size += len(chunk)
            except OSError as e:
                skipped.append({"path": entry.source.path, "reason": e.strerror or str(e)})
                continue
            count += 1
            total += size
            taken.setdefault(entry.directory, []).append(
                {"name": entry.source.name, "zip_path": entry.arcname, "size": size,
                 **_how_closed(entry.source.path)})
        _add_json(zf, f"nodes/{node}/settings.json", _settings_doc(dirs, taken, skipped))
        _add_json(zf, "versions.json", _versions_doc())
    return count, total


def _check_out(out: str, force: bool) -> str:
    """The output's directory; refuses to replace OUT without --force."""
    if not out or out.endswith(("/", os.sep)):
        raise ExectraceError(f"{out!r} is not a file name; give one, e.g. exectrace debug-zip debug.zip")
    if os.path.lexists(out):
        if os.path.isdir(out) and not os.path.islink(out):
            raise ExectraceError(f"{out} is a directory; give a file name, e.g. {os.path.join(out, 'debug.zip')}")
        if not force:
            raise ExectraceError(f"{out} already exists; use --force to replace it, or another name")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ExectraceError(f"cannot write {out}: no such directory {parent}")
    return parent


def run(args: argparse.Namespace) -> int:
    if args.source is not None:
        if args.dump_dirs or args.node:
            raise ExectraceError("--from takes the files from object storage: --dump-dir and --node do not apply")
        from exectrace.fleet import remote

        return remote.debug_zip(args)
    if args.host_glob or args.since or args.until:
        raise ExectraceError("--host, --since and --until select shipped traces: give --from s3://BUCKET/PREFIX")
    out: str = args.out
    _check_out(out, args.force)
    dirs = args.dump_dirs or [from_env(os.environ)[0].dump_dir]
    dirs = _check_dirs(dirs)
    node = args.node or default_node()
    entries = plan(dirs, node)

    exists = f"{out} already exists; use --force to replace it, or another name"
    try:
        with output_file(out, force=args.force, exists=exists) as (fd, _tmp), os.fdopen(fd, "w+b") as f:
            count, total = _write_zip(f, entries, dirs, node)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ExectraceError(f"cannot write {out}: {e.strerror or e}") from None
    where = ", ".join(os.path.abspath(d) for d in dirs)
    print(f"wrote {out}: {count} trace file{'' if count == 1 else 's'} ({total} bytes) from {where} "
          f"as nodes/{node}/executiontrace/, with settings.json and versions.json")
    if len(entries) > count:
        print(f"skipped {len(entries) - count} file(s) that vanished or could not be read "
              f"(listed in nodes/{node}/settings.json)")
    return 0
