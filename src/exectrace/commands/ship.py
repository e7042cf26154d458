"""Ship the trace files of dump directories to S3-compatible object storage:
a sidecar, one per host, that uploads every new complete trace file as

  PREFIX/<host>/<yyyy-mm-dd>/executiontrace.<time>.<pid>.out

with its metadata as object metadata (host, pid, Python and exectrace
versions, window start and end, mode, reason, records kept and lost, bytes,
SHA-256), and beside it the file's summary rows for the fleet index
(PREFIX/_index/date=<yyyy-mm-dd>/host=<host>/<file>.parquet; exectrace
fleet top reads them).

  exectrace ship /var/tmp/executiontrace_dump --to s3://my-traces/prod
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 exectrace ship ./executiontrace_dump --to s3://traces/dev --once

Credentials, region and endpoint come from the standard AWS configuration
(AWS_* variables, profiles, instance roles; --endpoint-url, --profile).
Local files are never modified or deleted. A state file records what was
shipped, so a restart sends nothing twice (a file it does not list is looked
up with HEAD first). When the store is unreachable or failing the sidecar
keeps going: it retries with backoff and warns at most once a minute. It
exits 1 at start when the store refuses the credentials or has no such
bucket; SIGTERM or Ctrl-C makes one last pass and exits 0. Needs the s3
extra: pip install 'exectrace[s3]'."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, Optional

from exectrace.errors import ExectraceError
from exectrace.fleet import layout
from exectrace.settings import from_env, parse_duration, safe_host_name

HELP = "upload every new trace file of dump dirs to s3:// object storage (a sidecar)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="*", metavar="DIR",
                        help="dump directories to watch (default: EXECTRACE_DIR, else ./executiontrace_dump)")
    parser.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX", help="where to ship, e.g. s3://my-traces/prod")
    parser.add_argument("--host", type=layout.check_host,
                        help="this host's name in the keys (default: EXECTRACE_HOST, else the system's host name)")
    parser.add_argument("--state", metavar="FILE",
                        help="the state file (default: $XDG_STATE_HOME/exectrace/ship-<id>.json, "
                             "else ~/.local/state/exectrace/...)")
    parser.add_argument("--poll", default="2s", metavar="DURATION", help="how often to look for new files (default 2s)")
    parser.add_argument("--max-backoff", default="1m", metavar="DURATION",
                        help="the longest wait between two tries while the store fails (default 1m)")
    parser.add_argument("--once", action="store_true",
                        help="ship what is there now and exit (1 if some file could not be shipped)")
    parser.add_argument("--no-index", action="store_true", help="do not write fleet index rows")
    parser.add_argument("--quiet", action="store_true", help="no line per shipped file (warnings and the final report only)")
    parser.add_argument("--until-exit", type=int, metavar="PID",
                        help="exit after a last pass once process PID has exited (exectrace run --ship uses this)")
    layout.add_store_options(parser, cache=False)


def _host(args: argparse.Namespace) -> str:
    if args.host:
        return str(args.host)
    settings = from_env(os.environ)[0]
    if settings.host:
        return settings.host
    import socket

    return safe_host_name(socket.gethostname())


@contextlib.contextmanager
def _state_lock(path: str) -> Iterator[None]:
    """One sidecar per state file."""
    import fcntl

    from exectrace import dumpstore

    dumpstore.ensure_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ExectraceError(f"another exectrace ship is using the state file {path}") from None
        yield
    finally:
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    url = layout.parse_url(args.to)
    try:
        poll = parse_duration(args.poll) / 1e9
    except ValueError:
        raise ExectraceError(f"invalid --poll {args.poll!r}: expected a duration like '2s'") from None
    poll = max(poll, 0.05)
    try:
        max_backoff = max(parse_duration(args.max_backoff) / 1e9, 0.1)
    except ValueError:
        raise ExectraceError(f"invalid --max-backoff {args.max_backoff!r}: expected a duration like '30s'") from None
    dirs = args.dirs or [from_env(os.environ)[0].dump_dir]
    for d in dirs:
        if os.path.exists(d) and not os.path.isdir(d):
            raise ExectraceError(f"{d} is not a directory; give a dump directory, e.g. ./executiontrace_dump")
    host = _host(args)

    from exectrace.fleet import index, s3, ship

    with_index = not args.no_index
    if with_index and not index.available():
        print("exectrace ship: warning: duckdb is not installed: shipping without fleet index rows "
              "(pip install 'exectrace[s3]')", file=sys.stderr)
        with_index = False
    client = s3.make_client(args.endpoint_url, args.profile)
    # PUTs are not retried by botocore: each attempt of ours HEADs first, so
    # an upload whose answer was lost is not sent twice.
    put_client = s3.make_client(args.endpoint_url, args.profile, attempts=1)
    state = args.state or ship.default_state_path(dirs, url, host)
    out: Any = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    with _state_lock(state):
        shipper = ship.Shipper(dirs, url, host, client, put_client=put_client, state_path=state,
                               with_index=with_index, out=out, max_backoff=max_backoff)
        shipper.check()
        stop = threading.Event()
        previous = _on_signals(stop)
        try:
            left = shipper.run(poll=poll, stop=stop, until_pid=args.until_exit, once=args.once)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        print(shipper.report(), file=sys.stderr, flush=True)
    if args.once and left:
        raise ExectraceError(f"{left} file(s) could not be shipped to {url}")
    return 0


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and a first Ctrl-C stop after one last pass; a second Ctrl-C stops at once."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Optional[Any]) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous
