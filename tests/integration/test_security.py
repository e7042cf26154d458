"""Security properties, each checked against the real thing:

- the dump dir is created 0700 and trace files are 0600 whatever the umask
  (0 and 022), including directories created above a missing dump dir;
- argument values, locals, return values, exception messages and the
  environment are never recorded (a unique secret is looked for in the raw
  bytes of the trace, compressed chunks inflated), while function names are;
- debug-zip never follows a symlink out of a dump dir and never writes
  anywhere but its output (zip member names, output path that is a symlink);
- view serves only the named file, whatever the request path looks like;
- no EXECTRACE_* value can make exectrace write anything but
  executiontrace.<time>.<pid>.out files in dump_dir.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import exectrace
from exectrace import dumpstore
from exectrace.settings import SETTINGS
from hostile import make_trace, read_varint

POSIX = os.name == "posix"
OWNED = re.compile(r"^executiontrace\.\d{4}-\d\d-\d\dT\d\d_\d\d_\d\d\.\d{3}\.\d+\.out$")
BASE_NS = 1_795_000_000_000_000_000


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra)
    return env


def cli(*args: object, cwd: object = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exectrace", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=clean_env(), cwd=cwd)


def python(code: str, *, env: dict[str, str], cwd: object = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def all_entries(root: Path) -> set[Path]:
    return {Path(d) / n for d, dirs, files in os.walk(root) for n in dirs + files}


# -------------------------------------------------------------- file modes

MODES_APP = """
import os, sys, time
os.umask(int(sys.argv[1], 8))
import exectrace
def handle(i):
    return sum(range(i % 50))
exectrace.start(interval="200ms", duration="100ms", dump_dir=sys.argv[2])
end = time.time() + 0.7
i = 0
while time.time() < end:
    handle(i)
    i += 1
exectrace.stop()
"""


@pytest.mark.skipif(not POSIX, reason="POSIX modes")
@pytest.mark.parametrize("umask", ["0", "022"])
def test_dump_dir_0700_and_files_0600_whatever_the_umask(tmp_path, umask):
    dump = tmp_path / "missing" / "parents" / "dump"
    result = subprocess.run([sys.executable, "-c", MODES_APP, umask, str(dump)], capture_output=True,
                            text=True, timeout=120, env=clean_env())
    # (on a busy machine the writer may fall behind 5 windows a second: a warning)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert stat.S_IMODE(os.stat(dump).st_mode) == 0o700
    # the directories exectrace had to create above it are not left open either
    for parent in (dump.parent, dump.parent.parent):
        assert stat.S_IMODE(os.stat(parent).st_mode) & 0o022 == 0, oct(os.stat(parent).st_mode)
    files = sorted(os.listdir(dump))
    traces = [f for f in files if OWNED.match(f)]
    assert traces, files
    for f in files:
        assert stat.S_IMODE(os.stat(dump / f).st_mode) == 0o600, (f, oct(os.stat(dump / f).st_mode))
    assert set(files) - set(traces) <= {dumpstore.LOCK_NAME}


# ------------------------------------------------------ what is recorded

SECRET_APP = """
import os, sys, threading
import exectrace
secret = os.environ["APP_SECRET"]           # only ever in values, never in names

class Vault:
    def __init__(self, value):
        self.value = value
    def reveal(self, suffix):
        local_copy = self.value + suffix
        return local_copy.upper().lower()

def handle_request(token, *args, **kwargs):
    hidden = {"password": token, "list": [token] * 3}
    v = Vault(token)
    out = v.reveal("-" + token)
    try:
        raise ValueError("bad token " + token)
    except ValueError as e:
        msg = str(e)
    return out + msg + str(len(hidden))

def gen(token):
    for i in range(3):
        yield token + str(i)

exectrace.start(interval="1h", duration="1h", dump_dir=sys.argv[1], compress=sys.argv[2] == "1",
                mode=sys.argv[3])
import time
deadline = time.monotonic() + 60
while not exectrace.status()["window_open"] and time.monotonic() < deadline:
    time.sleep(0.01)   # the first window opens on the controller's thread
