"""exectrace.middleware between windows: requests/s of the same app with and
without the middleware, in the same run (no window open, no controller).

  - Flask served over HTTP on 127.0.0.1 (wsgiref, a request per connection);
  - the same Flask app called as a WSGI server calls it, in process (no
    network: the middleware's share of a request is as large as it gets);
  - a Starlette app called as an ASGI server calls it, in process.

The ratio table at the end prints with-middleware / plain for each; between
windows the middleware is one flag check, so the ratios should be 1.00
within the run's noise."""

from __future__ import annotations

import asyncio
import http.client
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from exectrace import _tracecore
from exectrace.middleware import ASGIMiddleware, WSGIMiddleware

MODES = ["untraced", "middleware"]
HTTP_REQUESTS = 200
CALLS = 2000


def flask_app():
    flask = pytest.importorskip("flask")
    app = flask.Flask("bench")

    @app.route("/users/<int:user_id>")
    def user(user_id):
        return f"user {user_id}"

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def http_servers():
    """The plain app and the wrapped one, each on its own server thread."""
    servers = {}
    for mode in MODES:
        app = flask_app()
        if mode == "middleware":
            app.wsgi_app = WSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
        server = make_server("127.0.0.1", 0, app, server_class=WSGIServer, handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers[mode] = server
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def http_round(port):
    for i in range(HTTP_REQUESTS):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", f"/users/{i}")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        connection.close()
    return HTTP_REQUESTS


def record(benchmark, mode, requests):
    benchmark.extra_info["mode"] = mode
    benchmark.extra_info["requests_per_round"] = requests


@pytest.mark.parametrize("mode", MODES)
def test_flask_over_http(benchmark, mode, http_servers):
    assert not _tracecore.is_active()
    benchmark.group = f"middleware between windows: Flask over HTTP ({HTTP_REQUESTS} requests)"
    record(benchmark, mode, HTTP_REQUESTS)
    port = http_servers[mode].server_address[1]
    assert benchmark.pedantic(http_round, args=(port,), rounds=15, warmup_rounds=2) == HTTP_REQUESTS


def wsgi_round(app):
    environ = {"REQUEST_METHOD": "GET", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": ""}

    def start_response(status, headers, exc_info=None):
        return None

    for i in range(CALLS):
        env = dict(environ, PATH_INFO=f"/users/{i}")
        result = app(env, start_response)
        b"".join(result)
        result.close()
    return CALLS


@pytest.mark.parametrize("mode", MODES)
def test_flask_wsgi_in_process(benchmark, mode):
    assert not _tracecore.is_active()
    app = flask_app()
    if mode == "middleware":
        app.wsgi_app = WSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    benchmark.group = f"middleware between windows: Flask WSGI calls in process ({CALLS})"
    record(benchmark, mode, CALLS)
    assert benchmark.pedantic(wsgi_round, args=(app,), rounds=15, warmup_rounds=2) == CALLS


@pytest.mark.parametrize("mode", MODES)
def test_starlette_asgi_in_process(benchmark, mode):
    assert not _tracecore.is_active()
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/items/{item_id}", item)])
    served = ASGIMiddleware(app) if mode == "middleware" else app

    async def calls():
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        for i in range(CALLS):
            path = f"/items/{i}"
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                     "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
            await served(scope, receive, send)
        return CALLS

    loop = asyncio.new_event_loop()
    try:
        benchmark.group = f"middleware between windows: Starlette ASGI calls in process ({CALLS})"
        record(benchmark, mode, CALLS)
        assert benchmark.pedantic(lambda: loop.run_until_complete(calls()), rounds=15, warmup_rounds=2) == CALLS
    finally:
        loop.close()


NOOP_CALLS = 100_000


@pytest.mark.parametrize("mode", MODES)
def test_idle_path_per_request_wsgi(benchmark, mode):
    """The middleware's own cost between windows: a WSGI app that does
    nothing, called directly or through the middleware (ns per request =
    the difference of the medians / NOOP_CALLS)."""
    assert not _tracecore.is_active()
    body = [b"ok"]

    def noop(environ, start_response):
        return body

    app = WSGIMiddleware(noop) if mode == "middleware" else noop
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/users/1"}

    def calls():
        for _ in range(NOOP_CALLS):
            app(environ, None)
        return NOOP_CALLS

    benchmark.group = f"middleware between windows: no-op WSGI app ({NOOP_CALLS} calls)"
    record(benchmark, mode, NOOP_CALLS)
    assert benchmark.pedantic(calls, rounds=15, warmup_rounds=2) == NOOP_CALLS


@pytest.mark.parametrize("mode", MODES)
def test_idle_path_per_request_asgi(benchmark, mode):
    """The same for ASGI: the middleware adds a flag check and one coroutine."""
    assert not _tracecore.is_active()

    async def noop(scope, receive, send):
        return None

    app = ASGIMiddleware(noop) if mode == "middleware" else noop
    scope = {"type": "http", "method": "GET", "path": "/items/1"}

    async def calls():
        for _ in range(NOOP_CALLS):
            await app(scope, None, None)
        return NOOP_CALLS

    loop = asyncio.new_event_loop()
    try:
        benchmark.group = f"middleware between windows: no-op ASGI app ({NOOP_CALLS} calls)"
        record(benchmark, mode, NOOP_CALLS)
        assert benchmark.pedantic(lambda: loop.run_until_complete(calls()), rounds=15, warmup_rounds=2) == NOOP_CALLS
    finally:
        loop.close()
