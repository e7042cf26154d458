"""Test support: real WSGI/ASGI servers (gunicorn, uvicorn) started as
subprocesses with EXECTRACE_* set, driven over 127.0.0.1 with real HTTP, and
the apps they serve (Flask, FastAPI, Starlette, Django).

Every loop here is bounded; every server is stopped (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import re
import signal
import site
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
AUTOSTART_LINE = (ROOT / "src" / "exectrace-autostart.pth").read_text() if (
    ROOT / "src" / "exectrace-autostart.pth").exists() else (
    'import os; "EXECTRACE_INTERVAL" in os.environ and __import__("exectrace._autostart")._autostart.run()\n')

FLASK_APP = '''
import os, time
import flask
import exectrace
from exectrace.middleware import WSGIMiddleware

app = flask.Flask(__name__)

def traced(environ_or_scope):
    """"1" when exectrace.middleware recorded this request as a task (a window was open)."""
    task = environ_or_scope.get("exectrace.task")
    return "1" if task is not None and task.id != 0 else "0"

def reply(body):
    response = flask.make_response(body)
    response.headers["X-Pid"] = str(os.getpid())
    response.headers["X-Traced"] = traced(flask.request.environ)
    return response

@app.route("/ready")
def ready():
    return reply("ready")

@app.route("/users/<int:user_id>")
def user(user_id):
    with exectrace.region("load user"):
        return reply(f"user {user_id}")

@app.route("/slow")
def slow():
    time.sleep(0.3)
    return reply("slow")

@app.route("/stream")
def stream():
    def body():
        for i in range(5):
            time.sleep(0.02)
            yield f"chunk {i}\\n"
    return flask.Response(body(), headers={"X-Pid": str(os.getpid()), "X-Traced": traced(flask.request.environ)})

app.wsgi_app = WSGIMiddleware(app.wsgi_app)
'''

FASTAPI_APP = '''
import asyncio, os, time
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse
import exectrace
from exectrace.middleware import ASGIMiddleware

api = FastAPI()

def traced(environ_or_scope):
    """"1" when exectrace.middleware recorded this request as a task (a window was open)."""
    task = environ_or_scope.get("exectrace.task")
    return "1" if task is not None and task.id != 0 else "0"

def headers(request):
    return {"X-Pid": str(os.getpid()), "X-Traced": traced(request.scope)}

@api.get("/ready")
async def ready(request: Request):
    return PlainTextResponse("ready", headers=headers(request))

@api.get("/items/{item_id}")
async def item(item_id: int, request: Request):
    await asyncio.sleep(0.001)
    return PlainTextResponse(f"item {item_id}", headers=headers(request))

@api.get("/slow")
def slow(request: Request):
    time.sleep(0.3)
    return PlainTextResponse("slow", headers=headers(request))

@api.get("/stream")
async def stream(request: Request):
    async def body():
        for i in range(5):
            await asyncio.sleep(0.02)
            yield f"chunk {i}\\n"
    return StreamingResponse(body(), headers=headers(request))

@api.websocket("/ws/{room}")
async def ws(websocket: WebSocket, room: str):
    await websocket.accept()
    message = await websocket.receive_text()
    await websocket.send_text(f"{room}: {message}")
    await websocket.close()

app = ASGIMiddleware(api)
'''

STARLETTE_APP = '''
import os
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
import exectrace
from exectrace.middleware import ASGIMiddleware

def traced(environ_or_scope):
    """"1" when exectrace.middleware recorded this request as a task (a window was open)."""
    task = environ_or_scope.get("exectrace.task")
    return "1" if task is not None and task.id != 0 else "0"

def headers(request):
    return {"X-Pid": str(os.getpid()), "X-Traced": traced(request.scope)}

async def order(request):
    return PlainTextResponse("order " + request.path_params["order_id"], headers=headers(request))

async def ready(request):
    return PlainTextResponse("ready", headers=headers(request))

api = Starlette(routes=[Route("/ready", ready),
                        Mount("/shop", routes=[Route("/orders/{order_id}", order)])])
app = ASGIMiddleware(api)
'''

DJANGO_APP = '''
import os
from django.conf import settings

settings.configure(DEBUG=False, ALLOWED_HOSTS=["127.0.0.1", "localhost"], ROOT_URLCONF=__name__,
                   SECRET_KEY="test-only", MIDDLEWARE=[], INSTALLED_APPS=[], USE_TZ=True)

from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path
import exectrace
from exectrace.middleware import WSGIMiddleware


def traced(environ_or_scope):
    """"1" when exectrace.middleware recorded this request as a task (a window was open)."""
    task = environ_or_scope.get("exectrace.task")
    return "1" if task is not None and task.id != 0 else "0"

def reply(request, text):
    response = HttpResponse(text)
    response["X-Pid"] = str(os.getpid())
    response["X-Traced"] = traced(request.META)
    return response

def article(request, slug, year):
    return reply(request, f"{year} {slug}")

def ready(request):
    return reply(request, "ready")

urlpatterns = [path("articles/<int:year>/<slug:slug>/", article), path("ready", ready)]
application = WSGIMiddleware(get_wsgi_application())
'''

APPS = {"flaskapp": FLASK_APP, "fastapiapp": FASTAPI_APP, "starletteapp": STARLETTE_APP,
        "djangoapp": DJANGO_APP}
NEEDS = {"flaskapp": ("flask",), "fastapiapp": ("fastapi",), "starletteapp": ("starlette",),
         "djangoapp": ("django",)}


def require(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (it has no release for Python "
                        f"{sys.version_info[0]}.{sys.version_info[1]} here, or the test extra is not installed)")


def autostart_installed() -> bool:
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    return any(os.path.exists(os.path.join(d, "exectrace-autostart.pth")) for d in dirs)


def server_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a traced server: EXECTRACE_* from `settings`
    (interval="1h" -> EXECTRACE_INTERVAL=1h), the apps' directory on the
    path. An editable install has no autostart .pth (setuptools does not
    install it): a sitecustomize runs the same line instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    env["PYTHONFAULTHANDLER"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in settings.items():
        env["EXECTRACE_" + ("DIR" if name == "dump_dir" else name.upper())] = value
    path = [str(tmp_path)]
    if not autostart_installed():
        shim = tmp_path / "autostart-shim"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(AUTOSTART_LINE)
        path.append(str(shim))
    env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    pids_seen: list[int] = field(default_factory=list)
    #: per response: (X-Pid, whether the middleware recorded it as a task: X-Traced)
    traced: list[tuple[int, bool]] = field(default_factory=list)

    def request(self, path: str, method: str = "GET", timeout: float = 30) -> tuple[int, str, Optional[int]]:
        """One request on a new connection: (status, body, the X-Pid header)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read().decode()
            pid = response.getheader("X-Pid")
            if pid is not None:
                self.pids_seen.append(int(pid))
                self.traced.append((int(pid), response.getheader("X-Traced") == "1"))
            return response.status, body, int(pid) if pid else None
        finally:
            connection.close()

    def wait_until_traced(self, in_a_row: int = 12, timeout: float = 30) -> None:
        """Asks /ready until `in_a_row` answers in a row were recorded as
        tasks: a forked worker opens its first window a moment after it
        starts accepting (its scheduler thread starts after the fork)."""
        deadline = time.monotonic() + timeout
        run = 0
        while run < in_a_row:
            if time.monotonic() > deadline:
                raise AssertionError(f"workers not tracing after {timeout} s: {self.traced[-20:]}")
            self.request("/ready")
            run = run + 1 if self.traced[-1][1] else 0
        self.traced.clear()

    def traced_by_pid(self) -> dict[int, int]:
        """pid -> responses handled inside a window (since wait_until_traced)."""
        counts: dict[int, int] = {}
        for pid, traced in self.traced:
            counts[pid] = counts.get(pid, 0) + traced
        return counts

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(argv: list[str], tmp_path: Path, env: dict[str, str], *, port: int,
          ready_timeout: float = 60) -> Iterator[Server]:
    """Starts `argv` (a server listening on 127.0.0.1:port), waits until it
    answers, yields it; stops it with SIGTERM (SIGKILL after 30 s) at the end."""
    log = tmp_path / f"server-{port}.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{argv[:4]} exited {process.returncode}:\n{server.log_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{argv[:4]} not listening after {ready_timeout} s:\n"
                                         f"{server.log_text()}") from None
                time.sleep(0.1)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def write_apps(tmp_path: Path) -> None:
    for name, source in APPS.items():
        (tmp_path / f"{name}.py").write_text(source)


def gunicorn(app: str, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "20",
            *args, app]


def uvicorn(app: str, port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", *args, app]


def booted_workers(log: str) -> list[int]:
    """gunicorn's 'Booting worker with pid: N' lines."""
    return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", log)]


def trace_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("executiontrace.*.out")) if directory.exists() else []


def file_pid(path: Path) -> int:
    return int(path.name.split(".")[-2])