for i in range(200):
    handle_request(secret, secret, key=secret)
    list(gen(secret))
t = threading.Thread(target=handle_request, args=(secret,), name="worker")
t.start(); t.join()
exectrace.stop()
"""


def inflate_all(data: bytes) -> bytes:
    """The file's bytes with every compressed_packets chunk inflated."""
    out = bytearray(data)
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        size, pos = read_varint(data, pos)
        packet = data[pos:pos + size]
        pos += size
        p = 0
        while p < len(packet):
            k, p = read_varint(packet, p)
            if k & 7 == 0:
                _, p = read_varint(packet, p)
            elif k & 7 == 1:
                p += 8
            elif k & 7 == 5:
                p += 4
            else:
                n, p = read_varint(packet, p)
                if k >> 3 == 50:
                    out += zlib.decompress(packet[p:p + n])
                p += n
    return bytes(out)


@pytest.mark.parametrize(("compress", "mode"), [("1", "calls"), ("0", "calls"), ("1", "events")])
def test_values_are_never_recorded(tmp_path, compress, mode):
    secret = f"S3CR3T-{uuid.uuid4()}"
    dump = tmp_path / "dump"
    result = subprocess.run([sys.executable, "-c", SECRET_APP, str(dump), compress, mode], capture_output=True,
                            text=True, timeout=120, env=clean_env(APP_SECRET=secret, EXTRA_VAR=secret),
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (path,) = [dump / n for n in os.listdir(dump) if OWNED.match(n)]
    raw = path.read_bytes()
    inflated = inflate_all(raw)
    if compress == "1" and mode == "calls":
        assert len(inflated) > 3 * len(raw)  # chunks were inflated
    for form in (secret, secret.upper(), secret.encode().hex()):
        assert form.encode() not in inflated
    assert b"S3CR3T" not in inflated.upper()
    trace = exectrace.read(path)
    assert not [s for s in trace.strings if "S3CR3T" in s.upper()]
    assert "S3CR3T" not in repr(trace.metadata.values).upper()
    assert "S3CR3T" not in repr(trace.columns.args).upper()
    if mode == "events":  # waits' stacks and samples name functions, files and lines only
        assert "S3CR3T" not in repr(trace.samples()).upper()
        return
    # what is recorded: the names of the functions and methods that saw it
    names = {s.name for s in trace.slices()}
    assert {"handle_request", "gen"} <= names, sorted(names)
    assert names & {"Vault.reveal", "reveal"} and names & {"Vault.__init__", "__init__"}  # qualified on 3.11+
    assert b"handle_request" in inflated


# ------------------------------------------------------------- debug-zip


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("sec") / "t.out"
    make_trace(path, 3)
    return path


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


@pytest.mark.skipif(not POSIX, reason="symlinks")
def test_debug_zip_takes_no_symlinked_file_or_dir(tmp_path, small_trace):
    d = tmp_path / "dump"
    d.mkdir()
    own = d / dumpstore.file_name(BASE_NS, 1)
    own.write_bytes(small_trace.read_bytes())
    os.symlink("/etc/passwd", d / dumpstore.file_name(BASE_NS + 10**9, 2))
    os.symlink("/dev/zero", d / dumpstore.file_name(BASE_NS + 2 * 10**9, 3))
    os.symlink("/", d / dumpstore.file_name(BASE_NS + 3 * 10**9, 4))
    sub = d / "sub"
    sub.mkdir()
    (sub / dumpstore.file_name(BASE_NS + 4 * 10**9, 5)).write_bytes(small_trace.read_bytes())  # not top level
    os.symlink(sub, d / "linked-sub")
    hard_outside = tmp_path / "outside.out"
    hard_outside.write_bytes(b"outside")
    out = tmp_path / "out.zip"
    result = cli("debug-zip", out, "--dump-dir", d, "--node", "n")
    assert result.returncode == 0, result.stderr
    names = zip_names(out)
    assert sorted(names) == sorted([f"nodes/n/executiontrace/{own.name}", "nodes/n/settings.json",
                                    "versions.json"])
    with zipfile.ZipFile(out) as zf:
        blob = b"".join(zf.read(n) for n in names)
    assert b"root:" not in blob  # nothing of /etc/passwd


@pytest.mark.skipif(not POSIX, reason="symlinks")
def test_debug_zip_member_names_stay_inside(tmp_path, small_trace):
    """Two dump dirs whose basenames are odd ('..'-like, separators, control
    characters): every member name is relative and has no '..' component."""
    dirs = [tmp_path / "a" / "..x", tmp_path / "b" / "..x", tmp_path / "c" / "x\n..\\y"]
    for d in dirs:
        d.mkdir(parents=True)
        (d / dumpstore.file_name(BASE_NS, 7)).write_bytes(small_trace.read_bytes())
    out = tmp_path / "o.zip"
    args = ["debug-zip", out, "--node", "n"]
    for d in dirs + [tmp_path / "a" / "..x" / ".." / "..x"]:
        args += ["--dump-dir", d]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    names = zip_names(out)
    assert len([n for n in names if n.endswith(".out")]) == 3
    for name in names:
        assert not name.startswith("/") and "\\" not in name and "\n" not in name
        assert ".." not in name.split("/"), name
        assert name.startswith(("nodes/n/", "versions.json"))


@pytest.mark.skipif(not POSIX, reason="symlinks")
@pytest.mark.parametrize("target_exists", [True, False])
def test_debug_zip_never_writes_through_a_symlinked_output(tmp_path, small_trace, target_exists):
    d = tmp_path / "dump"
    d.mkdir()
    (d / dumpstore.file_name(BASE_NS, 1)).write_bytes(small_trace.read_bytes())
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim = victim_dir / "precious"
    if target_exists:
        victim.write_bytes(b"precious")
    out = tmp_path / "out.zip"
    os.symlink(victim, out)
    # without --force: refused, link and target untouched
    result = cli("debug-zip", out, "--dump-dir", d)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert os.path.islink(out)
    # with --force: the link itself is replaced by the zip, never written through
    result = cli("debug-zip", out, "--dump-dir", d, "--force")
    assert result.returncode == 0, result.stderr
    assert not os.path.islink(out) and zipfile.is_zipfile(out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    if target_exists:
        assert victim.read_bytes() == b"precious"
    else:
        assert not victim.exists()
    assert os.listdir(victim_dir) == (["precious"] if target_exists else [])
    # and nothing but the output appeared beside it
    assert sorted(os.listdir(tmp_path)) == ["dump", "out.zip", "victim"]


# ------------------------------------------------------------------ view


def raw_request(port: int, request_line: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """Sends one raw HTTP request line (no client-side normalization)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"{request_line}\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.skipif(not POSIX, reason="POSIX paths")
def test_view_serves_nothing_but_the_named_file(tmp_path, small_trace):
    served_dir = tmp_path / "served"
    served_dir.mkdir()
    path = served_dir / "trace.out"
    path.write_bytes(small_trace.read_bytes())
    (served_dir / "secret.txt").write_text("root:x:0:0 secret sibling\n")
    proc = subprocess.Popen([sys.executable, "-m", "exectrace", "view", str(path), "--no-open", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        port = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and port is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"serving .* at http://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
        assert port, proc.stderr.read() if proc.poll() is not None else "no port"
        abs_path = str(path)
        for target in (
            "/secret.txt", "/../secret.txt", "/..%2fsecret.txt", "/%2e%2e/%2e%2e/etc/passwd",
            "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/..%5c..%5cetc%5cpasswd", "//etc/passwd", "/etc/passwd",
            abs_path, "/" + abs_path, "/%2F" + abs_path.lstrip("/").replace("/", "%2F"),
            "/trace.out/../secret.txt", "/trace.out%2f..%2fsecret.txt", "/trace.out/", "/trace.out%00",
            "/./secret.txt", "/served/trace.out", "trace.out", "*",
            f"http://127.0.0.1:{port}/../secret.txt", f"http://evil.example/{'trace.out'}/../secret.txt",
        ):
            status, body = raw_request(port, f"GET {target} HTTP/1.1")
            assert status in (400, 404), (target, status)
            assert b"secret sibling" not in body and b"root:" not in body, target
        # a rebound host name gets nothing either; the file itself is then served once
        assert raw_request(port, "GET /trace.out HTTP/1.1", host="attacker.example")[0] == 404
        status, body = raw_request(port, "GET /trace.out HTTP/1.1")
        assert status == 200 and body == path.read_bytes()
        proc.wait(timeout=60)
        err = proc.stderr.read()
        assert proc.returncode == 0 and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------- settings from the env

ENV_APP = """
import os, sys, time
from exectrace._autostart import start_from_env
start_from_env(os.environ)
def handle(i):
    return sum(range(i % 50))
end = time.time() + 0.5
i = 0
while time.time() < end:
    handle(i)
    i += 1
import exectrace
from exectrace import controller
print("tracing" if controller.current() is not None else "off")
"""


def hostile_values(root: Path) -> dict[str, str]:
    """A hostile value per EXECTRACE_* variable: path traversal (relative to a
    working directory three levels down, so it stays inside `root`), absolute
    paths to files that must not appear, shell and format metacharacters."""
    evil = f"../../../../evil/executiontrace.x.out,{root}/evil2,$(touch {root}/pwned),%s%n%x,`id`"
    values = {s.env: evil for s in SETTINGS.values()}
    values["EXECTRACE_INTERVAL"] = "100ms"        # on (the other variables are tried one by one)
    return values


@pytest.mark.skipif(not POSIX, reason="POSIX paths")
def test_no_environment_value_writes_outside_the_dump_dir(tmp_path):
    dump = tmp_path / "dump"
    values = hostile_values(tmp_path)
    # EXECTRACE_DIR names a directory by design: its own cases below
    cases = {var: {var: value} for var, value in values.items() if var not in ("EXECTRACE_INTERVAL", "EXECTRACE_DIR")}
    cases["EXECTRACE_DIR traversal"] = {"EXECTRACE_DIR": "../../../../dump/./sub/../"}
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"not a directory")
    cases["EXECTRACE_DIR is a file"] = {"EXECTRACE_DIR": str(a_file)}
    cases["unknown variables"] = {"EXECTRACE_FILE": f"{tmp_path}/evil3", "EXECTRACE_OUTPUT": "../../../evil4"}

    def run(item):
        name, env_vars = item
        cwd = tmp_path / "cwd" / name.replace(" ", "_") / "b" / "c"
        cwd.mkdir(parents=True)
        env = clean_env(**{"EXECTRACE_INTERVAL": "100ms", "EXECTRACE_DURATION": "50ms",
                           "EXECTRACE_DIR": str(dump), **env_vars})
        return name, env_vars, python(ENV_APP, env=env, cwd=cwd)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, sorted(cases.items())))
    traced = set()
    for name, env_vars, result in results:
        assert result.returncode == 0, (name, result.stderr)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        if result.stdout.strip() == "tracing":
            traced.add(name)
        else:  # a refused value: a warning naming the variable or the directory
            assert any(var in result.stderr or str(a_file) in result.stderr for var in env_vars), (
                name, result.stderr)
    assert {"EXECTRACE_INCLUDE", "EXECTRACE_EXCLUDE", "EXECTRACE_DIR traversal"} <= traced
    assert a_file.read_bytes() == b"not a directory"
    # The only files anywhere: traces in the dump dir (and the GC lock file)
    # and the working directories made above.
    made = {Path("cwd")} | {Path("cwd", n.replace(" ", "_"), *("b", "c")[:k]) for n in cases for k in range(3)}
    for entry in all_entries(tmp_path):
        rel = entry.relative_to(tmp_path)
        if rel.parts[0] == "cwd":
            assert rel in made and entry.is_dir(), entry
        elif rel.parts[0] == "dump" and len(rel.parts) == 2:
            assert entry.is_file() and (OWNED.match(entry.name) or entry.name == dumpstore.LOCK_NAME), entry
        else:
            assert rel in (Path("dump"), Path("a-file")), f"unexpected {entry}"
    assert [n for n in os.listdir(dump) if OWNED.match(n)]
