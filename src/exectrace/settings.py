"""exectrace's settings: one declarative table, the single source of truth.

Every setting is one :class:`Setting` record in :data:`SETTINGS`: its name, its
environment variable, a *kind* (the parser for its values), its default, bounds,
a one-sentence help text and an example of a good value. Everything else is
derived from the table: the API keyword arguments (:func:`resolve`), the
environment layer (:func:`from_env`), the README reference table
(:func:`markdown_table`) and the error messages.

Values are stored parsed: durations as int nanoseconds, sizes as int bytes,
prefix lists as tuples of strings. Layers apply in order defaults -> env -> API.

A bad value raises :class:`~exectrace.errors.ExectraceConfigError` naming the
setting (or the environment variable it came from), showing the value and giving
an example of a good one::

    invalid interval 'banana': expected a duration like '15m' (units: ns, us, ms, s, m, h)

This module is imported by the autostart path, so it stays cheap to import.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, ClassVar, Generic, Optional, TypeVar

from .errors import ExectraceConfigError

__all__ = [
    "SETTINGS",
    "Bool",
    "Choice",
    "Duration",
    "Int",
    "Kind",
    "Path",
    "PrefixList",
    "Setting",
    "Settings",
    "Size",
    "FLIGHT",
    "HostName",
    "Ratio",
    "SCHEDULE",
    "SignalName",
    "WINDOW",
    "defaults",
    "format_duration",
    "format_size",
    "from_env",
    "interval_enables",
    "markdown_table",
    "parse_duration",
    "parse_size",
    "parse_value",
    "resolve",
    "unknown_env_vars",
    "window_settings",
]

T = TypeVar("T")

#: Durations are handed to the recorder as signed 64-bit nanoseconds (~292 years).
MAX_DURATION_NS = 2**63 - 1


class _Invalid(Exception):
    """Raised by a kind's parser; :class:`Setting` turns it into a full message."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# Value formats
# ---------------------------------------------------------------------------

_SECOND = 1_000_000_000
_MILLISECOND = 1_000_000
_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN, as Go accepts
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU, as Go accepts
    "ms": 1_000_000,
    "s": _SECOND,
    "m": 60 * _SECOND,
    "h": 3600 * _SECOND,
}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART.pattern})+")


def parse_duration(text: str) -> int:
    """Parse a Go-style duration ("500ms", "1h30m", "0") into int nanoseconds.

    Fractions are exact ("1.5us" is 1500ns) and rounded to the nearest nanosecond.
    Raises ValueError on anything else, including negative values and bare numbers.
    """
    try:
        return _parse_duration_text(text)
    except _Invalid as e:
        raise ValueError(f"invalid duration {text!r}" + (f": {e.reason}" if e.reason else "")) from None


def _parse_duration_text(text: str) -> int:
    s = text.strip()
    if s == "0":
        return 0
    if s.startswith("-"):
        raise _Invalid("must not be negative")
    if not _DURATION_RE.fullmatch(s):
        if re.fullmatch(_NUMBER, s):
            raise _Invalid("a number needs a unit")
        raise _Invalid()
    total = Fraction(0)
    for number, unit in _DURATION_PART.findall(s):
        total += Fraction(number) * _DURATION_UNITS[unit]
    ns = round(total)
    if ns > MAX_DURATION_NS:
        raise _Invalid("too large")
    return ns


