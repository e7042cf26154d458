"""How many calls of blocking functions an `events` window sees, against the
truth from a profile hook that sees every C call, on stdlib workloads.

Run:  python bench/blocking_coverage.py

On 3.12+ an events window keeps CALL events only at call sites whose first
callee was a blocking C function (the others return DISABLE); a polymorphic
site that first called something else misses the blocking calls it makes
later. On 3.9-3.11 the window sees what its wrappers and the traced locks
see. min_block is 0 here, so every call counts, waits or not.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads  # noqa: E402
from exectrace import blocking, capture, settings  # noqa: E402


def producer_consumer() -> None:
    q: queue.Queue[int] = queue.Queue(maxsize=4)

    def consume() -> None:
        while q.get() >= 0:
            pass

    t = threading.Thread(target=consume)
    t.start()
    for i in range(300):
        q.put(i)
    q.put(-1)
    t.join()


def subprocesses() -> None:
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)


def asyncio_mixed() -> None:
    async def main() -> None:
        await asyncio.gather(*(asyncio.sleep(0.001 * i) for i in range(50)))
        await asyncio.to_thread(sum, range(1000))

    asyncio.run(main())


WORKLOADS = {
    "asyncio echo server": workloads.asyncio_server_round,
    "threaded server": None,  # needs a server: set up in main()
    "queue producer/consumer": producer_consumer,
    "subprocess.run": subprocesses,
    "asyncio sleeps + to_thread": asyncio_mixed,
}


def truth(run) -> collections.Counter[str]:
    """Calls of blocking functions, by name, seen by a profile hook on every thread."""
    watched = {id(obj): reason for obj, reason in blocking.callables()}
    seen: collections.Counter[str] = collections.Counter()

    def profile(frame, event, arg):  # noqa: ANN001
        if event == "c_call":
            key = id(arg)
            if key in watched:
                seen[watched[key]] += 1
                return
            # a bound C method: find its descriptor along the type's MRO
            name = getattr(arg, "__name__", "")
            for klass in type(getattr(arg, "__self__", None)).__mro__:
                desc = vars(klass).get(name)
                if desc is not None:
                    if id(desc) in watched:
                        seen[watched[id(desc)]] += 1
                    return

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
    return seen


def recorded(run) -> collections.Counter[str]:
    opened = capture.Window.open(settings.resolve(settings.defaults(), mode="events", min_block="0",
                                                  sample_interval="0", trace_locks=False))
    try:
        run()
    finally:
        closed = opened.close()
    counts: collections.Counter[str] = collections.Counter()
    try:
        data = closed.encode()
    finally:
        closed.release()
    import tempfile

    import exectrace

    with tempfile.NamedTemporaryFile(suffix=".out") as f:
        f.write(data)
        f.flush()
        trace = exectrace.read(f.name)
        for s in trace.slices():
            if s.blocking:
                counts[s.blocking] += 1
    return counts


def main() -> None:
    server = workloads.LoopbackServer()
    WORKLOADS["threaded server"] = lambda: workloads.server_round(server.address)
    print(f"blocking calls seen by an events window vs all of them, Python {sys.version.split()[0]}")
    print("| workload | reason | all calls | events window | seen |")
    print("|---|---|---|---|---|")
    for name, run in WORKLOADS.items():
        assert run is not None
        run()  # warm up: imports, caches
        want = truth(run)
        got = recorded(run)
        for reason in sorted(set(want) | set(got)):
            w, g = want.get(reason, 0), got.get(reason, 0)
            print(f"| {name} | {reason} | {w} | {g} | {g / w:.1%} |" if w else f"| {name} | {reason} | 0 | {g} | - |")
    server.close()


if __name__ == "__main__":
    main()
