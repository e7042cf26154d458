"""Real servers traced through the autostart hook: gunicorn (sync, gthread,
prefork with 4 workers, --preload) and uvicorn (one and several workers)
serving Flask, FastAPI, Starlette and Django apps wrapped in
exectrace.middleware, driven with real HTTP over 127.0.0.1.

Each server runs with one long window (interval and duration 1h), so every
request falls in a window; stopping the server (SIGTERM) writes each
process's window into its own pid-named file."""

from __future__ import annotations

import collections
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import exectrace
from perfetto_check import check_trace
from servers import (
    booted_workers,
    file_pid,
    free_port,
    gunicorn,
    require,
    serve,
    server_env,
    trace_files,
    uvicorn,
    write_apps,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="gunicorn and fork are POSIX")

ONE_WINDOW = {"interval": "1h", "duration": "1h", "buffer_size": "32MiB"}


def read_tasks(dump: Path) -> dict[int, list[exectrace.Span]]:
    """pid -> the task spans of that pid's file; checks every file (one per
    pid, valid Perfetto, written by the pid its name says)."""
    files = trace_files(dump)
    assert files, f"no trace files in {dump}"
    by_pid: dict[int, list[exectrace.Span]] = {}
    for path in files:
        check_trace(str(path))
        trace = exectrace.read(path)
        pid = file_pid(path)
        assert trace.metadata["process.pid"] == pid, path.name
        assert pid not in by_pid, f"two files for pid {pid}: one long window each was expected"
        by_pid[pid] = [s for s in trace.spans() if s.category == "task"]
    return by_pid


def all_traced(server, n: int) -> bool:
    """Each of the n responses since wait_until_traced() was handled in a window."""
    return len(server.traced) == n and all(traced for _pid, traced in server.traced)


def finished(span: exectrace.Span) -> bool:
    return "unfinished" not in span.args and "began_before_window" not in span.args


def test_gunicorn_prefork_4_workers_each_writes_its_own_requests(tmp_path):
    require("gunicorn", "flask")
    write_apps(tmp_path)
    dump = tmp_path / "dump"
    port = free_port()
    n = 40
    with serve(gunicorn("flaskapp:app", port, "-w", "4", "-k", "sync"), tmp_path,
               server_env(tmp_path, dump_dir=str(dump), **ONE_WINDOW), port=port) as server:
        server.wait_until_traced()
        with ThreadPoolExecutor(8) as pool:  # concurrent clients spread the requests over the workers
            results = list(pool.map(lambda i: server.request(f"/users/{i}"), range(n)))
        stream = server.request("/stream")
        master = server.process.pid
    assert all(status == 200 for status, _body, _pid in results)
    assert stream[0] == 200 and stream[1].count("chunk") == 5
    workers = booted_workers(server.log_text())
    assert len(workers) == 4, server.log_text()
    by_pid = read_tasks(dump)
    assert set(by_pid) == set(workers) | {master}, "one file per worker and one for the master, no other"
    assert by_pid[master] == [], "the master serves no request"
    served = collections.Counter(pid for _status, _body, pid in results)
    assert all_traced(server, n + 1)
    for pid in workers:  # each worker's file holds exactly the requests that worker answered
        users = [s for s in by_pid[pid] if s.name == "GET /users/<int:user_id>"]
        assert len(users) == served[pid], (pid, served)
        assert all(finished(s) and s.args["status"] == 200 and s.args["duration_ms"] > 0 for s in users)
    assert sum(served.values()) == n
    streams = [s for spans in by_pid.values() for s in spans if s.name == "GET /stream"]
    assert len(streams) == 1 and streams[0].args["status"] == 200
    # the task ends when the body has been sent: 5 chunks 20 ms apart
    assert streams[0].args["duration_ms"] >= 90 and streams[0].dur_ns >= 90e6


def test_gunicorn_gthread_preload_regions_on_handling_threads_and_slow_requests(tmp_path):
    require("gunicorn", "flask")
    write_apps(tmp_path)
    dump = tmp_path / "dump"
    port = free_port()
    env = server_env(tmp_path, dump_dir=str(dump), slow_request="200ms", **ONE_WINDOW)
    with serve(gunicorn("flaskapp:app", port, "-w", "2", "-k", "gthread", "--threads", "4", "--preload"),
               tmp_path, env, port=port) as server:
        server.wait_until_traced()
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda i: server.request(f"/users/{i}"), range(30)))
        slow = server.request("/slow")
        master = server.process.pid
    assert all(r[0] == 200 for r in results) and slow[0] == 200
    assert all_traced(server, 31)
    workers = booted_workers(server.log_text())
    by_pid = read_tasks(dump)
    assert set(by_pid) == set(workers) | {master} and len(workers) == 2
    users = [s for pid in workers for s in by_pid[pid] if s.name == "GET /users/<int:user_id>"]
    assert len(users) == 30 and all(finished(s) and s.args["status"] == 200 for s in users)
    # each request's region is on the thread that handled it, inside its task
    served_by = collections.Counter(pid for _s, _b, pid in results)
    slow_pid = slow[2]
    for pid in workers:
        trace = exectrace.read(next(p for p in trace_files(dump) if file_pid(p) == pid))
        regions = [s for s in trace.slices() if s.category == "region" and s.name == "GET /users/<int:user_id>"]
        assert len(regions) == served_by[pid]
        assert all(r.thread.startswith("ThreadPoolExecutor") for r in regions), {r.thread for r in regions}
        inner = [s for s in trace.slices() if s.category == "region" and s.name == "load user"]
        assert len(inner) == served_by[pid]
        slow_logs = [log for log in trace.logs() if log.category == "slow request"]
        if pid == slow_pid:
            assert len(slow_logs) == 1 and slow_logs[0].name.startswith("GET /slow took ")
            assert "status 200" in slow_logs[0].name
        else:
            assert slow_logs == [], "only /slow took 200 ms or more"