def _decimal(n: int, unit: int) -> str:
    """``n / unit`` written exactly in decimal, where ``unit`` is a power of ten."""
    whole, frac = divmod(n, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def format_duration(ns: int) -> str:
    """The shortest Go-like spelling of ``ns`` nanoseconds: "1h30m", "500ms", "1.5us", "0".

    ``parse_duration(format_duration(ns)) == ns`` for every int in range.
    """
    if isinstance(ns, bool) or not isinstance(ns, int) or ns < 0:
        raise ValueError(f"expected a non-negative int of nanoseconds, got {ns!r}")
    if ns == 0:
        return "0"
    if ns < _SECOND:
        return _format_subsecond(ns)
    hours, rest = divmod(ns, 3600 * _SECOND)
    minutes, rest = divmod(rest, 60 * _SECOND)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes else ""
    if rest >= _SECOND:
        out += _decimal(rest, _SECOND) + "s"
    elif rest:
        out += _format_subsecond(rest)
    return out


def _format_subsecond(ns: int) -> str:
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _decimal(ns, 1_000) + "us"
    return _decimal(ns, 1_000_000) + "ms"


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(rf"({_NUMBER})\s*([a-z]*)", re.IGNORECASE)
# format_size tries these, largest first; binary units win ties.
_SIZE_FORMAT_UNITS = (
    ("TiB", 1024**4),
    ("TB", 1000**4),
    ("GiB", 1024**3),
    ("GB", 1000**3),
    ("MiB", 1024**2),
    ("MB", 1000**2),
    ("KiB", 1024),
    ("KB", 1000),
)


def parse_size(text: str) -> int:
    """Parse a size ("4GiB", "512 MiB", "8GB", "1.5GiB", "1048576") into int bytes.

    Raises ValueError on anything else, including sizes that are not a whole
    number of bytes.
    """
    try:
        return _parse_size_text(text)
    except _Invalid as e:
        raise ValueError(f"invalid size {text!r}" + (f": {e.reason}" if e.reason else "")) from None


def _parse_size_text(text: str) -> int:
    s = text.strip()
    if s.startswith("-"):
        raise _Invalid("must not be negative")
    m = _SIZE_RE.fullmatch(s)
    if not m:
        raise _Invalid()
    multiplier = _SIZE_UNITS.get(m.group(2).lower())
    if multiplier is None:
        raise _Invalid(f"unknown unit {m.group(2)!r}")
    size = Fraction(m.group(1)) * multiplier
    if size.denominator != 1:
        raise _Invalid("not a whole number of bytes")
    return int(size)


def format_size(n: int) -> str:
    """The shortest exact spelling of ``n`` bytes: "4GiB", "8GB", "1500B".

    Uses the unit giving the shortest whole-number spelling (binary units win
    ties), else plain bytes. ``parse_size(format_size(n)) == n`` for every n >= 0.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"expected a non-negative int of bytes, got {n!r}")
    best = f"{n}B"
    if n == 0:
        return best
    for unit, multiplier in _SIZE_FORMAT_UNITS:
        if n % multiplier == 0:
            candidate = f"{n // multiplier}{unit}"
            if len(candidate) < len(best):
                best = candidate
    return best


# ---------------------------------------------------------------------------
# Kinds: the parsers a Setting is built from
# ---------------------------------------------------------------------------


class Kind(Generic[T]):
    """How one type of setting value is read, checked and displayed.

    ``parse`` takes a value as a user gives it (a string from the environment or
    the command line, or a Python value through the API) and returns the stored
    form, raising ``_Invalid`` otherwise. ``format`` turns a stored value back
    into a string ``parse`` accepts. ``is_stored`` says whether a value already
    is in stored form (for :meth:`Settings.replace`).
    """

    #: What a good value is, for "expected {what} like {example}".
    what: ClassVar[str] = "a value"
    #: What the stored form is, for errors from Settings.replace.
    stored_what: ClassVar[str] = "a value"

    @property
    def hint(self) -> str:
        """Extra help appended to error messages, e.g. the accepted units."""
        return ""

    def parse(self, value: object) -> T:
        if isinstance(value, str):
            return self.parse_text(value)
        return self.parse_api(value)

    def parse_text(self, text: str) -> T:
        raise NotImplementedError

    def parse_api(self, value: object) -> T:
        """Parse a non-string Python value; by default only strings are accepted."""
        raise _Invalid()

    def format(self, value: T) -> str:
        return str(value)

    def is_stored(self, value: object) -> bool:
        raise NotImplementedError


class Duration(Kind[int]):
    """Stored as int nanoseconds. Strings are Go-style ("1h30m"); numbers are seconds."""

    what = "a duration"
    stored_what = "an int of nanoseconds"

    @property
    def hint(self) -> str:
        return "(units: ns, us, ms, s, m, h)"

    def parse_text(self, text: str) -> int:
        return _parse_duration_text(text)

    def parse_api(self, value: object) -> int:
        if isinstance(value, datetime.timedelta):
            ns = (value.days * 86400 + value.seconds) * _SECOND + value.microseconds * 1000
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Invalid()
            ns = round(Fraction(value) * _SECOND)
        else:
            raise _Invalid()
        if ns < 0:
            raise _Invalid("must not be negative")
        if ns > MAX_DURATION_NS:
            raise _Invalid("too large")
        return ns

    def format(self, value: int) -> str:
        return format_duration(value)

    def is_stored(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_DURATION_NS


class Size(Kind[int]):
    """Stored as int bytes. Strings take units B, KB..TB (1000s), KiB..TiB (1024s)."""

    what = "a size"
    stored_what = "an int of bytes"

    @property
    def hint(self) -> str:
        return "(units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"

    def parse_text(self, text: str) -> int:
        return _parse_size_text(text)

    def parse_api(self, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid()
        if value < 0:
            raise _Invalid("must not be negative")
        return value

    def format(self, value: int) -> str:
        return format_size(value)

    def is_stored(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Bool(Kind[bool]):
    what = "a boolean"
    stored_what = "a bool"

    @property
    def hint(self) -> str:
        return "(true/false, yes/no, on/off, 1/0)"

    def parse_text(self, text: str) -> bool:
        s = text.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise _Invalid()

    def parse_api(self, value: object) -> bool:
        if isinstance(value, bool):
            return value
        raise _Invalid()

    def format(self, value: bool) -> str:
        return "true" if value else "false"

    def is_stored(self, value: object) -> bool:
        return isinstance(value, bool)


class Int(Kind[int]):
    what = "an integer"
    stored_what = "an int"

    def parse_text(self, text: str) -> int:
        s = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", s):
            raise _Invalid()
        return int(s)

    def parse_api(self, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid()
        return value

    def is_stored(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


class Choice(Kind[str]):
    """One of a fixed set of lower-case strings; matched case-insensitively."""

    what = "a value"
    stored_what = "a str"

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    @property
    def hint(self) -> str:
        return "(one of: " + ", ".join(self.choices) + ")"

    def parse_text(self, text: str) -> str:
        s = text.strip().lower()
        if s not in self.choices:
            raise _Invalid()
        return s

    def is_stored(self, value: object) -> bool:
        return value in self.choices


class PrefixList(Kind[tuple[str, ...]]):
    """Module names or path prefixes: "myapp, lib.sub" or ["myapp", "lib.sub"]."""

    what = "a comma-separated list of modules or paths"
    stored_what = "a tuple of str"

    def parse_text(self, text: str) -> tuple[str, ...]:
        return self._check(item.strip() for item in text.split(",") if item.strip())

    def parse_api(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, (list, tuple)):
            raise _Invalid()
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise _Invalid("items must be non-empty strings")
            if "," in item:
                raise _Invalid("items must not contain ','")
        return self._check(item.strip() for item in value)

    @staticmethod
    def _check(items: Iterable[str]) -> tuple[str, ...]:
        result = tuple(items)
        if any("\0" in item for item in result):
            raise _Invalid("must not contain NUL bytes")
        return result

    def format(self, value: tuple[str, ...]) -> str:
        return ",".join(value)

    def is_stored(self, value: object) -> bool:
        return isinstance(value, tuple) and all(
            isinstance(item, str) and item and item == item.strip() and not ("," in item or "\0" in item)
            for item in value
        )


class Path(Kind[str]):
    """A filesystem path, stored as the string given (``os.PathLike`` is accepted)."""

    what = "a directory path"
    stored_what = "a str"

    def parse_text(self, text: str) -> str:
        if not text.strip():
            raise _Invalid("must not be empty")
        if "\0" in text:
            raise _Invalid("must not contain NUL bytes")
        return text

    def parse_api(self, value: object) -> str:
        if not isinstance(value, os.PathLike):
            raise _Invalid()
        path = os.fspath(value)
        if not isinstance(path, str):
            raise _Invalid()
        return self.parse_text(path)

    def is_stored(self, value: object) -> bool:
        return isinstance(value, str) and bool(value.strip()) and "\0" not in value


#: A host name as it appears in trace files and object keys: letters, digits,
#: '.', '_' and '-', starting with a letter or digit (so never "..", "_index").
_HOST_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


class HostName(Kind[str]):
    """A host name, safe as one path or key component; "" means the system's own."""

    what = "a host name"
    stored_what = "a str"

    @property
    def hint(self) -> str:
        return "(letters, digits, '.', '_', '-'; starting with a letter or digit)"

    def parse_text(self, text: str) -> str:
        s = text.strip()
        if s and not _HOST_RE.fullmatch(s):
            raise _Invalid()
        return s

    def is_stored(self, value: object) -> bool:
        return isinstance(value, str) and (value == "" or bool(_HOST_RE.fullmatch(value)))


def safe_host_name(name: str) -> str:
    """A host name (socket.gethostname()'s) made usable as a HostName."""
    safe = "".join(c if c.isalnum() and c.isascii() or c in "-_." else "_" for c in name)
    safe = safe.lstrip("._-")[:253]
    return safe or "localhost"


class Ratio(Kind[float]):
    """A non-negative fraction: "0.9", "90%", 1.5 (of a CPU core, say)."""

    what = "a fraction"
    stored_what = "a float"

    @property
    def hint(self) -> str:
        return "(a number like 0.9 or a percentage like 90%)"

    def parse_text(self, text: str) -> float:
        s = text.strip()
        scale = 1.0
        if s.endswith("%"):
            s, scale = s[:-1].strip(), 0.01
        if not re.fullmatch(rf"{_NUMBER}(?:[eE][+-]?[0-9]+)?", s):
            raise _Invalid()
        return self._check(float(s) * scale)

    def parse_api(self, value: object) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _Invalid()
        return self._check(float(value))

    @staticmethod
    def _check(value: float) -> float:
        if not math.isfinite(value):
            raise _Invalid()
        if value < 0:
            raise _Invalid("must not be negative")
        return value

    def format(self, value: float) -> str:
        return "0" if value == 0 else repr(value)

    def is_stored(self, value: object) -> bool:
        return isinstance(value, float) and math.isfinite(value) and value >= 0


#: Signals a snapshot may be asked with: ones no runtime uses for itself.
SNAPSHOT_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGQUIT", "SIGWINCH")


class SignalName(Kind[str]):
    """A signal name ("SIGUSR2", "usr2") or "" for none."""

    what = "a signal name"
    stored_what = "a str"

    @property
    def hint(self) -> str:
        return "(one of: " + ", ".join(SNAPSHOT_SIGNALS) + ", or empty for none)"

    def parse_text(self, text: str) -> str:
        s = text.strip().upper()
        if s in ("", "0", "NONE", "OFF"):
            return ""
        if not s.startswith("SIG"):
            s = "SIG" + s
        if s not in SNAPSHOT_SIGNALS:
            raise _Invalid()
        return s

    def is_stored(self, value: object) -> bool:
        return value == "" or value in SNAPSHOT_SIGNALS


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


#: A setting's scope: what it applies to.
SCHEDULE = "schedule"  # the automatic tracer's schedule and dump directory
WINDOW = "window"  # what one trace window records and how its file is written
FLIGHT = "flight"  # the flight recorder: continuous recording and its triggers


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    env: str
    kind: Kind[Any]
    default: Any
    help: str
    example: str
    #: SCHEDULE or WINDOW. Window settings are the ones `exectrace.tracing()`
    #: and `exectrace record` take (as options, and from the environment).
    scope: str
    aliases: tuple[str, ...] = ()
    min: Optional[int] = None
    max: Optional[int] = None

    @property
    def option(self) -> str:
        """The command-line option: ``--total-dump-size-limit``."""
        return "--" + self.name.replace("_", "-")

    def parse(self, value: object, *, given_as: Optional[str] = None, source: Optional[str] = None) -> Any:
        """Parse and check a value given by a user; raise ExectraceConfigError if bad.

        ``given_as`` is the name the user wrote (an alias, say) and ``source``
        the environment variable the value came from; both only change the wording.
        """
        try:
            parsed = self.kind.parse(value)
            self._check_bounds(parsed)
        except _Invalid as e:
            who = f"{source}={value!r}" if source else f"{given_as or self.name} {value!r}"
            raise ExectraceConfigError(f"invalid {who}: {self._explain(e.reason)}") from None
        return parsed

    def check_stored(self, value: object) -> None:
        """Check a value already in stored form (what :meth:`Settings.as_dict` returns)."""
        if not self.kind.is_stored(value):
            raise ExectraceConfigError(
                f"invalid {self.name} {value!r}: Settings holds parsed values: expected"
                f" {self.kind.stored_what} like {self.kind.parse(self.example)!r}"
                f" (use resolve() to parse values like {self.example!r})"
            )
        try:
            self._check_bounds(value)
        except _Invalid as e:
            raise ExectraceConfigError(f"invalid {self.name} {value!r}: {self._explain(e.reason)}") from None

    def format(self, value: Any) -> str:
        """``value`` (stored form) as a user would write it; :meth:`parse` reads it back."""
        return self.kind.format(value)

    def _check_bounds(self, value: Any) -> None:
        lo, hi = self.min, self.max
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Invalid(self.bounds_text())

    def bounds_text(self) -> str:
        """"must be > 0", "must be between 64KiB and 64GiB", ... or "" without bounds."""
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            return f"must be between {self.kind.format(lo)} and {self.kind.format(hi)}"
        if lo == 1:
            return "must be > 0"
        if lo is not None:
            return f"must be at least {self.kind.format(lo)}"
        if hi is not None:
            return f"must be at most {self.kind.format(hi)}"
        return ""

    def _explain(self, reason: str) -> str:
        expected = f"expected {self.kind.what} like {self.example!r}"
        if self.kind.hint:
            expected += " " + self.kind.hint
        return f"{reason}; {expected}" if reason else expected


_KiB = 1024
_MiB = 1024**2
_GiB = 1024**3
_ALIAS = "obs.execution_tracer."

_TABLE = (
    Setting(
        "interval", "EXECTRACE_INTERVAL", Duration(), 0,
        "Start-to-start time between trace windows; 0 disables tracing.",
        "15m", aliases=(_ALIAS + "interval",), scope=SCHEDULE,
    ),
    Setting(
        "duration", "EXECTRACE_DURATION", Duration(), 10 * _SECOND,
        "Length of each trace window.",
        "30s", aliases=(_ALIAS + "duration",), min=1, scope=SCHEDULE,
    ),
    Setting(
        "total_dump_size_limit", "EXECTRACE_TOTAL_DUMP_SIZE_LIMIT", Size(), 4 * _GiB,
        "Soft limit on the total bytes of trace files kept in the dump directory.",
        "8GiB", aliases=(_ALIAS + "total_dump_size_limit",), scope=SCHEDULE,
    ),
    Setting(
        "dump_dir", "EXECTRACE_DIR", Path(), "./executiontrace_dump",
        "Directory the trace files are written to.",
        "/var/tmp/executiontrace_dump", scope=SCHEDULE,
    ),
    Setting(
        "buffer_size", "EXECTRACE_BUFFER_SIZE", Size(), 64 * _MiB,
        "Bound on the recorder's memory; when full, the oldest records are overwritten.",
        "256MiB", min=64 * _KiB, max=64 * _GiB, scope=WINDOW,
    ),
    Setting(
        "c_calls", "EXECTRACE_C_CALLS", Bool(), True,
        "Record calls of C functions (builtins and C methods).",
        "false", scope=WINDOW,
    ),
    Setting(
        "min_duration", "EXECTRACE_MIN_DURATION", Duration(), 0,
        "Calls shorter than this are not written.",
        "50us", scope=WINDOW,
    ),
    Setting(
        "max_depth", "EXECTRACE_MAX_DEPTH", Int(), 0,
        "Calls nested deeper than this are not written; 0 means unlimited.",
        "64", min=0, max=100_000, scope=WINDOW,
    ),
    Setting(
        "include", "EXECTRACE_INCLUDE", PrefixList(), (),
        "Only trace Python code from these modules or path prefixes (all when empty).",
        "myapp,mylib.core", scope=WINDOW,
    ),
    Setting(
        "exclude", "EXECTRACE_EXCLUDE", PrefixList(), (),
        "Never trace Python code from these modules or path prefixes.",
        "myapp.vendored,/usr/lib/python3", scope=WINDOW,
    ),
    Setting(
        "compress", "EXECTRACE_COMPRESS", Bool(), True,
        "Compress the packets of trace files with zlib.",
        "false", scope=WINDOW,
    ),
    Setting(
        "clock", "EXECTRACE_CLOCK", Choice("auto", "tsc", "monotonic"), "auto",
        "Timestamp source: the CPU's TSC where safe (auto), always TSC, or CLOCK_MONOTONIC.",
        "monotonic", scope=WINDOW,
    ),
    Setting(
        "counters_interval", "EXECTRACE_COUNTERS_INTERVAL", Duration(), 10 * _MILLISECOND,
        "How often counters (RSS, CPU time, threads, GC counts) are sampled in a window; 0: never.",
        "50ms", scope=WINDOW,
    ),
    Setting(
        "slow_step", "EXECTRACE_SLOW_STEP", Duration(), 100 * _MILLISECOND,
        "An asyncio task step holding the event loop this long is flagged as slow; 0: never.",
        "250ms", scope=WINDOW,
    ),
    Setting(
        "trace_locks", "EXECTRACE_TRACE_LOCKS", Bool(), True,
        "While tracing is on, threading.Lock/RLock make locks whose `with lock:` waits are recorded.",
        "false", scope=WINDOW,
    ),
    Setting(
        "mode", "EXECTRACE_MODE", Choice("events", "calls"), "events",
        "What a window records: `events` (waits with stacks, stack samples, GC, asyncio steps, "
        "regions: ~1% overhead; the default of start() and autostart) or `calls` (every call: "
        "the default of tracing() and `exectrace record`).",
        "calls", scope=WINDOW,
    ),
    Setting(
        "sample_interval", "EXECTRACE_SAMPLE_INTERVAL", Duration(), 10 * _MILLISECOND,
        "In `events` mode, how often every thread's stack is sampled; 0: never.",
        "20ms", scope=WINDOW,
    ),
    Setting(
        "min_block", "EXECTRACE_MIN_BLOCK", Duration(), 10_000,
        "In `events` mode, calls of blocking functions that return sooner are not recorded as "
        "waits (they found their data or lock ready); their time counts as running.",
        "100us", scope=WINDOW,
    ),
    Setting(
        "host", "EXECTRACE_HOST", HostName(), "",
        "This host's name in trace files and in the keys of shipped objects (exectrace ship); empty: the system's host name.",
        "web-1", scope=WINDOW,
    ),
    Setting(
        "slow_request", "EXECTRACE_SLOW_REQUEST", Duration(), 0,
        "A request (exectrace.middleware) or OpenTelemetry span (exectrace.otel) taking this long"
        " is logged in the window as slow, counted in status() and, with a flight recorder,"
        " snapshotted; 0: never.",
        "500ms", scope=WINDOW,
    ),
    Setting(
        "flight_recorder", "EXECTRACE_FLIGHT_RECORDER", Duration(), 0,
        "Flight recorder: record continuously and keep at least this much of the past (within "
        "buffer_size), written by snapshot() and the snapshot triggers; 0: off.",
        "30s", scope=FLIGHT,
    ),
    Setting(
        "snapshot_cooldown", "EXECTRACE_SNAPSHOT_COOLDOWN", Duration(), 600 * _SECOND,
        "After a snapshot, further snapshots are refused for this long (they would rewrite "
        "the same past).",
        "1m", scope=FLIGHT,
    ),
    Setting(
        "snapshot_signal", "EXECTRACE_SNAPSHOT_SIGNAL", SignalName(), "",
        "A signal that takes a snapshot (`exectrace snapshot PID` sends it); installed only "
        "when the application has no handler for it; empty: none.",
        "SIGUSR2", scope=FLIGHT,
    ),
    Setting(
        "snapshot_on_slow_step", "EXECTRACE_SNAPSHOT_ON_SLOW_STEP", Bool(), False,
        "Take a snapshot when an asyncio task step holds the event loop for slow_step or more.",
        "true", scope=FLIGHT,
    ),
    Setting(
        "snapshot_rss", "EXECTRACE_SNAPSHOT_RSS", Size(), 0,
        "Take a snapshot when the process's resident memory exceeds this; 0: never.",
        "2GiB", scope=FLIGHT,
    ),
    Setting(
        "snapshot_cpu", "EXECTRACE_SNAPSHOT_CPU", Ratio(), 0.0,
        "Take a snapshot when the process uses more than this many CPU cores on average over "
        "snapshot_cpu_span (an overload); 0: never.",
        "0.9", scope=FLIGHT,
    ),
    Setting(
        "snapshot_cpu_span", "EXECTRACE_SNAPSHOT_CPU_SPAN", Duration(), 3 * _SECOND,
        "The span snapshot_cpu averages over.",
        "10s", min=100 * _MILLISECOND, scope=FLIGHT,
    ),
    Setting(
        "snapshot_gc_pause", "EXECTRACE_SNAPSHOT_GC_PAUSE", Duration(), 0,
        "Take a snapshot when one garbage collection pauses the process this long; 0: never.",
        "100ms", scope=FLIGHT,
    ),
)

#: The settings table, in display order, by canonical name.
SETTINGS: dict[str, Setting] = {s.name: s for s in _TABLE}

# Every name and alias a user may write, and every variable from_env reads.
_BY_NAME: dict[str, Setting] = {
    **{s.name: s for s in _TABLE},
    **{alias: s for s in _TABLE for alias in s.aliases},
}
_ENV_VARS: tuple[str, ...] = tuple(s.env for s in _TABLE)
_ENV_PREFIX = "EXECTRACE_"


def _suggest(name: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _lookup(name: str) -> Setting:
    setting = _BY_NAME.get(name)
    if setting is None:
        hint = _suggest(name, list(_BY_NAME)) or "; known settings: " + ", ".join(SETTINGS)
        raise ExectraceConfigError(f"unknown setting {name!r}{hint}")
    return setting


# ---------------------------------------------------------------------------
# Settings: the values in force
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """A complete, validated set of values, in stored form.

    The fields mirror :data:`SETTINGS` one for one (checked at import time); they
    are spelled out so type checkers know them.
    """

    interval: int
    duration: int
    total_dump_size_limit: int
    dump_dir: str
    buffer_size: int
    c_calls: bool
    min_duration: int
    max_depth: int
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    compress: bool
    clock: str
    counters_interval: int
    slow_step: int
    trace_locks: bool
    mode: str
    sample_interval: int
    min_block: int
    host: str
    slow_request: int
    flight_recorder: int
    snapshot_cooldown: int
    snapshot_signal: str
    snapshot_on_slow_step: bool
    snapshot_rss: int
    snapshot_cpu: float
    snapshot_cpu_span: int
    snapshot_gc_pause: int

    def __post_init__(self) -> None:
        for name, setting in SETTINGS.items():
            setting.check_stored(getattr(self, name))

    def __getitem__(self, name: str) -> Any:
        return getattr(self, _lookup(name).name)

    @property
    def enabled(self) -> bool:
        """Whether the automatic tracer records: windows on a schedule (an
        interval > 0), or continuously (a flight recorder)."""
        return interval_enables(self.interval) or self.flight_recorder > 0

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied; values are in stored form (as :meth:`as_dict`).

        Use :func:`resolve` for values as users write them ("15m", seconds, aliases).
        """
        for name in changes:
            if name not in SETTINGS:
                raise ExectraceConfigError(f"unknown setting {name!r}{_suggest(name, list(SETTINGS))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """``{name: stored value}`` in table order."""
        return {name: getattr(self, name) for name in SETTINGS}

    def as_display_dict(self) -> dict[str, str]:
        """``{name: value as a user writes it}``: "15m", "4GiB", "true", "a,b"."""
        return {name: s.format(getattr(self, name)) for name, s in SETTINGS.items()}

    def diff(self, other: Settings) -> set[str]:
        """Names of the settings whose values differ between ``self`` and ``other``."""
        return {name for name in SETTINGS if getattr(self, name) != getattr(other, name)}


_FIELDS = tuple(f.name for f in dataclasses.fields(Settings))
if tuple(SETTINGS) != _FIELDS:  # pragma: no cover - a programming error caught by any import
    raise RuntimeError(f"Settings fields {_FIELDS} do not match the table {tuple(SETTINGS)}")


def interval_enables(interval: int) -> bool:
    """The one rule of what turns the automatic tracer on: an interval > 0."""
    return interval > 0


def window_settings() -> list[str]:
    """Names of the settings that apply to one window (scope WINDOW), in table
    order: the options of `exectrace.tracing()` and `exectrace record`."""
    return [name for name, s in SETTINGS.items() if s.scope == WINDOW]


def defaults() -> Settings:
    """Every setting at its default."""
    return Settings(**{name: s.default for name, s in SETTINGS.items()})


def parse_value(name_or_alias: str, value: object, *, source: Optional[str] = None) -> tuple[str, Any]:
    """Parse one value as a user gives it; return ``(canonical name, stored value)``.

    ``source`` is the environment variable the value was read from, if any: the
    error message then names the variable instead of the setting.
    """
    setting = _lookup(name_or_alias)
    return setting.name, setting.parse(value, given_as=name_or_alias, source=source)


def _env_value(environ: Mapping[str, str], var: str) -> Optional[str]:
    """The variable's value, or None when unset or blank (``VAR= cmd`` clears it)."""
    raw = environ.get(var)
    return raw if raw is not None and raw.strip() else None


def from_env(environ: Mapping[str, str], base: Optional[Settings] = None,
             scope: Optional[str] = None) -> tuple[Settings, list[str]]:
    """Layer the ``EXECTRACE_*`` variables over ``base`` (defaults if None);
    with ``scope``, only the variables of the settings of that scope.

    Returns the settings and the names of the variables that were set, in table
    order. A blank variable counts as unset. Raises ExectraceConfigError, naming
    the variable, on the first bad value.
    """
    changes: dict[str, Any] = {}
    used: list[str] = []
    for setting in _TABLE:
        if scope is not None and setting.scope != scope:
            continue
        raw = _env_value(environ, setting.env)
        if raw is None:
            continue
        changes[setting.name] = setting.parse(raw, source=setting.env)
        used.append(setting.env)
    return (base if base is not None else defaults()).replace(**changes), used


def resolve(base: Settings, **api_values: Any) -> Settings:
    """Apply values given through the API (canonical names or aliases) over ``base``.

    Values are as users write them: "15m", 900 (seconds), timedelta, "8GiB",
    ["myapp"]. None means "not given" and leaves the setting as it is.
    """
    changes: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in api_values.items():
        if value is None:
            continue
        name, parsed = parse_value(key, value)
        if name in given_as:
            raise ExectraceConfigError(
                f"setting {name!r} given twice, as {given_as[name]!r} and as {key!r}"
            )
        given_as[name] = key
        changes[name] = parsed
    return base.replace(**changes)


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``EXECTRACE_*`` variable the table does not know, with a suggestion.

    Autostart calls it, which runs only when ``EXECTRACE_INTERVAL`` is set: it
    catches a misspelt companion (``EXECTRACE_DURATON``), not a misspelt
    ``EXECTRACE_INTERVAL`` (nothing is imported then).
    """
    import difflib

    suffixes = [var[len(_ENV_PREFIX) :] for var in _ENV_VARS]
    warnings = []
    for var in sorted(environ):
        if var.startswith(_ENV_PREFIX) and var not in _ENV_VARS:
            close = difflib.get_close_matches(var[len(_ENV_PREFIX) :], suffixes, n=1)
            hint = f"; did you mean {_ENV_PREFIX}{close[0]}?" if close else ""
            warnings.append(f"unknown variable {var}{hint}")
    return warnings


def markdown_table() -> str:
    """The README's reference table: one row per setting, generated from the table."""
    lines = ["| name | env | default | meaning |", "|---|---|---|---|"]
    for s in _TABLE:
        default = s.format(s.default)
        meaning = s.help
        bounds = s.bounds_text()
        if bounds:
            meaning += f" {bounds[0].upper()}{bounds[1:]}."
        if s.scope in (SCHEDULE, FLIGHT):
            meaning += " Automatic tracer only."
        if s.aliases:
            meaning += " Also accepted as " + ", ".join(f"`{a}`" for a in s.aliases) + "."
        cells = (f"`{s.name}`", f"`{s.env}`", f"`{default}`" if default else "(none)", meaning)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
