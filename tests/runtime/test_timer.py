"""TimerQueue ordering, cancellation and scale, on a fake clock."""

from __future__ import annotations

import math
import random
import time

import pytest

from protogen.runtime.timer import TimerHandle, TimerQueue


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timers(clock: FakeClock) -> TimerQueue:
    return TimerQueue(clock=clock)


def test_default_clock_is_monotonic():
    queue = TimerQueue()
    assert queue.clock is time.monotonic
    before = time.monotonic()
    handle = queue.call_later(10.0, lambda: None)
    assert before + 10.0 <= handle.when <= time.monotonic() + 10.0


def test_empty_queue(timers, clock):
    assert len(timers) == 0
    assert not timers
    assert timers.next_delay(clock.now) is None
    assert timers.run_due(clock.now) == 0


def test_runs_in_deadline_order_not_insertion_order(timers, clock):
    fired: list[str] = []
    timers.call_later(3.0, fired.append, "c")
    timers.call_later(1.0, fired.append, "a")
    timers.call_later(2.0, fired.append, "b")
    assert len(timers) == 3
    assert timers.next_delay(clock.now) == pytest.approx(1.0)
    assert timers.run_due(clock.now + 0.999) == 0
    assert fired == []
    assert timers.run_due(clock.now + 2.0) == 2  # deadline == now is due
    assert fired == ["a", "b"]
    assert timers.next_delay(clock.now + 2.0) == pytest.approx(1.0)
    assert timers.run_due(clock.now + 10.0) == 1
    assert fired == ["a", "b", "c"]
    assert len(timers) == 0
    assert timers.next_delay(clock.now + 10.0) is None


def test_call_at_and_args(timers, clock):
    got = []
    handle = timers.call_at(1005.0, lambda *a: got.append(a), 1, "two", None)
    assert isinstance(handle, TimerHandle)
    assert handle.when == 1005.0
    timers.run_due(1005.0)
    assert got == [(1, "two", None)]


def test_next_delay_is_never_negative(timers, clock):
    timers.call_at(clock.now - 5.0, lambda: None)
    assert timers.next_delay(clock.now) == 0.0


def test_same_deadline_runs_fifo(timers, clock):
    fired: list[int] = []
    for i in range(100):
        timers.call_at(clock.now + 1.0, fired.append, i)
    timers.run_due(clock.now + 1.0)
    assert fired == list(range(100))


def test_cancel_prevents_running_and_updates_len(timers, clock):
    fired: list[str] = []
    keep = timers.call_later(1.0, fired.append, "keep")
    drop = timers.call_later(0.5, fired.append, "drop")
    assert len(timers) == 2
    drop.cancel()
    assert drop.cancelled and not keep.cancelled
    assert len(timers) == 1
    drop.cancel()  # idempotent: still one live timer
    assert len(timers) == 1
    # The cancelled earlier timer must not shorten the poll timeout.
    assert timers.next_delay(clock.now) == pytest.approx(1.0)
    assert timers.run_due(clock.now + 5.0) == 1
    assert fired == ["keep"]
    assert len(timers) == 0


def test_cancel_after_run_is_a_noop(timers, clock):
    handle = timers.call_later(1.0, lambda: None)
    timers.run_due(clock.now + 1.0)
    handle.cancel()
    assert len(timers) == 0
    timers.call_later(1.0, lambda: None)
    assert len(timers) == 1  # the late cancel did not corrupt the live count


def test_cancelled_timer_releases_its_callback(timers):
    class Conn:
        pass

    conn = Conn()
    handle = timers.call_later(1.0, print, conn)
    handle.cancel()
    assert handle._args == () and handle._callback is None


def test_callback_can_cancel_a_later_timer_in_the_same_batch(timers, clock):
    fired: list[str] = []
    second = None

    def first() -> None:
        fired.append("first")
        second.cancel()

    timers.call_at(clock.now + 1.0, first)
    second = timers.call_at(clock.now + 1.0, fired.append, "second")
    timers.call_at(clock.now + 1.0, fired.append, "third")
    assert timers.run_due(clock.now + 1.0) == 2
    assert fired == ["first", "third"]
    assert len(timers) == 0


