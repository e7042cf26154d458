"""pytest plugin: trace each test, keep the traces of failed and slow tests.

    pytest --exectrace                      # traces into ./executiontrace_tests
    pytest --exectrace=DIR --exectrace-keep=failed,slowest:5

Each test (setup, call and teardown) is traced into its own file with
``exectrace.tracing()`` (every Python and C call). When the test is done its
file is kept if the test failed (``failed``) or is among the N slowest
(``slowest:N``; ``all`` keeps every file), else deleted; the kept files are
listed at the end of the run. Without ``--exectrace`` the plugin does
nothing: no test is traced, no file is written.

A test that itself calls ``exectrace.tracing()`` or starts exectrace cannot
be traced by the plugin as well; such a test is run untraced (with one
warning), never failed by the plugin.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

DEFAULT_DIR = "executiontrace_tests"
DEFAULT_KEEP = "failed,slowest:5"
_KEEP_EXAMPLE = "e.g. --exectrace-keep=failed,slowest:5 (or all)"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """A bare ``--exectrace`` takes the default directory: ``pytest --exectrace
    tests/`` runs tests/ (argparse would take tests/ as the directory)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--exectrace":
            args[i] = f"--exectrace={DEFAULT_DIR}"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("exectrace", "execution traces of tests (exectrace)")
    group.addoption("--exectrace", nargs="?", const=DEFAULT_DIR, default=None, metavar="DIR",
                    help=f"trace each test into DIR (default {DEFAULT_DIR}); keep the traces "
                         "--exectrace-keep says")
    group.addoption("--exectrace-keep", default=DEFAULT_KEEP, metavar="WHAT",
                    help=f"which traces to keep: failed, slowest:N, all; comma-separated "
                         f"(default {DEFAULT_KEEP})")


@dataclass(frozen=True)
class Keep:
    failed: bool = False
    slowest: int = 0
    everything: bool = False


def parse_keep(text: str) -> Keep:
    failed = everything = False
    slowest = 0
    for part in (p.strip().lower() for p in text.split(",")):
        if part == "failed":
            failed = True
        elif part == "all":
            everything = True
        elif re.fullmatch(r"slowest:[0-9]+", part):
            slowest = int(part.split(":")[1])
        else:
            raise pytest.UsageError(f"--exectrace-keep: unknown item {part!r}; {_KEEP_EXAMPLE}")
    return Keep(failed, slowest, everything)


def pytest_configure(config: pytest.Config) -> None:
    directory = config.getoption("exectrace", None)
    if directory is None:
        return
    keep = parse_keep(str(config.getoption("exectrace_keep")))
    config.pluginmanager.register(_Tracer(os.path.abspath(directory), keep), "exectrace-tracer")


@dataclass
class _Test:
    nodeid: str
    path: str
    duration: float = 0.0
    failed: bool = False


@dataclass(eq=False)  # pytest keeps plugins in sets: hashed by identity
class _Tracer:
    directory: str
    keep: Keep
    failed: list[_Test] = field(default_factory=list)
    slowest: list[_Test] = field(default_factory=list)
    kept_all: list[_Test] = field(default_factory=list)
    current: Optional[_Test] = None
    untraced: int = 0

    def file_for(self, nodeid: str) -> str:
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:120]
        digest = hashlib.sha1(nodeid.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        return os.path.join(self.directory, f"{readable}.{digest}.out")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Optional[pytest.Item]) -> Generator[None, Any, None]:
        import exectrace
        from exectrace.settings import SETTINGS

        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        test = _Test(item.nodeid, self.file_for(item.nodeid))
        options: dict[str, Any] = {"mode": "calls"} if "mode" in SETTINGS else {}
        window = exectrace.tracing(test.path, **options)
        try:
            window.__enter__()
        except exectrace.ExectraceError as e:
            self.untraced += 1
            warnings.warn(f"exectrace: {item.nodeid} is not traced: {e}", stacklevel=1)
            yield
            return
        self.current = test
        started = time.perf_counter()
        try:
            yield
        finally:
            self.current = None
            try:
                window.__exit__(None, None, None)
            except Exception as e:  # the trace could not be written: say so, fail nothing
                warnings.warn(f"exectrace: the trace of {item.nodeid} was not written: {e}", stacklevel=1)
                test.path = ""
            test.duration = test.duration or (time.perf_counter() - started)
            if test.path:
                self._keep_or_delete(test)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test = self.current
        if test is None or report.nodeid != test.nodeid:
            return
        test.duration += report.duration
        test.failed = test.failed or bool(report.failed)

    def _keep_or_delete(self, test: _Test) -> None:
        if self.keep.everything:
            self.kept_all.append(test)
            return
        if test.failed and self.keep.failed:
            self.failed.append(test)
            return
        if self.keep.slowest > 0:
            self.slowest.append(test)
            self.slowest.sort(key=lambda t: -t.duration)
            for dropped in self.slowest[self.keep.slowest:]:
                _remove(dropped.path)
            del self.slowest[self.keep.slowest:]
            return
        _remove(test.path)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("exectrace")
        groups = [("traces of every test", self.kept_all), ("traces of failed tests", self.failed),
                  (f"traces of the {len(self.slowest)} slowest passed tests", self.slowest)]
        shown = False
        for title, tests in groups:
            if tests:
                shown = True
                write(f"{title}:")
                for test in tests:
                    write(f"  {test.duration:8.3f}s  {test.nodeid}")
                    write(f"             {test.path}")
        if not shown:
            write(f"no traces kept in {self.directory}")
        else:
            write("open one with: exectrace view FILE; summarize: exectrace summary FILE")
        if self.untraced:
            write(f"{self.untraced} test(s) could not be traced (exectrace was already tracing)")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
