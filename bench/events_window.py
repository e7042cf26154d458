"""Issue 11's acceptance run: one default 10 s `events` window of a
CPU-bound request loop (a small class, json.dumps, fib(12) per request).

Run:  python bench/events_window.py [--seconds-after 10]

The automatic tracer starts with EXECTRACE_INTERVAL=1h (one window, then
none for an hour); the loop counts requests per second inside the window
and after it, in the same process. Prints the two rates and their ratio,
the records kept and lost, how much of the window the file covers, and
the samples taken against the samples expected (100 Hz x 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

APP = textwrap.dedent("""
    import json, sys, time
    import exectrace
    from exectrace._tracecore import is_active

    class Order:
        def __init__(self, i):
            self.id = i
            self.items = [i % 7, i % 11, i % 13]

        def total(self):
            return sum(self.items) * 1.25

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def handle(i):
        order = Order(i)
        body = json.dumps({"id": order.id, "total": order.total(), "items": order.items})
        return len(body) + fib(12)

    after = float(sys.argv[1])
    if not exectrace.status().get("enabled"):
        exectrace.start()  # what autostart does with EXECTRACE_INTERVAL set (editable installs lack the .pth)
    t0 = time.monotonic()
    counts = {}
    i = 0
    while time.monotonic() - t0 < 10.0 + after:
        handle(i)
        i += 1
        if i % 200 == 0:
            open_ = is_active()  # one flag (status() would list the dump dir)
            counts.setdefault(open_, [0, None, None, None, None])
            c = counts[open_]
            now, cpu = time.monotonic(), time.process_time()
            c[0] += 200
            if c[1] is None:
                c[1], c[3] = now, cpu
            c[2], c[4] = now, cpu
    print("RATES", {str(k): (v[0] / (v[2] - v[1]), v[0] / (v[4] - v[3]))
                    for k, v in counts.items() if v[2] and v[2] > v[1]})
""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds-after", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as dump:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
        env.update(EXECTRACE_INTERVAL="1h", EXECTRACE_DIR=dump)
        app = os.path.join(dump, "app.py")
        with open(app, "w") as f:
            f.write(APP)
        result = subprocess.run([sys.executable, app, str(args.seconds_after)], env=env,
                                capture_output=True, text=True, check=True)
        rates = eval(result.stdout.split("RATES", 1)[1])  # noqa: S307 - our own child's dict
        (name,) = [n for n in os.listdir(dump) if n.endswith(".out")]
        summary = json.loads(subprocess.run(
            [sys.executable, "-m", "exectrace", "summary", "--json", os.path.join(dump, name)],
            capture_output=True, text=True, check=True).stdout)
        meta_cmd = [sys.executable, "-c",
                    "import exectrace,sys,json; t=exectrace.read(sys.argv[1]); "
                    "print(json.dumps({k: t.metadata.get(k) for k in ('records.kept','records.lost',"
                    "'samples.kept','samples.written','window.duration_ns')}))",
                    os.path.join(dump, name)]
        meta = json.loads(subprocess.run(meta_cmd, capture_output=True, text=True, check=True).stdout)
        size = os.path.getsize(os.path.join(dump, name))
    (inside, inside_cpu), (outside, outside_cpu) = rates["True"], rates["False"]
    window_s = meta["window.duration_ns"] / 1e9
    expected = window_s * 100
    print(f"Python {sys.version.split()[0]}")
    print(f"requests/s inside the window {inside:.0f}, after it {outside:.0f}: "
          f"inside / after = {inside / outside:.3f} (wall clock)")
    print(f"requests per CPU second (all threads) inside {inside_cpu:.0f}, after {outside_cpu:.0f}: "
          f"inside / after = {inside_cpu / outside_cpu:.3f}")
    print(f"window {window_s:.2f} s, records kept {meta['records.kept']}, lost {meta['records.lost']}, "
          f"file {size / 1024:.0f} KiB ({size / window_s / 1024:.1f} KiB/s)")
    print(f"samples {meta['samples.written']} of {expected:.0f} expected at 100 Hz "
          f"({meta['samples.written'] / expected:.1%})")
    top = summary["samples"]["top"][:3]
    print("top by samples:", ", ".join(f"{t['function']} {t['self']}" for t in top))


if __name__ == "__main__":
    main()
