"""The window schedule, driven by a fake clock (ns)."""

from __future__ import annotations

from exectrace.schedule import CLOSE, OPEN, Schedule

S = 1_000_000_000


def run(schedule: Schedule, until: int, step: int = S // 100) -> list[tuple[str, int]]:
    """Steps a fake clock from 0 to `until`, acting on what is due."""
    events = []
    now = 0
    while now <= until:
        action = schedule.due(now)
        while action is not None:
            if action == OPEN:
                schedule.opened(now)
            else:
                schedule.closed(now)
            events.append((action, now))
            action = schedule.due(now)
        now += step
    return events


def opens(events):
    return [t for a, t in events if a == OPEN]


def test_first_window_opens_when_enabled_then_every_interval():
    s = Schedule(interval=10 * S, duration=2 * S)
    s.enable(0)
    events = run(s, 35 * S)
    assert opens(events) == [0, 10 * S, 20 * S, 30 * S]
    closes = [t for a, t in events if a == CLOSE]
    assert closes == [2 * S, 12 * S, 22 * S, 32 * S]


def test_interval_not_above_duration_runs_back_to_back():
    s = Schedule(interval=S, duration=3 * S)
    s.enable(0)
    events = run(s, 10 * S)
    assert opens(events) == [0, 3 * S, 6 * S, 9 * S]
    # each close is followed at once by the next open
    for (a1, t1), (a2, t2) in zip(events, events[1:]):
        if a1 == CLOSE and a2 == OPEN:
            assert t1 == t2


def test_interval_zero_never_opens():
    s = Schedule(interval=0, duration=S)
    s.enable(0)
    assert run(s, 10 * S) == []
    assert s.wake_at() is None


def test_shorter_interval_rearms_now():
    s = Schedule(interval=3600 * S, duration=S)
    s.enable(0)
    run(s, 5 * S)  # the first window ran 0..1s; the next is due at 1h
    assert s.next_start == 3600 * S
    s.set_interval(5 * S, S // 2)
    assert s.due(5 * S) == OPEN  # overdue under the new interval: now


def test_longer_interval_pushes_the_next_window_out():
    s = Schedule(interval=10 * S, duration=S)
    s.enable(0)
    run(s, 2 * S)
    s.set_interval(2 * S, 60 * S)
    assert s.next_start == 60 * S


def test_interval_zero_closes_the_window_in_progress_at_once():
    s = Schedule(interval=10 * S, duration=5 * S)
    s.enable(0)
    s.opened(0)
    s.set_interval(S, 0)
    assert s.due(S) == CLOSE
    s.closed(S)
    assert s.due(100 * S) is None and s.wake_at() is None


def test_new_duration_moves_the_end_of_the_open_window():
    s = Schedule(interval=60 * S, duration=10 * S)
    s.enable(0)
    s.opened(0)
    s.set_duration(S, 2 * S)
    assert s.due(S) is None
    assert s.due(2 * S) == CLOSE
    s.set_duration(3 * S, 30 * S)
    assert s.next_start == 60 * S


def test_reenable_after_fork_opens_at_once():
    s = Schedule(interval=60 * S, duration=S)
    s.enable(0)
    run(s, 5 * S)
    s.enable(7 * S)
    assert s.due(7 * S) == OPEN


def test_slow_close_never_schedules_in_the_past():
    s = Schedule(interval=S, duration=S)
    s.enable(0)
    s.opened(0)
    s.closed(5 * S)  # the close itself took long
    assert s.next_start == 5 * S
