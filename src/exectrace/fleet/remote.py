"""Reading a fleet's shipped traces back: listing (keys and object metadata
only), downloading into a local cache (in parallel), and the commands'
s3:// forms: ls, summary, debug-zip --from, fleet top."""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

from exectrace import dumpstore
from exectrace.errors import ExectraceError
from exectrace.fleet import layout, s3
from exectrace.fleet.layout import S3Url, TraceObject

#: Downloads and HEADs in flight at once.
WORKERS = 8
T = TypeVar("T")
R = TypeVar("R")


def client_for(args: argparse.Namespace) -> Any:
    return s3.make_client(getattr(args, "endpoint_url", None), getattr(args, "profile", None))


def parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(WORKERS, len(items))) as pool:
        return list(pool.map(fn, items))


class Selection:
    """--host, --since, --until as a filter on keys."""

    def __init__(self, host_glob: Optional[str], since: Optional[str], until: Optional[str]) -> None:
        now = datetime.now(timezone.utc)
        self.host_glob = host_glob
        self.since = layout.parse_when(since, now=now, option="--since") if since else None
        self.until = layout.parse_when(until, now=now, option="--until") if until else None
        if self.since and self.until and self.since > self.until:
            raise ExectraceError("--since is later than --until")
        self.now = now

    def host_ok(self, host: str) -> bool:
        return self.host_glob is None or fnmatch.fnmatchcase(host, self.host_glob)

    def time_ok(self, when: datetime) -> bool:
        return (self.since is None or when >= self.since) and (self.until is None or when <= self.until)

    def days(self) -> Optional[list[str]]:
        if self.since is None:
            return None
        return layout.days_between(self.since, self.until or self.now)


def hosts(client: Any, url: S3Url) -> list[str]:
    """Host names under PREFIX/ (one LIST with a delimiter)."""
    head = url.key("") + "/" if url.prefix else ""
    _, prefixes = s3.list_keys(client, url.bucket, head, delimiter="/")
    out = []
    for p in prefixes:
        host = p[len(head):].rstrip("/")
        if host != layout.INDEX_DIR:
            try:
                out.append(layout.check_host(host))
            except argparse.ArgumentTypeError:
                continue
    return sorted(out)


def list_traces(client: Any, url: S3Url, sel: Selection) -> list[TraceObject]:
    """The trace objects of the selection, by end time then host. One LIST per
    host and day of the range (none for the days outside it); on the first
    day the listing starts after --since (names sort by end time)."""
    days = sel.days()
    prefixes: list[tuple[str, Optional[str]]] = []
    for host in hosts(client, url):
        if not sel.host_ok(host):
            continue
        if days is None:
            prefixes.append((url.key(host) + "/", None))
            continue
        for d in days:
            prefix = url.key(host, d) + "/"
            after = None
            if sel.since is not None and d == days[0]:
                # every name of a window that ended at or after --since sorts after this
                after = prefix + f"{dumpstore.PREFIX}{sel.since:%Y-%m-%dT%H_%M_%S}.{sel.since.microsecond // 1000:03d}"
            prefixes.append((prefix, after))
    listed = parallel(lambda p: s3.list_keys(client, url.bucket, p[0], start_after=p[1])[0], prefixes)
    found = []
    for keys in listed:
        for key, size in keys:
            obj = layout.parse_trace_key(url, key, size)
            if obj is not None and sel.time_ok(obj.end_time):
                found.append(obj)
    found.sort(key=lambda o: (o.end_time, o.host, o.name))
    return found


def list_index(client: Any, url: S3Url, sel: Selection) -> list[TraceObject]:
    """The index objects of the selection: one LIST per day (and host) of the range."""
    if sel.days() is None:
        _, dates = s3.list_keys(client, url.bucket, url.key(layout.INDEX_DIR) + "/", delimiter="/")
        days = [p.rstrip("/").rsplit("date=", 1)[-1] for p in dates]
    else:
        days = sel.days() or []
    prefixes = [url.key(layout.INDEX_DIR, f"date={d}") + "/" for d in days]
    if sel.host_glob is not None and not any(c in sel.host_glob for c in "*?["):
        prefixes = [p + f"host={sel.host_glob}/" for p in prefixes]
    listed = parallel(lambda p: s3.list_keys(client, url.bucket, p)[0], prefixes)
    found = []
    for keys in listed:
        for key, size in keys:
            obj = layout.parse_index_key(url, key, size)
            if obj is not None and sel.host_ok(obj.host) and sel.time_ok(obj.end_time):
                found.append(obj)
    found.sort(key=lambda o: (o.end_time, o.host, o.name))
    return found


