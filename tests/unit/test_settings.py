"""Tests for exectrace.settings: value formats, the table, layering and error messages."""

from __future__ import annotations

import dataclasses
import datetime
import keyword
import pathlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exectrace import settings as S
from exectrace.errors import ExectraceConfigError

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40

# ---------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("1ns", 1),
        ("500ms", 500_000_000),
        ("10s", 10 * SECOND),
        ("15m", 15 * MINUTE),
        ("1h30m", 90 * MINUTE),
        ("1h1h", 2 * HOUR),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("1.s", SECOND),
        ("1.5us", 1500),
        ("2\u00b5s", 2000),  # micro sign
        ("2\u03bcs", 2000),  # greek mu
        ("  10s\n", 10 * SECOND),
        ("1h2m3s4ms5us6ns", HOUR + 2 * MINUTE + 3 * SECOND + 4_000_000 + 5_000 + 6),
        ("0s", 0),
        ("0.1s", 100_000_000),
        ("2562047h47m16.854775807s", 2**63 - 1),
        # Fractions of a nanosecond round to the nearest one.
        ("1.6ns", 2),
        ("1.4ns", 1),
        ("0.0000000016s", 2),
    ],
)
def test_parse_duration_good(text: str, ns: int) -> None:
    assert S.parse_duration(text) == ns


@pytest.mark.parametrize(
    "text",
    ["", "banana", "10", "1.5", "00", "-1s", "-0s", "10S", "1d", "1h 30m", "s", ".s", "1..5s",
     "10 s", "1e3s", "2562047h47m16.854775808s", "+1s", "1_000ms", "\u0661s"],
)
def test_parse_duration_bad(text: str) -> None:
    with pytest.raises(ValueError):
        S.parse_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0"),
        (1, "1ns"),
        (999, "999ns"),
        (1500, "1.5us"),
        (500_000_000, "500ms"),
        (1_000_001, "1.000001ms"),
        (SECOND, "1s"),
        (1_500_000_000, "1.5s"),
        (10 * SECOND, "10s"),
        (15 * MINUTE, "15m"),
        (5400 * SECOND, "1h30m"),
        (HOUR + 1, "1h1ns"),
        (MINUTE + 500_000_000, "1m500ms"),
        (HOUR + 1_500_000_000, "1h1.5s"),
        (100 * HOUR, "100h"),
    ],
)
def test_format_duration(ns: int, text: str) -> None:
    assert S.format_duration(ns) == text


@pytest.mark.parametrize("bad", [-1, True, 1.0, "1s"])
def test_format_duration_rejects_non_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        S.format_duration(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=S.MAX_DURATION_NS))
def test_duration_round_trip(ns: int) -> None:
    text = S.format_duration(ns)
    assert S.parse_duration(text) == ns
    assert text.isascii() and " " not in text


_UNITS_NS = {"ns": 1, "us": 1000, "ms": 10**6, "s": SECOND, "m": MINUTE, "h": HOUR}


@given(st.lists(st.tuples(st.integers(0, 10**5), st.sampled_from(sorted(_UNITS_NS))), min_size=1, max_size=6))
def test_parse_duration_sums_parts(parts: list[tuple[int, str]]) -> None:
    # Independent of format_duration: any concatenation of integer parts is their sum.
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert S.parse_duration(text) == sum(n * _UNITS_NS[unit] for n, unit in parts)


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        (900, 900 * SECOND),
        (0, 0),
        (0.5, 500_000_000),
        (0.1, 100_000_000),
        (1e-9, 1),
        (datetime.timedelta(minutes=15), 15 * MINUTE),
        (datetime.timedelta(days=1, microseconds=3), 24 * HOUR + 3000),
    ],
)
def test_duration_api_values(value: object, ns: int) -> None:
    assert S.parse_value("interval", value) == ("interval", ns)


@pytest.mark.parametrize(
    "value",
    [True, False, -1, -0.5, float("nan"), float("inf"), datetime.timedelta(seconds=-1),
     10**12, b"10s", ["10s"], object()],
)
def test_duration_api_values_bad(value: object) -> None:
    with pytest.raises(ExectraceConfigError):
        S.parse_value("interval", value)


# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("0", 0),
        ("1048576", MiB),
        ("100B", 100),
        ("4GiB", 4 * GiB),
        ("4gib", 4 * GiB),
        ("4 GiB", 4 * GiB),
        ("512MiB", 512 * MiB),
        ("8GB", 8 * 10**9),
        ("1kb", 1000),
        ("1KiB", KiB),
        ("2TiB", 2 * TiB),
        ("3TB", 3 * 10**12),
        ("1.5GiB", 3 * GiB // 2),
        ("1.5KB", 1500),
        ("10.0", 10),
        (" 64MiB ", 64 * MiB),
    ],
)
def test_parse_size_good(text: str, n: int) -> None:
    assert S.parse_size(text) == n


@pytest.mark.parametrize(
    "text",
    ["", "banana", "-1", "-1GiB", "1.5", "1.5B", "0.1KiB", "4G", "4 PiB", "GiB", "1,000", "1e6", "4 G iB"],
)
def test_parse_size_bad(text: str) -> None:
    with pytest.raises(ValueError):
        S.parse_size(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1500, "1500B"),
        (1000, "1KB"),
        (KiB, "1KiB"),
        (4 * GiB, "4GiB"),
        (64 * MiB, "64MiB"),
        (8 * 10**9, "8GB"),
        (3 * GiB // 2, "1536MiB"),
        (5 * TiB, "5TiB"),
        (10_112_000, "9875KiB"),  # a tie with "10112KB": binary units win
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert S.format_size(n) == text


@given(st.integers(min_value=0, max_value=2**80))
def test_size_round_trip(n: int) -> None:
    assert S.parse_size(S.format_size(n)) == n


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"]))
def test_parse_size_units(number: int, unit: str) -> None:
    multiplier = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
                  "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB}[unit]
    assert S.parse_size(f"{number}{unit}") == number * multiplier
    assert S.parse_size(f"{number} {unit.lower()}") == number * multiplier


# ---------------------------------------------------------------------------
# Every kind through parse_value: good and bad inputs
# ---------------------------------------------------------------------------

GOOD = [
    ("interval", "15m", 15 * MINUTE),
    ("interval", "0", 0),
    ("duration", "1ns", 1),
    ("duration", 2, 2 * SECOND),
    ("total_dump_size_limit", "8GiB", 8 * GiB),
    ("total_dump_size_limit", 0, 0),
    ("total_dump_size_limit", 12345, 12345),
    ("dump_dir", "/tmp/x", "/tmp/x"),
    ("dump_dir", pathlib.Path("/tmp/y"), "/tmp/y"),
    ("dump_dir", " spaced ", " spaced "),
    ("buffer_size", "64KiB", 64 * KiB),
    ("buffer_size", "64GiB", 64 * GiB),
    ("buffer_size", 1 << 20, MiB),
    ("c_calls", False, False),
    ("c_calls", "off", False),
    ("c_calls", "NO", False),
    ("c_calls", "0", False),
    ("c_calls", " True ", True),
    ("c_calls", "yes", True),
    ("c_calls", "On", True),
    ("c_calls", "1", True),
    ("min_duration", "100us", 100_000),
    ("max_depth", "64", 64),
    ("max_depth", 0, 0),
    ("max_depth", "100000", 100_000),
    ("max_depth", " 7 ", 7),
    ("include", "myapp, lib.sub", ("myapp", "lib.sub")),
    ("include", "myapp,,lib.sub,", ("myapp", "lib.sub")),
    ("include", "", ()),
    ("include", ["a", " b "], ("a", "b")),
    ("exclude", ("/usr/lib/",), ("/usr/lib/",)),
    ("exclude", [], ()),
    ("compress", True, True),
    ("clock", "tsc", "tsc"),
    ("clock", " Monotonic", "monotonic"),
    ("clock", "auto", "auto"),
]


@pytest.mark.parametrize(("name", "value", "expected"), GOOD)
def test_parse_value_good(name: str, value: object, expected: object) -> None:
    canonical, parsed = S.parse_value(name, value)
    assert canonical == name
    assert parsed == expected
    assert type(parsed) is type(expected)


BAD = [
    ("interval", "banana", ""),
    ("interval", "15", "needs a unit"),
    ("interval", "-1m", "negative"),
    ("interval", None, ""),
    ("duration", "0", "must be > 0"),
    ("duration", 0, "must be > 0"),
    ("total_dump_size_limit", "-1", "negative"),
    ("total_dump_size_limit", -1, "negative"),
    ("total_dump_size_limit", 1.5, ""),
    ("total_dump_size_limit", True, ""),
    ("total_dump_size_limit", "4 PiB", "unknown unit"),
    ("dump_dir", "", "empty"),
    ("dump_dir", "   ", "empty"),
    ("dump_dir", "a\0b", "NUL"),
    ("dump_dir", b"/tmp", ""),
    ("dump_dir", 5, ""),
    ("buffer_size", "32KiB", "between 64KiB and 64GiB"),
    ("buffer_size", "65GiB", "between 64KiB and 64GiB"),
    ("c_calls", "maybe", ""),
    ("c_calls", 1, ""),
    ("c_calls", "", ""),
    ("min_duration", "5", "needs a unit"),
    ("max_depth", "-1", "between 0 and 100000"),
    ("max_depth", 100_001, "between 0 and 100000"),
    ("max_depth", "1.5", ""),
    ("max_depth", "ten", ""),
    ("max_depth", True, ""),
    ("max_depth", 3.0, ""),
    ("include", ["a", ""], "non-empty"),
    ("include", ["a,b"], "','"),
    ("include", [1], "non-empty"),
    ("include", 5, ""),
    ("exclude", {"a"}, ""),
    ("compress", "nope", ""),
    ("clock", "fast", ""),
    ("clock", 1, ""),
]


@pytest.mark.parametrize(("name", "value", "fragment"), BAD)
def test_parse_value_bad(name: str, value: object, fragment: str) -> None:
    setting = S.SETTINGS[name]
    with pytest.raises(ExectraceConfigError) as info:
        S.parse_value(name, value)
    message = str(info.value)
    assert message.startswith(f"invalid {name} {value!r}: ")
    assert fragment in message
    assert repr(setting.example) in message


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        S.parse_value("interval", "banana")


def test_error_message_exact_wording() -> None:
    with pytest.raises(ExectraceConfigError) as info:
        S.parse_value("interval", "banana")
    assert str(info.value) == (
        "invalid interval 'banana': expected a duration like '15m' (units: ns, us, ms, s, m, h)"
    )
    with pytest.raises(ExectraceConfigError) as info:
        S.parse_value("interval", "banana", source="EXECTRACE_INTERVAL")
    assert str(info.value) == (
        "invalid EXECTRACE_INTERVAL='banana': expected a duration like '15m' (units: ns, us, ms, s, m, h)"
    )


@pytest.mark.parametrize("name", list(S.SETTINGS))
def test_every_setting_names_itself_and_its_variable(name: str) -> None:
    setting = S.SETTINGS[name]
    bad = "\0bad value\0"
    if name in ("include", "exclude"):
        bad_api: object = [""]
    else:
        bad_api = bad
    with pytest.raises(ExectraceConfigError) as info:
        S.parse_value(name, bad_api)
    assert f"invalid {name} {bad_api!r}" in str(info.value)
    assert repr(setting.example) in str(info.value)

    with pytest.raises(ExectraceConfigError) as info:
        S.from_env({setting.env: "\0"})
    assert f"invalid {setting.env}='\\x00'" in str(info.value)
    assert repr(setting.example) in str(info.value)


# ---------------------------------------------------------------------------
# Names, aliases and suggestions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["interval", "duration", "total_dump_size_limit"])
def test_seed_aliases(name: str) -> None:
    alias = f"obs.execution_tracer.{name}"
    assert alias in S.SETTINGS[name].aliases
    example = S.SETTINGS[name].example
    assert S.parse_value(alias, example) == S.parse_value(name, example)
    resolved = S.resolve(S.defaults(), **{alias: example})
    assert resolved.as_dict()[name] == S.parse_value(name, example)[1]
    assert resolved[alias] == resolved[name]


def test_error_for_alias_names_the_alias() -> None:
    with pytest.raises(ExectraceConfigError, match=r"^invalid obs\.execution_tracer\.duration '0s': must be > 0"):
        S.parse_value("obs.execution_tracer.duration", "0s")


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("intervl", "interval"),
        ("Interval", "interval"),
        ("buffersize", "buffer_size"),
        ("obs.execution_tracer.duraton", "obs.execution_tracer.duration"),
        ("c_call", "c_calls"),
    ],
)
def test_unknown_name_suggests(typo: str, suggestion: str) -> None:
    expected = f"unknown setting {typo!r}; did you mean {suggestion!r}?"
    with pytest.raises(ExectraceConfigError) as info:
        S.parse_value(typo, "1")
    assert str(info.value) == expected
    with pytest.raises(ExectraceConfigError) as info:
        S.resolve(S.defaults(), **{typo: "1"})
    assert str(info.value) == expected


