"""Shipping to object storage and reading the fleet back, against a real
S3-compatible server: moto's standalone server in a subprocess, over HTTP,
with SigV4 signatures checked (IAM enforced), and for the faults a loopback
proxy of ours in front of it (tests/s3server.py).

Every CLI command runs as `python -m exectrace ...` in a subprocess; the
sidecars are real `exectrace ship` processes. "Exactly once" is read from the
server: the buckets have versioning on, so every PUT that reached the store
is one version of its key."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")
pytest.importorskip("duckdb", reason="the s3 extra (duckdb) is not installed")
moto = pytest.importorskip("moto.server", reason="moto[server] is not installed")
if tuple(int(x) for x in __import__("moto").__version__.split(".")[:2]) < (5, 2):
    pytest.skip("moto < 5.2 rejects valid SigV4 signatures of some listings", allow_module_level=True)

from exectrace import dumpstore  # noqa: E402
from exectrace.analysis import summarize  # noqa: E402
from exectrace.fleet import index, layout  # noqa: E402
from exectrace.reader import read, read_metadata  # noqa: E402
from perfetto_check import check_trace  # noqa: E402
from s3server import FaultProxy, MotoServer  # noqa: E402

pytestmark = pytest.mark.timeout(600)

HOSTS = ("web-1", "web-2", "db-1")
PREFIX = "fleet"

WORKLOAD = textwrap.dedent("""
    import asyncio, threading, time
    import exectrace

    lock = threading.Lock()
    END = time.monotonic() + float(__import__("sys").argv[1])

    def worker():
        while time.monotonic() < END:
            with exectrace.region("checkout"):
                with lock:
                    time.sleep(0.002)
            time.sleep(0.001)

    async def fetcher(n):
        while time.monotonic() < END:
            await asyncio.sleep(0.003 * n)

    async def main():
        await asyncio.gather(*(asyncio.create_task(fetcher(n), name=f"fetcher-{n}") for n in (1, 2)))

    threads = [threading.Thread(target=worker, name=f"worker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    asyncio.run(main())
    for t in threads:
        t.join()
""")


@pytest.fixture(scope="module")
def server():
    s = MotoServer().start()
    yield s
    s.stop()


def cli(*args: object, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exectrace", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def start_sidecar(dump: Path, bucket: str, host: str, env: dict[str, str], state: Path,
                  *extra: str) -> subprocess.Popen[str]:
    # --max-backoff 1s: the default (1m) would make the tests wait after an outage
    return subprocess.Popen(
        [sys.executable, "-m", "exectrace", "ship", str(dump), "--to", f"s3://{bucket}/{PREFIX}",
         "--host", host, "--poll", "100ms", "--max-backoff", "1s", "--state", str(state), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def stop_sidecar(proc: subprocess.Popen[str]) -> tuple[str, str]:
    assert proc.poll() is None, f"the sidecar exited ({proc.returncode}): {proc.communicate()}"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in err, err
    return out, err


def trace_files(dump: Path) -> list[Path]:
    return [Path(f.path) for f in dumpstore.owned_files(str(dump))]


def wait_shipped(server: MotoServer, bucket: str, want: set[str], timeout: float = 120) -> set[str]:
    """Waits until the bucket holds every key of `want`; returns the keys held."""
    deadline = time.monotonic() + timeout
    c = server.client()
    while True:
        keys = set()
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX + "/"):
            keys.update(o["Key"] for o in page.get("Contents", []))
        if want <= keys or time.monotonic() > deadline:
            return keys
        time.sleep(0.2)


def key_of(host: str, path: Path) -> str:
    return layout.trace_key(layout.S3Url("x", PREFIX), host, path.name)


def blocking_aggregate(paths: list[Path]) -> dict[tuple[str, str, str], dict[str, int]]:
    """fleet top --by blocking, computed from the trace files themselves."""
    agg: dict[tuple[str, str, str], dict[str, int]] = {}
    for p in paths:
        for b in summarize(read(str(p), allow_damaged=True), top=index.ALL)["blocking"]:
            a = agg.setdefault((b["reason"], b["caller"], b["function"]), {"count": 0, "total_ns": 0, "max_ns": 0})
            a["count"] += b["count"]
            a["total_ns"] += round(b["total_s"] * 1e9)
            a["max_ns"] = max(a["max_ns"], round(b["max_s"] * 1e9))
    return agg


@pytest.fixture(scope="module")
def fleet(server, tmp_path_factory):
    """3 hosts, each a traced process writing into its own dump dir and a
    `ship` sidecar shipping it; returns what the tests check."""
    root = tmp_path_factory.mktemp("fleet")
    bucket = "fleet-traces"
    server.make_bucket(bucket)
    env = server.env(XDG_CACHE_HOME=str(root / "cache"))
    script = root / "workload.py"
    script.write_text(WORKLOAD)
    dumps = {h: root / h / "dump" for h in HOSTS}
    sidecars = {h: start_sidecar(dumps[h], bucket, h, env, root / h / "state.json") for h in HOSTS}
    traced = [subprocess.Popen(
        [sys.executable, "-m", "exectrace", "run", "--interval", "400ms", "--duration", "150ms",
         "--host", h, "--dump-dir", str(dumps[h]), str(script), "2.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for h in HOSTS]
    for p in traced:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    files = {h: trace_files(dumps[h]) for h in HOSTS}
    want = {key_of(h, p) for h in HOSTS for p in files[h]}
    held = wait_shipped(server, bucket, want)
    reports = {h: stop_sidecar(sidecars[h]) for h in HOSTS}
    assert want <= held, sorted(want - held)
    return {"bucket": bucket, "env": env, "files": files, "reports": reports, "root": root}


def test_every_file_is_shipped_once_with_its_metadata(server, fleet):
    bucket, files = fleet["bucket"], fleet["files"]
    c = server.client()
    versions = server.versions(bucket)
    for host in HOSTS:
        assert len(files[host]) >= 3, files[host]
        out, err = fleet["reports"][host]
        assert f"{len(files[host])} file(s)" in err and "0 deleted by GC" in err, err
        for path in files[host]:
            check_trace(str(path))
            meta = read_metadata(str(path)).values
            assert meta["process.host"] == host  # the host setting names the host in the file too
            key = key_of(host, path)
            assert versions[key] == 1, (key, versions[key])
            got = c.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == path.read_bytes()
            m = got["Metadata"]
            assert m["host"] == host and m["pid"] == str(meta["process.pid"])
            assert m["bytes"] == str(path.stat().st_size)
            assert m["python-version"] == meta["python.version"]
            assert m["exectrace-version"] == meta["exectrace.version"]
            assert m["window-start"] == meta["window.start"] and m["window-end"] == meta["window.end"]
            assert m["records-kept"] == str(meta["records.kept"])
            assert m["records-lost"] == str(meta["records.lost"])
            assert m["mode"] == meta["recorder.mode"] == "events"  # the automatic tracer's default
            assert m["reason"] == meta["window.closed_by"]
            index_key = layout.index_key(layout.S3Url(bucket, PREFIX), host, path.name)
            assert versions[index_key] == 1, index_key
            for k, tag in ((key, "trace"), (index_key, "index")):  # for lifecycle rules
                assert c.get_object_tagging(Bucket=bucket, Key=k)["TagSet"] == [{"Key": "exectrace", "Value": tag}]
    trace_keys = {k for k in versions if not k.startswith(PREFIX + "/_index/")}
    assert trace_keys == {key_of(h, p) for h in HOSTS for p in files[h]}


def test_ls_lists_by_host_and_time(fleet):
    env, files, bucket = fleet["env"], fleet["files"], fleet["bucket"]
    rows = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", env=env)).stdout)
    # by end time (the name's), then host
    want = sorted((p.name[15:38], h, p.name) for h in HOSTS for p in files[h])
    assert [(r["end_time"][:23].replace(":", "_"), r["host"], r["name"]) for r in rows] == want
    for r in rows:
        path = next(p for p in files[r["host"]] if p.name == r["name"])
        meta = read_metadata(str(path)).values
        assert r["size"] == path.stat().st_size and r["pid"] == meta["process.pid"]
        assert r["records_kept"] == meta["records.kept"] and r["window_duration_ns"] == meta["window.duration_ns"]
        assert r["url"] == f"s3://{bucket}/{key_of(r['host'], path)}"
    only = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", "--host", "web-*", env=env)).stdout)
    assert sorted(r["name"] for r in only) == sorted(p.name for h in ("web-1", "web-2") for p in files[h])
    recent = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", "--since", "1h", env=env)).stdout)
    assert len(recent) == len(rows)
    middle = rows[len(rows) // 2]["end_time"]
    later = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", "--since", middle, env=env)).stdout)
    earlier = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", "--until", middle, env=env)).stdout)
    assert all(r["end_time"] >= middle for r in later) and all(r["end_time"] <= middle for r in earlier)
    assert {r["name"] for r in later} | {r["name"] for r in earlier} == {r["name"] for r in rows}
    assert not json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", "--since", "2099-01-01",
                                 env=env)).stdout)
    text = ok(cli("ls", f"s3://{bucket}/{PREFIX}", env=env)).stdout
    assert f"{len(rows)} files" in text and "from 3 hosts: db-1, web-1, web-2" in text
    listing = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", "--no-read", env=env)).stdout)
    assert [(r["name"], r["size"]) for r in listing] == [(r["name"], r["size"]) for r in rows]
    assert all("records_kept" not in r for r in listing)  # the listing alone, no HEAD


def test_summary_of_a_shipped_file_equals_the_local_summary(fleet):
    env, files, bucket = fleet["env"], fleet["files"], fleet["bucket"]
    path = files["web-2"][len(files["web-2"]) // 2]
    url = f"s3://{bucket}/{key_of('web-2', path)}"
    remote = json.loads(ok(cli("summary", url, "--json", env=env)).stdout)
    local = json.loads(ok(cli("summary", path, "--json", env=env)).stdout)
    assert remote.pop("file") == url and local.pop("file") == str(path)
    assert remote == local
    assert remote["blocking"] and remote["regions"][0]["name"] == "checkout"
    cached = list((fleet["root"] / "cache" / "exectrace" / "s3").rglob(path.name))
    assert len(cached) == 1 and cached[0].read_bytes() == path.read_bytes()
    text = ok(cli("summary", url, env=env)).stdout
    assert text.startswith(f"trace    {url}\n")


def test_fleet_summary_of_a_selection_equals_the_local_multi_file_summary(fleet):
    """summary s3://BUCKET/PREFIX --host GLOB: every window shipped by those
    hosts, downloaded in parallel, aggregated as the same files are locally."""
    env, files, bucket = fleet["env"], fleet["files"], fleet["bucket"]
    remote = json.loads(ok(cli("summary", f"s3://{bucket}/{PREFIX}", "--host", "web-[12]", "--json",
                               "-j", "2", env=env)).stdout)
    local_files = sorted(str(p) for h in ("web-1", "web-2") for p in files[h])
    local = json.loads(ok(cli("summary", *local_files, "--json", "-j", "2", env=env)).stdout)

    def without_paths(doc):
        return {k: v for k, v in doc.items() if k not in ("file", "files", "unreadable")}

    assert remote.get("files", len(local_files)) == local.get("files", len(local_files))
    assert without_paths(remote) == without_paths(local)
    one_line_error(cli("summary", f"s3://{bucket}/{PREFIX}", "--host", "no-such-*", env=env), "no trace files shipped")


def test_debug_zip_from_the_store_holds_every_host(fleet, tmp_path):
    env, files, bucket = fleet["env"], fleet["files"], fleet["bucket"]
    out = tmp_path / "fleet.zip"
    result = ok(cli("debug-zip", out, "--from", f"s3://{bucket}/{PREFIX}", "--since", "2h", env=env))
    assert "for 3 hosts" in result.stdout
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        for h in HOSTS:
            for p in files[h]:
                assert zf.read(f"nodes/{h}/executiontrace/{p.name}") == p.read_bytes()
            assert f"nodes/{h}/objects.json" in names
        assert "versions.json" in names
        traces = [n for n in names if n.endswith(".out")]
        assert len(traces) == sum(len(v) for v in files.values())


def test_fleet_top_by_blocking_equals_the_files_own_aggregate(fleet):
    env, files, bucket = fleet["env"], fleet["files"], fleet["bucket"]
    for selection, hosts in (((), HOSTS), (("--host", "web-[12]"), ("web-1", "web-2"))):
        result = json.loads(ok(cli("fleet", "top", f"s3://{bucket}/{PREFIX}", "--by", "blocking", "--since", "1h",
                                   "--top", "100000", "--json", *selection, env=env)).stdout)
        paths = [p for h in hosts for p in files[h]]
        want = blocking_aggregate(paths)
        got = {(r["blocking"], r["caller"], r["name"]): {"count": r["count"], "total_ns": r["total_ns"],
                                                         "max_ns": r["max_ns"]} for r in result["rows"]}
        assert got == want
        assert any(k[0] == "lock" for k in got) and any(k[0] == "sleep" for k in got)
        assert result["windows"] == len(paths) and result["hosts"] == sorted(hosts)
        totals = [r["total_ns"] for r in result["rows"]]
        assert totals == sorted(totals, reverse=True)


def test_fleet_top_by_function_and_region(fleet):
    env, files, bucket = fleet["env"], fleet["files"], fleet["bucket"]
    paths = [p for h in HOSTS for p in files[h]]
    regions: dict[str, int] = defaultdict(int)
    selfs: dict[tuple[str, str, int], int] = defaultdict(int)
    for p in paths:
        s = summarize(read(str(p), allow_damaged=True), top=index.ALL)
        for r in s["regions"]:
            regions[r["name"]] += r["count"]
        for f in s["functions"]["by_inclusive"]:
            selfs[(f["name"], f["file"], f["line"])] += round(f["self_s"] * 1e9)
    result = json.loads(ok(cli("fleet", "top", f"s3://{bucket}/{PREFIX}", "--by", "region", "--json", env=env)).stdout)
    assert {r["name"]: r["count"] for r in result["rows"]} == dict(regions)
    result = json.loads(ok(cli("fleet", "top", f"s3://{bucket}/{PREFIX}", "--by", "function", "--top", "5",
                               "--json", env=env)).stdout)
    want = sorted(selfs.items(), key=lambda kv: -kv[1])[:5]
    assert [r["self_ns"] for r in result["rows"]] == [v for _, v in want]
    text = ok(cli("fleet", "top", f"s3://{bucket}/{PREFIX}", "--by", "blocking", env=env)).stdout
    assert "from 3 host(s)" in text and "blocking (caller -> function)" in text


# -- faults


def _copies(src: Path, dump: Path, n: int, start_ms: int = 0) -> list[Path]:
    """n trace files in `dump`, each a copy of `src` under its own name."""
    dump.mkdir(parents=True, exist_ok=True)
    out = []
    base = 1_796_000_000_000_000_000
    for i in range(n):
        name = dumpstore.file_name(base + (start_ms + i) * 1_000_000_000, 4242)
        p = dump / name
        shutil.copyfile(src, p)
        out.append(p)
    return out


@pytest.fixture(scope="module")
def sample_trace(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    script = root / "w.py"
    script.write_text(WORKLOAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    subprocess.run([sys.executable, "-m", "exectrace", "run", "--interval", "1s", "--duration", "300ms",
                    "--dump-dir", str(root / "dump"), str(script), "0.5"], env=env, check=True, timeout=120,
                   capture_output=True)
    path = trace_files(root / "dump")[0]
    check_trace(str(path))
    return path


def test_faults_nothing_lost_nothing_twice_sidecar_never_exits(server, tmp_path):
    """Started with the store unreachable; then a 5xx burst, slow answers,
    answers lost after the store stored the object, and the endpoint stopped
    in the middle of uploads and started again; new files keep coming."""
    bucket = "faults"
    server.make_bucket(bucket)
    proxy = FaultProxy(server.port)  # not started: the store is unreachable
    env = server.env(endpoint=proxy.url)
    dump = tmp_path / "dump"
    work = tmp_path / "traced"
    script = tmp_path / "w.py"
    script.write_text(WORKLOAD)
    sidecar = start_sidecar(dump, bucket, "web-9", env, tmp_path / "state.json")
    traced = subprocess.Popen(
        [sys.executable, "-m", "exectrace", "run", "--interval", "300ms", "--duration", "100ms",
         "--dump-dir", str(dump), str(script), "6"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    work.mkdir()
    time.sleep(1.5)
    assert sidecar.poll() is None
    proxy.fail(12, 503)      # a burst of 5xx as soon as it is reachable
    proxy.start()
    time.sleep(1.5)
    proxy.fail(6, 500)
    proxy.delay = 0.25       # slow answers
    time.sleep(1.5)
    proxy.lose_answers(2, "PUT", ".out")   # stored, but the answer is lost
    time.sleep(1.5)
    proxy.delay = 1.0        # uploads in flight when the endpoint goes away
    time.sleep(0.5)
    proxy.stop()
    time.sleep(2.0)
    assert sidecar.poll() is None
    proxy.delay = 0.0
    proxy.start()
    traced.communicate(timeout=120)
    assert traced.returncode == 0
    files = trace_files(dump)
    want = {key_of("web-9", p) for p in files}
    held = wait_shipped(server, bucket, want)
    out, err = stop_sidecar(sidecar)
    proxy.stop()
    assert want <= held, sorted(want - held)
    versions = server.versions(bucket)
    for p in files:
        check_trace(str(p))
        assert versions[key_of("web-9", p)] == 1, (p.name, versions[key_of("web-9", p)])
        body = server.client().get_object(Bucket=bucket, Key=key_of("web-9", p))["Body"].read()
        assert body == p.read_bytes()
    assert {k for k in versions if "/_index/" not in k} == want
    statuses = [s for _, _, s in proxy.log]
    assert 503 in statuses and 500 in statuses and -1 in statuses  # the faults happened
    lost = [path for m, path, s in proxy.log if m == "PUT" and s == -1]
    assert len(lost) == 2 and all(path.endswith(".out") for path in lost), lost
    for path in lost:  # a PUT whose answer was lost was not sent again
        assert proxy.puts()[path] == 1, path
    # warned, rate-limited (at most one a minute per kind), and it went on
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert warnings, err
    kinds = defaultdict(int)
    for line in warnings:
        kinds["unreachable" if "unreachable" in line else "server" if "server error" in line else line] += 1
    assert kinds["unreachable"] <= 1 and kinds["server"] <= 1, warnings
    assert "0 deleted by GC" in err


def test_restart_resumes_without_sending_twice(server, sample_trace, tmp_path):
    """A sidecar killed (SIGKILL) in the middle of its uploads, then started
    again with its state file; then again without the state file."""
    bucket = "restart"
    server.make_bucket(bucket)
    proxy = FaultProxy(server.port).start()
    proxy.delay = 0.3
    env = server.env(endpoint=proxy.url)
    dump = tmp_path / "dump"
    files = _copies(sample_trace, dump, 8)
    state = tmp_path / "state.json"
    first = start_sidecar(dump, bucket, "web-5", env, state)
    deadline = time.monotonic() + 60
    while not server.versions(bucket) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.4)
    first.kill()
    first.communicate()
    shipped_before = {k for k in server.versions(bucket) if "/_index/" not in k}
    assert 0 < len(shipped_before) < len(files)
    proxy.delay = 0.0
    ok(cli("ship", dump, "--to", f"s3://{bucket}/{PREFIX}", "--host", "web-5", "--state", state, "--once",
           env=env))
    versions = server.versions(bucket)
    assert {k for k in versions if "/_index/" not in k} == {key_of("web-5", p) for p in files}
    assert all(n == 1 for k, n in versions.items() if "/_index/" not in k), versions
    # no state file at all: every file is found by HEAD, none is sent
    state.unlink()
    puts_before = sum(proxy.puts().values())
    result = ok(cli("ship", dump, "--to", f"s3://{bucket}/{PREFIX}", "--host", "web-5", "--state", state,
                    "--once", env=env))
    assert f"{len(files)} found already shipped" in result.stderr
    assert sum(proxy.puts().values()) == puts_before
    assert server.versions(bucket) == versions
    proxy.stop()
    assert all(p.exists() for p in files)  # never deleted or modified locally
    assert all(p.read_bytes() == sample_trace.read_bytes() for p in files)


def test_files_gc_deletes_before_shipping_are_counted(server, sample_trace, tmp_path):
    bucket = "gc-first"
    server.make_bucket(bucket)
    proxy = FaultProxy(server.port)  # down
    env = server.env(endpoint=proxy.url)
    dump = tmp_path / "dump"
    files = _copies(sample_trace, dump, 5)
    state = tmp_path / "state.json"
    sidecar = start_sidecar(dump, bucket, "web-6", env, state)
    time.sleep(1.5)  # it has seen them, and cannot ship them
    files[0].unlink()    # what the dump store's GC does
    files[2].unlink()
    time.sleep(0.5)
    proxy.start()
    left = [files[1], files[3], files[4]]
    wait_shipped(server, bucket, {key_of("web-6", p) for p in left})
    out, err = stop_sidecar(sidecar)
    proxy.stop()
    assert "3 file(s)" in err and "2 deleted by GC before they could be shipped" in err, err
    assert "deleted by the dump dir's GC" in err
    assert {k for k in server.versions(bucket) if "/_index/" not in k} == {key_of("web-6", p) for p in left}
    doc = json.loads(state.read_text())
    assert doc["totals"]["gone"] == 2 and sorted(doc["totals"]["gone_names"]) == sorted(
        [files[0].name, files[2].name])


def test_wrong_credentials_fail_clearly_without_the_secret(server, tmp_path, sample_trace):
    bucket = "creds"
    server.make_bucket(bucket)
    dump = tmp_path / "dump"
    _copies(sample_trace, dump, 1)
    wrong_secret = "Wr0ngSecretWr0ngSecretWr0ngSecret12345678"
    cases = {
        "SignatureDoesNotMatch": server.env(AWS_SECRET_ACCESS_KEY=wrong_secret),
        "InvalidAccessKeyId": server.env(AWS_ACCESS_KEY_ID="AKIAUNKNOWNUNKNOWN00", AWS_SECRET_ACCESS_KEY=wrong_secret),
    }
    for code, env in cases.items():
        for args in (("ship", dump, "--to", f"s3://{bucket}/{PREFIX}", "--state", tmp_path / "s.json"),
                     ("ls", f"s3://{bucket}/{PREFIX}"),
                     ("fleet", "top", f"s3://{bucket}/{PREFIX}", "--since", "1h"),
                     ("debug-zip", tmp_path / "z.zip", "--from", f"s3://{bucket}/{PREFIX}")):
            result = cli(*args, env=env)
            line = one_line_error(result, code)
            assert wrong_secret not in result.stderr + result.stdout
            assert server.secret not in result.stderr + result.stdout
            assert line.startswith(f"exectrace {args[0]}")
    assert not server.versions(bucket)
    no_creds = server.env()
    del no_creds["AWS_ACCESS_KEY_ID"], no_creds["AWS_SECRET_ACCESS_KEY"]
    no_creds["AWS_SHARED_CREDENTIALS_FILE"] = no_creds["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    one_line_error(cli("ls", f"s3://{bucket}/{PREFIX}", env=no_creds), "no usable AWS credentials")
    one_line_error(cli("ls", f"s3://no-such-bucket/{PREFIX}", env=server.env()), "no such bucket")


def test_bad_arguments_are_one_line_errors(server, tmp_path):
    env = server.env()
    one_line_error(cli("ship", tmp_path, "--to", "http://bucket/x", env=env), "not an s3:// URL", "s3://my-traces/prod")
    one_line_error(cli("ship", tmp_path, "--to", "s3://B_ad/x", env=env), "not a bucket name")
    one_line_error(cli("ship", tmp_path, "--to", "s3://traces/a/../b", env=env), "'..'")
    one_line_error(cli("ship", tmp_path, "--to", "s3://traces/x", "--poll", "soon", env=env), "--poll")
    one_line_error(cli("ls", "s3://traces/x", "--since", "banana", env=env), "invalid --since", "1h")
    one_line_error(cli("ls", tmp_path, "--since", "1h", env=env), "s3://")
    one_line_error(cli("summary", "s3://traces/x/notes.out", env=env), "does not name a trace file")
    one_line_error(cli("summary", "s3://traces/x/notes.txt", env=env), "no such bucket")  # a prefix
    one_line_error(cli("summary", "s3://no-such-bucket/h/2026-11-30/executiontrace.2026-11-30T18_41_22.216.4242.out",
                       env=env), "no such")
    one_line_error(cli("ls", "s3://traces/x", "--endpoint-url", "ftp://x", env=env), "--endpoint-url")
    result = cli("ship", tmp_path, "--to", "s3://traces/x", "--host", "../etc", env=env)
    assert result.returncode == 2 and "web-1" in result.stderr and "Traceback" not in result.stderr
    result = cli("fleet", "top", "s3://traces/x", "--by", "nonsense", env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_run_ship_starts_a_sidecar_and_the_traced_process_loads_no_s3_client(server, tmp_path):
    bucket = "run-ship"
    server.make_bucket(bucket)
    env = server.env()
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            time.sleep(0.01)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer", "duckdb"))
        print("loaded:", loaded, "fleet:", [m for m in sys.modules if m.startswith("exectrace.fleet.")])
    """))
    dump = tmp_path / "dump"
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # the sidecar's default state file
    result = ok(cli("run", "--ship", f"s3://{bucket}/{PREFIX}", "--interval", "400ms", "--duration", "100ms",
                    "--host", "app-1", "--dump-dir", dump, script, env=env))
    assert len(list((tmp_path / "state" / "exectrace").glob("ship-*.json"))) == 1
    line = next(x for x in result.stdout.splitlines() if x.startswith("loaded:"))
    assert line.startswith("loaded: [] fleet: ") and "exectrace.fleet.s3" not in line and "ship" not in line.split("fleet:")[1]
    files = trace_files(dump)
    assert files
    versions = server.versions(bucket)
    # the sidecar's last pass shipped the window written at exit too
    assert {k for k in versions if "/_index/" not in k} == {key_of("app-1", p) for p in files}
    assert "exectrace ship:" in result.stderr and "shipped" in result.stderr
    for p in files:
        check_trace(str(p))


