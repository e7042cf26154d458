"""Workloads for the overhead benchmarks.

call_heavy   tiny Python functions and builtins: the worst case for any tracer,
             where the hook's own cost dominates
scheduler    an object-oriented task scheduler in the style of pyperformance's
             richards (written for this project): method calls, attribute
             access, short loops
server       a threaded TCP server answering requests from client threads over
             loopback: blocking I/O, locks, thread switches
"""

from __future__ import annotations

import asyncio
import json
import socket
import socketserver
import threading

# ----------------------------------------------------------------- call-heavy


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def call_heavy() -> int:
    total = fib(22)
    for i in range(20000):
        total += len(str(i)) + abs(-i)
    return total


# ------------------------------------------------------------------ scheduler
# A round-robin scheduler simulating an operating system kernel: a task queue
# of idle, worker, handler and device tasks that pass work packets around.

IDLE, WORKER, HANDLER_A, HANDLER_B, DEVICE_A, DEVICE_B = range(6)
KIND_DEVICE, KIND_WORK = 0, 1


class Packet:
    __slots__ = ("link", "owner", "kind", "count", "data")

    def __init__(self, link: Packet | None, owner: int, kind: int) -> None:
        self.link = link
        self.owner = owner
        self.kind = kind
        self.count = 0
        self.data = [0] * 4

    def append_to(self, queue: Packet | None) -> Packet:
        self.link = None
        if queue is None:
            return self
        tail = queue
        while tail.link is not None:
            tail = tail.link
        tail.link = self
        return queue


class Task:
    def __init__(self, kernel: Kernel, ident: int, priority: int, queue: Packet | None) -> None:
        self.kernel = kernel
        self.ident = ident
        self.priority = priority
        self.queue = queue
        self.waiting = queue is None
        self.held = False
        self.next_task: Task | None = None

    def runnable(self) -> bool:
        return not self.held and (not self.waiting or self.queue is not None)

    def take_packet(self) -> Packet | None:
        packet = self.queue
        if packet is not None:
            self.queue = packet.link
            self.waiting = False
        return packet

    def receive(self, packet: Packet) -> None:
        self.queue = packet.append_to(self.queue)

    def step(self, packet: Packet | None) -> Task | None:
        raise NotImplementedError


class IdleTask(Task):
    def __init__(self, kernel: Kernel, ident: int, count: int) -> None:
        super().__init__(kernel, ident, 0, None)
        self.waiting = False
        self.seed = 1
        self.count = count

    def step(self, packet: Packet | None) -> Task | None:
        self.count -= 1
        if self.count == 0:
            return self.kernel.hold_self(self)
        if self.seed & 1:
            self.seed = (self.seed >> 1) ^ 0xD008
            return self.kernel.release(DEVICE_B)
        self.seed >>= 1
        return self.kernel.release(DEVICE_A)


class WorkerTask(Task):
    def __init__(self, kernel: Kernel, ident: int, queue: Packet | None) -> None:
        super().__init__(kernel, ident, 1000, queue)
        self.destination = HANDLER_A
        self.letter = 0

    def step(self, packet: Packet | None) -> Task | None:
        if packet is None:
            return self.kernel.wait(self)
        self.destination = HANDLER_B if self.destination == HANDLER_A else HANDLER_A
        packet.owner = self.destination
        packet.count = 0
        for i in range(4):
            self.letter = self.letter % 26 + 1
            packet.data[i] = self.letter
        return self.kernel.send(packet)


class HandlerTask(Task):
    def __init__(self, kernel: Kernel, ident: int, priority: int, queue: Packet | None) -> None:
        super().__init__(kernel, ident, priority, queue)
        self.work: Packet | None = None
        self.devices: Packet | None = None

    def step(self, packet: Packet | None) -> Task | None:
        if packet is not None:
            if packet.kind == KIND_WORK:
                self.work = packet.append_to(self.work)
            else:
                self.devices = packet.append_to(self.devices)
        if self.work is not None:
            work = self.work
            if work.count >= 4:
                self.work = work.link
                return self.kernel.send(work)
            if self.devices is not None:
                device = self.devices
                self.devices = device.link
                device.data[0] = work.data[work.count]
                work.count += 1
                return self.kernel.send(device)
        return self.kernel.wait(self)


class DeviceTask(Task):
    def __init__(self, kernel: Kernel, ident: int, priority: int) -> None:
        super().__init__(kernel, ident, priority, None)
        self.pending: Packet | None = None

    def step(self, packet: Packet | None) -> Task | None:
        if packet is None:
            if self.pending is None:
                return self.kernel.wait(self)
            done, self.pending = self.pending, None
            return self.kernel.send(done)
        self.pending = packet
        return self.kernel.hold_self(self)