def test_unknown_name_without_close_match_lists_the_settings() -> None:
    with pytest.raises(ExectraceConfigError) as info:
        S.parse_value("zzzzzz", "1")
    assert "did you mean" not in str(info.value)
    assert "interval, duration" in str(info.value)


def test_env_names_are_not_setting_names() -> None:
    with pytest.raises(ExectraceConfigError, match="unknown setting"):
        S.parse_value("EXECTRACE_INTERVAL", "1m")


# ---------------------------------------------------------------------------
# The table itself
# ---------------------------------------------------------------------------


def test_table_order_and_names() -> None:
    assert list(S.SETTINGS) == [
        "interval", "duration", "total_dump_size_limit", "dump_dir", "buffer_size", "c_calls",
        "min_duration", "max_depth", "include", "exclude", "compress", "clock",
        "counters_interval", "slow_step", "trace_locks", "mode", "sample_interval", "min_block",
        "host", "slow_request",
        "flight_recorder", "snapshot_cooldown", "snapshot_signal", "snapshot_on_slow_step",
        "snapshot_rss", "snapshot_cpu", "snapshot_cpu_span", "snapshot_gc_pause",
    ]
    assert [f.name for f in dataclasses.fields(S.Settings)] == list(S.SETTINGS)


@pytest.mark.parametrize("setting", list(S.SETTINGS.values()), ids=list(S.SETTINGS))
def test_table_rows_are_consistent(setting: S.Setting) -> None:
    assert setting.name.isidentifier() and not keyword.iskeyword(setting.name)
    expected_env = "EXECTRACE_DIR" if setting.name == "dump_dir" else "EXECTRACE_" + setting.name.upper()
    assert setting.env == expected_env
    assert setting.help.endswith(".") and setting.help.count(". ") == 0
    # The default is a valid stored value and its display form parses back to it.
    setting.check_stored(setting.default)
    assert setting.parse(setting.format(setting.default)) == setting.default
    # The example is a good value, as a user would type it.
    # The example is a good value (in bounds), and shows a change from the default.
    assert setting.parse(setting.example) != setting.default
    assert setting.option == "--" + setting.name.replace("_", "-")


