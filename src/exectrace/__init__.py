"""exectrace: an automatic execution tracer for Python.

    exectrace.start(interval="15m", duration="10s")   # recurring windows -> dump dir
    exectrace.configure(interval="1m")                 # takes effect now
    with exectrace.tracing("run.out"):                 # one-shot capture of a block
        work()
    for event in exectrace.read("run.out"):            # typed events back
        ...
    with exectrace.region("checkout"):                 # user annotations, ~free
        exectrace.log("orders", "placed 3 orders")     # when no window is open
"""

from exectrace._tracecore import Region, Task, log, region, task
from exectrace._version import __version__
from exectrace.api import configure, snapshot, start, status, stop
from exectrace.capture import tracing
from exectrace.errors import ExectraceConfigError, ExectraceError
from exectrace.reader import (
    Counter,
    Frame,
    GCEvent,
    Instant,
    Metadata,
    Sample,
    Slice,
    Span,
    Step,
    Thread,
    Trace,
    read,
)

__all__ = [
    "Counter",
    "ExectraceConfigError",
    "ExectraceError",
    "Frame",
    "GCEvent",
    "Instant",
    "Metadata",
    "Region",
    "Sample",
    "Slice",
    "Span",
    "Step",
    "Task",
    "Thread",
    "Trace",
    "__version__",
    "configure",
    "log",
    "read",
    "region",
    "start",
    "snapshot",
    "status",
    "stop",
    "task",
    "tracing",
]
