"""A logging handler that writes log records into exectrace's trace windows.

    import logging
    import exectrace.logging
    logging.getLogger().addHandler(exectrace.logging.Handler(level="INFO"))

Inside a trace window each record at or above the handler's level becomes
``exectrace.log(logger name, message)``: an instant on the thread that
logged it (category: the logger's name, name: the formatted message), so the
trace shows the application's log lines among the calls around them. Outside
windows a record costs the handler one flag check: nothing is formatted.
The handler is opt-in (nothing is attached unless you add it) and never
raises into the application.
"""

from __future__ import annotations

import logging as _logging
from typing import Union

from exectrace import _tracecore

__all__ = ["Handler"]

_is_active = _tracecore.is_active
_log = _tracecore.log


def _check_level(level: Union[int, str]) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, str)):
        raise TypeError(f"exectrace.logging.Handler(level=...) takes a logging level, e.g. level=\"INFO\" "
                        f"or level=logging.WARNING; got {level!r}")
    if isinstance(level, str):
        number = _logging.getLevelName(level.strip().upper())
        if not isinstance(number, int):
            raise ValueError(f"exectrace.logging.Handler(level={level!r}): unknown logging level; "
                             "use one of DEBUG, INFO, WARNING, ERROR, CRITICAL, e.g. level=\"INFO\"")
        return number
    return level


class Handler(_logging.Handler):
    """Turns log records into exectrace log entries inside trace windows.

    ``level``: the lowest level written (a name such as ``"INFO"`` or a
    number; default ``NOTSET``: every record the logger passes on)."""

    def __init__(self, level: Union[int, str] = _logging.NOTSET) -> None:
        super().__init__(_check_level(level))

    def setLevel(self, level: Union[int, str]) -> None:  # noqa: N802 - logging's name
        super().setLevel(_check_level(level))

    def handle(self, record: _logging.LogRecord) -> bool:  # type: ignore[override]
        if not _is_active():  # between windows: nothing else is done
            return False
        return bool(super().handle(record))

    def emit(self, record: _logging.LogRecord) -> None:
        try:
            message = self.format(record) if self.formatter is not None else record.getMessage()
            _log(str(record.name), message)
        except Exception:  # a bad format string or argument is the application's: never raise
            pass