def test_defaults() -> None:
    d = S.defaults()
    assert d.interval == 0
    assert d.duration == 10 * SECOND
    assert d.total_dump_size_limit == 4 * GiB
    assert d.dump_dir == "./executiontrace_dump"
    assert d.buffer_size == 64 * MiB
    assert d.c_calls is True
    assert d.min_duration == 0
    assert d.max_depth == 0
    assert d.include == () and d.exclude == ()
    assert d.compress is True
    assert d.clock == "auto"


def test_env_names_are_unique_and_aliases_do_not_clash() -> None:
    envs = [s.env for s in S.SETTINGS.values()]
    assert len(set(envs)) == len(envs)
    names = list(S.SETTINGS) + [a for s in S.SETTINGS.values() for a in s.aliases]
    assert len(set(names)) == len(names)


def test_markdown_table() -> None:
    table = S.markdown_table()
    lines = table.strip().splitlines()
    assert lines[0] == "| name | env | default | meaning |"
    assert lines[1] == "|---|---|---|---|"
    rows = lines[2:]
    assert len(rows) == len(S.SETTINGS)
    for row, setting in zip(rows, S.SETTINGS.values()):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 4, row
        assert cells[0] == f"`{setting.name}`"
        assert cells[1] == f"`{setting.env}`"
        assert setting.help in cells[3]
        for alias in setting.aliases:
            assert f"`{alias}`" in cells[3]
    by_name = {row.split(" | ")[0].strip("| `"): row for row in rows}
    assert "`10s`" in by_name["duration"] and "Must be > 0" in by_name["duration"]
    assert "`4GiB`" in by_name["total_dump_size_limit"]
    assert "`64MiB`" in by_name["buffer_size"] and "64KiB and 64GiB" in by_name["buffer_size"]
    assert "`./executiontrace_dump`" in by_name["dump_dir"]


# ---------------------------------------------------------------------------
# Settings objects
# ---------------------------------------------------------------------------


