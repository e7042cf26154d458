"""The fleet's pure parts: s3:// URLs, the key layout, time selections, the
sidecar's rate-limited warnings and object metadata, index rows; and that no
traced process (import exectrace, autostart, the CLI's parser, which
`exectrace run` builds before running a program in-process) loads an S3
client or DuckDB."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exectrace import dumpstore
from exectrace.errors import ExectraceError
from exectrace.fleet import index, layout

NAME = "executiontrace.2026-11-30T18_41_22.216.4242.out"


def test_parse_url():
    assert layout.parse_url("s3://my-traces/prod/") == layout.S3Url("my-traces", "prod")
    assert layout.parse_url("s3://my-traces") == layout.S3Url("my-traces", "")
    assert str(layout.parse_url("s3://a.b-c/x/y")) == "s3://a.b-c/x/y"
    for bad, fragment in (("http://b/x", "not an s3:// URL"), ("s3://B/x", "bucket name"),
                          ("s3://ab/x", "bucket name"), ("s3://bucket/a//b", "empty"),
                          ("s3://bucket/a/../b", "'..'"), ("s3://bucket/a\nb", "control")):
        with pytest.raises(ExectraceError, match=fragment) as info:
            layout.parse_url(bad)
        assert "s3://my-traces/prod" in str(info.value)


def test_keys_round_trip():
    url = layout.S3Url("traces", "fleet/prod")
    key = layout.trace_key(url, "web-1", NAME)
    assert key == f"fleet/prod/web-1/2026-11-30/{NAME}"
    obj = layout.parse_trace_key(url, key, 12)
    assert obj is not None and (obj.host, obj.name, obj.pid, obj.size) == ("web-1", NAME, 4242, 12)
    assert obj.end_time == datetime(2026, 11, 30, 18, 41, 22, 216000, tzinfo=timezone.utc)
    ikey = layout.index_key(url, "web-1", NAME)
    assert ikey == "fleet/prod/_index/date=2026-11-30/host=web-1/executiontrace.2026-11-30T18_41_22.216.4242.parquet"
    iobj = layout.parse_index_key(url, ikey)
    assert iobj is not None and (iobj.host, iobj.name) == ("web-1", NAME)
    # keys that are not the layout's are not taken for traces
    for other in (f"fleet/prod/web-1/2026-12-01/{NAME}", f"fleet/prod/web-1/{NAME}", f"fleet/prod/_index/x/{NAME}",
                  f"other/web-1/2026-11-30/{NAME}", "fleet/prod/web-1/2026-11-30/notes.txt",
                  f"fleet/prod/../2026-11-30/{NAME}"):
        assert layout.parse_trace_key(url, other) is None, other
    assert layout.parse_trace_key(layout.S3Url("traces", ""), f"web-1/2026-11-30/{NAME}") is not None


def test_object_urls():
    bucket, key = layout.parse_object_url(f"s3://traces/fleet/web-1/2026-11-30/{NAME}")
    assert bucket.bucket == "traces" and key == f"fleet/web-1/2026-11-30/{NAME}"
    with pytest.raises(ExectraceError, match="does not name a trace file"):
        layout.parse_object_url("s3://traces/fleet/web-1/notes.txt")


def test_parse_when():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert layout.parse_when("1h", now=now) == datetime(2026, 11, 30, 11, 0, tzinfo=timezone.utc)
    assert layout.parse_when("1h30m", now=now) == datetime(2026, 11, 30, 10, 30, tzinfo=timezone.utc)
    assert layout.parse_when("2026-11-29", now=now) == datetime(2026, 11, 29, tzinfo=timezone.utc)
    assert layout.parse_when("2026-11-29T18:05Z", now=now) == datetime(2026, 11, 29, 18, 5, tzinfo=timezone.utc)
    assert layout.parse_when("2026-11-29T18:05:01.250Z", now=now).microsecond == 250000
    with pytest.raises(ExectraceError, match="invalid --until 'soon'.*'1h'"):
        layout.parse_when("soon", option="--until")
    days = layout.days_between(datetime(2026, 11, 29, 23, tzinfo=timezone.utc), now)
    assert days == ["2026-11-29", "2026-11-30"]


def test_check_host():
    assert layout.check_host("web-1") == "web-1"
    for bad in ("", "_index", "../x", "a/b", ".hidden"):
        with pytest.raises(Exception, match="web-1"):
            layout.check_host(bad)


def test_rate_limited_warnings(monkeypatch):
    pytest.importorskip("boto3")
    from exectrace.fleet import ship

    lines: list[str] = []
    clock = [100.0]
    monkeypatch.setattr(ship.time, "monotonic", lambda: clock[0])
    warn = ship.RateLimitedWarnings(lines.append, every=60)
    for _ in range(5):
        warn("store", "down")
        clock[0] += 10
    warn("other", "gone")
    clock[0] += 20
    warn("store", "down")
    assert lines == ["exectrace ship: warning: down", "exectrace ship: warning: gone",
                     "exectrace ship: warning: down (4 more like it in the last minute)"]


def test_object_metadata_is_ascii_and_says_calls_without_a_mode():
    pytest.importorskip("boto3")
    from exectrace.fleet import ship

    meta = {"process.pid": 7, "python.version": "3.12.1", "exectrace.version": "0.1.0",
            "window.start": "2026-11-30T18:41:21.216Z", "window.end": "2026-11-30T18:41:22.216Z",
            "window.closed_by": "exit", "records.kept": 10, "records.lost": 0, "process.host": "hôte\nx"}
    m = ship.object_metadata("web-1", 100, "ab" * 32, meta, None)
    assert m["mode"] == "calls" and m["reason"] == "exit" and m["pid"] == "7" and m["bytes"] == "100"
    assert all(v.isascii() and "\n" not in v for v in m.values())
    assert ship.object_metadata("web-1", 5, "00", None, "not a trace")["error"] == "not a trace"
    assert index.window_mode({"settings.mode": "events"}) == "events"
    assert index.window_reason({"window.reason": "slow request", "window.closed_by": "snapshot"}) == "slow request"


def test_index_rows_carry_every_row_of_a_summary():
    summary = {
        "window": {"slices": 9},
        "functions": {"by_inclusive": [{"name": "f", "file": "a.py", "line": 3, "calls": 2,
                                        "inclusive_s": 0.5, "self_s": 0.25}]},
        "blocking": [{"reason": "io", "caller": "f", "function": "_socket.socket.recv", "count": 4,
                      "total_s": 0.000000123, "max_s": 0.0000001}],
        "regions": [{"name": "checkout", "count": 1, "total_s": 1.0, "max_s": 1.0}],
        "asyncio": {"by_task": [{"task": "t-1", "coroutine": "main", "steps": 3, "total_s": 0.1, "max_s": 0.05}]},
        "gc": {"gen0": {"count": 2, "total_s": 0.002, "max_s": 0.001, "collected": 50}},
    }
    meta = {"window.start_realtime_ns": 1_796_000_000_000_000_000, "window.duration_ns": 10**9, "process.pid": 1}
    rows = index.rows(NAME, 1234, meta, summary)
    assert [r["kind"] for r in rows] == ["window", "function", "blocking", "region", "task", "gc"]
    assert rows[2]["total_ns"] == 123 and rows[2]["max_ns"] == 100 and rows[1]["self_ns"] == 250_000_000
    assert all(r["mode"] == "calls" and r["bytes"] == 1234 and r["trace"] == NAME for r in rows)
    assert rows[0]["window_end"] == datetime(2026, 11, 30, 0, 53, 21)  # 1796000001 s after 1970, UTC, naive
    assert (rows[0]["window_end"] - rows[0]["window_start"]).total_seconds() == 1.0
    assert {c for c, _ in index.COLUMNS} >= set().union(*rows)


@pytest.mark.parametrize("how", ["import exectrace", "autostart", "cli parser"])
def test_no_s3_client_or_duckdb_in_a_traced_process(python, tmp_path, how):
    code = {
        "import exectrace": "import exectrace",
        "autostart": (
            "import exectrace._autostart as a\n"
            f"assert a.start_from_env({{'EXECTRACE_INTERVAL': '100ms', 'EXECTRACE_DURATION': '50ms', "
            f"'EXECTRACE_DIR': {str(tmp_path)!r}}})\n"
            "import time; time.sleep(0.3)\n"
            "import exectrace; exectrace.stop()"),
        "cli parser": "from exectrace.__main__ import build_parser; build_parser()",
    }[how]
    result = python(code + """
import sys
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer", "duckdb", "urllib3")
             or m in ("exectrace.fleet.s3", "exectrace.fleet.ship", "exectrace.fleet.remote", "exectrace.fleet.index"))
print("loaded:", bad)
""")
    assert result.stdout.strip().splitlines()[-1] == "loaded: []", result.stdout
    if how == "autostart":
        assert dumpstore.owned_files(str(tmp_path))
