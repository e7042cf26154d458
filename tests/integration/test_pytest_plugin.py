"""The pytest plugin (entry point pytest11): `pytest --exectrace[=DIR]` traces
each test and keeps the traces of failed tests and the slowest N; without the
flag it does nothing. Each case runs pytest in a subprocess on a small suite."""

from __future__ import annotations

import subprocess
import sys

import exectrace
from perfetto_check import check_trace

SUITE = '''
import time
import exectrace

def helper_of_fast():
    return 1

def test_fast():
    assert helper_of_fast() == 1

def test_fails():
    def broken_helper():
        return 41
    assert broken_helper() == 42

def test_slow_a():
    time.sleep(0.30)

def test_slow_b():
    time.sleep(0.20)

def test_medium():
    time.sleep(0.05)

def test_sees_whether_traced():
    print("TRACING-ACTIVE" if exectrace._tracecore.is_active() else "TRACING-IDLE")
'''


def run_pytest(tmp_path, *args):
    (tmp_path / "test_suite.py").write_text(SUITE)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "-q", *args,
                           "test_suite.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_keeps_failed_and_slowest_and_lists_them(tmp_path):
    result = run_pytest(tmp_path, "--exectrace=traces", "--exectrace-keep=failed,slowest:2")
    assert result.returncode == 1, result.stdout + result.stderr  # test_fails failed, nothing else
    assert "1 failed, 5 passed" in result.stdout
    assert "TRACING-ACTIVE" in result.stdout
    kept = sorted(p.name for p in (tmp_path / "traces").iterdir())
    assert len(kept) == 3, kept
    by_test = {name.split("test_suite.py_")[1].split(".")[0]: tmp_path / "traces" / name for name in kept}
    assert set(by_test) == {"test_fails", "test_slow_a", "test_slow_b"}
    for test, path in by_test.items():
        check_trace(str(path))
        names = {s.name for s in exectrace.read(path).slices()}
        assert test in names  # the test function's own calls are in its file
    assert "broken_helper" in {s.name.rsplit(".", 1)[-1] for s in exectrace.read(by_test["test_fails"]).slices()}
    out = result.stdout
    assert "traces of failed tests:" in out and "traces of the 2 slowest passed tests:" in out
    for path in by_test.values():
        assert str(path) in out
    # slowest first
    assert out.index("test_slow_a") < out.index("test_slow_b") < out.rindex("exectrace view")


def test_bare_flag_takes_the_default_directory_not_the_next_argument(tmp_path):
    (tmp_path / "test_suite.py").write_text(SUITE)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--exectrace",
                             "test_suite.py", "--exectrace-keep=all", "-k", "fast or medium"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(p.name for p in (tmp_path / "executiontrace_tests").iterdir())
    assert [f.split("test_suite.py_")[1].split(".")[0] for f in files] == ["test_fast", "test_medium"]


def test_inactive_without_the_flag(tmp_path):
    result = run_pytest(tmp_path)
    assert "1 failed, 5 passed" in result.stdout
    assert "TRACING-IDLE" in result.stdout and "TRACING-ACTIVE" not in result.stdout
    assert not (tmp_path / "executiontrace_tests").exists()
    assert list(tmp_path.rglob("*.out")) == []  # no trace written anywhere
    assert "traces of" not in result.stdout and "exectrace view" not in result.stdout  # no summary


def test_bad_keep_value_is_a_usage_error(tmp_path):
    result = run_pytest(tmp_path, "--exectrace=t", "--exectrace-keep=failed,fastest")
    assert result.returncode == 4  # pytest's usage error
    assert "--exectrace-keep: unknown item 'fastest'" in result.stderr
    assert "slowest:5" in result.stderr