def test_settings_are_immutable_and_hashable() -> None:
    d = S.defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.interval = 5  # type: ignore[misc]
    assert hash(d) == hash(S.defaults())
    assert d == S.defaults()


def test_replace_takes_stored_values_and_validates() -> None:
    d = S.defaults()
    changed = d.replace(interval=15 * MINUTE, include=("myapp",), max_depth=10)
    assert changed.interval == 15 * MINUTE and changed.include == ("myapp",) and changed.max_depth == 10
    assert d.interval == 0  # the original is untouched
    assert changed.diff(d) == {"interval", "include", "max_depth"}
    assert d.diff(changed) == {"interval", "include", "max_depth"}
    assert d.diff(S.defaults()) == set()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"interval": "15m"}, "use resolve()"),
        ({"interval": -1}, "invalid interval -1"),
        ({"interval": True}, "invalid interval True"),
        ({"duration": 0}, "must be > 0"),
        ({"buffer_size": 1024}, "between 64KiB and 64GiB"),
        ({"max_depth": -1}, "between 0 and 100000"),
        ({"c_calls": 1}, "invalid c_calls 1"),
        ({"include": ["a"]}, "invalid include ['a']"),
        ({"include": (" a",)}, "invalid include"),
        ({"clock": "fast"}, "invalid clock"),
        ({"dump_dir": ""}, "invalid dump_dir"),
        ({"dump_dir": pathlib.Path("x")}, "invalid dump_dir"),
        ({"intervl": 1}, "did you mean 'interval'"),
        ({"obs.execution_tracer.interval": 1}, "unknown setting"),
    ],
)
def test_replace_rejects(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ExectraceConfigError) as info:
        S.defaults().replace(**changes)
    assert fragment in str(info.value)


def test_direct_construction_is_validated() -> None:
    values = S.defaults().as_dict()
    values["duration"] = 0
    with pytest.raises(ExectraceConfigError, match="duration"):
        S.Settings(**values)


def test_as_dict_round_trips_through_replace() -> None:
    s = S.resolve(S.defaults(), interval="1m", include="a,b", c_calls=False)
    assert list(s.as_dict()) == list(S.SETTINGS)
    assert S.defaults().replace(**s.as_dict()) == s


def test_as_display_dict() -> None:
    s = S.resolve(
        S.defaults(), interval="1h30m", min_duration=0.0015, include=["myapp", "lib.sub"],
        c_calls=False, total_dump_size_limit="8GB",
    )
    shown = s.as_display_dict()
    assert list(shown) == list(S.SETTINGS)
    assert shown["interval"] == "1h30m"
    assert shown["duration"] == "10s"
    assert shown["min_duration"] == "1.5ms"
    assert shown["total_dump_size_limit"] == "8GB"
    assert shown["buffer_size"] == "64MiB"
    assert shown["include"] == "myapp,lib.sub"
    assert shown["exclude"] == ""
    assert shown["c_calls"] == "false"
    assert shown["compress"] == "true"
    assert shown["max_depth"] == "0"
    assert all(isinstance(v, str) for v in shown.values())


settings_strategy = st.builds(
    lambda **kw: S.defaults().replace(**kw),
    interval=st.integers(0, S.MAX_DURATION_NS),
    duration=st.integers(1, S.MAX_DURATION_NS),
    total_dump_size_limit=st.integers(0, 2**64),
    dump_dir=st.text(min_size=1).filter(lambda t: t.strip() and "\0" not in t),
    buffer_size=st.integers(64 * KiB, 64 * GiB),
    c_calls=st.booleans(),
    min_duration=st.integers(0, S.MAX_DURATION_NS),
    max_depth=st.integers(0, 100_000),
    include=st.lists(st.from_regex(r"[a-z_./]+", fullmatch=True), max_size=3).map(tuple),
    exclude=st.lists(st.from_regex(r"[a-z_./]+", fullmatch=True), max_size=3).map(tuple),
    compress=st.booleans(),
    clock=st.sampled_from(["auto", "tsc", "monotonic"]),
    host=st.sampled_from(["", "web-1", "db.example.com"]),
    flight_recorder=st.integers(0, S.MAX_DURATION_NS),
    snapshot_signal=st.sampled_from(("",) + S.SNAPSHOT_SIGNALS),
    snapshot_rss=st.integers(0, 2**64),
    snapshot_cpu=st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    snapshot_cpu_span=st.integers(100_000_000, S.MAX_DURATION_NS),
)


