"""`exectrace convert`: real traces to Chrome JSON and pprof, checked against
the trace as Perfetto reads it (tests/perfetto_check.py) and, for pprof,
against profile.proto's schema built at run time."""

from __future__ import annotations

import gc
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

import exectrace
from exectrace import export
from exectrace.__main__ import main
from exectrace.blocking import reason_of_slice
from perfetto_check import check_trace

SLEEP_S = 0.05


def inner(n):
    return sum(range(n))


def outer():
    for n in range(3):
        inner(n)


def nap():
    time.sleep(SLEEP_S)


def sleeper():
    for _ in range(2):
        nap()
    outer()


class Node:
    pass


def workload():
    t = threading.Thread(target=sleeper, name="sleeper")
    t.start()
    for _ in range(50):
        outer()
    for _ in range(200):
        n = Node()
        n.me = n
    del n
    gc.collect()
    t.join()


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """(path of a real trace, its Perfetto model)."""
    path = tmp_path_factory.mktemp("convert") / "executiontrace.test.out"
    with exectrace.tracing(path):
        workload()
    return path, check_trace(str(path))


def convert(*argv):
    return main(["convert", *map(str, argv)])


def thread_slices(model):
    return [s for s in model.slices if model.tracks[s.track_uuid].kind == "thread"]


def x_events(doc):
    return [e for e in doc["traceEvents"] if e["ph"] == "X"]


def to_ns(us):
    """A JSON ts/dur (µs, read as Decimal) in nanoseconds, exactly."""
    ns = us * 1000
    assert ns == int(ns), us
    return int(ns)


# ----------------------------------------------------------------- Chrome JSON


