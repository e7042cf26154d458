"""Time of a workload untraced, under exectrace, under the floor hook and under peers."""

from __future__ import annotations

import pytest

import workloads
from conftest import MODES, tracer


@pytest.fixture(scope="module")
def loopback_server():
    server = workloads.LoopbackServer()
    yield server
    server.close()


def measure(benchmark, mode, group, target, *args):
    benchmark.group = group
    benchmark.extra_info["mode"] = mode
    with tracer(mode):
        return benchmark.pedantic(target, args=args, rounds=15, warmup_rounds=2)


@pytest.mark.parametrize("mode", MODES)
def test_call_heavy(benchmark, mode):
    measure(benchmark, mode, "call-heavy", workloads.call_heavy)


@pytest.mark.parametrize("mode", MODES)
def test_scheduler(benchmark, mode):
    assert measure(benchmark, mode, "scheduler (richards-style)", workloads.scheduler) > 1000


@pytest.mark.parametrize("mode", MODES)
def test_server(benchmark, mode, loopback_server):
    group = "threaded server over loopback"
    assert measure(benchmark, mode, group, workloads.server_round, loopback_server.address) == 600