@given(settings_strategy)
def test_display_dict_reads_back_through_env(s: S.Settings) -> None:
    # What the trace file header shows can be pasted back into the environment.
    environ = {S.SETTINGS[name].env: text for name, text in s.as_display_dict().items()}
    restored, used = S.from_env(environ)
    assert restored == s
    # An empty list displays as "", and a blank variable counts as unset.
    assert len(used) == len(S.SETTINGS) - (not s.include) - (not s.exclude) - (not s.host) - (not s.snapshot_signal)


# ---------------------------------------------------------------------------
# Layers: defaults -> env -> API
# ---------------------------------------------------------------------------


def test_from_env_empty() -> None:
    s, used = S.from_env({})
    assert s == S.defaults()
    assert used == []


def test_from_env_layers_over_base() -> None:
    base = S.defaults().replace(duration=5 * SECOND, compress=False, max_depth=3)
    environ = {
        "EXECTRACE_DURATION": "30s",
        "EXECTRACE_INTERVAL": "15m",
        "EXECTRACE_INCLUDE": "myapp, lib.sub",
        "EXECTRACE_DIR": "/var/tmp/traces",
        "EXECTRACE_MAX_DEPTH": "  ",  # blank: unset
        "EXECTRACE_UNKNOWN": "whatever",  # not in the table: ignored here
        "PATH": "/usr/bin",
    }
    s, used = S.from_env(environ, base=base)
    assert used == ["EXECTRACE_INTERVAL", "EXECTRACE_DURATION", "EXECTRACE_DIR", "EXECTRACE_INCLUDE"]
    assert s.interval == 15 * MINUTE
    assert s.duration == 30 * SECOND
    assert s.include == ("myapp", "lib.sub")
    assert s.dump_dir == "/var/tmp/traces"
    assert s.compress is False  # from the base
    assert s.max_depth == 3  # blank variable leaves the base value
    assert s.buffer_size == 64 * MiB  # default
    # Then the API layer on top.
    final = S.resolve(s, duration="1m", **{"obs.execution_tracer.interval": 600}, compress=None)
    assert final.duration == MINUTE
    assert final.interval == 10 * MINUTE
    assert final.compress is False  # None means "not given"
    assert final.diff(s) == {"duration", "interval"}


def test_from_env_error_names_the_variable() -> None:
    environ = {"EXECTRACE_INTERVAL": "15m", "EXECTRACE_BUFFER_SIZE": "lots", "EXECTRACE_CLOCK": "fast"}
    with pytest.raises(ExectraceConfigError) as info:
        S.from_env(environ)
    # The first bad value in table order is reported.
    assert str(info.value).startswith("invalid EXECTRACE_BUFFER_SIZE='lots': expected a size like '256MiB'")


def test_from_env_bound_error_names_the_variable() -> None:
    with pytest.raises(ExectraceConfigError) as info:
        S.from_env({"EXECTRACE_DURATION": "0s"})
    assert str(info.value).startswith("invalid EXECTRACE_DURATION='0s': must be > 0; expected a duration like '30s'")


def test_from_env_reads_every_variable_of_the_table() -> None:
    for setting in S.SETTINGS.values():
        environ = {setting.env: setting.example}
        assert S.from_env(environ)[1] == [setting.env]


def test_unknown_env_vars() -> None:
    warnings = S.unknown_env_vars(
        {"EXECTRACE_INTERVL": "1m", "EXECTRACE_ZZZ": "1", "EXECTRACE_INTERVAL": "1m", "PATH": "/bin"}
    )
    assert warnings == [
        "unknown variable EXECTRACE_INTERVL; did you mean EXECTRACE_INTERVAL?",
        "unknown variable EXECTRACE_ZZZ",
    ]


def test_resolve_rejects_a_setting_given_twice() -> None:
    with pytest.raises(ExectraceConfigError, match="given twice"):
        S.resolve(S.defaults(), interval="1m", **{"obs.execution_tracer.interval": "2m"})


def test_resolve_validates() -> None:
    with pytest.raises(ExectraceConfigError, match=re.escape("invalid buffer_size '1KiB'")):
        S.resolve(S.defaults(), buffer_size="1KiB")