def test_timers_added_by_callbacks_run_on_the_next_call(timers, clock):
    fired: list[int] = []

    def rearm(n: int) -> None:
        fired.append(n)
        timers.call_at(clock.now, rearm, n + 1)  # already due

    timers.call_at(clock.now, rearm, 0)
    assert timers.run_due(clock.now) == 1
    assert timers.run_due(clock.now) == 1
    assert fired == [0, 1]
    assert len(timers) == 1


def test_exception_propagates_and_the_rest_run_next_time(timers, clock):
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    timers.call_at(clock.now, fired.append, "before")
    timers.call_at(clock.now, boom)
    timers.call_at(clock.now, fired.append, "after")
    with pytest.raises(RuntimeError, match="boom"):
        timers.run_due(clock.now)
    assert fired == ["before"]
    assert len(timers) == 1
    assert timers.run_due(clock.now) == 1
    assert fired == ["before", "after"]


def test_on_error_hook_keeps_the_batch_going(clock):
    errors = []
    timers = TimerQueue(clock=clock, on_error=lambda exc, h: errors.append((exc, h)))
    fired = []

    def boom() -> None:
        raise ValueError("bad")

    bad = timers.call_at(clock.now, boom)
    timers.call_at(clock.now, fired.append, 1)
    assert timers.run_due(clock.now) == 2
    assert fired == [1]
    assert len(errors) == 1 and errors[0][1] is bad
    assert isinstance(errors[0][0], ValueError)


def test_nan_deadline_is_rejected(timers):
    with pytest.raises(ValueError, match="NaN"):
        timers.call_at(math.nan, lambda: None)


def test_clear_cancels_everything(timers, clock):
    handles = [timers.call_later(i, lambda: None) for i in range(10)]
    timers.clear()
    assert len(timers) == 0
    assert all(h.cancelled for h in handles)
    assert timers.next_delay(clock.now) is None
    assert timers.run_due(clock.now + 100) == 0


def test_mass_cancellation_compacts_the_heap(timers, clock):
    handles = [timers.call_later(1.0 + i, lambda: None) for i in range(1000)]
    for handle in handles[:900]:
        handle.cancel()
    assert len(timers) == 100
    # Lazy deletion must not let the heap grow without bound.
    assert len(timers._heap) < 1000
    fired: list[int] = []
    for i in range(100):
        handles[900 + i].cancel()
        timers.call_later(1.0 + i, fired.append, i)
    assert timers.run_due(clock.now + 1e6) == 100
    assert fired == list(range(100))


def test_fifteen_thousand_timers_in_order_with_cancellations(timers, clock):
    rng = random.Random(1234)
    fired: list[tuple[float, int]] = []
    expected: list[tuple[float, int]] = []
    handles = []
    for i in range(15_000):
        when = clock.now + rng.choice([rng.uniform(0, 60), 30.0])  # many ties at 30
        handles.append((when, i, timers.call_at(when, fired.append, (when, i))))
    assert len(timers) == 15_000
    for when, i, handle in handles:
        if i % 3 == 0:
            handle.cancel()
        else:
            expected.append((when, i))
    assert len(timers) == 10_000
    expected.sort()  # by deadline, ties by scheduling order
    now = clock.now
    steps = 0
    while timers:
        delay = timers.next_delay(now)
        assert delay is not None and delay >= 0
        now += delay
        timers.run_due(now)
        steps += 1
    assert fired == expected
    assert steps <= len(expected)


def test_lazy_idle_timeout_pattern(timers, clock):
    """The documented pattern: bump a deadline, re-check when the timer fires."""
    idle = 10.0
    closed: list[float] = []

    class Conn:
        deadline = 0.0

    conn = Conn()

    def check(c: Conn) -> None:
        if clock.now < c.deadline:
            timers.call_at(c.deadline, check, c)
        else:
            closed.append(clock.now)

    conn.deadline = clock.now + idle
    timers.call_at(conn.deadline, check, conn)
    # Traffic every 4 s for 20 s: each only moves the deadline, no heap work.
    for _ in range(5):
        clock.now += 4.0
        conn.deadline = clock.now + idle
        assert len(timers) == 1
        timers.run_due(clock.now)
    assert closed == []
    while timers:
        clock.now += timers.next_delay(clock.now)
        timers.run_due(clock.now)
    assert closed == [conn.deadline]
