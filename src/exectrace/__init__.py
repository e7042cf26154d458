"""exectrace: an automatic execution tracer for Python.

    with exectrace.tracing("run.out"):      # one-shot capture of a block
        work()
    for event in exectrace.read("run.out"):  # typed events back
        ...
"""

from exectrace._version import __version__
from exectrace.capture import tracing
from exectrace.errors import ExectraceConfigError, ExectraceError

__all__ = [
    "ExectraceConfigError",
    "ExectraceError",
    "__version__",
    "tracing",
]
