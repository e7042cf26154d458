"""WSGI and ASGI middleware: each request an exectrace task named by route.

    app.wsgi_app = WSGIMiddleware(app.wsgi_app)          # Flask
    application = WSGIMiddleware(get_wsgi_application()) # Django
    app = ASGIMiddleware(app)                            # FastAPI / Starlette / Django ASGI

In a trace window each request (HTTP, or a WebSocket connection) is a task
named ``METHOD route`` (``WS route`` for a WebSocket) whose span carries the
response ``status``, ``duration_ms`` and, when an OpenTelemetry span is
current at the start, its ``trace_id`` and ``span_id``; the handling thread
gets a region of the same name. The route is the framework's template where
one is exposed: a Flask/Werkzeug rule (``/users/<int:user_id>``), a
Starlette/FastAPI route path (``/items/{item_id}``), a Django
``resolver_match.route`` (with a leading ``/``); else the path with its ids
(numbers, UUIDs, hex ids) written ``{id}``. The query string and the raw
path are never recorded.

A request that takes ``slow`` or longer (the ``slow_request`` setting unless
given) is logged in the window (``slow request`` entry), counted in
``exectrace.status()["slow_requests"]`` and, with a flight recorder, passed to
``exectrace.snapshot(reason)``.

Inside a window the request's task is current while the app runs (regions the
app opens belong to it) and is in ``environ["exectrace.task"]`` /
``scope["exectrace.task"]``, e.g. for regions on other threads:
``environ["exectrace.task"].region("render")``.

Between windows a request costs one flag check. Nothing here raises into the
application: a fault of the middleware leaves the request untraced.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Awaitable, Iterable, Iterator, MutableMapping
from typing import Any, Callable, Optional

from exectrace import _annotate, _tracecore
from exectrace.settings import SETTINGS

__all__ = ["TASK_KEY", "ASGIMiddleware", "WSGIMiddleware", "collapse_path"]

_is_active = _tracecore.is_active

_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_ID_SEGMENT = re.compile(rf"(?:[0-9]+|{_UUID}|(?=[a-fA-F]*[0-9])[0-9a-fA-F]{{8,}})")
#: Paths longer than this are cut (with "...") in task names.
MAX_PATH = 200
_WRAPPER_ATTRIBUTES = ("app", "wsgi_app", "application", "__wrapped__")
#: The environ (WSGI) or scope (ASGI) key holding the request's exectrace.Task,
#: e.g. for regions of the request on other threads: environ[TASK_KEY].region("db").
TASK_KEY = "exectrace.task"


def collapse_path(path: str) -> str:
    """The path with its id segments (numbers, UUIDs, hex ids of 8+ digits)
    written ``{id}``: ``/users/42/orders/0f3a9c1e77`` -> ``/users/{id}/orders/{id}``."""
    path = path.split("?", 1)[0] or "/"
    collapsed = "/".join("{id}" if _ID_SEGMENT.fullmatch(part) else part for part in path.split("/"))
    return collapsed if len(collapsed) <= MAX_PATH else collapsed[:MAX_PATH] + "..."


def _slow_ns(slow: Any) -> Optional[int]:
    """None: the setting in force; else the threshold in ns (0: never)."""
    if slow is None:
        return None
    value: int = SETTINGS["slow_request"].parse(slow, given_as="slow")
    return value


def _check_route(route: Any, what: str) -> Optional[Callable[[Any], Optional[str]]]:
    if route is not None and not callable(route):
        raise TypeError(f"{what}(app, route=...) takes a function of the request's "
                        f"{'environ' if what.startswith('WSGI') else 'scope'} returning a route "
                        f"template or None, e.g. route=lambda r: '/users/{{id}}'; got {route!r}")
    checked: Optional[Callable[[Any], Optional[str]]] = route
    return checked


def _inner_apps(app: Any) -> Iterator[Any]:
    """The app and what it wraps (middlewares' .app, a bound method's
    owner), a few levels deep."""
    seen: set[int] = set()
    todo = [app]
    while todo and len(seen) < 16:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        owner = getattr(current, "__self__", None)
        if owner is not None:
            todo.append(owner)
        for attribute in _WRAPPER_ATTRIBUTES:
            try:
                inner = current.__dict__.get(attribute) if hasattr(current, "__dict__") else None
            except Exception:
                inner = None
            if inner is not None and inner is not current:
                todo.append(inner)


def _is_django_handler(app: Any) -> bool:
    return type(app).__module__.startswith("django.core.handlers.")


def _django_route(path: str) -> Optional[str]:
    from django.urls import Resolver404, resolve  # type: ignore[import-untyped, import-not-found]

    try:
        route = resolve(path).route
    except Resolver404:
        return None
    return "/" + route if route and not route.startswith("/") else route or None


# ------------------------------------------------------------------ requests


class _Request:
    """One traced request: its task, region, start time and outcome."""

    __slots__ = ("name", "task", "region", "start_ns", "status", "args", "finished", "slow_ns", "entered")

    def __init__(self, name: str, slow_ns: Optional[int]) -> None:
        self.name = name
        self.task = _tracecore.task(name)
        self.region = self.task.region(name)
        self.start_ns = time.monotonic_ns()
        self.status: Optional[int] = None
        self.finished = False
        self.entered = False
        self.slow_ns = slow_ns
        ids = _annotate.otel_ids()
        self.args: dict[str, Any] = dict(ids) if ids else {}
        if ids:
            _annotate.set_task_args(self.task, self.args)

    def enter(self) -> None:
        """Makes the task current (a context variable) for the app's regions."""
        try:
            self.task.__enter__()
            self.entered = True
        except Exception:
            pass

    def leave(self) -> None:
        """Resets the current task (once); the task was ended by finish()."""
        if self.entered:
            self.entered = False
            try:
                self.task.__exit__(None, None, None)
            except Exception:
                pass

    def finish(self, error: Optional[BaseException] = None) -> None:
        """Ends the task with its arguments (once); never raises."""
        if self.finished:
            return
        self.finished = True
        try:
            duration = time.monotonic_ns() - self.start_ns
            if error is not None:
                self.args["error"] = type(error).__name__
                if self.status is None:
                    self.status = 500
            if self.status is not None:
                self.args["status"] = self.status
            self.args["duration_ms"] = round(duration / 1e6, 3)
            _annotate.set_task_args(self.task, self.args)
            self.task.end()
            slow = self.slow_ns if self.slow_ns is not None else _annotate.slow_threshold_ns()
            if slow > 0 and duration >= slow:
                detail = f"status {self.status}" if self.status is not None else ""
                _annotate.report_slow("request", self.name, duration, detail)
        except Exception:
            pass