# -- the cache

_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


def cache_root(args: argparse.Namespace, client: Any) -> str:
    """<cache dir>/<endpoint>/: objects of different servers never mix."""
    base = getattr(args, "cache_dir", None) or layout.default_cache_dir()
    endpoint = str(getattr(client.meta, "endpoint_url", "") or "aws")
    tag = _SAFE.sub("_", endpoint.split("://", 1)[-1]).strip("._") or "aws"
    return os.path.join(base, tag[:80] + "-" + hashlib.sha256(endpoint.encode()).hexdigest()[:8])


def cache_path(root: str, bucket: str, key: str) -> str:
    parts = key.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ExectraceError(f"refusing to cache s3://{bucket}/{key}: unusual key")
    return os.path.join(root, bucket, *parts)


def fetch(client: Any, root: str, bucket: str, key: str, size: Optional[int] = None) -> str:
    """The object as a local file in the cache. Shipped objects never change
    (a trace file's name is its host, end time and pid), so a complete copy
    in the cache (of the listed size, when known) is used without a request."""
    path = cache_path(root, bucket, key)
    where = f"s3://{bucket}/{key}"
    done = path + ".etag"  # written after the download: the copy is complete
    if os.path.isfile(path) and os.path.isfile(done) and (size is None or os.path.getsize(path) == size):
        return path
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    response = s3.call(where, client.get_object, Bucket=bucket, Key=key)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(1 << 20):
                    out.write(chunk)
            except Exception as e:
                raise s3.store_error(e, where) from None
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    with open(done, "w", encoding="ascii") as f:
        f.write(str(response.get("ETag", "")).strip('"'))
    return path


def fetch_all(client: Any, root: str, bucket: str, objects: list[TraceObject]) -> list[str]:
    return parallel(lambda o: fetch(client, root, bucket, o.key, o.size or None), objects)


# -- ls s3://

_META_INT = ("pid", "window-start-ns", "window-duration-ns", "records-kept", "records-lost", "bytes")


def describe(client: Any, url: S3Url, obj: TraceObject) -> dict[str, Any]:
    row: dict[str, Any] = {
        "host": obj.host, "name": obj.name, "url": url.url_of(obj.key), "key": obj.key,
        "end_time": f"{obj.end_time:%Y-%m-%dT%H:%M:%S}.{obj.end_time.microsecond // 1000:03d}Z",
        "pid": obj.pid, "size": obj.size,
    }
    found = s3.head(client, url.bucket, obj.key)
    meta = dict((found or {}).get("Metadata") or {})
    for k, v in meta.items():
        name = k.replace("-", "_")
        if k in _META_INT:
            try:
                row[name] = int(v)
                continue
            except ValueError:
                pass
        if name not in row:
            row[name] = v
    row.setdefault("mode", "calls" if meta and "error" not in meta else None)
    return row


def ls(args: argparse.Namespace) -> int:
    from exectrace.commands._format import human_size

    if args.verify:
        raise ExectraceError("--verify reads local files; for s3:// use exectrace summary s3://.../FILE.out")
    url = layout.parse_url(args.dir, what="a bucket and prefix")
    sel = Selection(args.host_glob, args.since, args.until)
    client = client_for(args)
    objects = list_traces(client, url, sel)
    rows: list[dict[str, Any]]
    if args.no_read:
        rows = [{"host": o.host, "name": o.name, "url": url.url_of(o.key), "key": o.key,
                 "end_time": f"{o.end_time:%Y-%m-%dT%H:%M:%S}.{o.end_time.microsecond // 1000:03d}Z",
                 "pid": o.pid, "size": o.size} for o in objects]
    else:
        rows = parallel(lambda o: describe(client, url, o), objects)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no trace files in {url} for this selection")
        return 0
    print(f"{'END (UTC)':<23}  {'HOST':<16}  {'PID':>7}  {'SIZE':>10}  {'WINDOW':>9}  {'KEPT':>9}  {'LOST':>7}  "
          f"{'MODE':<6}  FILE")
    for r in rows:
        ns = r.get("window_duration_ns")
        cells = [
            r["end_time"][:-1].replace("T", " ").ljust(23), r["host"][:16].ljust(16), str(r["pid"]).rjust(7),
            human_size(r["size"]).rjust(10),
            ("-" if not isinstance(ns, int) else f"{ns / 1e9:.3f}s").rjust(9),
            str(r.get("records_kept", "-")).rjust(9), str(r.get("records_lost", "-")).rjust(7),
            str(r.get("mode") or "-").ljust(6), r["url"],
        ]
        print("  ".join(cells))
    total = sum(r["size"] for r in rows)
    hosts_seen = sorted({r["host"] for r in rows})
    print(f"{len(rows)} file{'' if len(rows) == 1 else 's'}, {human_size(total)} ({total} bytes), "
          f"from {len(hosts_seen)} host{'' if len(hosts_seen) == 1 else 's'}: {', '.join(hosts_seen)}")
    return 0