def test_chrome_json_has_every_slice_on_its_thread(traced, tmp_path, capsys):
    path, model = traced
    out = tmp_path / "trace.json"
    assert convert(path, "--to", "chrome-json", "-o", out) == 0
    assert "wrote" in capsys.readouterr().out
    with open(out) as f:
        doc = json.load(f, parse_float=Decimal)
    assert doc["displayTimeUnit"] == "ns"
    assert doc["metadata"]["process.pid"] == model.track_named("MainThread").pid
    events = x_events(doc)
    assert len(events) == len(model.slices)

    # thread names from the metadata events; real threads keep their OS tid
    names = {(e["pid"], e["tid"]): e["args"]["name"]
             for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    threads = {t.uuid: t for t in model.thread_tracks()}
    for t in threads.values():
        assert names[(t.pid, t.tid)] == t.name
    by_tid = defaultdict(list)
    for e in events:
        by_tid[(e["pid"], e["tid"])].append(e)
    for uuid, t in threads.items():
        expected = model.slices_on(uuid)
        got = by_tid[(t.pid, t.tid)]
        assert len(got) == len(expected), t.name
        assert Counter(e["name"] for e in got) == Counter(s.name for s in expected)
        assert sorted((to_ns(e["ts"]), to_ns(e["dur"])) for e in got) == \
            sorted((s.ts, s.dur) for s in expected)
    real_tids = {(t.pid, t.tid) for t in threads.values()}
    assert sum(len(v) for k, v in by_tid.items() if k in real_tids) == len(thread_slices(model))

    # GC and the window slice are on pseudo threads of the same process
    gc_tid = [k for k, v in names.items() if v == "GC"]
    window_tid = [k for k, v in names.items() if v == "exectrace"]
    assert len(gc_tid) == 1 and len(window_tid) == 1
    assert gc_tid[0] not in real_tids and window_tid[0] not in real_tids
    assert gc_tid[0][1] != 0  # trace_processor would fold tid 0 into the main thread
    gc_events = by_tid[gc_tid[0]]
    assert len(gc_events) == len(model.slices_on(model.track_named("GC").uuid)) >= 1
    assert {e["cat"] for e in gc_events} == {"gc"}
    assert "generation" in gc_events[0]["args"]
    (window,) = by_tid[window_tid[0]]
    assert window["name"] == "exectrace window"
    assert window["args"]["window.duration_ns"] == to_ns(window["dur"])


def test_chrome_json_order_and_nesting(traced, tmp_path):
    path, model = traced
    out = tmp_path / "trace.json"
    assert convert(path, "--to", "chrome-json", "-o", out) == 0
    with open(out) as f:
        doc = json.load(f, parse_float=Decimal)
    by_tid = defaultdict(list)
    for e in x_events(doc):
        by_tid[e["tid"]].append((to_ns(e["ts"]), to_ns(e["dur"]), e))
    model_depth = defaultdict(set)
    for s in model.slices:
        model_depth[(s.ts, s.dur, s.name)].add(s.depth)
    for events in by_tid.values():
        # sorted by ts; at one ts an enclosing call comes before what it encloses
        assert [ts for ts, _, _ in events] == sorted(ts for ts, _, _ in events)
        for (ts0, dur0, _), (ts1, dur1, _) in zip(events, events[1:]):
            if ts0 == ts1:
                assert dur0 >= dur1
        # the stack a viewer builds from the events in file order (the ends
        # of the open events, innermost last) gives every event its depth
        stack: list[int] = []
        for ts, dur, e in events:
            while stack and stack[-1] < ts + dur:
                stack.pop()
            if dur > 0 or not stack or stack[-1] > ts:  # (a 0 ns call at an end is ambiguous)
                assert len(stack) in model_depth[(ts, dur, e["name"])], e
            stack.append(ts + dur)

    # the known call tree: each inner() lies within an outer() on the same tid
    for tid, events in by_tid.items():
        outers = [(ts, ts + dur) for ts, dur, e in events if e["name"] == "outer"]
        inners = [(ts, ts + dur) for ts, dur, e in events if e["name"] == "inner"]
        assert len(inners) == 3 * len(outers)
        for a, b in inners:
            assert any(oa <= a and b <= ob for oa, ob in outers), (tid, a, b)
    sleeps = [(tid, e) for tid, events in by_tid.items() for _, _, e in events
              if e["name"] == "time.sleep"]
    assert len(sleeps) == 2
    sleeper_tid = model.track_named("sleeper").tid
    assert all(tid == sleeper_tid and e["cat"] == "c,sleep" for tid, e in sleeps)
    assert all(e["dur"] >= Decimal(SLEEP_S * 1e6) * Decimal("0.9") for _, e in sleeps)
    naps = [e for tid, events in by_tid.items() for _, _, e in events if e["name"] == "nap"]
    assert naps[0]["cat"] == "python"
    assert naps[0]["args"] == {"file": __file__, "line": nap.__code__.co_firstlineno}


def test_chrome_json_gzipped_and_stdout(traced, tmp_path, capsys):
    path, model = traced
    out = tmp_path / "trace.json.gz"
    assert convert(path, "--to", "chrome-json", "-o", out) == 0
    with gzip.open(out, "rt") as f:
        assert len(x_events(json.load(f))) == len(model.slices)
    capsys.readouterr()
    assert convert(path, "--to", "chrome-json", "-o", "-") == 0
    captured = capsys.readouterr()
    assert len(x_events(json.loads(captured.out))) == len(model.slices)
    assert captured.err == ""


def test_chrome_json_to_streams(traced):
    path, model = traced
    trace = exectrace.read(path)
    text = io.StringIO()
    assert export.to_chrome_json(trace, text) == len(model.slices)
    binary = io.BytesIO()
    export.to_chrome_json(trace, binary)
    assert json.loads(binary.getvalue()) == json.loads(text.getvalue())


# ----------------------------------------------------------------------- pprof


def pprof_classes():
    """profile.proto's messages, from a descriptor written here."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="exectrace_test_profile.proto",
                                             package="perftools.profiles", syntax="proto3")

    def message(name, *fields):
        m = fdp.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind,
                            label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                f.type_name = f".perftools.profiles.{type_name}"

    u64, i64, msg = F.TYPE_UINT64, F.TYPE_INT64, F.TYPE_MESSAGE
    message("Profile",
            ("sample_type", 1, msg, True, "ValueType"), ("sample", 2, msg, True, "Sample"),
            ("mapping", 3, msg, True, "Mapping"), ("location", 4, msg, True, "Location"),
            ("function", 5, msg, True, "Function"), ("string_table", 6, F.TYPE_STRING, True, None),
            ("drop_frames", 7, i64, False, None), ("keep_frames", 8, i64, False, None),
            ("time_nanos", 9, i64, False, None), ("duration_nanos", 10, i64, False, None),
            ("period_type", 11, msg, False, "ValueType"), ("period", 12, i64, False, None),
            ("comment", 13, i64, True, None), ("default_sample_type", 14, i64, False, None))
    message("ValueType", ("type", 1, i64, False, None), ("unit", 2, i64, False, None))
    message("Sample", ("location_id", 1, u64, True, None), ("value", 2, i64, True, None),
            ("label", 3, msg, True, "Label"))
    message("Label", ("key", 1, i64, False, None), ("str", 2, i64, False, None),
            ("num", 3, i64, False, None), ("num_unit", 4, i64, False, None))
    message("Mapping", ("id", 1, u64, False, None), ("memory_start", 2, u64, False, None),
            ("memory_limit", 3, u64, False, None), ("file_offset", 4, u64, False, None),
            ("filename", 5, i64, False, None), ("build_id", 6, i64, False, None),
            ("has_functions", 7, F.TYPE_BOOL, False, None),
            ("has_filenames", 8, F.TYPE_BOOL, False, None),
            ("has_line_numbers", 9, F.TYPE_BOOL, False, None),
            ("has_inline_frames", 10, F.TYPE_BOOL, False, None))
    message("Location", ("id", 1, u64, False, None), ("mapping_id", 2, u64, False, None),
            ("address", 3, u64, False, None), ("line", 4, msg, True, "Line"),
            ("is_folded", 5, F.TYPE_BOOL, False, None))
    message("Line", ("function_id", 1, u64, False, None), ("line", 2, i64, False, None))
    message("Function", ("id", 1, u64, False, None), ("name", 2, i64, False, None),
            ("system_name", 3, i64, False, None), ("filename", 4, i64, False, None),
            ("start_line", 5, i64, False, None))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


def load_pprof(path):
    profile = pprof_classes()()
    profile.ParseFromString(gzip.decompress(Path(path).read_bytes()))
    # a field with a wrong number or wire type would parse as an unknown field
    from google.protobuf.unknown_fields import UnknownFieldSet

    for message in [profile, *profile.sample, *profile.location, *profile.function,
                    *profile.mapping, *profile.sample_type, profile.period_type,
                    *(line for loc in profile.location for line in loc.line),
                    *(label for sample in profile.sample for label in sample.label)]:
        assert len(UnknownFieldSet(message)) == 0, message
    return profile


def self_times(model):
    """{slice id: self time} of the thread slices, from Perfetto's nesting."""
    out = {}
    for s in thread_slices(model):
        out[id(s)] = s.dur - sum(c.dur for c in model.children(s))
    return out


def test_pprof_totals_and_stacks(traced, tmp_path):
    path, model = traced
    out = tmp_path / "trace.pb.gz"
    assert convert(path, "--to", "pprof", "-o", out) == 0
    p = load_pprof(out)
    st = list(p.string_table)
    assert st[0] == ""
    assert [(st[t.type], st[t.unit]) for t in p.sample_type] == \
        [("wall", "nanoseconds"), ("blocked", "nanoseconds")]
    assert (st[p.period_type.type], st[p.period_type.unit]) == ("wall", "nanoseconds")
    assert p.period == 1 and st[p.default_sample_type] == "wall"
    meta = exectrace.read(path).metadata
    assert p.duration_nanos == meta["window.duration_ns"]
    assert p.time_nanos == meta["window.start_realtime_ns"]

    # the tables are consistent: ids unique and resolvable
    functions = {f.id: f for f in p.function}
    locations = {loc.id: loc for loc in p.location}
    assert len(functions) == len(p.function) and len(locations) == len(p.location)
    mappings = {m.id for m in p.mapping}
    for loc in p.location:
        assert loc.mapping_id in mappings
        assert [line.function_id in functions for line in loc.line] == [True]

    def frames(sample):
        return [st[functions[locations[i].line[0].function_id].name] for i in sample.location_id]

    tids = {t.name: t.tid for t in model.thread_tracks()}

    def thread(sample):
        labels = {st[label.key]: label for label in sample.label}
        assert set(labels) == {"thread", "tid"}
        name = st[labels["thread"].str]
        assert labels["tid"].num == tids[name]
        return name

    keys = [(tuple(s.location_id), thread(s)) for s in p.sample]
    assert len(keys) == len(set(keys))  # one sample per (stack, thread)

    # wall: the self time of every call on every thread
    selfs = self_times(model)
    wall = sum(s.value[0] for s in p.sample)
    assert wall == pytest.approx(sum(max(v, 0) for v in selfs.values()), rel=1e-6)
    # blocked: the self time of C calls that block (here: the sleeps, nothing under them)
    blocking = [s for s in thread_slices(model)
                if reason_of_slice(s.name, "c" if "c" in s.categories else "") is not None]
    blocked = sum(s.value[1] for s in p.sample)
    assert blocked == sum(selfs[id(s)] for s in blocking)
    sleeps = [s for s in blocking if s.name == "time.sleep"]
    assert len(sleeps) == 2
    assert sum(s.dur for s in sleeps) == sum(
        s.value[1] for s in p.sample if frames(s)[0] == "time.sleep")
    # the sleeps' stack, leaf first, on the sleeper thread
    (sleep,) = [s for s in p.sample if frames(s)[0] == "time.sleep"]
    assert thread(sleep) == "sleeper"
    assert frames(sleep)[:3] == ["time.sleep", "nap", "sleeper"]
    assert sleep.value[0] == sleep.value[1]
    nap_fn = [f for f in p.function if st[f.name] == "nap"]
    assert len(nap_fn) == 1
    assert st[nap_fn[0].filename] == __file__
    assert nap_fn[0].start_line == nap.__code__.co_firstlineno
    # inner() is called under outer() on both threads
    inner_threads = {thread(s) for s in p.sample if frames(s)[:2] == ["inner", "outer"]}
    assert inner_threads == {"MainThread", "sleeper"}


@pytest.mark.skipif(shutil.which("go") is None, reason="go tool pprof is not installed")
def test_go_tool_pprof_reads_it(traced, tmp_path):
    path, model = traced
    out = tmp_path / "trace.pb.gz"
    assert convert(path, "--to", "pprof", "-o", out) == 0

    def pprof(*args):
        result = subprocess.run(["go", "tool", "pprof", *args, str(out)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    top = pprof("-top", "-sample_index=blocked", "-unit=ns")
    assert "Type: blocked" in top
    assert any(line.split()[-1] == "time.sleep" for line in top.splitlines() if line.strip())
    traces = pprof("-traces", "-tagfocus=thread=sleeper", "-focus=^nap$")
    assert "thread:  sleeper" in traces and "time.sleep" in traces and "nap" in traces
    assert "MainThread" not in traces
    # names such as <module> stay whole (pprof would take them for C++ templates)
    raw = pprof("-raw")
    for name in {s.name for s in thread_slices(model)}:
        if name.startswith("<") and " " not in name:
            assert f" {name} " in raw, name


def test_pprof_to_a_stream(traced):
    path, _ = traced
    buf = io.BytesIO()
    export.to_pprof(exectrace.read(path), buf)
    assert gzip.decompress(buf.getvalue()) == export.build_pprof(exectrace.read(path))


def test_a_window_with_no_calls(tmp_path):
    path = tmp_path / "empty.out"
    with exectrace.tracing(path, c_calls=False, exclude=["exectrace", "contextlib"]):
        pass
    model = check_trace(str(path))
    assert convert(path, "--to", "chrome-json") == 0
    assert convert(path, "--to", "pprof") == 0
    with open(tmp_path / "empty.json") as f:
        assert len(x_events(json.load(f))) == len(model.slices)
    p = load_pprof(tmp_path / "empty.pb.gz")
    assert sum(s.value[0] for s in p.sample) == sum(
        max(v, 0) for v in self_times(model).values())


# ------------------------------------------------------------ the command


def test_default_output_names_and_console_script(traced, tmp_path):
    path, model = traced
    src = tmp_path / "executiontrace.2026-11-29T18_41_22.216.4242.out"
    shutil.copy(path, src)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    for to, name in (("chrome-json", "executiontrace.2026-11-29T18_41_22.216.4242.json"),
                     ("pprof", "executiontrace.2026-11-29T18_41_22.216.4242.pb.gz")):
        result = subprocess.run([sys.executable, "-m", "exectrace", "convert", str(src), "--to", to],
                                capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # not a terminal: no progress line
        assert (tmp_path / name).exists()
        assert f"wrote {tmp_path / name}" in result.stdout
        # as private as the trace
        assert (tmp_path / name).stat().st_mode & 0o777 == src.stat().st_mode & 0o777
    with open(tmp_path / "executiontrace.2026-11-29T18_41_22.216.4242.json") as f:
        assert len(x_events(json.load(f))) == len(model.slices)
    load_pprof(tmp_path / "executiontrace.2026-11-29T18_41_22.216.4242.pb.gz")


def test_existing_output_needs_force(traced, tmp_path, capsys):
    path, _ = traced
    out = tmp_path / "out.json"
    out.write_text("keep me")
    assert convert(path, "--to", "chrome-json", "-o", out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "--force" in err
    assert out.read_text() == "keep me"
    assert convert(path, "--to", "chrome-json", "-o", out, "--force") == 0
    json.loads(out.read_text())
    assert sorted(os.listdir(tmp_path)) == ["out.json"]  # no temporary file left


def test_missing_file(tmp_path, capsys):
    assert convert(tmp_path / "nope.out", "--to", "pprof") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.out" in err
    assert os.listdir(tmp_path) == []


def test_not_a_trace(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a trace\n" * 20)
    assert convert(bad, "--to", "chrome-json") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a Perfetto trace" in err
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_unknown_format_is_a_usage_error(traced, capsys):
    path, _ = traced
    with pytest.raises(SystemExit) as exit_:
        convert(path, "--to", "svg")
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_output_is_a_directory_or_the_input(traced, tmp_path, capsys):
    path, _ = traced
    assert convert(path, "--to", "pprof", "-o", tmp_path) == 1
    assert "directory" in capsys.readouterr().err
    assert convert(path, "--to", "pprof", "-o", path, "--force") == 1
    assert "input" in capsys.readouterr().err
    assert convert(path, "--to", "pprof", "-o", tmp_path / "no" / "such" / "dir.pb.gz") == 1
    assert "does not exist" in capsys.readouterr().err


def test_truncated_trace_converts_what_is_readable(tmp_path, capsys):
    path = tmp_path / "whole.out"
    with exectrace.tracing(path):
        for _ in range(20000):
            outer()
    data = path.read_bytes()
    cut = tmp_path / "cut.out"
    cut.write_bytes(data[: len(data) * 7 // 10])
    trace = exectrace.read(cut, allow_damaged=True)
    assert trace.damage and 0 < trace.slice_count < exectrace.read(path).slice_count

    assert convert(cut, "--to", "chrome-json") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "damaged" in err
    with open(tmp_path / "cut.json") as f:
        doc = json.load(f)
    assert len(x_events(doc)) == trace.slice_count
    assert doc["metadata"]["exectrace.damage"] == trace.damage

    assert convert(cut, "--to", "pprof") == 0
    assert "warning" in capsys.readouterr().err
    p = load_pprof(tmp_path / "cut.pb.gz")
    assert sum(s.value[0] for s in p.sample) > 0


# ------------------------------------------------------------------ progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_only_on_a_terminal(traced, monkeypatch, terminal):
    path, _ = traced
    trace = exectrace.read(path)
    monkeypatch.setattr(export, "PROGRESS_MIN_SLICES", 1)
    monkeypatch.setattr(export, "_CHUNK", 16)
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    export.to_chrome_json(trace, io.StringIO())
    export.to_pprof(trace, io.BytesIO())
    if terminal:
        assert "%" in err.getvalue() and "\r" in err.getvalue()
        assert err.getvalue().endswith("\r")  # the line is wiped when done
    else:
        assert err.getvalue() == ""
