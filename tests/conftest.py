"""Shared test fixtures: running Python in a subprocess, checking trace files."""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

# A hung test prints every thread's stack before pytest-timeout kills it.
faulthandler.enable()

# A shell starts background jobs with SIGINT ignored, and exec'd children
# inherit "ignored" (not a handler): the tests of Ctrl-C behaviour need their
# subprocesses to get SIGINT's default disposition, as in a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def run_python(code: str, *, env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
               timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter (this one) and returns the result."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECTRACE_")}
    full_env["PYTHONFAULTHANDLER"] = "1"
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"subprocess exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


@pytest.fixture
def python():
    return run_python


@pytest.fixture
def trace_path(tmp_path):
    return tmp_path / "trace.out"
