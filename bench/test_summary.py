"""`exectrace summary` on large traces.

test_read_and_summarize: reading and analysing about 1.4M slices in process.

test_end_to_end: each analysis command as a user runs it (`python -m
exectrace ...`, a fresh process) on a full default ring: a `calls` window of
the call-heavy and scheduler workloads with the default 64 MiB buffer, run
until records were lost (about 2.1M slices kept). Reported per command:
slices per second end to end (median of 3 runs, interpreter start-up
included) and peak memory above the interpreter's (the peak RSS of the run
minus that of a process that imports the same modules and exits), in bytes
per slice (Linux: VmHWM). Perfetto's trace_processor loads the same file and runs an
equivalent query (per function: calls, total and self time) when
../shared/tools/tpq/tpq (or $EXECTRACE_TPQ) exists; that row is skipped
otherwise.

Run:  pytest bench/test_summary.py --benchmark-only -s
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exectrace import capture, dumpstore, read, settings
from exectrace.analysis import summarize

ROUNDS = 3
_rows: list[str] = []

# Runs the CLI's main() and prints the process's peak RSS (KiB) on stderr last:
# VmHWM where there is one (ru_maxrss would include the RSS of the pytest
# process it was forked from: Linux keeps it across exec).
_RUNNER = (
    "import resource, sys\n"
    "from exectrace.__main__ import main\n"
    "import exectrace.analysis, exectrace.export, exectrace.commands.summary\n"
    "try:\n"
    "    code = main(sys.argv[1:]) if sys.argv[1:] else 0\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')]\n"
    "print(hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)

SQL = (
    "select s.name as name, count(*) as calls, sum(s.dur) as total, "
    "sum(s.dur) - coalesce(sum(c.child), 0) as self "
    "from slice s join thread_track t on s.track_id = t.id "
    "left join (select parent_id, sum(dur) as child from slice group by parent_id) c on c.parent_id = s.id "
    "group by s.name order by self desc limit 20"
)


def test_read_and_summarize(benchmark, big_trace_file):
    def run():
        return summarize(read(big_trace_file))

    summary = benchmark.pedantic(run, rounds=3, warmup_rounds=0)
    benchmark.extra_info["slices"] = summary["window"]["slices"]
    benchmark.extra_info["bytes"] = big_trace_file.stat().st_size
    benchmark.extra_info["compressor"] = "read + summarize"


@pytest.fixture(scope="module")
def full_ring_file(tmp_path_factory):
    """A `calls` window whose default ring overflowed, in a dump dir."""
    import workloads

    window = capture.Window.open(settings.resolve(settings.defaults(), mode="calls"))
    try:
        for _ in range(6):  # about 2.5M calls: more than the 2M records the ring holds
            workloads.call_heavy()
            workloads.scheduler()
    finally:
        closed = window.close()
    try:
        data = closed.encode()
    finally:
        closed.release()
    directory = tmp_path_factory.mktemp("ring") / "executiontrace_dump"
    directory.mkdir()
    path = directory / dumpstore.file_name(time.time_ns(), os.getpid())
    path.write_bytes(data)
    trace = read(path)
    assert trace.metadata.records_lost > 0, "the ring did not overflow"
    return path, trace.slice_count


def _run(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *argv], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    return elapsed, int(proc.stderr.strip().splitlines()[-1]) * 1024


@pytest.fixture(scope="module")
def baseline_rss():
    return min(_run([])[1] for _ in range(3))


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if _rows:
        print(f"\nanalysis end to end, {platform.python_implementation()} {platform.python_version()}, "
              f"{os.cpu_count()} cores")
        print("| command | slices | median s | slices/s | peak bytes/slice above the interpreter |")
        print("|---|---|---|---|---|")
        for row in _rows:
            print(row)


COMMANDS = {
    "summary": lambda p, o: ["summary", str(p), "--json"],
    "summary --since/--until": lambda p, o: ["summary", str(p), "--json", "--since", "100ms", "--until", "300ms"],
    "ls --verify": lambda p, o: ["ls", "--verify", str(p.parent)],
    "convert --to pprof": lambda p, o: ["convert", str(p), "--to", "pprof", "-o", str(o / "p.pb.gz"), "-f"],
    "convert --to chrome-json": lambda p, o: ["convert", str(p), "--to", "chrome-json", "-o", str(o / "c.json"),
                                              "-f"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_end_to_end(benchmark, full_ring_file, baseline_rss, tmp_path, command):
    path, slices = full_ring_file
    argv = COMMANDS[command](path, tmp_path)
    peaks: list[int] = []
    times: list[float] = []

    def once() -> None:
        elapsed, peak = _run(argv)
        times.append(elapsed)
        peaks.append(peak)

    benchmark.pedantic(once, rounds=ROUNDS, warmup_rounds=0)
    median = statistics.median(times)
    per_slice = (max(peaks) - baseline_rss) / slices
    benchmark.extra_info.update(slices_kept=slices, slices_per_s=slices / median, peak_bytes_per_slice=per_slice)
    _rows.append(f"| exectrace {command} | {slices} | {median:.2f} | {slices / median / 1e6:.2f}M | {per_slice:.1f} |")


def test_trace_processor_side_by_side(benchmark, full_ring_file):
    """Perfetto's trace_processor (wasm, via tpq) loading the same file and
    running an equivalent per-function query."""
    tpq = os.environ.get("EXECTRACE_TPQ") or str(Path(__file__).resolve().parents[2] / "shared/tools/tpq/tpq")
    if not (os.path.exists(tpq) and os.access(tpq, os.X_OK)) and shutil.which("tpq") is None:
        pytest.skip("trace_processor (tpq) is not installed")
    tpq = tpq if os.path.exists(tpq) else str(shutil.which("tpq"))
    path, slices = full_ring_file
    times: list[float] = []

    def once() -> None:
        start = time.perf_counter()
        proc = subprocess.run([tpq, str(path), SQL], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("\n") == 20

    benchmark.pedantic(once, rounds=1, warmup_rounds=0)
    median = statistics.median(times)
    _rows.append(f"| trace_processor (tpq, wasm): load + per-function query | {slices} | {median:.2f} | "
                 f"{slices / median / 1e6:.2f}M | - |")
