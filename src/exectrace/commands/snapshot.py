"""Ask a running process's flight recorder for a snapshot: sends it its
`snapshot_signal` and prints the path of the file it writes.

The process must run a flight recorder with a snapshot signal
(EXECTRACE_FLIGHT_RECORDER=30s EXECTRACE_SNAPSHOT_SIGNAL=SIGUSR2, or the same
through exectrace.start()): it then keeps a state file in a per-user
directory, which this command reads. A process of another user, or one
without a flight recorder, is refused with a message and nothing is sent.

    exectrace snapshot 4242            # waits up to 10 s for the file
    exectrace snapshot 4242 --wait 0   # just sends the signal
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from exectrace import dumpstore, flight
from exectrace.errors import ExectraceError

HELP = "ask a running process's flight recorder to write a snapshot (exectrace snapshot PID)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", help="the process id, e.g. 4242")
    parser.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                        help="wait this long for the file and print its path (default 10; 0: do not wait)")


def run(args: argparse.Namespace) -> int:
    try:
        pid = int(args.pid)
        if pid <= 0:
            raise ValueError
    except ValueError:
        raise ExectraceError(f"invalid PID {args.pid!r}: expected a process id like 4242") from None
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        raise ExectraceError(f"no process {pid}") from None
    except OSError:
        owner = None  # no /proc: os.kill below tells
    if owner is not None and owner != os.getuid():
        raise ExectraceError(f"process {pid} belongs to another user (uid {owner}); "
                             "run exectrace snapshot as that user")
    state = flight.read_state(pid)
    if state is None:
        raise ExectraceError(
            f"process {pid} has no exectrace flight recorder with a snapshot signal (no state file in "
            f"{flight.state_dir()}); start it with e.g. EXECTRACE_FLIGHT_RECORDER=30s "
            "EXECTRACE_SNAPSHOT_SIGNAL=SIGUSR2")
    directory = str(state.get("dump_dir", ""))
    before = set(_snapshots(directory, pid))
    try:
        os.kill(pid, int(getattr(signal, state["signal"])))
    except ProcessLookupError:
        raise ExectraceError(f"no process {pid}") from None
    except PermissionError:
        raise ExectraceError(f"process {pid} belongs to another user; run exectrace snapshot as that user") from None
    except (AttributeError, ValueError):
        raise ExectraceError(f"the state file of process {pid} names no known signal") from None
    if args.wait <= 0:
        print(f"sent {state['signal']} to process {pid}; its snapshot goes to {directory}")
        return 0
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        new = sorted(set(_snapshots(directory, pid)) - before)
        if new:
            print(os.path.join(directory, new[-1]))
            return 0
        time.sleep(0.05)
    raise ExectraceError(
        f"sent {state['signal']} to process {pid} but no new file appeared in {directory} within "
        f"{args.wait:g}s (refused by snapshot_cooldown? see exectrace.status() in the process)")


def _snapshots(directory: str, pid: int) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [n for n in names if (m := dumpstore.OWNED.match(n)) and int(m.group(2)) == pid]