class Kernel:
    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.head: Task | None = None
        self.current: Task | None = None
        self.switches = 0

    def add(self, task: Task) -> None:
        self.tasks[task.ident] = task
        task.next_task = self.head
        self.head = task

    def release(self, ident: int) -> Task | None:
        task = self.tasks[ident]
        task.held = False
        assert self.current is not None
        return task if task.priority > self.current.priority else self.current

    def hold_self(self, task: Task) -> Task | None:
        task.held = True
        return task.next_task

    def wait(self, task: Task) -> Task | None:
        task.waiting = True
        return task

    def send(self, packet: Packet) -> Task | None:
        target = self.tasks[packet.owner]
        assert self.current is not None
        packet.owner = self.current.ident
        target.receive(packet)
        target.waiting = False
        return target if target.priority > self.current.priority else self.current

    def run(self) -> int:
        task = self.head
        while task is not None:
            self.current = task
            if task.runnable():
                self.switches += 1
                task = task.step(task.take_packet() if task.waiting or task.queue else None)
            else:
                task = task.next_task
        return self.switches


def scheduler(rounds: int = 8000) -> int:
    kernel = Kernel()
    kernel.add(IdleTask(kernel, IDLE, rounds))
    work = Packet(Packet(None, 0, KIND_WORK), 0, KIND_WORK)
    kernel.add(WorkerTask(kernel, WORKER, work))
    queue_a = Packet(Packet(Packet(None, DEVICE_A, KIND_DEVICE), DEVICE_A, KIND_DEVICE), DEVICE_A, KIND_DEVICE)
    kernel.add(HandlerTask(kernel, HANDLER_A, 2000, queue_a))
    queue_b = Packet(Packet(Packet(None, DEVICE_B, KIND_DEVICE), DEVICE_B, KIND_DEVICE), DEVICE_B, KIND_DEVICE)
    kernel.add(HandlerTask(kernel, HANDLER_B, 3000, queue_b))
    kernel.add(DeviceTask(kernel, DEVICE_A, 4000))
    kernel.add(DeviceTask(kernel, DEVICE_B, 5000))
    # sort the run queue by priority, highest first
    tasks = sorted(kernel.tasks.values(), key=lambda t: -t.priority)
    for a, b in zip(tasks, tasks[1:] + [None]):
        a.next_task = b
    kernel.head = tasks[0]
    return kernel.run()


# --------------------------------------------------------------------- server


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            request = json.loads(line)
            reply = {"id": request["id"], "total": sum(request["values"]), "ok": True}
            self.wfile.write(json.dumps(reply).encode() + b"\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class LoopbackServer:
    """A threaded JSON-lines TCP server on 127.0.0.1, started once."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="server", daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]  # type: ignore[return-value]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def server_round(address: tuple[str, int], clients: int = 4, requests: int = 150) -> int:
    """`clients` threads, each on its own connection, send `requests` requests."""
    answered = [0] * clients

    def client(index: int) -> None:
        with socket.create_connection(address) as sock, sock.makefile("rwb") as stream:
            for i in range(requests):
                stream.write(json.dumps({"id": i, "values": list(range(20))}).encode() + b"\n")
                stream.flush()
                reply = json.loads(stream.readline())
                answered[index] += reply["ok"]

    threads = [threading.Thread(target=client, args=(i,), name=f"client-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(answered)


# --------------------------------------------------------------- asyncio


async def _echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readline()
        if not line:
            break
        request = json.loads(line)
        writer.write(json.dumps({"id": request["id"], "sum": sum(request["values"])}).encode() + b"\n")
        await writer.drain()
    writer.close()


async def _echo_client(port: int, requests: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    for i in range(requests):
        writer.write(json.dumps({"id": i, "values": list(range(20))}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await reader.readline())
        done += reply["id"] == i
    writer.close()
    await writer.wait_closed()
    return done


async def _asyncio_server_round(clients: int, requests: int) -> int:
    server = await asyncio.start_server(_echo_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        results = await asyncio.gather(*(_echo_client(port, requests) for _ in range(clients)))
    return sum(results)


def asyncio_server_round(clients: int = 8, requests: int = 100) -> int:
    """An asyncio echo server over loopback with `clients` client tasks in the
    same loop, each sending `requests` JSON requests."""
    return asyncio.run(_asyncio_server_round(clients, requests))