def test_run_ship_with_a_command_detaches_the_sidecar(server, tmp_path):
    """`exectrace run --ship ... -- CMD`: the command replaces `run` (same pid);
    the sidecar, detached, ships until it has exited, then makes a last pass.
    (An editable install has no autostart .pth: the command starts tracing
    from the EXECTRACE_* variables itself, as the hook would.)"""
    bucket = "run-command"
    server.make_bucket(bucket)
    code = ("import os, sys, time; import exectrace._autostart as a; assert a.start_from_env(os.environ); "
            "time.sleep(1.0); print('boto3' in sys.modules)")
    dump = tmp_path / "dump"
    result = ok(cli("run", "--ship", f"s3://{bucket}/{PREFIX}", "--interval", "300ms", "--duration", "100ms",
                    "--host", "cmd-1", "--dump-dir", dump, "--", sys.executable, "-c", code,
                    env=server.env(XDG_STATE_HOME=str(tmp_path / "state"))))
    assert result.stdout.strip() == "False"
    # run's output pipes stay open until the detached sidecar exits: it is done
    files = trace_files(dump)
    assert files
    assert {k for k in server.versions(bucket) if "/_index/" not in k} == {key_of("cmd-1", p) for p in files}
    assert "exectrace ship:" in result.stderr
    for p in files:
        check_trace(str(p))


