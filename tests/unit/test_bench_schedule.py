"""The request schedule with a fake clock: closed loop, open loop, deadlines, no polling."""

from __future__ import annotations

import pytest

from xvactor.bench.schedule import Schedule


class FakeClock:
    """A clock that only moves when slept on, or when a request 'takes' time."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_closed_loop_never_sleeps() -> None:
    clock = FakeClock()
    schedule = Schedule(100.0, count=5, clock=clock, sleep=clock.sleep)
    times = []
    for due in schedule:
        times.append(due)
        clock.now += 0.01  # each request takes 10 ms
    assert len(times) == 5
    assert clock.sleeps == []
    assert times[1] == pytest.approx(100.01)


def test_open_loop_sleeps_once_until_each_due_time() -> None:
    clock = FakeClock()
    # 10/s shared by 2 associations: this one (index 1) is due at 0.1, 0.3, 0.5 s.
    schedule = Schedule(100.0, count=3, rate=10, associations=2, index=1, clock=clock,
                        sleep=clock.sleep)  # fmt: skip
    dues = list(schedule)
    assert dues == pytest.approx([100.1, 100.3, 100.5])
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.2])


def test_open_loop_sends_late_requests_at_once() -> None:
    clock = FakeClock()
    schedule = Schedule(100.0, count=3, rate=100, clock=clock, sleep=clock.sleep)
    dues = []
    for due in schedule:
        dues.append(due)
        clock.now += 0.05  # slower than the rate: always behind
    assert dues == pytest.approx([100.0, 100.01, 100.02])
    assert clock.sleeps == []


def test_deadline_ends_both_loops() -> None:
    clock = FakeClock()
    closed = Schedule(100.0, deadline=100.25, clock=clock, sleep=clock.sleep)
    count = 0
    for _ in closed:
        count += 1
        clock.now += 0.1
    assert count == 3
    clock = FakeClock()
    opened = Schedule(100.0, deadline=101.0, rate=4, clock=clock, sleep=clock.sleep)
    assert list(opened) == pytest.approx([100.0, 100.25, 100.5, 100.75])
    assert clock.now < 101.0  # it did not sleep past the deadline to find out


def test_bad_schedules() -> None:
    with pytest.raises(ValueError, match="count or a deadline"):
        Schedule(0.0)
    with pytest.raises(ValueError, match="positive"):
        Schedule(0.0, count=1, rate=0)
