"""Analysis on real traces of programs whose behaviour is known: coverage
when the recorder's ring overflowed, latency distributions and the minimum
mutator utilization against known pauses, diff naming the function made
slower, many windows summarized together, blocking profiles per reason."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time

import pytest

import exectrace
from exectrace import dumpstore, export
from exectrace.__main__ import main
from exectrace.analysis import mmu, summarize
from perfetto_check import check_trace

EVENTS = "events"  # waits and asyncio steps: sys.monitoring on 3.12+, wrappers on 3.9-3.11


def cli_json(*argv: object) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*map(str, argv), "--json"]) == 0
    return json.loads(out.getvalue())


def cli_text(*argv: object) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(map(str, argv))) == 0
    return out.getvalue()


# ------------------------------------------------------------------ coverage

COVERAGE_PROGRAM = """
import sys, time, exectrace

def leaf(i):
    return i * 2

def middle(n):
    total = 0
    for i in range(n):
        total += leaf(i)
    return total

def work(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        middle(50)

with exectrace.tracing(sys.argv[1], buffer_size=sys.argv[2], c_calls=False):
    work(float(sys.argv[3]))
"""


@pytest.fixture(scope="module")
def coverage_files(tmp_path_factory):
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("coverage")
    files = {}
    for name, buffer_size, seconds in (("tiny", "64KiB", "0.4"), ("large", "256MiB", "0.05")):
        path = root / f"{name}.out"
        subprocess.run([sys.executable, "-c", COVERAGE_PROGRAM, str(path), buffer_size, seconds],
                       check=True, timeout=120)
        check_trace(path)
        files[name] = path
    return files


def test_tiny_buffer_times_cover_only_the_covered_span(coverage_files):
    trace = exectrace.read(coverage_files["tiny"])
    assert trace.metadata.records_lost > 0
    s = summarize(trace, top=1000)
    w = s["window"]
    # the covered span starts at the earliest end among the kept calls
    slices = list(trace.slices())
    earliest_end = min(e.end_ns for e in slices)
    assert w["covered_from_s"] == pytest.approx((earliest_end - trace.metadata.start_ns) / 1e9, abs=1e-9)
    assert 0 < w["covered_s"] < 0.5 * w["duration_s"]
    assert w["unrecorded_s"] == pytest.approx(w["duration_s"] - w["covered_s"], rel=0.01)
    for f in s["functions"]["by_self"] + s["functions"]["by_inclusive"]:
        assert f["self_s"] <= w["covered_s"] + 1e-9, f
        assert f["inclusive_s"] <= w["covered_s"] + 1e-9, f
    (main_thread,) = s["threads"]
    assert main_thread["unrecorded_s"] == pytest.approx(w["duration_s"] - w["covered_s"], rel=0.01)
    assert main_thread["covered_s"] == w["covered_s"]
    # the main thread is always inside <module>: its split adds up to the covered span, not the window
    split = main_thread["python_s"] + main_thread["c_s"] + sum(main_thread["blocked_s"].values()) + main_thread["gc_s"]
    assert split == pytest.approx(w["covered_s"], rel=0.01)
    module = next(f for f in s["functions"]["by_inclusive"] if f["name"] == "<module>")
    assert module["self_s"] < 0.5 * w["covered_s"]  # not the lost calls' time
    # read(): the frames open when coverage began are marked, and only they
    marked = [e for e in slices if e.args.get("began_before_coverage")]
    assert any(e.name == "<module>" for e in marked)
    covered_from = trace.coverage[0]
    assert all(e.start_ns < covered_from <= e.end_ns for e in marked)
    assert all(e.start_ns >= covered_from for e in slices if not e.args.get("began_before_coverage"))
    text = cli_text("summary", coverage_files["tiny"])
    assert "unrecorded" in text and f"{w['covered_s']:.3f} s of" in text


def test_large_buffer_covers_the_whole_window(coverage_files):
    trace = exectrace.read(coverage_files["large"])
    assert trace.metadata.records_lost == 0
    s = summarize(trace)
    w = s["window"]
    assert w["covered_s"] == pytest.approx(w["duration_s"], abs=1e-9)
    assert w["unrecorded_s"] == pytest.approx(0, abs=1e-9)
    assert s["threads"][0]["unrecorded_s"] == pytest.approx(0, abs=1e-9)
    assert not any(e.args.get("began_before_coverage") for e in trace.slices())


EVENTS_COVERAGE_PROGRAM = """
import sys, time, exectrace
with exectrace.tracing(sys.argv[1], mode="events", buffer_size="64KiB"):
    for _ in range(20000):
        time.sleep(0.00002)       # 20000 waits: far more than a 64 KiB ring holds
"""


def test_events_tiny_buffer_running_time_is_not_the_lost_time(tmp_path):
    """An `events` thread's running time is its life minus its waits: over
    the covered span only, or every lost wait would count as running."""
    import subprocess
    import sys

    path = tmp_path / "events-tiny.out"
    subprocess.run([sys.executable, "-c", EVENTS_COVERAGE_PROGRAM, str(path)], check=True, timeout=120)
    check_trace(path)
    s = cli_json("summary", path)
    w = s["window"]
    assert w["records_lost"] > 0 and w["covered_s"] < 0.5 * w["duration_s"]
    assert w["unrecorded_s"] == pytest.approx(w["duration_s"] - w["covered_s"], rel=0.01)
    (main_thread,) = s["threads"]
    split = main_thread["running_s"] + sum(main_thread["blocked_s"].values()) + main_thread["gc_s"]
    assert split == pytest.approx(main_thread["covered_s"], rel=0.01)
    assert main_thread["covered_s"] <= w["covered_s"] + 1e-9
    assert main_thread["blocked_s"]["sleep"] > 0.5 * main_thread["covered_s"]


def test_convert_covers_only_the_covered_span(coverage_files, tmp_path):
    from test_convert import load_pprof

    trace = exectrace.read(coverage_files["tiny"])
    begin, end = trace.coverage
    out = tmp_path / "tiny.pb.gz"
    assert main(["convert", str(coverage_files["tiny"]), "--to", "pprof", "-o", str(out)]) == 0
    profile = load_pprof(out)
    wall = sum(sample.value[0] for sample in profile.sample)
    assert wall == pytest.approx(end - begin, rel=0.01)  # one thread, always in a call
    assert any("unrecorded" in profile.string_table[c] for c in profile.comment)
    doc_path = tmp_path / "tiny.json"
    assert main(["convert", str(coverage_files["tiny"]), "--to", "chrome-json", "-o", str(doc_path)]) == 0
    doc = json.loads(doc_path.read_text())
    assert doc["metadata"]["exectrace.covered_from_ns"] == begin
    marked = [e for e in doc["traceEvents"] if e.get("ph") == "X" and e["args"].get("began_before_coverage")]
    assert len(marked) == sum(1 for e in trace.slices() if e.args.get("began_before_coverage")) > 0


# ------------------------------------------------------ latency and the MMU

PAUSES_PROGRAM = """
import gc, sys, time, exectrace

def garbage(n):
    # cyclic garbage only a full collection frees
    for _ in range(n):
        a = []
        b = [a]
        a.append(b)

with exectrace.tracing(sys.argv[1], mode=sys.argv[2], buffer_size="256MiB"):
    for ms in (1, 10, 100):
        for _ in range(3):
            with exectrace.region(f"r{ms}ms"):
                time.sleep(ms / 1000)
    gc.disable()
    garbage(int(sys.argv[3]))
    gc.collect()
    gc.enable()
    time.sleep(1.0)
"""


@pytest.fixture(scope="module", params=["calls", "events"])
def pauses_file(request, tmp_path_factory):
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("pauses") / f"{request.param}.out"
    subprocess.run([sys.executable, "-c", PAUSES_PROGRAM, str(path), request.param, "400000"],
                   check=True, timeout=120)
    check_trace(path)
    return path


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def test_region_latency_distributions(pauses_file):
    s = cli_json("summary", pauses_file)
    rows = {r["name"]: r for r in s["latency"]["regions"]}
    assert set(rows) >= {"r1ms", "r10ms", "r100ms"}
    trace = exectrace.read(pauses_file)
    for ms in (1, 10, 100):
        r = rows[f"r{ms}ms"]
        assert r["count"] == 3
        assert ms / 1000 <= r["p50_s"] <= r["p90_s"] <= r["p99_s"] <= r["max_s"]
        assert r["p50_s"] < ms / 1000 * 1.5 + 0.02  # a sleep oversleeps a little on a busy machine
        durations = [e.dur_ns for e in trace.slices() if e.name == f"r{ms}ms"]
        assert r["p50_s"] == nearest_rank(durations, 0.5) / 1e9
        assert r["max_s"] == max(durations) / 1e9
    text = cli_text("summary", pauses_file)
    assert "latency (ms)" in text and "r100ms" in text


def test_gc_pauses_and_minimum_mutator_utilization(pauses_file):
    s = cli_json("summary", pauses_file)
    trace = exectrace.read(pauses_file)
    pauses = [(e.start_ns, e.end_ns) for e in trace.gc_events()]
    full = [e for e in trace.gc_events() if e.generation == 2]
    longest = max(e.dur_ns for e in full)
    # the forced collection of the cyclic heap, read from the trace itself
    assert longest >= 10_000_000, f"the forced collection took {longest / 1e6:.1f} ms (needs >= 10 ms)"
    assert s["gc"]["gen2"]["max_s"] == longest / 1e9
    assert s["latency"]["gc"]["gen2"]["max_s"] == longest / 1e9
    curve = {m["window_s"]: m["utilization"] for m in s["mmu"]}
    assert curve[0.001] == 0.0 and curve[0.01] == 0.0
    lo, hi = trace.metadata.start_ns, trace.metadata.end_ns
    # brute force over a grid of window starts: never below the exact minimum, and close to it
    for w_s in (0.1, 1.0):
        w = int(w_s * 1e9)
        step = 100_000
        grid = min(1 - sum(max(0, min(b, t + w) - max(a, t)) for a, b in pauses) / w
                   for t in range(lo, hi - w + 1, step))
        assert curve[w_s] <= grid + 1e-6  # (rounded to 6 places)
        assert curve[w_s] >= grid - 2 * step / w - 1e-6
    assert curve[0.1] == pytest.approx(max(0.0, 1 - longest / 1e8), abs=0.05)
    assert 0 < curve[1.0] < 1
    assert "minimum mutator utilization" in cli_text("summary", pauses_file)


def test_mmu_of_known_pauses():
    ms = 1_000_000
    # one 50 ms pause in a 1 s window, one 2 ms pause
    curve = {m["window_s"]: m["utilization"] for m in mmu([(100 * ms, 150 * ms), (500 * ms, 502 * ms)], 0, 1000 * ms)}
    assert curve == {0.001: 0.0, 0.01: 0.0, 0.1: 0.5, 1.0: 0.948}
    assert mmu([], 0, 5 * ms)[0]["utilization"] == 1.0 and mmu([], 0, 5 * ms)[1]["utilization"] is None


def test_since_until_zooms_into_the_window(pauses_file):
    s = cli_json("summary", pauses_file, "--since", "0.2s", "--until", "0.4s")
    w = s["window"]
    assert (w["since_s"], w["until_s"]) == (0.2, 0.4)
    assert w["covered_s"] == pytest.approx(0.2, abs=1e-9)
    for f in s["functions"]["by_inclusive"]:
        assert f["inclusive_s"] <= 0.2 + 1e-9
    # the 100 ms regions run from about 0.035 s to 0.34 s: only those are in range
    assert {r["name"] for r in s["latency"]["regions"]} == {"r100ms"}
    code, err = run_cli_error("summary", pauses_file, "--since", "4s", "--until", "2s")
    assert code == 1 and err.count("\n") == 1 and "--since 2.5s --until 4s" in err


def run_cli_error(*argv: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(map(str, argv)))
    return code, err.getvalue()


# --------------------------------------------------------------------- diff

DIFF_PROGRAM = """
import sys, exectrace

def alpha(n):
    x = 0
    for i in range(n):
        x += i
    return x

def beta(n):
    x = 0
    for i in range(n):
        x += i
    return x

def gamma(n):
    x = 0
    for i in range(n):
        x += i
    return x

factor = int(sys.argv[2])
with exectrace.tracing(sys.argv[1], c_calls=False):
    for _ in range(60):
        alpha(20000)
        beta(20000 * factor)
        gamma(20000)
"""


@pytest.fixture(scope="module")
def diff_files(tmp_path_factory):
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("diff")
    out = {}
    now = time.time_ns()
    for name, factor, age_h in (("old", 1, 2), ("new", 3, 0)):
        d = root / name
        d.mkdir()
        path = d / dumpstore.file_name(now - age_h * 3600 * 10**9, 4242)
        subprocess.run([sys.executable, "-c", DIFF_PROGRAM, str(path), str(factor)], check=True, timeout=120)
        check_trace(path)
        out[name] = path
    return out


def test_diff_names_the_function_made_slower_first(diff_files):
    d = cli_json("diff", diff_files["old"], diff_files["new"])
    first = d["functions"][0]
    assert first["name"].startswith("beta "), d["functions"][:3]
    assert first["ratio"] > 2
    assert first["old_calls"] == first["new_calls"] == 60
    others = {r["name"].split()[0]: r for r in d["functions"][1:]}
    # against an unchanged function of the same windows (the machine's load
    # mostly cancels out): about 3x, with room for a busy shared machine
    assert 1.8 < first["ratio"] / others["alpha"]["ratio"] < 6
    text = cli_text("diff", diff_files["old"], diff_files["new"])
    assert text.split("functions (self time, s)")[1].splitlines()[1].strip().startswith("beta")
    # sides as directories: the same answer
    d2 = cli_json("diff", diff_files["old"].parent, diff_files["new"].parent)
    assert d2["functions"][0]["name"] == first["name"]


def test_summary_of_many_windows(diff_files, tmp_path):
    both = tmp_path / "dump"
    both.mkdir()
    for path in diff_files.values():
        os.link(path, both / path.name)
    (both / dumpstore.file_name(time.time_ns() - 10**9, 1)).write_bytes(b"not a trace")
    one = {name: cli_json("summary", path) for name, path in diff_files.items()}
    merged = cli_json("summary", both)
    assert merged["window"]["files"] == 2 and merged["window"]["unreadable"] == 1
    calls = {f["name"]: f["calls"] for f in merged["functions"]["by_self"]}
    assert calls["beta"] == 120
    beta = {k: next(f for f in s["functions"]["by_self"] if f["name"] == "beta")["self_s"] for k, s in one.items()}
    merged_beta = next(f for f in merged["functions"]["by_self"] if f["name"] == "beta")["self_s"]
    assert merged_beta == pytest.approx(beta["old"] + beta["new"], abs=1e-8)
    assert merged["window"]["duration_s"] == pytest.approx(
        one["old"]["window"]["duration_s"] + one["new"]["window"]["duration_s"], abs=1e-8)
    # the same files listed one by one, in one process
    assert cli_json("summary", *diff_files.values(), "-j", "1")["functions"] == merged["functions"]
    # by the time in their names: only the new window ended within the last hour
    recent = cli_json("summary", both, "--since", "1h")
    assert recent["window"]["files"] == 1
    assert next(f for f in recent["functions"]["by_self"] if f["name"] == "beta")["self_s"] == beta["new"]
    code, err = run_cli_error("summary", both, "--since", "1 hour")
    assert code == 1 and err.count("\n") == 1 and "1h" in err


# --------------------------------------------------------- pprof per reason

BLOCKING_PROGRAM = """
import select, sys, time, exectrace
with exectrace.tracing(sys.argv[1], mode=sys.argv[2]):
    for _ in range(3):
        time.sleep(0.05)
        select.select([], [], [], 0.03)
"""


@pytest.mark.parametrize("mode", ["calls", EVENTS])
def test_pprof_per_reason(tmp_path, mode):
    import subprocess
    import sys

    from test_convert import load_pprof

    path = tmp_path / "blocking.out"
    subprocess.run([sys.executable, "-c", BLOCKING_PROGRAM, str(path), mode], check=True, timeout=120)
    check_trace(path)
    totals = {}
    for reason in ("sleep", "io", "all"):
        out = tmp_path / f"{reason}.pb.gz"
        assert main(["convert", str(path), "--to", "pprof", "--reason", reason, "-o", str(out)]) == 0
        p = load_pprof(out)
        types = [p.string_table[t.type] for t in p.sample_type]
        assert types == (["sleep", "io", "lock", "subprocess"] if reason == "all" else [reason])
        totals[reason] = [sum(s.value[i] for s in p.sample) for i in range(len(types))]
    assert 0.15e9 <= totals["sleep"][0] < 0.15e9 * 1.5
    assert 0.09e9 <= totals["io"][0] < 0.09e9 * 1.5
    assert totals["all"][:2] == [totals["sleep"][0], totals["io"][0]]
    with pytest.raises(SystemExit) as exit_, contextlib.redirect_stderr(io.StringIO()) as err:
        main(["convert", str(path), "--to", "pprof", "--reason", "disk", "-o", str(tmp_path / "x")])
    assert exit_.value.code == 2 and "invalid choice: 'disk'" in err.getvalue()


def test_pprof_reason_is_a_pprof_option(tmp_path, coverage_files):
    code, err = run_cli_error("convert", coverage_files["large"], "--to", "chrome-json", "--reason", "io",
                              "-o", tmp_path / "x.json")
    assert code == 1 and "--to pprof --reason io" in err and not (tmp_path / "x.json").exists()


def test_build_pprof_rejects_an_unknown_reason(coverage_files):
    trace = exectrace.read(coverage_files["large"])
    with pytest.raises(ValueError, match="sleep, io, lock, subprocess or all"):
        export.build_pprof(trace, reason="disk")


def test_summary_json_keeps_its_keys(coverage_files):
    s = cli_json("summary", coverage_files["large"])
    assert set(s) >= {"file", "window", "threads", "functions", "blocking", "gc", "asyncio", "regions",
                      "tasks", "logs", "counters", "samples"}
    assert set(s["window"]) >= {"start", "end", "duration_s", "pid", "python", "hook", "mode", "records_lost",
                                "truncated", "closed_by", "slices", "damage"}
    assert set(s["threads"][0]) >= {"name", "tid", "calls", "python_s", "c_s", "running_s", "blocked_s", "gc_s"}


# ------------------------------------------------------ per asyncio task

TASKS_PROGRAM = """
import asyncio, sys, time, exectrace

async def blocker():
    for _ in range(3):
        time.sleep(0.03)          # blocks the event loop inside a step
        await asyncio.sleep(0)

async def polite():
    for _ in range(3):
        await asyncio.sleep(0.01)  # waits without blocking the loop

async def main():
    await asyncio.gather(asyncio.create_task(blocker(), name="blocker"),
                         asyncio.create_task(polite(), name="polite"))

with exectrace.tracing(sys.argv[1], mode=sys.argv[2]):
    asyncio.run(main())
"""


@pytest.mark.parametrize("mode", ["calls", EVENTS])
def test_per_task_breakdown(tmp_path, mode):
    import subprocess
    import sys

    path = tmp_path / "tasks.out"
    subprocess.run([sys.executable, "-c", TASKS_PROGRAM, str(path), mode], check=True, timeout=120)
    check_trace(path)
    tasks = {t["task"]: t for t in cli_json("summary", path)["asyncio"]["by_task"]}
    blocker, polite = tasks["blocker"], tasks["polite"]
    assert 0.09 <= blocker["blocked_s"]["sleep"] <= blocker["total_s"] + 1e-9
    assert blocker["running_s"] == pytest.approx(
        blocker["total_s"] - sum(blocker["blocked_s"].values()) - blocker["gc_s"], abs=1e-6)
    assert polite["blocked_s"]["sleep"] == 0 and polite["running_s"] <= polite["total_s"]