def test_resolve_with_nothing_returns_equal_settings() -> None:
    base = S.defaults().replace(interval=MINUTE)
    assert S.resolve(base) == base
    assert S.resolve(base, interval=None) == base


def test_readme_settings_reference_is_the_table():
    """README.md's settings reference is generated from the table (paste
    settings.markdown_table() between the markers when a setting changes)."""
    from pathlib import Path

    from exectrace.settings import markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == markdown_table().strip()


def test_flight_recorder_kinds() -> None:
    assert S.resolve(S.defaults(), snapshot_cpu="90%").snapshot_cpu == pytest.approx(0.9)
    assert S.resolve(S.defaults(), snapshot_cpu=1.5).snapshot_cpu == 1.5
    assert S.resolve(S.defaults(), snapshot_signal="usr2").snapshot_signal == "SIGUSR2"
    assert S.resolve(S.defaults(), snapshot_signal="").snapshot_signal == ""
    with pytest.raises(ExectraceConfigError, match=re.escape("invalid snapshot_signal 'SIGKILL'")):
        S.resolve(S.defaults(), snapshot_signal="SIGKILL")
    with pytest.raises(ExectraceConfigError, match=re.escape("invalid snapshot_cpu '-1'")):
        S.resolve(S.defaults(), snapshot_cpu="-1")
    with pytest.raises(ExectraceConfigError, match="like '0.9'"):
        S.resolve(S.defaults(), snapshot_cpu="lots")
    # a flight recorder alone turns the automatic tracer on
    assert S.resolve(S.defaults(), flight_recorder="30s").enabled
    assert not S.defaults().enabled


def test_every_setting_has_a_scope() -> None:
    assert {s.scope for s in S.SETTINGS.values()} == {S.SCHEDULE, S.WINDOW, S.FLIGHT}
    assert [n for n, s in S.SETTINGS.items() if s.scope == S.FLIGHT] == [
        "flight_recorder", "snapshot_cooldown", "snapshot_signal", "snapshot_on_slow_step",
        "snapshot_rss", "snapshot_cpu", "snapshot_cpu_span", "snapshot_gc_pause"]
    assert [n for n, s in S.SETTINGS.items() if s.scope == S.SCHEDULE] == [
        "interval", "duration", "total_dump_size_limit", "dump_dir"]
    assert S.window_settings() == [n for n, s in S.SETTINGS.items() if s.scope == S.WINDOW]


def test_window_settings_are_what_tracing_and_record_take() -> None:
    from exectrace import tracing
    from exectrace.commands import record

    assert S.window_settings() == record.OPTIONS
    assert {"trace_locks", "counters_interval", "slow_step"} <= set(record.OPTIONS)
    assert tracing.__doc__ is not None
    listed = tracing.__doc__.split("(see exectrace.settings):")[1].split(".")[0]
    assert [name.strip() for name in listed.split(",")] == S.window_settings()


def test_from_env_by_scope() -> None:
    environ = {"EXECTRACE_INTERVAL": "banana", "EXECTRACE_TRACE_LOCKS": "false"}
    settings, used = S.from_env(environ, scope=S.WINDOW)
    assert used == ["EXECTRACE_TRACE_LOCKS"] and settings.trace_locks is False
    with pytest.raises(ExectraceConfigError, match="EXECTRACE_INTERVAL"):
        S.from_env(environ, scope=S.SCHEDULE)


@pytest.mark.parametrize(("interval", "enabled"), [(0, False), (1, True), (15 * 60 * 10**9, True)])
def test_settings_enabled(interval: int, enabled: bool) -> None:
    assert S.defaults().replace(interval=interval).enabled is enabled
    assert S.interval_enables(interval) is enabled


@pytest.mark.parametrize("bad", ["../etc", "/abs", ".hidden", "_index", "a b", "web/1", "$(id)", "x" * 254, "wéb"])
def test_host_names_are_safe_as_one_key_component(bad: str) -> None:
    with pytest.raises(ExectraceConfigError, match=r"invalid host .*'web-1'"):
        S.parse_value("host", bad)


def test_host_name_default_and_good_values() -> None:
    assert S.defaults().host == ""
    assert S.parse_value("host", " web-1.example.com ") == ("host", "web-1.example.com")
    assert S.from_env({"EXECTRACE_HOST": "db_2"})[0].host == "db_2"
    assert S.safe_host_name("my host/é") == "my_host__"
    assert S.safe_host_name("..") == "localhost"
