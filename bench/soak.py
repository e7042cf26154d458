"""Soak test: a traced server under continuous load, for a long time.

    python bench/soak.py --seconds 600

A child process runs a threaded TCP server on loopback and client threads
sending it requests without pause (new connections, so new server threads,
every few hundred requests), with exectrace tracing it on a schedule: a 1 s
window every 2 s, total_dump_size_limit 20 MiB (--interval, --duration,
--limit to change). The parent watches it and checks, at the end:

- memory: the child's RSS (VmRSS, sampled 4 times a second) does not grow.
  RSS follows the schedule: it climbs while a window records (the ring
  buffer's pages are touched) and falls back when the window is written, so
  each interval-long cycle has a floor (between windows) and a peak (at the
  end of a window). A warm-up is not counted: the first --warmup-windows
  cycles (default 3) or the first --warmup-fraction of the run (default 0.2),
  whichever is longer -- in 10-minute runs the floor rises for the first
  minute or two (thread stack and allocator caches filling) and is flat
  after. The median floor of the cycles in the next W seconds (the
  baseline) is compared with that of the last W seconds, W = min(60 s, a
  third of what is left after the warm-up), and must grow less than
  --max-growth percent (default 5). The floor is what the process holds
  when the tracer holds no records: a leak shows there. The peak adds the
  ring buffer's pages touched in a window, which follow the load (how many
  calls a window caught), so its growth is reported, not checked.
- the dump dir is bounded at every observation (4 a second): the owned files
  other than the newest one sum to at most the limit (GC runs after each
  write; the newest file always stays).
- every file written is a valid trace: each new file is hard-linked aside
  as soon as it is seen (so GC cannot delete it first), then read whole with
  exectrace.read(); a file GC deleted before it was even seen is counted.
- the child wrote no error: its stderr is empty, its status() at the end has
  no last_error and no failed windows, and it exits 0.

With --flight-recorder DURATION the child runs a flight recorder instead of
the schedule (docs/flight-recorder.md): recording never stops, the ring
wraps, the recorder is compacted every max(10 s, DURATION) and a client
thread asks for a snapshot every --snapshot-every seconds (cooldown 1 s).
The checks are the same, with the compaction period as the cycle (the floor
is the RSS after a compaction freed what left the flight recorder's span);
every snapshot must read back valid, and the report gives the compaction
pauses (last and longest) and the snapshots' copy times.

    python bench/soak.py --seconds 600 --flight-recorder 10s

It prints a small report and exits 1 if any check failed (2 on bad usage).
Linux only (it reads /proc/<pid>/status).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

BENCH = Path(__file__).resolve().parent
MiB = 1024 * 1024
SAMPLE_EVERY = 0.25  # seconds


# ------------------------------------------------------------------ the child


def child_main(seconds: float, clients: int, snapshot_every: float = 0.0) -> int:
    """The traced server under load; prints one JSON line at the end."""
    import json as _json
    import socket

    sys.path.insert(0, str(BENCH))
    import exectrace
    from workloads import LoopbackServer  # type: ignore[import-not-found]

    exectrace.start()  # settings from the EXECTRACE_* variables the parent set
    server = LoopbackServer()
    stop = threading.Event()
    answered = [0] * clients
    errors: list[str] = []

    def client(index: int) -> None:
        payload = list(range(20))
        while not stop.is_set():
            try:
                with socket.create_connection(server.address, timeout=30) as sock, sock.makefile("rwb") as f:
                    for i in range(300):  # then a new connection: a new server thread
                        if stop.is_set():
                            break
                        f.write(_json.dumps({"id": i, "values": payload}).encode() + b"\n")
                        f.flush()
                        reply = _json.loads(f.readline())
                        answered[index] += bool(reply["ok"])
            except OSError as e:  # pragma: no cover - reported, not expected
                errors.append(repr(e))
                time.sleep(0.1)

    snapshots: list[str] = []
    pauses: list[float] = []

    def snapshotter() -> None:  # the flight recorder's: a trigger every snapshot_every
        from exectrace import controller

        seen_compactions = 0
        while not stop.wait(snapshot_every):
            path = exectrace.snapshot("soak")
            if path is not None:
                snapshots.append(path)
            ctl = controller.current()
            if ctl is not None and ctl.compactions > seen_compactions:
                seen_compactions = ctl.compactions
                pauses.append(ctl.last_compaction.get("pause_ms", 0.0))

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(clients)]
    if snapshot_every > 0:
        threads.append(threading.Thread(target=snapshotter, name="snapshotter"))
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    status = exectrace.status()
    exectrace.stop()
    server.close()
    print(_json.dumps({"requests": sum(answered), "client_errors": errors[:10],
                       "snapshots": len(snapshots), "compaction_pauses_ms": pauses,
                       "status": {k: status.get(k) for k in (
                           "windows_written", "windows_failed", "windows_skipped", "windows_dropped",
                           "records_lost", "last_error", "files", "bytes", "snapshots_written",
                           "compactions", "last_compaction")}}), flush=True)
    return 0


# ----------------------------------------------------------------- the parent


def rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Validator(threading.Thread):
    """Reads every new trace file whole, off the sampling loop. Each file is
    a hard link in a holding directory, removed once read."""

    def __init__(self) -> None:
        super().__init__(name="validator", daemon=True)
        self.todo: queue.Queue[Optional[str]] = queue.Queue()
        self.valid = 0
        self.invalid: list[str] = []
        self.slices = 0
        self.copy_ms: list[float] = []  # snapshots: the copy under the GIL
        self.latency_ms: list[float] = []  # snapshots: window end - snapshot() call

    def run(self) -> None:
        import exectrace
        from exectrace.errors import ExectraceError

        while True:
            path = self.todo.get()
            if path is None:
                return
            try:
                trace = exectrace.read(path)
                self.valid += 1
                self.slices += trace.slice_count
                meta = trace.metadata
                if meta.get("window.closed_by") == "snapshot":
                    self.copy_ms.append(float(meta["flight_recorder.copy_ms"]))
                    end = meta["window.start_realtime_ns"] + meta["window.duration_ns"]
                    self.latency_ms.append((end - meta["snapshot.requested_realtime_ns"]) / 1e6)
                del trace
            except ExectraceError as e:
                self.invalid.append(str(e))
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def observe(directory: str) -> list[tuple[str, int]]:
    """(name, size) of the owned trace files, oldest first."""
    from exectrace import dumpstore

    try:
        return [(f.name, f.size) for f in dumpstore.owned_files(directory)]
    except OSError:
        return []


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="how long the load runs (default 600)")
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--duration", default="1s")
    parser.add_argument("--limit", default="20MiB", help="total_dump_size_limit (default 20MiB)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--warmup-windows", type=int, default=3)
    parser.add_argument("--warmup-fraction", type=float, default=0.2)
    parser.add_argument("--max-growth", type=float, default=5.0, help="percent (default 5)")
    parser.add_argument("--dir", help="dump dir (default: a temporary one, removed at the end)")
    parser.add_argument("--samples-out", metavar="FILE", help="write the RSS samples as JSON [[s, KiB], ...]")
    parser.add_argument("--flight-recorder", metavar="DURATION", default="",
                        help="run a flight recorder keeping DURATION instead of the schedule")
    parser.add_argument("--snapshot-every", type=float, default=10.0, metavar="SECONDS",
                        help="with --flight-recorder: a snapshot this often (default 10)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.seconds, args.clients, args.snapshot_every if args.flight_recorder else 0.0)
    if not os.path.exists("/proc/self/status"):
        print("soak: needs Linux (/proc/<pid>/status)", file=sys.stderr)
        return 2

    from exectrace.settings import parse_duration, parse_size

    interval_s = parse_duration(args.interval) / 1e9
    flight_s = parse_duration(args.flight_recorder) / 1e9 if args.flight_recorder else 0.0
    if flight_s:
        from exectrace.controller import COMPACT_INTERVAL

        interval_s = max(COMPACT_INTERVAL, flight_s)  # the cycle: compaction to compaction
    limit = parse_size(args.limit)
    warmup_s = max(args.warmup_windows * interval_s, args.warmup_fraction * args.seconds)
    if args.seconds < warmup_s + 12:
        parser.error(f"--seconds must be at least {warmup_s + 12:g} (warm-up plus two 6 s windows)")
    window_s = min(60.0, (args.seconds - warmup_s) / 3)

    own_dir = args.dir is None
    directory = args.dir or tempfile.mkdtemp(prefix="exectrace-soak-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    env.update(EXECTRACE_TOTAL_DUMP_SIZE_LIMIT=args.limit, EXECTRACE_DIR=directory)
    if flight_s:
        env.update(EXECTRACE_FLIGHT_RECORDER=args.flight_recorder, EXECTRACE_SNAPSHOT_COOLDOWN="1s")
    else:
        env.update(EXECTRACE_INTERVAL=args.interval, EXECTRACE_DURATION=args.duration)
    stderr_file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read back at the end
    stdout_file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    what = (f"a flight recorder of {args.flight_recorder}, a snapshot every {args.snapshot_every:g} s"
            if flight_s else f"a {args.duration} window every {args.interval}")
    print(f"soak: {args.seconds:g} s of load, {what}, "
          f"limit {args.limit}, {args.clients} clients, dump dir {directory}", flush=True)
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, __file__, "--child", "--seconds", str(args.seconds),
                              "--clients", str(args.clients), "--snapshot-every", str(args.snapshot_every)]
                             + (["--flight-recorder", args.flight_recorder] if flight_s else []),
                             env=env, stdout=stdout_file, stderr=stderr_file)
    validator = Validator()
    validator.start()
    holding = tempfile.mkdtemp(prefix="exectrace-soak-check-", dir=os.path.dirname(os.path.abspath(directory)))
    samples: list[tuple[float, int]] = []   # (seconds since start, RSS KiB)
    seen: set[str] = set()
    missed = 0
    failures: list[str] = []
    max_files = max_bytes = max_older = 0
    observations = 0

    def take_new(files: list[tuple[str, int]]) -> int:
        """Hard-links files not seen before aside for the validator; the
        number that GC deleted before they could be linked."""
        lost = 0
        for name, _ in files:
            if name in seen:
                continue
            seen.add(name)
            held = os.path.join(holding, name)
            try:
                os.link(os.path.join(directory, name), held)
            except FileNotFoundError:
                lost += 1
                continue
            validator.todo.put(held)
        return lost

    try:
        next_tick = time.monotonic()
        while child.poll() is None:
            rss = rss_kib(child.pid)
            now = time.monotonic() - started
            if rss is not None:
                samples.append((now, rss))
            files = observe(directory)
            observations += 1
            sizes = [size for _, size in files]
            total = sum(sizes)
            older = total - (sizes[-1] if sizes else 0)
            max_files, max_bytes, max_older = max(max_files, len(files)), max(max_bytes, total), max(max_older, older)
            if older > limit:
                failures.append(f"at {now:.1f} s: {len(files)} files, {total} bytes, {older} bytes "
                                f"besides the newest file > limit {limit}")
            missed += take_new(files)
            if now > args.seconds + 120:
                failures.append("the child did not finish within 120 s of the end of the load")
                child.kill()
                break
            next_tick += SAMPLE_EVERY
            time.sleep(max(0.0, next_tick - time.monotonic()))
        child.wait()
        final_files = observe(directory)
        missed += take_new(final_files)  # the window written at stop
        validator.todo.put(None)
        validator.join()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(holding, ignore_errors=True)

    stderr_file.seek(0)
    stdout_file.seek(0)
    child_err = stderr_file.read()
    child_out = stdout_file.read()
    result: dict[str, Any] = {}
    for line in child_out.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if child.returncode != 0:
        failures.append(f"the child exited {child.returncode}")
    if child_err.strip():
        failures.append("the child wrote to stderr: " + child_err.strip()[:2000])
    status = result.get("status") or {}
    if not result:
        failures.append("the child printed no result")
    else:
        if status.get("last_error"):
            failures.append(f"status() last_error: {status['last_error']}")
        if status.get("windows_failed"):
            failures.append(f"{status['windows_failed']} windows failed")
        if result.get("client_errors"):
            failures.append(f"client errors: {result['client_errors']}")
        if flight_s and not result.get("snapshots"):
            failures.append("the flight recorder wrote no snapshot")
    if validator.invalid:
        failures.append(f"{len(validator.invalid)} invalid files, e.g. {validator.invalid[0]}")
    if validator.valid == 0 or validator.valid + len(validator.invalid) + missed != len(seen):
        failures.append("no trace file was validated")

    if args.samples_out:
        with open(args.samples_out, "w") as f:
            json.dump([[round(t, 3), r] for t, r in samples], f)
    # RSS per schedule cycle: floor (between windows) and peak (end of a window)
    cycles: dict[int, list[int]] = {}
    for t, r in samples:
        if t <= args.seconds:
            cycles.setdefault(int(t // interval_s), []).append(r)
    first = int(math.ceil(warmup_s / interval_s))
    per_window = int(window_s // interval_s)
    last_cycle = int(args.seconds // interval_s) - 1   # the last whole cycle
    base_cycles = [cycles[c] for c in range(first, first + per_window) if len(cycles.get(c, ())) >= 2]
    end_cycles = [cycles[c] for c in range(last_cycle - per_window + 1, last_cycle + 1)
                  if len(cycles.get(c, ())) >= 2]
    growth: dict[str, tuple[float, float, float]] = {}
    if len(base_cycles) >= 3 and len(end_cycles) >= 3:
        for what, pick in (("floor", min), ("peak", max)):
            b = statistics.median(pick(c) for c in base_cycles)
            e = statistics.median(pick(c) for c in end_cycles)
            growth[what] = (b, e, 100.0 * (e - b) / b)
            if what == "floor" and growth[what][2] >= args.max_growth:
                failures.append(f"RSS {what} grew {growth[what][2]:.1f}% (>= {args.max_growth:g}%): "
                                f"{fmt_mib(b)} -> {fmt_mib(e)}")
    else:
        failures.append(f"too few RSS samples ({len(samples)})")
    rss_all = [r for _, r in samples]

    print(f"soak report ({sys.implementation.name} {sys.version.split()[0]}, "
          f"{time.monotonic() - started:.0f} s wall)")
    print(f"  load              {result.get('requests', '?')} requests answered "
          f"({(result.get('requests') or 0) / max(args.seconds, 1):.0f}/s)")
    print(f"  windows           {status.get('windows_written', '?')} written, "
          f"{status.get('windows_failed', '?')} failed, {status.get('windows_skipped', '?')} skipped, "
          f"{status.get('windows_dropped', '?')} dropped; records lost {status.get('records_lost', '?')}")
    if flight_s:
        pauses = result.get("compaction_pauses_ms") or []
        print(f"  flight recorder   {result.get('snapshots', '?')} snapshots asked, "
              f"{status.get('snapshots_written', '?')} written; {status.get('compactions', '?')} compactions, "
              + (f"pause last {pauses[-1]:.1f} ms, longest {max(pauses):.1f} ms, median "
                 f"{statistics.median(pauses):.1f} ms" if pauses else "no pause measured")
              + f"; last: {status.get('last_compaction')}")
        if validator.copy_ms:
            print(f"  snapshots         copy under the GIL: median {statistics.median(validator.copy_ms):.1f} ms, "
                  f"max {max(validator.copy_ms):.1f} ms; window end after the call: median "
                  f"{statistics.median(validator.latency_ms):.1f} ms, max {max(validator.latency_ms):.1f} ms")
    print(f"  files             {len(seen)} seen, {validator.valid} read back valid "
          f"({validator.slices} slices), {missed} collected before they were seen, "
          f"{len(validator.invalid)} invalid")
    print(f"  dump dir          {observations} observations: at most {max_files} files, "
          f"{max_bytes / MiB:.1f} MiB in all, {max_older / MiB:.1f} MiB besides the newest "
          f"(limit {limit / MiB:.1f} MiB); at the end {len(final_files)} files, "
          f"{sum(s for _, s in final_files) / MiB:.1f} MiB")
    if rss_all:
        print(f"  RSS               min {fmt_mib(min(rss_all))}, max {fmt_mib(max(rss_all))}, "
              f"{len(rss_all)} samples")
    for what, (b, e, pct) in growth.items():
        print(f"  RSS {what:<5} growth {pct:+.2f}%: median {fmt_mib(b)} over {len(base_cycles)} cycles "
              f"from {first * interval_s:g} s vs {fmt_mib(e)} over the last {len(end_cycles)} "
              + (f"(limit {args.max_growth:g}%)" if what == "floor" else "(not checked: follows the load)"))
    print(f"  child stderr      {'empty' if not child_err.strip() else repr(child_err[:200])}")
    if own_dir:
        shutil.rmtree(directory, ignore_errors=True)
    if failures:
        print("FAILED:")
        for f in failures:
            print(f"  - {f}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
