"""The file commands of the CLI on real trace files: view (serve one file to
the Perfetto UI), ls (a dump directory) and debug-zip (a bug-report zip)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest

import exectrace
from exectrace import dumpstore
from exectrace._version import __version__
from perfetto_check import check_trace

POSIX = os.name == "posix"
BASE_NS = 1_795_000_000_000_000_000  # 2026-11-19T...: a fixed end time for names
PID = 4242


def cli(*args, env=None, cwd=None, timeout=60):
    """`python -m exectrace ARGS` in a subprocess, without EXECTRACE_* variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "exectrace", *map(str, args)], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, code=1, *, contains=""):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert contains.lower() in lines[0].lower(), lines[0]
    return lines[0]


def work(n):
    def leaf(i):
        return i * 2

    return sum(leaf(i) for i in range(n))


def make_trace(path, calls, **options):
    with exectrace.tracing(str(path), **options):
        work(calls)
    check_trace(str(path))
    return str(path)


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    """A dump dir with three traces (1, 2, 3 seconds after BASE_NS), the newest
    written with total_dump_size_limit=1MiB, a foreign file, a symlink and a
    directory named like traces."""
    d = tmp_path_factory.mktemp("cli") / "executiontrace_dump"
    d.mkdir()
    outside = d.parent / "outside.out"
    make_trace(outside, 5)
    files = []
    for i, calls in enumerate((10, 200, 50)):
        options = {"total_dump_size_limit": "1MiB"} if i == 2 else {}
        files.append(make_trace(d / dumpstore.file_name(BASE_NS + (i + 1) * 10**9, PID), calls, **options))
    (d / "notes.txt").write_text("not a trace\n")
    (d / dumpstore.file_name(BASE_NS + 9 * 10**9, 1)).mkdir()
    if POSIX:
        os.symlink(outside, d / dumpstore.file_name(BASE_NS + 8 * 10**9, 2))
    return d, files


# ----------------------------------------------------------------------- view

