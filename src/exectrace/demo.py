"""A built-in workload for ``exectrace demo``: a little of everything a trace shows.

- an asyncio echo server on loopback with client tasks ``fetcher-0..2``, one of
  which now and then holds the event loop for 120 ms (a slow step);
- worker threads contending for one lock (``with lock:`` and ``acquire()``), their
  orders in ``checkout`` regions, a log entry every 200 orders;
- a thread that sleeps on a timer, one that reads a pipe from a subprocess;
- objects in reference cycles, so the garbage collector has work.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import subprocess
import sys
import threading
import time

import exectrace


class Order:
    """An order that points back at itself through its lines: cyclic garbage."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.lines = [OrderLine(self, i) for i in range(3)]

    def total(self) -> float:
        return sum(line.price() for line in self.lines)


class OrderLine:
    def __init__(self, order: Order, index: int) -> None:
        self.order = order
        self.index = index

    def price(self) -> float:
        return round(1.5 * (self.index + 1) * (self.order.number % 7 + 1), 2)


def checkout(number: int) -> float:
    payload = json.dumps({"order": number, "items": list(range(number % 20))})
    order = Order(json.loads(payload)["order"])
    return order.total()


def worker(name: str, lock: threading.Lock, ledger: list[float], stop: threading.Event) -> None:
    """CPU work, then a short critical section on a shared lock."""
    n = 0
    while not stop.is_set():
        with exectrace.region("checkout"):
            total = sum(checkout(n + i) for i in range(20))
        if n % 200 == 0:
            exectrace.log("orders", f"{name}: {n * 20} orders checked out")
        if n % 2:
            with lock:
                ledger.append(total)
                time.sleep(0.002)  # holding the lock: the others wait
        else:
            lock.acquire()
            try:
                ledger.append(total)
                time.sleep(0.001)
            finally:
                lock.release()
        n += 1


def sleeper(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.05)
        gc.collect(0)


def piper(stop: threading.Event) -> None:
    """Reads lines a child process writes slowly: blocking I/O on a pipe."""
    code = "import time\nfor i in range(10**6):\n    print(i, flush=True)\n    time.sleep(0.02)\n"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        while not stop.is_set():
            child.stdout.readline()
    finally:
        child.kill()
        child.wait()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(line.upper())
        await writer.drain()
    writer.close()


async def fetcher(port: int, seconds: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = 0
    deadline = time.monotonic() + seconds
    next_slow = time.monotonic() + random.uniform(0.5, 2.0)
    while time.monotonic() < deadline:
        if time.monotonic() > next_slow:  # a blocking call in a coroutine: holds the loop
            time.sleep(0.12)
            next_slow = time.monotonic() + random.uniform(1.5, 3.0)
        writer.write(f"order {random.randrange(1000)}\n".encode())
        await writer.drain()
        await reader.readline()
        replies += 1
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    return replies


async def serve_and_fetch(seconds: float) -> int:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        tasks = [asyncio.create_task(fetcher(port, seconds), name=f"fetcher-{i}") for i in range(3)]
        replies = await asyncio.gather(*tasks)
    return sum(replies)


def run(seconds: float) -> dict[str, int]:
    """Runs the whole workload for about `seconds`; returns what it did."""
    stop = threading.Event()
    lock = threading.Lock()
    ledger: list[float] = []
    threads = [threading.Thread(target=worker, args=(f"worker-{i}", lock, ledger, stop), name=f"worker-{i}")
               for i in range(3)]
    threads.append(threading.Thread(target=sleeper, args=(stop,), name="sleeper"))
    threads.append(threading.Thread(target=piper, args=(stop,), name="piper"))
    for t in threads:
        t.start()
    try:
        replies = asyncio.run(serve_and_fetch(seconds))
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {"replies": replies, "orders": len(ledger)}