# ---------------------------------------------------------------------- WSGI


class WSGIMiddleware:
    """Wraps a WSGI application: each request in a trace window is an
    exectrace task ``METHOD route`` with status and duration; see the module.

    ``route``: a function of the environ returning the route template (or
    None), for frameworks exectrace does not know. ``slow``: a duration
    ("500ms"); None takes the ``slow_request`` setting in force."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *,
                 route: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
                 slow: Any = None) -> None:
        if not callable(app):
            raise TypeError("WSGIMiddleware(app) takes a WSGI application (a callable of environ and "
                            f"start_response), e.g. WSGIMiddleware(flask_app.wsgi_app); got {app!r}")
        self.app = app
        self.route = _check_route(route, "WSGIMiddleware")
        self.slow_ns = _slow_ns(slow)
        self._router: Any = None  # found on the first traced request

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _is_active():
            return self.app(environ, start_response)
        try:
            request = _Request(self._name(environ), self.slow_ns)
        except Exception:
            return self.app(environ, start_response)

        def traced_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            try:
                request.status = int(str(status)[:3])
            except Exception:
                pass
            return start_response(status, headers, exc_info)

        environ[TASK_KEY] = request.task
        request.enter()  # regions the app opens belong to the request's task
        try:
            with request.region:
                result = self.app(environ, traced_start_response)
        except BaseException as e:
            request.finish(e)
            request.leave()
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(result, (list, tuple)) or (isinstance(file_wrapper, type) and isinstance(result, file_wrapper)):
            request.finish()  # the whole body is there (or sent by the server's sendfile)
            request.leave()
            return result
        return _ClosingIterable(result, request)

    def _name(self, environ: dict[str, Any]) -> str:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        route: Optional[str] = None
        try:
            route = self.route(environ) if self.route is not None else self._framework_route(environ)
        except Exception:
            route = None
        if not route:
            route = collapse_path(str(environ.get("PATH_INFO", "") or "/"))
        return f"{method} {route}"

    def _framework_route(self, environ: dict[str, Any]) -> Optional[str]:
        router = self._router
        if router is None:
            router = self._router = _find_wsgi_router(self.app)
        kind, target = router
        if kind == "werkzeug":
            rule, _args = target.bind_to_environ(environ).match(return_rule=True)
            return str(rule.rule)
        if kind == "django":
            return _django_route(str(environ.get("PATH_INFO", "/")))
        return None


def _find_wsgi_router(app: Any) -> tuple[str, Any]:
    for candidate in _inner_apps(app):
        url_map = getattr(candidate, "url_map", None)
        if url_map is not None and hasattr(url_map, "bind_to_environ"):
            return "werkzeug", url_map
        if _is_django_handler(candidate):
            return "django", None
    return "", None


class _ClosingIterable:
    """The app's response body, passed through; the request ends when the
    server closes it (PEP 3333: after sending it all, or on a disconnect)."""

    __slots__ = ("_result", "_request")

    def __init__(self, result: Iterable[bytes], request: _Request) -> None:
        self._result = result
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except GeneratorExit:  # the server stopped iterating; close() follows
            raise
        except BaseException as e:
            self._request.finish(e)
            raise
        self._request.finish()  # all of the body was handed to the server

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._request.finish()
            self._request.leave()


# ---------------------------------------------------------------------- ASGI

_TRACED_SCOPES = ("http", "websocket")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


class ASGIMiddleware:
    """Wraps an ASGI application: each HTTP request or WebSocket connection
    in a trace window is an exectrace task (``GET /items/{item_id}``,
    ``WS /ws/{room}``) with status and duration; lifespan passes through.
    A response ends its task when its last body message has been sent.

    ``route``: a function of the scope returning the route template (or
    None). ``slow``: a duration; None takes the ``slow_request`` setting."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *,
                 route: Optional[Callable[[Scope], Optional[str]]] = None, slow: Any = None) -> None:
        if not callable(app):
            raise TypeError("ASGIMiddleware(app) takes an ASGI application (an async callable of scope, "
                            f"receive and send), e.g. ASGIMiddleware(fastapi_app); got {app!r}")
        self.app = app
        self.route = _check_route(route, "ASGIMiddleware")
        self.slow_ns = _slow_ns(slow)
        self._router: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_active() or scope.get("type") not in _TRACED_SCOPES:
            return await self.app(scope, receive, send)
        try:
            request = _Request(self._name(scope), self.slow_ns)
        except Exception:
            return await self.app(scope, receive, send)

        async def traced_send(message: Any) -> None:
            await send(message)
            try:
                kind = message.get("type")
                if kind == "http.response.start":
                    request.status = int(message.get("status", 200))
                elif kind == "http.response.body" and not message.get("more_body", False):
                    request.finish()
                elif kind == "websocket.accept":
                    request.status = 101
                elif kind == "websocket.close":
                    request.args["close_code"] = int(message.get("code", 1000))
            except Exception:
                pass

        scope[TASK_KEY] = request.task
        try:
            with request.task, request.region:
                await self.app(scope, receive, traced_send)
        except BaseException as e:
            request.finish(e)
            raise
        request.finish()

    def _name(self, scope: Scope) -> str:
        websocket = scope.get("type") == "websocket"
        method = "WS" if websocket else str(scope.get("method", "GET"))
        route: Optional[str] = None
        try:
            route = self.route(scope) if self.route is not None else self._framework_route(scope)
        except Exception:
            route = None
        if not route:
            route = collapse_path(str(scope.get("path", "") or "/"))
        return f"{method} {route}"

    def _framework_route(self, scope: Scope) -> Optional[str]:
        router = self._router
        if router is None:
            router = self._router = _find_asgi_router(self.app)
        kind, target = router
        if kind == "starlette":
            return _starlette_route(target, scope, 0)
        if kind == "django":
            path = str(scope.get("path", "/"))
            root = str(scope.get("root_path", "") or "")
            return _django_route(path[len(root):] if root and path.startswith(root) else path)
        return None


def _find_asgi_router(app: Any) -> tuple[str, Any]:
    for candidate in _inner_apps(app):
        if "starlette" in sys.modules:
            routes = getattr(getattr(candidate, "router", None), "routes", None)
            if routes is None and type(candidate).__module__.startswith("starlette.routing"):
                routes = getattr(candidate, "routes", None)  # the Router (app.add_middleware)
            if routes is not None:
                return "starlette", routes
        if _is_django_handler(candidate):
            return "django", None
    return "", None


def _starlette_route(routes: Any, scope: Scope, depth: int) -> Optional[str]:
    """The path template of the Starlette/FastAPI route matching `scope`
    fully, through Mounts; None when none does."""
    for route in routes:
        match, child = route.matches(scope)
        if getattr(match, "name", "") != "FULL":
            continue
        path = str(getattr(route, "path", "") or "")
        inner_routes = getattr(route, "routes", None)
        if inner_routes and depth < 8:
            inner = _starlette_route(inner_routes, {**scope, **child}, depth + 1)
            if inner is not None:
                return path + inner
        return path or None
    return None