def test_files_that_are_not_traces_are_shipped_with_an_error_and_no_index(server, sample_trace, tmp_path):
    """A damaged file and random bytes under trace names: shipped as they
    are (the store keeps what the dump dir held), their metadata says why
    they could not be read, no index rows; the sidecar exits 0."""
    bucket = "hostile"
    server.make_bucket(bucket)
    dump = tmp_path / "dump"
    good, cut, noise = _copies(sample_trace, dump, 3)
    cut.write_bytes(sample_trace.read_bytes()[:300])
    noise.write_bytes(os.urandom(5000))
    env = server.env()
    result = ok(cli("ship", dump, "--to", f"s3://{bucket}/{PREFIX}", "--host", "odd-1", "--state",
                    tmp_path / "state.json", "--once", env=env))
    c = server.client()
    versions = server.versions(bucket)
    for p in (good, cut, noise):
        got = c.get_object(Bucket=bucket, Key=key_of("odd-1", p))
        assert got["Body"].read() == p.read_bytes() and versions[key_of("odd-1", p)] == 1
    assert "error" not in c.head_object(Bucket=bucket, Key=key_of("odd-1", good))["Metadata"]
    assert "not a Perfetto trace" in c.head_object(Bucket=bucket, Key=key_of("odd-1", noise))["Metadata"]["error"]
    assert "error" in c.head_object(Bucket=bucket, Key=key_of("odd-1", cut))["Metadata"]
    index_keys = {k for k in versions if "/_index/" in k}
    assert index_keys == {layout.index_key(layout.S3Url(bucket, PREFIX), "odd-1", good.name)}
    assert "Traceback" not in result.stderr
    rows = json.loads(ok(cli("ls", f"s3://{bucket}/{PREFIX}", "--json", env=env)).stdout)
    assert [r["name"] for r in rows] == [good.name, cut.name, noise.name]
    assert "error" in rows[2] and rows[2]["mode"] is None
