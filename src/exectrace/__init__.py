"""exectrace: an automatic execution tracer for Python.

    with exectrace.tracing("run.out"):      # one-shot capture of a block
        work()
    for event in exectrace.read("run.out"):  # typed events back
        ...
"""

from exectrace._version import __version__
from exectrace.capture import tracing
from exectrace.errors import ExectraceConfigError, ExectraceError
from exectrace.reader import Counter, GCEvent, Instant, Metadata, Slice, Thread, Trace, read

__all__ = [
    "Counter",
    "ExectraceConfigError",
    "ExectraceError",
    "GCEvent",
    "Instant",
    "Metadata",
    "Slice",
    "Thread",
    "Trace",
    "__version__",
    "read",
    "tracing",
]
