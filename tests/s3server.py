"""Test support: a real S3-compatible server (moto's standalone server, a
subprocess on 127.0.0.1 speaking HTTP and checking SigV4 signatures) and a
loopback HTTP proxy of our own in front of it that injects faults (delays,
5xx bursts, answers lost after the request was served, the endpoint stopped
and started again). Tests import it as ``from s3server import ...``.

moto keeps its objects in memory, so "the server stopped mid-upload and
restarted" is the proxy (the only endpoint the sidecar knows) closing its
port and every connection in flight, then listening again on the same port:
for the client it is a server gone and back, and the objects stored before
are still there to be counted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Optional

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class MotoServer:
    """moto_server in a subprocess, with IAM auth enforced: only requests
    signed with the access key made by setup() are accepted."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.port = 0
        self.key_id = ""
        self.secret = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        env = dict(os.environ)
        # the first 3 requests (making the IAM user, its policy, its key) need no
        # signature; every later one must be signed with that key
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
        for attempt in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(self.port, 30)
                break
            except OSError:
                self.proc.kill()
                self.proc.wait()
                if attempt == 4:
                    raise
        import boto3

        iam = boto3.client("iam", endpoint_url=self.url, region_name=REGION,
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="shipper")
        iam.put_user_policy(UserName="shipper", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="shipper")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, endpoint: Optional[str] = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.url, region_name=REGION,
                            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
                            config=Config(s3={"addressing_style": "path"}))

    def make_bucket(self, name: str) -> None:
        c = self.client()
        c.create_bucket(Bucket=name)
        c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def env(self, endpoint: Optional[str] = None, **extra: str) -> dict[str, str]:
        """The environment of a CLI subprocess using this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECTRACE_", "AWS_"))}
        env.update(AWS_ACCESS_KEY_ID=self.key_id, AWS_SECRET_ACCESS_KEY=self.secret,
                   AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=endpoint or self.url,
                   PYTHONFAULTHANDLER="1")
        env.update(extra)
        return env

    def versions(self, bucket: str) -> Counter[str]:
        """How many versions of each key the bucket holds (versioning is on:
        every PUT that reached the store made one)."""
        c = self.client()
        counts: Counter[str] = Counter()
        for page in c.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []):
                counts[v["Key"]] += 1
        return counts


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of `upstream_port`, one request
    per connection, with faults to inject:

    - delay: seconds to wait before forwarding each request
    - fail(n, status): answer n more requests with `status` (an S3 error
      document), without forwarding them
    - lose_answers(n, method, match): forward the next n `method` requests
      (whose path holds `match`), then
      close the connection without the answer (the store did the work; the
      client cannot know)
    - stop()/start(): close the port and every connection in flight; listen
      again on the same port
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.delay = 0.0
        self._fail: list[int] = []
        self._lose: dict[str, int] = {}
        self._lose_match = ""
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) answered or lost (-1)
        self._listener: Optional[socket.socket] = None
        self._conns: set[socket.socket] = set()
        self._thread: Optional[threading.Thread] = None
        self.generation = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, n: int, status: int = 503) -> None:
        """Queued after the failures not served yet."""
        with self.lock:
            self._fail.extend([status] * n)

    def lose_answers(self, n: int, method: str = "PUT", match: str = "") -> None:
        """Only requests whose path holds `match` count."""
        with self.lock:
            self._lose[method] = n
            self._lose_match = match

    def start(self) -> FaultProxy:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):  # the old port may linger briefly
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise OSError(f"cannot listen on {self.port} again")
        s.listen(64)
        self._listener = s
        self.generation += 1
        self._thread = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            conns = list(self._conns)
        for c in conns:  # everything in flight is cut
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def puts(self) -> Counter[str]:
        with self.lock:
            return Counter(path for method, path, status in self.log if method == "PUT")

    # -- serving
    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with self.lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            self._one(conn)
        except OSError:
            pass
        finally:
            with self.lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _one(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, body = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = [line for line in lines[1:] if line]
        names = {h.split(":", 1)[0].strip().lower(): h.split(":", 1)[1].strip() for h in headers}
        if names.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "content-length" in names:
            need = int(names["content-length"])
            while len(body) < need:
                chunk = conn.recv(min(1 << 20, need - len(body)))
                if not chunk:
                    return
                body += chunk
        elif names.get("transfer-encoding", "").lower() == "chunked":
            body = _read_chunked(conn, body)
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            status = self._fail.pop(0) if self._fail else 0
            lose = self._lose.get(method, 0) > 0 and self._lose_match in path
            if lose and not status:
                self._lose[method] -= 1
        if status:
            doc = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
                   f'{"SlowDown" if status == 503 else "InternalError"}</Code>'
                   f"<Message>injected</Message></Error>").encode()
            conn.sendall(f"HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n"
                         f"Content-Length: {len(doc)}\r\nConnection: close\r\n\r\n".encode() + doc)
            with self.lock:
                self.log.append((method, path, status))
            return
        kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in ("expect", "connection")]
        request = (f"{lines[0]}\r\n" + "".join(f"{h}\r\n" for h in kept) + "Connection: close\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", self.upstream_port), 30) as up:
            up.sendall(request + body)
            answer = b""
            while True:
                chunk = up.recv(1 << 20)
                if not chunk:
                    break
                answer += chunk
        code = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
        with self.lock:
            self.log.append((method, path, -1 if lose else code))
        if lose:
            return  # served upstream; the answer never reaches the client
        conn.sendall(answer)


def _read_chunked(conn: socket.socket, body: bytes) -> bytes:
    """The raw bytes of a chunked body (chunks, the last one, trailers)."""
    pos = 0

    def line() -> bytes:
        nonlocal body, pos
        while b"\r\n" not in body[pos:]:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("connection closed inside a chunked body")
            body += chunk
        end = body.index(b"\r\n", pos)
        text, pos = body[pos:end], end + 2
        return text

    while True:
        size = int(line().split(b";")[0], 16)
        if size == 0:
            while line():
                pass
            return body[:pos]
        need = pos + size + 2
        while len(body) < need:
            chunk = conn.recv(65536)
            if not chunk:
                raise OSError("connection closed inside a chunked body")
            body += chunk
        pos = need