# -- summary s3://

def fetch_trace(args: argparse.Namespace, text: str) -> str:
    """summary s3://.../FILE.out: the local cached copy's path."""
    bucket_url, key = layout.parse_object_url(text)
    client = client_for(args)
    return fetch(client, cache_root(args, client), bucket_url.bucket, key)


# -- debug-zip --from s3://

def debug_zip(args: argparse.Namespace) -> int:
    from exectrace._files import output_file
    from exectrace.commands.debug_zip import _add_json, _check_out, _versions_doc, _zip_time

    out: str = args.out
    _check_out(out, args.force)
    url = layout.parse_url(args.source, what="a bucket and prefix")
    sel = Selection(args.host_glob, args.since, args.until)
    client = client_for(args)
    objects = list_traces(client, url, sel)
    paths = fetch_all(client, cache_root(args, client), url.bucket, objects)
    exists = f"{out} already exists; use --force to replace it, or another name"
    by_host: dict[str, list[dict[str, Any]]] = {}
    total = 0
    try:
        with output_file(out, force=args.force, exists=exists) as (fd, _tmp), os.fdopen(fd, "w+b") as f:
            with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
                for obj, path in zip(objects, paths):
                    arcname = f"nodes/{obj.host}/executiontrace/{obj.name}"
                    info = zipfile.ZipInfo(arcname, _zip_time(obj.end_time.timestamp()))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info._compresslevel = 1  # type: ignore[attr-defined]
                    info.external_attr = 0o600 << 16
                    size = os.path.getsize(path)
                    with open(path, "rb") as src, zf.open(info, "w", force_zip64=size > 1 << 30) as dst:
                        while True:
                            chunk = src.read(1 << 20)
                            if not chunk:
                                break
                            dst.write(chunk)
                    total += size
                    by_host.setdefault(obj.host, []).append(
                        {"name": obj.name, "zip_path": arcname, "url": url.url_of(obj.key), "size": size})
                for host, files in sorted(by_host.items()):
                    _add_json(zf, f"nodes/{host}/objects.json", {"source": str(url), "files": files})
                _add_json(zf, "versions.json", _versions_doc())
                _add_json(zf, "selection.json", {
                    "source": str(url), "host": sel.host_glob,
                    "since": sel.since.isoformat() if sel.since else None,
                    "until": sel.until.isoformat() if sel.until else None,
                    "hosts": sorted(by_host), "files": len(objects)})
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ExectraceError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {out}: {len(objects)} trace file{'' if len(objects) == 1 else 's'} ({total} bytes) from {url} "
          f"as nodes/<host>/executiontrace/ for {len(by_host)} host{'' if len(by_host) == 1 else 's'}"
          + (f" ({', '.join(sorted(by_host))})" if by_host else ""))
    return 0


# -- fleet top

def fleet_top(args: argparse.Namespace) -> dict[str, Any]:
    from exectrace.fleet import index

    url = layout.parse_url(args.url, what="a bucket and prefix")
    sel = Selection(args.host_glob, args.since, args.until)
    client = client_for(args)
    objects = list_index(client, url, sel)
    paths = fetch_all(client, cache_root(args, client), url.bucket, objects)
    rows = index.top(paths, args.by, max(1, args.top))
    return {
        "source": str(url), "by": args.by,
        "since": sel.since.isoformat() if sel.since else None,
        "until": sel.until.isoformat() if sel.until else None,
        "windows": len(objects), "hosts": sorted({o.host for o in objects}),
        "rows": [{k: v for k, v in r.items()} for r in rows],
    }
