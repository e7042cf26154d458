"""Tracing without a code change: started from ``exectrace-autostart.pth``.

Installing exectrace puts ``exectrace-autostart.pth`` in site-packages. At
every interpreter start it looks up two variables, ``EXECTRACE_INTERVAL``
and ``EXECTRACE_FLIGHT_RECORDER`` (the ones that turn tracing on; about 1 us,
nothing imported), and only when one is set imports this module, which reads
every ``EXECTRACE_*`` variable and starts the controller:

    EXECTRACE_INTERVAL=15m EXECTRACE_DURATION=10s python app.py
    EXECTRACE_FLIGHT_RECORDER=30s EXECTRACE_SNAPSHOT_SIGNAL=SIGUSR2 python app.py

A bad value never breaks the application: tracing stays off and one warning
naming the variable goes to stderr (or the ``exectrace`` logger).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from exectrace.controller import start_controller, warn
from exectrace.errors import ExectraceConfigError
from exectrace.settings import SETTINGS, from_env, unknown_env_vars

INTERVAL_VAR = SETTINGS["interval"].env
FLIGHT_VAR = SETTINGS["flight_recorder"].env


def start_from_env(environ: Mapping[str, str]) -> bool:
    """Starts tracing as the environment says; returns whether it did."""
    for message in unknown_env_vars(environ):
        warn(message)
    try:
        settings, given = from_env(environ)
    except ExectraceConfigError as e:
        warn(f"{e}; tracing stays off")
        return False
    if not settings.enabled:
        if given and INTERVAL_VAR not in given and FLIGHT_VAR not in given:
            warn(f"{', '.join(given)} set but {INTERVAL_VAR} is not: tracing stays off "
                 f"(set e.g. {INTERVAL_VAR}=15m, or {FLIGHT_VAR}=30s for a flight recorder)")
        return False
    start_controller(settings)
    return True


_ran = False


def run() -> None:
    """Called from the .pth file; never raises. Runs once per process: a venv
    whose lib64 links to lib reads the same .pth file twice."""
    global _ran
    if _ran:
        return
    _ran = True
    try:
        start_from_env(os.environ)
    except Exception as e:  # pragma: no cover - defensive
        try:
            warn(f"could not start tracing: {e!r}; tracing stays off")
        except Exception:
            pass
