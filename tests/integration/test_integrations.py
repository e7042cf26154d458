"""exectrace.middleware, exectrace.logging and exectrace.otel in process:
WSGI driven as PEP 3333 servers drive it, ASGI as the ASGI spec does, real
frameworks (Flask, Starlette) and the real OpenTelemetry SDK; every trace
file checked with perfetto_check. Real servers: test_servers.py."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

import exectrace
import exectrace.logging
from exectrace import _annotate
from exectrace.errors import ExectraceConfigError
from exectrace.middleware import ASGIMiddleware, WSGIMiddleware, collapse_path
from perfetto_check import check_trace


def tasks(path):
    check_trace(str(path))
    return [s for s in exectrace.read(path).spans() if s.category == "task"]


def environ(path="/", method="GET"):
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
            "wsgi.url_scheme": "http", "QUERY_STRING": "token=secret-in-query"}


def drive_wsgi(app, env):
    """What a PEP 3333 server does: call, iterate, close."""
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = status
        return lambda data: None

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], body


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("path, expected", [
    ("/", "/"),
    ("", "/"),
    ("/users/42", "/users/{id}"),
    ("/users/42/orders/7?x=1", "/users/{id}/orders/{id}"),
    ("/objects/3fa85f64-5717-4562-b3fc-2c963f66afa6", "/objects/{id}"),
    ("/objects/3fa85f6457174562b3fc2c963f66afa6/raw", "/objects/{id}/raw"),
    ("/commits/0f3a9c1e77", "/commits/{id}"),
    ("/blog/deadbeef", "/blog/deadbeef"),  # hex letters only: a word, kept
    ("/blog/cafe1", "/blog/cafe1"),  # too short for a hex id
    ("/static/app.js", "/static/app.js"),
])
def test_collapse_path(path, expected):
    assert collapse_path(path) == expected


def test_collapse_path_bounds_long_paths():
    assert len(collapse_path("/a" * 1000)) <= 203


def test_bad_arguments_name_the_thing_and_a_good_example():
    with pytest.raises(TypeError, match=r"WSGIMiddleware\(flask_app.wsgi_app\)"):
        WSGIMiddleware(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ASGIMiddleware\(fastapi_app\)"):
        ASGIMiddleware("app")  # type: ignore[arg-type]
    with pytest.raises(ExectraceConfigError, match=r"invalid slow 'fast'.*'500ms'"):
        WSGIMiddleware(lambda e, s: [], slow="fast")
    with pytest.raises(TypeError, match=r"route=lambda"):
        ASGIMiddleware(lambda s, r, w: None, route="/x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown logging level.*level=\"INFO\""):
        exectrace.logging.Handler(level="LOUD")
    with pytest.raises(TypeError, match=r"level=logging.WARNING"):
        exectrace.logging.Handler(level=2.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------- WSGI


def plain_app(env, start_response):
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"made"]


class StreamingBody:
    def __init__(self, chunks, delay):
        self.chunks, self.delay, self.closed = chunks, delay, False

    def __iter__(self):
        for chunk in self.chunks:
            time.sleep(self.delay)
            yield chunk

    def close(self):
        self.closed = True


def test_wsgi_between_windows_is_the_app_itself():
    body = [b"x"]
    app = WSGIMiddleware(lambda env, start_response: body)
    assert not exectrace.status()["window_open"]
    assert app(environ("/users/1"), lambda *a: None) is body  # not wrapped, nothing recorded


def test_wsgi_tasks_status_duration_and_streaming(tmp_path):
    out = tmp_path / "t.out"
    streams = []

    def streaming_app(env, start_response):
        start_response("200 OK", [])
        streams.append(StreamingBody([b"a", b"b", b"c"], 0.02))
        return streams[-1]

    made, streamed = WSGIMiddleware(plain_app), WSGIMiddleware(streaming_app)
    with exectrace.tracing(out, c_calls=False):
        assert drive_wsgi(made, environ("/orders/12")) == ("201 Created", b"made")
        assert drive_wsgi(streamed, environ("/feed")) == ("200 OK", b"abc")
    assert streams[0].closed  # close() reaches the app's body
    spans = {s.name: s for s in tasks(out)}
    assert set(spans) == {"GET /orders/{id}", "GET /feed"}
    assert spans["GET /orders/{id}"].args["status"] == 201
    feed = spans["GET /feed"]
    assert feed.args["status"] == 200 and feed.args["duration_ms"] >= 55 and feed.dur_ns >= 55e6
    raw = out.read_bytes()
    assert b"secret-in-query" not in raw and b"/orders/12" not in raw  # no raw path or query recorded


def test_wsgi_app_exception_reaches_the_server_unchanged(tmp_path):
    out = tmp_path / "t.out"
    error = KeyError("boom")

    def failing(env, start_response):
        raise error

    with exectrace.tracing(out, c_calls=False), pytest.raises(KeyError) as info:
        WSGIMiddleware(failing)(environ("/x"), lambda *a: None)
    assert info.value is error
    (span,) = tasks(out)
    assert span.args["error"] == "KeyError" and span.args["status"] == 500


def test_a_fault_in_exectrace_never_reaches_the_app(tmp_path):
    out = tmp_path / "t.out"

    def bad_route(env):
        raise RuntimeError("route lookup broke")

    with exectrace.tracing(out, c_calls=False):
        assert drive_wsgi(WSGIMiddleware(plain_app, route=bad_route), environ("/a/9")) == ("201 Created", b"made")
    assert [s.name for s in tasks(out)] == ["GET /a/{id}"]  # fell back to the collapsed path


def test_flask_rule_and_slow_requests_counted_and_logged(tmp_path):
    flask = pytest.importorskip("flask")
    app = flask.Flask("t")

    @app.route("/users/<int:user_id>")
    def user(user_id):
        assert flask.request.environ["exectrace.task"].name == "GET /users/<int:user_id>"
        with exectrace.region("db"):  # the request's task is current: a region of it
            time.sleep(0.05 if user_id == 2 else 0)
        return str(user_id)

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, slow="40ms")  # type: ignore[method-assign]
    out = tmp_path / "t.out"
    before = exectrace.status()["slow_requests"]
    with exectrace.tracing(out, c_calls=False):
        for i in range(3):
            assert drive_wsgi(app, environ(f"/users/{i}"))[1] == str(i).encode()
    spans = tasks(out)
    assert [s.name for s in spans] == ["GET /users/<int:user_id>"] * 3
    db = [s for s in exectrace.read(out).spans() if s.category == "region" and s.name == "db"]
    assert [s.args["task"] for s in db] == ["GET /users/<int:user_id>"] * 3
    assert exectrace.status()["slow_requests"] == before + 1
    (log,) = [e for e in exectrace.read(out).logs() if e.category == "slow request"]
    assert log.name.startswith("GET /users/<int:user_id> took ") and log.name.endswith("status 200")


def test_task_arguments_are_not_kept_past_their_window(tmp_path):
    """A request whose end falls outside any window leaves nothing behind."""
    release = []

    def app(env, start_response):
        start_response("200 OK", [])
        return iter(release)

    middleware = WSGIMiddleware(app)
    with exectrace.tracing(tmp_path / "a.out", c_calls=False):
        body = middleware(environ("/late"), lambda *a: None)
    body.close()  # ends after the window: its arguments are not stored
    with exectrace.tracing(tmp_path / "b.out", c_calls=False):
        pass
    assert _annotate.pending() == 0
    assert tasks(tmp_path / "b.out") == []
    (span,) = tasks(tmp_path / "a.out")
    assert span.args.get("unfinished") is True


# ----------------------------------------------------------------- ASGI


def run_asgi(app, scope, incoming):
    """Runs an ASGI app on one connection: `incoming` messages in, sent ones out."""
    sent = []
    queue = list(incoming)

    async def receive():
        if queue:
            return queue.pop(0)
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"} if scope["type"] == "http" else {"type": "websocket.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(path, method="GET"):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}


def test_asgi_lifespan_passes_through_untouched():
    calls = []

    async def app(scope, receive, send):
        calls.append((scope, receive, send))

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(message):
        pass

    asyncio.run(ASGIMiddleware(app)(scope, receive, send))
    assert calls == [(scope, receive, send)]


def test_starlette_http_and_websocket(tmp_path):
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute

    async def item(request):
        return PlainTextResponse("ok", status_code=202)

    async def chat(websocket):
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close(code=4001)

    app = ASGIMiddleware(Starlette(routes=[Route("/items/{item_id}", item), WebSocketRoute("/ws/{room}", chat)]))
    out = tmp_path / "t.out"
    with exectrace.tracing(out, c_calls=False):
        sent = run_asgi(app, http_scope("/items/5"), [{"type": "http.request", "body": b""}])
        ws_scope = dict(http_scope("/ws/lobby"), type="websocket", scheme="ws", subprotocols=[])
        ws_sent = run_asgi(app, ws_scope, [{"type": "websocket.connect"},
                                           {"type": "websocket.receive", "text": "hi"}])
    assert sent[0]["status"] == 202
    assert [m["type"] for m in ws_sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    spans = {s.name: s for s in tasks(out)}
    assert spans["GET /items/{item_id}"].args["status"] == 202
    assert spans["WS /ws/{room}"].args["status"] == 101 and spans["WS /ws/{room}"].args["close_code"] == 4001


def test_asgi_between_windows_calls_the_app_with_the_same_objects():
    calls = []

    async def app(scope, receive, send):
        calls.append((receive, send))

    async def receive():
        return {}

    async def send(message):
        pass

    asyncio.run(ASGIMiddleware(app)(http_scope("/"), receive, send))
    assert calls == [(receive, send)]  # not wrapped


# ------------------------------------------------------------ OpenTelemetry


@pytest.fixture
def otel_tracer():
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider

    import exectrace.otel

    provider = TracerProvider()
    processor = exectrace.otel.SpanProcessor(slow="30ms")
    provider.add_span_processor(processor)
    yield provider.get_tracer("tests")
    provider.shutdown()


def test_middleware_tasks_carry_the_current_span_ids(tmp_path, otel_tracer):
    out = tmp_path / "t.out"
    with exectrace.tracing(out, c_calls=False), otel_tracer.start_as_current_span("http GET") as span:
        drive_wsgi(WSGIMiddleware(plain_app), environ("/orders/3"))
        context = span.get_span_context()
    trace = exectrace.read(out)
    check_trace(str(out))
    (request,) = [s for s in trace.spans() if s.category == "task" and s.name == "GET /orders/{id}"]
    assert request.args["trace_id"] == format(context.trace_id, "032x")
    assert request.args["span_id"] == format(context.span_id, "016x")
    (region,) = [s for s in trace.spans() if s.category == "region" and s.name == "GET /orders/{id}"]
    assert region.args["trace_id"] == request.args["trace_id"]


def test_span_processor_spans_become_tasks_and_slow_spans_are_logged(tmp_path, otel_tracer):
    out = tmp_path / "t.out"
    before = exectrace.status()["slow_spans"]
    with exectrace.tracing(out, c_calls=False), otel_tracer.start_as_current_span("checkout") as outer:
        with otel_tracer.start_as_current_span("charge card"):
            time.sleep(0.04)
        with otel_tracer.start_as_current_span("send mail"):
            pass
    spans = {s.name: s for s in tasks(out)}
    assert set(spans) == {"checkout", "charge card", "send mail"}
    trace_id = format(outer.get_span_context().trace_id, "032x")
    assert {s.args["trace_id"] for s in spans.values()} == {trace_id}
    assert spans["charge card"].args["parent_span_id"] == spans["checkout"].args["span_id"]
    assert spans["charge card"].args["duration_ms"] >= 40
    slow = sorted(e.name.split(" took ")[0] for e in exectrace.read(out).logs() if e.category == "slow span")
    assert slow == ["charge card", "checkout"]
    assert exectrace.status()["slow_spans"] == before + 2


def test_importing_exectrace_imports_no_integration_dependency(python):
    result = python("""
        import sys, exectrace
        print(sorted(m for m in ("flask", "opentelemetry", "starlette", "django", "exectrace.otel",
                                 "exectrace.middleware", "exectrace.logging") if m in sys.modules))
    """)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------- logging


def test_logging_handler_inside_and_outside_windows(tmp_path):
    formatted = []

    class CountingFormatter(logging.Formatter):
        def format(self, record):
            formatted.append(record.msg)
            return "fmt: " + super().format(record)

    logger = logging.getLogger("tests.shop")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = exectrace.logging.Handler(level="INFO")
    handler.setFormatter(CountingFormatter("%(message)s"))
    logger.addHandler(handler)
    try:
        logger.warning("before %s", "the window")
        assert formatted == []  # outside windows nothing is formatted
        out = tmp_path / "t.out"
        with exectrace.tracing(out, c_calls=False):
            logger.info("placed %d orders", 3)
            logger.debug("too low")
            logger.error("bad %d", "not a number")  # the application's mistake: not raised
        logger.warning("after")
    finally:
        logger.removeHandler(handler)
    check_trace(str(out))
    logs = [(e.category, e.name) for e in exectrace.read(out).logs()]
    assert logs == [("tests.shop", "fmt: placed 3 orders")]
    assert formatted == ["placed %d orders", "bad %d"]


# ----------------------------------------------------- the flight recorder


@pytest.mark.skipif(not hasattr(exectrace, "snapshot"),
                    reason="exectrace.snapshot() (the flight recorder) is not in this build yet; "
                           "slow requests are logged and counted instead (tested above)")
def test_slow_request_calls_snapshot_with_the_route(tmp_path, monkeypatch):  # pragma: no cover - until it lands
    out = tmp_path / "t.out"
    real = exectrace.snapshot
    reasons = []

    def spy(reason):  # records the reason, then takes the real snapshot
        reasons.append(reason)
        return real(reason)

    monkeypatch.setattr(exectrace, "snapshot", spy)

    def slow_app(env, start_response):
        time.sleep(0.05)
        start_response("200 OK", [])
        return [b""]

    with exectrace.tracing(out, c_calls=False):
        drive_wsgi(WSGIMiddleware(slow_app, slow="20ms"), environ("/reports/77"))
        drive_wsgi(WSGIMiddleware(plain_app, slow="20ms"), environ("/fast"))
    assert len(reasons) == 1 and reasons[0].startswith("slow request: GET /reports/{id} took ")


def test_django_asgi_route(python, tmp_path):
    """Django's ASGI handler: the route is resolver_match.route (a subprocess:
    Django's settings are process-wide)."""
    pytest.importorskip("django")
    out = tmp_path / "t.out"
    python(f"""
        import asyncio
        from django.conf import settings
        settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="t", MIDDLEWARE=[],
                           INSTALLED_APPS=[])
        import django
        django.setup()
        from django.core.handlers.asgi import ASGIHandler
        from django.http import HttpResponse
        from django.urls import path
        import exectrace
        from exectrace.middleware import ASGIMiddleware

        urlpatterns = [path("books/<int:book_id>/", lambda request, book_id: HttpResponse("ok"))]
        app = ASGIMiddleware(ASGIHandler())

        async def one(path):
            sent = []
            messages = [{{"type": "http.request", "body": b""}}]
            async def receive():  # the client stays connected until the response is sent
                if messages:
                    return messages.pop(0)
                await asyncio.sleep(60)
                return {{"type": "http.disconnect"}}
            async def send(message):
                sent.append(message)
            scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1", "method": "GET",
                      "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
                      "query_string": b"", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
                      "server": ("127.0.0.1", 80)}}
            await app(scope, receive, send)
            return sent[0]["status"]

        with exectrace.tracing({str(out)!r}, c_calls=False):
            assert asyncio.run(one("/books/7/")) == 200
            assert asyncio.run(one("/nope/8")) == 404
    """)
    spans = {s.name: s for s in tasks(out)}
    assert spans["GET /books/<int:book_id>/"].args["status"] == 200
    assert spans["GET /nope/{id}"].args["status"] == 404