def test_django_under_gunicorn_via_exectrace_run(tmp_path):
    """The README recipe: exectrace run --interval ... -- gunicorn app."""
    require("gunicorn", "django")
    write_apps(tmp_path)
    dump = tmp_path / "dump"
    port = free_port()
    env = server_env(tmp_path)
    argv = [sys.executable, "-m", "exectrace", "run", "--interval", "1h", "--duration", "1h",
            "--dump-dir", str(dump), "--", *gunicorn("djangoapp:application", port, "-w", "1")]
    with serve(argv, tmp_path, env, port=port) as server:
        server.wait_until_traced()
        results = [server.request(f"/articles/{2000 + i}/post-{i}/") for i in range(12)]
        missing = server.request("/nothing/here/42")
    assert all(r[0] == 200 for r in results) and missing[0] == 404
    assert all_traced(server, 12)
    spans = [s for spans in read_tasks(dump).values() for s in spans]
    articles = [s for s in spans if s.name == "GET /articles/<int:year>/<slug:slug>/"]
    assert len(articles) == 12 and all(finished(s) and s.args["status"] == 200 for s in articles)
    unrouted = [s for s in spans if s.args.get("status") == 404]
    assert [s.name for s in unrouted] == ["GET /nothing/here/{id}"]  # no route: ids collapsed


def test_uvicorn_fastapi_one_worker(tmp_path):
    require("uvicorn", "fastapi")
    write_apps(tmp_path)
    dump = tmp_path / "dump"
    port = free_port()
    env = server_env(tmp_path, dump_dir=str(dump), slow_request="200ms", **ONE_WINDOW)
    with serve(uvicorn("fastapiapp:app", port), tmp_path, env, port=port) as server:
        server.wait_until_traced()
        results = [server.request(f"/items/{i}") for i in range(25)]
        stream = server.request("/stream")
        slow = server.request("/slow")
        pid = server.process.pid
    assert all(r[0] == 200 and r[2] == pid for r in results)
    assert stream[0] == 200 and slow[0] == 200
    assert all_traced(server, 27)
    by_pid = read_tasks(dump)
    assert set(by_pid) == {pid}
    spans = by_pid[pid]
    items = [s for s in spans if s.name == "GET /items/{item_id}"]
    assert len(items) == 25 and all(finished(s) and s.args["status"] == 200 for s in items)
    streams = [s for s in spans if s.name == "GET /stream"]
    assert len(streams) == 1 and streams[0].args["duration_ms"] >= 90
    trace = exectrace.read(trace_files(dump)[0])
    slow_logs = [log for log in trace.logs() if log.category == "slow request"]
    assert [log.name.split(" took ")[0] for log in slow_logs] == ["GET /slow"]
    # the request's region is on the task's track, on the event loop's thread
    regions = [s for s in trace.spans() if s.category == "region" and s.name == "GET /items/{item_id}"]
    assert len(regions) == 25 and all(r.args["thread"] == "MainThread" for r in regions)


def test_uvicorn_several_workers_starlette_mount(tmp_path):
    require("uvicorn", "starlette")
    write_apps(tmp_path)
    dump = tmp_path / "dump"
    port = free_port()
    env = server_env(tmp_path, dump_dir=str(dump), **ONE_WINDOW)
    n = 30
    with serve(uvicorn("starletteapp:app", port, "--workers", "2"), tmp_path, env, port=port) as server:
        server.wait_until_traced()
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda i: server.request(f"/shop/orders/{i}"), range(n)))
        supervisor = server.process.pid
    assert all(r[0] == 200 for r in results)
    assert all_traced(server, n)
    served = collections.Counter(pid for _s, _b, pid in results)
    by_pid = read_tasks(dump)
    workers = [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", server.log_text())]
    assert len(workers) == 2 and supervisor not in workers, server.log_text()
    # one file per worker, the supervisor's, and those of multiprocessing's helper (resource tracker)
    assert set(served) <= set(workers) <= set(by_pid) and supervisor in by_pid
    total = 0
    for pid, spans in by_pid.items():
        orders = [s for s in spans if s.name == "GET /shop/orders/{order_id}"]
        assert len(orders) == served.get(pid, 0), (pid, served)
        assert all(finished(s) and s.args["status"] == 200 for s in orders)
        total += len(orders)
    assert total == n


def test_slow_request_snapshot_names_the_route(tmp_path):
    require("gunicorn", "flask")
    write_apps(tmp_path)
    dump = tmp_path / "dump"
    port = free_port()
    env = server_env(tmp_path, dump_dir=str(dump), slow_request="200ms", flight_recorder="30s",
                     **ONE_WINDOW)
    with serve(gunicorn("flaskapp:app", port, "-w", "1"), tmp_path, env, port=port) as server:
        server.wait_until_traced()
        assert server.request("/slow")[0] == 200
        assert server.request("/users/1")[0] == 200
    reasons = []
    for path in trace_files(dump):
        trace = exectrace.read(path)
        reasons += [str(v) for v in trace.metadata.values.values() if "slow request" in str(v)]
        reasons += [e.name for e in trace.instants() if "slow request" in e.name]
    assert any("GET /slow" in reason for reason in reasons), reasons
