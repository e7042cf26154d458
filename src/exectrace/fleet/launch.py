"""`exectrace run --ship s3://...`: the shipping sidecar as a separate process.

Pure Python: the process that runs the traced program imports neither boto3
nor DuckDB; only the sidecar (``python -m exectrace ship``) does."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from typing import Optional

from exectrace.errors import ExectraceError
from exectrace.fleet import layout

#: How long `run` waits for the sidecar's last pass after the program ended.
FINAL_PASS_TIMEOUT = 120.0


def check(url_text: str) -> layout.S3Url:
    url = layout.parse_url(url_text, what="--ship")
    if importlib.util.find_spec("boto3") is None:
        raise ExectraceError("--ship needs boto3, which is not installed: pip install 'exectrace[s3]'")
    return url


def _argv(url: layout.S3Url, dump_dir: str, host: str, until_pid: int) -> list[str]:
    argv = [sys.executable, "-m", "exectrace", "ship", os.path.abspath(dump_dir), "--to", str(url),
            "--until-exit", str(until_pid), "--quiet"]
    if host:
        argv += ["--host", host]
    return argv


def _env() -> dict[str, str]:
    # the sidecar must not trace itself through the autostart hook
    return {k: v for k, v in os.environ.items() if k != "EXECTRACE_INTERVAL"}


def start_child(url: layout.S3Url, dump_dir: str, host: str) -> subprocess.Popen[bytes]:
    """The sidecar as a child of this process, shipping until stop_child()."""
    try:
        return subprocess.Popen(_argv(url, dump_dir, host, os.getpid()), env=_env(), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as e:
        raise ExectraceError(f"cannot start the shipping sidecar: {e.strerror or e}") from None


def stop_child(child: subprocess.Popen[bytes], timeout: float = FINAL_PASS_TIMEOUT) -> Optional[int]:
    """Asks the sidecar for its last pass (SIGTERM) and waits for it."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        print("exectrace run: the shipping sidecar did not finish its last pass in time; stopped it",
              file=sys.stderr)
        child.kill()
        return child.wait()


def start_detached(url: layout.S3Url, dump_dir: str, host: str) -> None:
    """The sidecar detached from this process (which is about to exec the
    command: the command keeps this pid, and the sidecar exits after a last
    pass once it is gone). Not a child of the command, so no reaping of
    children there can take it."""
    launcher = ("import os, subprocess, sys; "
                "subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, start_new_session=True)")
    try:
        subprocess.run([sys.executable, "-c", launcher, *_argv(url, dump_dir, host, os.getpid())],
                       env=_env(), check=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as e:
        raise ExectraceError(f"cannot start the shipping sidecar: {e}") from None