class Viewer:
    """`exectrace view FILE --no-open` running in a subprocess."""

    def __init__(self, path, port=0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exectrace", "view", str(path), "--no-open", "--ui", "online", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("Perfetto UI: "):
                self.ui_url = line.split(": ", 1)[1].strip()
                break
        else:  # pragma: no cover
            self.kill()
        if not hasattr(self, "ui_url"):
            self.kill()
            raise AssertionError(f"no URL printed: {self.lines} {self.proc.stderr.read()}")
        # As the Perfetto UI reads it: the fragment's query, decoded once.
        fragment = self.ui_url.split("#!", 1)[1]
        self.url = parse_qs(urlsplit("https://example.com" + fragment).query)["url"][0]
        self.port = urlsplit(self.url).port

    def wait(self, timeout=30):
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
        out, err = self.proc.communicate()
        return self.proc.returncode, "".join(self.lines) + out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def fetch(url, method="GET", headers=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), response.read()


def test_view_serves_the_file_once_with_cors(dump):
    path = dump[1][0]
    name = os.path.basename(path)
    viewer = Viewer(path)
    try:
        assert viewer.ui_url == f"https://ui.perfetto.dev/#!/?url=http://127.0.0.1:{viewer.port}/{name}"
        assert viewer.url == f"http://127.0.0.1:{viewer.port}/{name}"
        # every other path is 404, before the file is fetched (the server then exits)
        for other in ("/", "/other.out", "/" + name + "x", "/../" + name):
            with pytest.raises(urllib.error.HTTPError) as e:
                fetch(f"http://127.0.0.1:{viewer.port}{other}")
            assert e.value.code == 404
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(viewer.url, method="POST")
        assert e.value.code == 404
        # a CORS preflight (with Chrome's private-network request)
        status, headers, body = fetch(viewer.url, method="OPTIONS", headers={
            "Origin": "https://ui.perfetto.dev", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Private-Network": "true", "Access-Control-Request-Headers": "range"})
        assert status == 204 and body == b""
        assert headers["Access-Control-Allow-Origin"] == "https://ui.perfetto.dev"
        assert "GET" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == "range"
        assert headers["Access-Control-Allow-Private-Network"] == "true"
        # a page whose host name was rebound to 127.0.0.1 does not get the file
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(viewer.url, headers={"Host": f"evil.example:{viewer.port}"})
        assert e.value.code == 404
        # a HEAD does not count as fetching the file
        status, headers, body = fetch(viewer.url, method="HEAD")
        assert status == 200 and body == b""
        # it listens on 127.0.0.1 only: not on other loopback addresses, not on IPv6
        if sys.platform.startswith("linux"):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.2", viewer.port), timeout=5).close()
        if socket.has_ipv6:
            with pytest.raises(OSError):
                socket.create_connection(("::1", viewer.port), timeout=5).close()
        assert viewer.proc.poll() is None  # still serving
        status, headers, body = fetch(viewer.url, headers={"Origin": "https://ui.perfetto.dev"})
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "https://ui.perfetto.dev"
        assert int(headers["Content-Length"]) == os.path.getsize(path)
        with open(path, "rb") as f:
            assert body == f.read()
    finally:
        code, out, err = viewer.wait()
    assert code == 0, (out, err)
    assert "Traceback" not in err
    assert f"sent {name}" in out


def test_view_quotes_odd_names(tmp_path):
    path = make_trace(tmp_path / "my trace #1 & 100% é+.out", 3)
    viewer = Viewer(path)
    try:
        assert " " not in viewer.ui_url and "#1" not in viewer.ui_url and "&" not in viewer.ui_url.split("?", 1)[1]
        status, headers, body = fetch(viewer.url)
        assert status == 200
        with open(path, "rb") as f:
            assert body == f.read()
    finally:
        code, out, err = viewer.wait()
    assert code == 0, (out, err)


def test_view_serves_a_truncated_trace_with_a_warning(tmp_path):
    data = open(make_trace(tmp_path / "whole.out", 200, compress=False), "rb").read()  # noqa: SIM115
    cut = tmp_path / "cut.out"
    cut.write_bytes(data[: len(data) - 5])
    viewer = Viewer(cut)
    try:
        status, _, body = fetch(viewer.url)
        assert status == 200 and body == data[: len(data) - 5]
    finally:
        code, out, err = viewer.wait()
    assert code == 0, (out, err)
    assert "damaged" in out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_view_uses_the_given_port(dump):
    port = free_port()
    viewer = Viewer(dump[1][1], port=port)
    try:
        assert viewer.port == port
        assert fetch(viewer.url)[0] == 200
    finally:
        code, _, err = viewer.wait()
    assert code == 0, err


@pytest.mark.skipif(not POSIX, reason="SIGINT to a subprocess")
def test_view_exits_0_on_ctrl_c(dump):
    viewer = Viewer(dump[1][0])
    viewer.proc.send_signal(signal.SIGINT)
    code, out, err = viewer.wait()
    assert code == 0, (out, err)
    assert "Traceback" not in err


def test_view_port_in_use(dump):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = cli("view", dump[1][0], "--no-open", "--port", port)
    line = assert_one_line_error(result, contains="in use")
    assert str(port) in line


def test_view_refuses_what_is_not_a_trace(tmp_path, dump):
    text = tmp_path / "notes.out"
    text.write_text("hello, not a trace\n")
    assert_one_line_error(cli("view", text, "--no-open", "--port", 0), contains="not a perfetto trace")
    assert_one_line_error(cli("view", tmp_path, "--no-open", "--port", 0), contains="directory")
    assert_one_line_error(cli("view", tmp_path / "missing.out", "--no-open", "--port", 0),
                          contains="cannot read")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.out")  # refused without blocking on the pipe
        assert_one_line_error(cli("view", tmp_path / "fifo.out", "--no-open"), contains="not a regular file")
    (tmp_path / "empty.out").write_bytes(b"")
    assert_one_line_error(cli("view", tmp_path / "empty.out", "--no-open"), contains="empty")
    result = cli("view", dump[1][0], "--no-open", "--port", "70000")
    assert result.returncode == 2 and "Traceback" not in result.stderr


# ----------------------------------------------------------------------- ls

def test_ls_lists_owned_files_newest_last(dump):
    d, files = dump
    result = cli("ls", d)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["END", "(UTC)", "PID"]
    rows, total = lines[1:-1], lines[-1]
    # only the three owned regular files, oldest first: not the foreign file,
    # the symlink or the directory named like traces
    assert [row.split()[-1] for row in rows] == [os.path.basename(f) for f in files]
    for row, path in zip(rows, files):
        trace = exectrace.read(path)
        end, _ = dumpstore.parse_name(os.path.basename(path))
        cells = row.split()
        assert cells[0] == f"{end:%Y-%m-%d}" and cells[1] == f"{end:%H:%M:%S}.{end.microsecond // 1000:03d}"
        assert cells[2] == str(PID)
        size = os.path.getsize(path)
        assert f"{size / 1024:.1f} KiB" in row if size >= 1024 else f"{size} B" in row
        assert f"{trace.metadata['window.duration_ns'] / 1e9:.3f}s" in cells
        assert cells[-3] == str(trace.slice_count)
        assert cells[-2] == "0"  # records lost
    slices = [int(row.split()[-3]) for row in rows]
    assert slices[1] > slices[2] > slices[0]  # 200, 50 and 10 calls
    total_bytes = sum(os.path.getsize(f) for f in files)
    assert total.startswith("3 files, ") and f"({total_bytes} bytes)" in total
    assert "1MiB total_dump_size_limit (the newest file's setting)" in total
    assert f"{100 * total_bytes / 2**20:.1f}%" in total


def test_ls_json(dump):
    d, files = dump
    result = cli("ls", d, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [os.path.basename(f) for f in files]
    for r, path in zip(rows, files):
        trace = exectrace.read(path)
        assert r["path"] == os.path.abspath(path)
        assert r["size"] == os.path.getsize(path)
        assert r["pid"] == PID
        assert r["slices"] == trace.slice_count
        assert r["window_duration_ns"] == trace.metadata["window.duration_ns"]
        assert r["records_lost"] == 0 and r["error"] is None and r["damage"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["end_time"])
    assert rows[-1]["total_dump_size_limit"] == 2**20


def test_ls_shows_unreadable_files_and_uses_the_environment(tmp_path):
    d = tmp_path / "executiontrace_dump"
    d.mkdir()
    good = make_trace(d / dumpstore.file_name(BASE_NS, PID), 5)
    bad = d / dumpstore.file_name(BASE_NS + 10**9, PID)
    bad.write_bytes(b"\xff" * 100)
    # no DIR: the environment's dump dir, and its limit when the newest file has none
    result = cli("ls", env={"EXECTRACE_DIR": str(d), "EXECTRACE_TOTAL_DUMP_SIZE_LIMIT": "2GiB"})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and result.stderr == ""
    rows = result.stdout.splitlines()[1:-1]
    assert rows[0].split()[-1] == os.path.basename(good)
    assert bad.name in rows[1] and "unreadable: " in rows[1]
    total = result.stdout.splitlines()[-1]
    assert total.startswith("2 files")
    assert "4GiB total_dump_size_limit (the newest readable file's setting)" in total
    rows = json.loads(cli("ls", d, "--json").stdout)
    assert rows[1]["error"] and rows[1]["slices"] is None
    # the default dump dir is ./executiontrace_dump
    result = cli("ls", cwd=tmp_path)
    assert result.returncode == 0 and os.path.basename(good) in result.stdout
    # --no-read: names and sizes only, against the environment's limit
    result = cli("ls", d, "--no-read", env={"EXECTRACE_TOTAL_DUMP_SIZE_LIMIT": "2GiB"})
    assert result.returncode == 0 and "unreadable" not in result.stdout
    assert [row.split()[-1] for row in result.stdout.splitlines()[1:-1]] == [good.rsplit(os.sep, 1)[1], bad.name]
    assert "2GiB total_dump_size_limit (the environment)" in result.stdout.splitlines()[-1]


def test_ls_empty_dir(tmp_path):
    result = cli("ls", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no trace files" in result.stdout and "0 files" in result.stdout
    assert json.loads(cli("ls", tmp_path, "--json").stdout) == []


def test_ls_errors(tmp_path):
    assert_one_line_error(cli("ls", tmp_path / "missing"), contains="no such directory")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli("ls", tmp_path / "file"), contains="not a directory")
    assert_one_line_error(cli("ls", cwd=tmp_path), contains="executiontrace_dump")
    assert_one_line_error(cli("ls", env={"EXECTRACE_TOTAL_DUMP_SIZE_LIMIT": "banana"}, cwd=tmp_path),
                          contains="EXECTRACE_TOTAL_DUMP_SIZE_LIMIT")
    if POSIX and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o000)
        try:
            assert_one_line_error(cli("ls", locked), contains="cannot")
        finally:
            locked.chmod(0o700)


# ------------------------------------------------------------------ debug-zip

def read_zip(path):
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def test_debug_zip_layout(dump, tmp_path):
    d, files = dump
    out = tmp_path / "debug.zip"
    result = cli("debug-zip", out, "--dump-dir", d, "--node", "web-1")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    content = read_zip(out)
    traces = {f"nodes/web-1/executiontrace/{os.path.basename(f)}": f for f in files}
    assert set(content) == set(traces) | {"nodes/web-1/settings.json", "versions.json"}
    for name, path in traces.items():  # the owned files only, byte for byte
        with open(path, "rb") as f:
            assert content[name] == f.read()
    settings = json.loads(content["nodes/web-1/settings.json"])
    assert settings["environment"]["dump_dir"] == "./executiontrace_dump"
    assert settings["environment"]["total_dump_size_limit"] == "4GiB"
    # the command's own process traces nothing: no status of a tracer of its own
    assert "tracer" not in settings
    assert settings["dump_dirs"][0]["path"] == os.path.abspath(d)
    assert [f["name"] for f in settings["dump_dirs"][0]["files"]] == [os.path.basename(f) for f in files]
    versions = json.loads(content["versions.json"])
    assert versions["exectrace"] == __version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["platform"]


def test_debug_zip_defaults_to_the_environment_and_host(dump, tmp_path):
    d, files = dump
    out = tmp_path / "debug.zip"
    result = cli("debug-zip", out, env={"EXECTRACE_DIR": str(d), "EXECTRACE_DURATION": "3s"})
    assert result.returncode == 0, result.stderr
    from exectrace.commands.debug_zip import default_node

    node = default_node()
    content = read_zip(out)
    assert {n for n in content if n.endswith(".out")} == {
        f"nodes/{node}/executiontrace/{os.path.basename(f)}" for f in files}
    settings = json.loads(content[f"nodes/{node}/settings.json"])
    assert settings["environment"]["dump_dir"] == str(d)
    assert settings["environment"]["duration"] == "3s"
    assert settings["environment_variables"] == {"EXECTRACE_DURATION": "3s", "EXECTRACE_DIR": str(d)}


@pytest.mark.skipif(not POSIX, reason="symlinks")
def test_debug_zip_never_follows_symlinks(tmp_path):
    d = tmp_path / "dump"
    d.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    target = make_trace(secret / dumpstore.file_name(BASE_NS, 1), 3)
    own = make_trace(d / dumpstore.file_name(BASE_NS + 10**9, 2), 3)
    os.symlink(target, d / dumpstore.file_name(BASE_NS + 2 * 10**9, 3))  # a file outside
    os.symlink(secret, d / "linked_dir")                                 # a directory outside
    os.symlink(secret, d / dumpstore.file_name(BASE_NS + 3 * 10**9, 4))
    out = tmp_path / "out.zip"
    result = cli("debug-zip", out, "--dump-dir", d, "--node", "n")
    assert result.returncode == 0, result.stderr
    names = set(read_zip(out))
    assert names == {f"nodes/n/executiontrace/{os.path.basename(own)}", "nodes/n/settings.json", "versions.json"}


def test_debug_zip_same_names_in_two_dirs(tmp_path):
    a, b = tmp_path / "a" / "executiontrace_dump", tmp_path / "b"
    a.mkdir(parents=True)
    b.mkdir()
    shared = dumpstore.file_name(BASE_NS, 7)
    make_trace(a / shared, 3)
    make_trace(b / shared, 30)
    only_b = make_trace(b / dumpstore.file_name(BASE_NS + 10**9, 7), 3)
    out = tmp_path / "two.zip"
    result = cli("debug-zip", out, "--dump-dir", a, "--dump-dir", b, "--dump-dir", b, "--node", "n")
    assert result.returncode == 0, result.stderr
    content = read_zip(out)
    prefix = "nodes/n/executiontrace/"
    assert {n for n in content if n.startswith(prefix)} == {
        f"{prefix}executiontrace_dump/{shared}", f"{prefix}b/{shared}", f"{prefix}{os.path.basename(only_b)}"}
    assert content[f"{prefix}executiontrace_dump/{shared}"] == (a / shared).read_bytes()
    assert content[f"{prefix}b/{shared}"] == (b / shared).read_bytes()
    settings = json.loads(content["nodes/n/settings.json"])
    assert [x["path"] for x in settings["dump_dirs"]] == [str(a), str(b)]  # b once


def test_debug_zip_refuses_to_overwrite(dump, tmp_path):
    d, files = dump
    out = tmp_path / "debug.zip"
    out.write_bytes(b"precious")
    assert_one_line_error(cli("debug-zip", out, "--dump-dir", d), contains="--force")
    assert out.read_bytes() == b"precious"
    result = cli("debug-zip", out, "--dump-dir", d, "--force")
    assert result.returncode == 0, result.stderr
    assert len([n for n in read_zip(out) if n.endswith(".out")]) == len(files)
    assert sorted(os.listdir(tmp_path)) == ["debug.zip"]  # no temporary file left


def test_debug_zip_errors_write_nothing(dump, tmp_path):
    d, _ = dump
    out = tmp_path / "out" / "debug.zip"
    out.parent.mkdir()
    assert_one_line_error(cli("debug-zip", out, "--dump-dir", tmp_path / "missing"), contains="missing")
    assert_one_line_error(cli("debug-zip", out, "--dump-dir", d, "--dump-dir", tmp_path / "missing"),
                          contains="no such dump directory")
    assert_one_line_error(cli("debug-zip", out, cwd=tmp_path), contains="executiontrace_dump")
    assert_one_line_error(cli("debug-zip", out, "--dump-dir", d / "notes.txt"), contains="not a directory")
    assert_one_line_error(cli("debug-zip", tmp_path / "nowhere" / "x.zip", "--dump-dir", d),
                          contains="no such directory")
    assert_one_line_error(cli("debug-zip", out.parent, "--dump-dir", d, "--force"), contains="directory")
    assert os.listdir(out.parent) == []
    result = cli("debug-zip", out, "--dump-dir", d, "--node", "../x")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert os.listdir(out.parent) == []
