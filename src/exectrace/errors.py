"""The two exception types exectrace raises."""


class ExectraceError(Exception):
    """Something exectrace cannot do: an unreadable trace file, a hook it cannot install."""


class ExectraceConfigError(ExectraceError, ValueError):
    """A setting has a bad value. The message names the setting, the value and a good example."""
