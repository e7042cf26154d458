"""Where shipped objects go, and how a selection of them is named: pure Python
(no S3 client), so the commands can check their arguments cheaply.

    s3://BUCKET/PREFIX/<host>/<yyyy-mm-dd>/executiontrace.<ts>.<pid>.out
    s3://BUCKET/PREFIX/_index/date=<yyyy-mm-dd>/host=<host>/executiontrace.<ts>.<pid>.parquet

The date is the UTC day of the window's end, from the file name; so is every
time selection (--since/--until): a window is selected by the end time its
file name carries.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from exectrace import dumpstore
from exectrace.errors import ExectraceError
from exectrace.settings import HostName, parse_duration

SCHEME = "s3://"
INDEX_DIR = "_index"
#: Bucket names as S3 allows them (3-63 lower-case letters, digits, '.', '-').
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_HOST_KIND = HostName()
EXAMPLE = "s3://my-traces/prod"


def is_s3(text: Optional[str]) -> bool:
    return isinstance(text, str) and text.startswith(SCHEME)


@dataclass(frozen=True)
class S3Url:
    """s3://bucket/prefix (prefix without leading or trailing '/'; may be "")."""

    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def url_of(self, key: str) -> str:
        return f"{SCHEME}{self.bucket}/{key}"


def parse_url(text: str, *, what: str = "a destination", example: str = EXAMPLE) -> S3Url:
    """s3://BUCKET/PREFIX, checked; ExectraceError naming the problem otherwise."""
    if not is_s3(text):
        raise ExectraceError(f"{text!r} is not an s3:// URL; give {what} like {example}")
    rest = text[len(SCHEME):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ExectraceError(f"{text!r}: {bucket!r} is not a bucket name (3-63 lower-case letters, "
                             f"digits, '.' and '-'); e.g. {example}")
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    for part in parts:
        if part in ("", ".", "..") or any(ord(c) < 32 or c == "\x7f" for c in part):
            raise ExectraceError(f"{text!r}: the key prefix may not hold empty, '.' or '..' parts or "
                                 f"control characters; e.g. {example}")
    return S3Url(bucket, prefix)


def parse_object_url(text: str) -> tuple[S3Url, str]:
    """s3://BUCKET/.../executiontrace.<ts>.<pid>.out -> (bucket URL, key)."""
    example = f"{EXAMPLE}/web-1/2026-11-30/executiontrace.2026-11-30T18_41_22.216.4242.out"
    url = parse_url(text, what="a trace object", example=example)
    name = url.prefix.rsplit("/", 1)[-1]
    if dumpstore.parse_name(name) is None:
        raise ExectraceError(f"{text!r} does not name a trace file (executiontrace.<time>.<pid>.out); "
                             f"e.g. {example}")
    return S3Url(url.bucket, ""), url.prefix


def check_host(text: str) -> str:
    """A host name usable in keys (argparse type)."""
    try:
        host = _HOST_KIND.parse_text(text)
    except Exception:
        host = ""
    if not host:
        raise argparse.ArgumentTypeError(
            f"not a usable host name: {text!r} (letters, digits, '.', '_', '-'; e.g. --host web-1)")
    return host


def day(when: datetime) -> str:
    return f"{when:%Y-%m-%d}"


def trace_key(url: S3Url, host: str, name: str) -> str:
    parsed = dumpstore.parse_name(name)
    assert parsed is not None, name
    return url.key(host, day(parsed[0]), name)


def index_key(url: S3Url, host: str, name: str) -> str:
    parsed = dumpstore.parse_name(name)
    assert parsed is not None, name
    stem = name[: -len(dumpstore.SUFFIX)]
    return url.key(INDEX_DIR, f"date={day(parsed[0])}", f"host={host}", stem + ".parquet")


@dataclass(frozen=True)
class TraceObject:
    """A shipped trace file, as its key says."""

    key: str
    host: str
    name: str
    end_time: datetime
    pid: int
    size: int = 0


def parse_trace_key(url: S3Url, key: str, size: int = 0) -> Optional[TraceObject]:
    """PREFIX/<host>/<yyyy-mm-dd>/<trace file name> -> TraceObject, else None."""
    head = url.prefix + "/" if url.prefix else ""
    if not key.startswith(head):
        return None
    parts = key[len(head):].split("/")
    if len(parts) != 3 or parts[0] == INDEX_DIR:
        return None
    host, date, name = parts
    parsed = dumpstore.parse_name(name)
    if parsed is None or day(parsed[0]) != date:
        return None
    try:
        check_host(host)
    except argparse.ArgumentTypeError:
        return None
    return TraceObject(key, host, name, parsed[0], parsed[1], size)


def parse_index_key(url: S3Url, key: str, size: int = 0) -> Optional[TraceObject]:
    """PREFIX/_index/date=D/host=H/<stem>.parquet -> TraceObject (of the index object)."""
    head = url.key(INDEX_DIR) + "/"
    if not key.startswith(head):
        return None
    parts = key[len(head):].split("/")
    if len(parts) != 3 or not parts[0].startswith("date=") or not parts[1].startswith("host="):
        return None
    host = parts[1][len("host="):]
    if not parts[2].endswith(".parquet"):
        return None
    name = parts[2][: -len(".parquet")] + dumpstore.SUFFIX
    parsed = dumpstore.parse_name(name)
    if parsed is None or day(parsed[0]) != parts[0][len("date="):]:
        return None
    try:
        check_host(host)
    except argparse.ArgumentTypeError:
        return None
    return TraceObject(key, host, name, parsed[0], parsed[1], size)


def parse_when(text: str, *, now: Optional[datetime] = None, option: str = "--since") -> datetime:
    """A point in time (UTC): a duration ago ("1h", "30m", "2h30m") or a UTC
    date/time ("2026-11-30", "2026-11-30T18:00", "2026-11-30T18:00:00Z")."""
    now = now or datetime.now(timezone.utc)
    s = text.strip()
    try:
        return now - timedelta(microseconds=parse_duration(s) // 1000)
    except ValueError:
        pass
    t = s[:-1] if s.endswith("Z") else s
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(t, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise ExectraceError(f"invalid {option} {text!r}: expected a duration ago like '1h' or a UTC time "
                         f"like '2026-11-30T18:00'")


def days_between(since: datetime, until: datetime) -> list[str]:
    """The UTC days from since's to until's, inclusive."""
    days = []
    d = since.date()
    while d <= until.date():
        days.append(d.isoformat())
        d += timedelta(days=1)
    return days


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "exectrace", "s3")


def add_store_options(parser: argparse.ArgumentParser, *, cache: bool = True) -> None:
    """--endpoint-url, --profile (and --cache-dir) for commands that read s3:// URLs."""
    group = parser.add_argument_group("object storage (s3:// URLs; credentials and region from the "
                                      "standard AWS_* variables and profiles)")
    group.add_argument("--endpoint-url", metavar="URL",
                       help="an S3-compatible server, e.g. http://127.0.0.1:9000 (default: AWS_ENDPOINT_URL, else AWS)")
    group.add_argument("--profile", metavar="NAME", help="an AWS profile (default: AWS_PROFILE)")
    if cache:
        group.add_argument("--cache-dir", metavar="DIR",
                           help="where downloaded objects are kept (default: $XDG_CACHE_HOME/exectrace/s3, "
                                "else ~/.cache/exectrace/s3)")


def add_selection_options(parser: Any) -> None:
    """--host, --since, --until."""
    parser.add_argument("--host", metavar="GLOB", dest="host_glob",
                        help="only these hosts (a shell pattern, e.g. 'web-*')")
    parser.add_argument("--since", metavar="WHEN",
                        help="only windows that ended at or after WHEN: a duration ago (1h) or a UTC time")
    parser.add_argument("--until", metavar="WHEN",
                        help="only windows that ended at or before WHEN: a duration ago (10m) or a UTC time")
