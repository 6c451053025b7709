"""Timers for the event loop: a binary heap with lazy cancellation.

The loop asks `next_delay(now)` for its poll timeout and calls `run_due(now)`
after each poll. Cancelling only flags the handle; the heap drops it when it
reaches the top, or in one O(n) sweep once cancelled entries outnumber live
ones, so cancel() is O(1) and the heap never fills with garbage.

Idle timeouts for many connections: don't cancel and re-add a timer on every
packet. Store a deadline on the connection, bump it on activity (a float
store), and let a single timer per connection re-check when it fires::

    def arm(conn, now):
        conn.idle_deadline = now + idle_timeout
        timers.call_at(conn.idle_deadline, check_idle, conn)

    def on_traffic(conn):
        conn.idle_deadline = clock() + idle_timeout   # no heap work at all

    def check_idle(conn):
        now = clock()
        if conn.closed:
            return
        if now < conn.idle_deadline:                # activity since arming
            timers.call_at(conn.idle_deadline, check_idle, conn)
        else:
            conn.close(IdleTimeout())

That costs one heap push per idle period instead of one per packet, which keeps
15 000 connections with timeouts cheap.
"""

from __future__ import annotations

import heapq
import time
from typing import Any, Callable

# Compact the heap once at least this many entries are cancelled *and* they make
# up more than half of it (the same trade-off asyncio makes).
_COMPACT_MIN_CANCELLED = 100


class TimerHandle:
    """A scheduled callback; cancel() it to stop it from running."""

    __slots__ = ("when", "_callback", "_args", "_queue", "cancelled")

    def __init__(
        self,
        when: float,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        queue: "TimerQueue",
    ) -> None:
        self.when = when
        self._callback: Callable[..., Any] | None = callback
        self._args = args
        # The queue while the handle sits in its heap; None once run or dropped.
        self._queue: TimerQueue | None = queue
        self.cancelled = False

    def cancel(self) -> None:
        """Prevent the callback from running. Idempotent; a no-op after it ran."""
        if self.cancelled:
            return
        self.cancelled = True
        # Drop references now so a cancelled timer doesn't pin a connection.
        self._callback = None
        self._args = ()
        queue = self._queue
        if queue is not None:
            queue._on_cancel()

    def __repr__(self) -> str:
        state = (
            "cancelled" if self.cancelled else ("pending" if self._queue else "done")
        )
        return f"<TimerHandle when={self.when:.6f} {state} {self._callback!r}>"


class TimerQueue:
    """Deadline-ordered callbacks; deadlines on the `clock` (time.monotonic)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[BaseException, TimerHandle], None] | None = None,
    ) -> None:
        """`on_error` receives exceptions raised by callbacks; without it they
        propagate out of run_due() (the rest of the due timers then run on the
        next call)."""
        self.clock = clock
        self.on_error = on_error
        # Entries are (when, seq, handle): seq breaks ties so equal deadlines run
        # in scheduling order and handles are never compared.
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._cancelled = 0

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any
    ) -> TimerHandle:
        """Run `callback(*args)` once the clock reaches `when`."""
        if when != when:  # NaN would silently corrupt the heap order
            raise ValueError("timer deadline is NaN")
        handle = TimerHandle(when, callback, args, self)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, handle))
        return handle

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any
    ) -> TimerHandle:
        """Run `callback(*args)` `delay` seconds from now."""
        return self.call_at(self.clock() + delay, callback, *args)

    def next_delay(self, now: float) -> float | None:
        """Seconds until the earliest live timer (>= 0), or None if there is none."""
        heap = self._heap
        while heap:
            when, _, handle = heap[0]
            if not handle.cancelled:
                delay = when - now
                return delay if delay > 0.0 else 0.0
            heapq.heappop(heap)
            self._drop_cancelled(handle)
        return None

    def run_due(self, now: float) -> int:
        """Run every live timer with `when <= now`; return how many ran.

        Timers scheduled by these callbacks run on a later call even if already
        due, so a callback re-arming itself with delay 0 cannot starve the loop.
        Timers cancelled by an earlier callback in the same batch do not run.
        """
        heap = self._heap
        if not heap or heap[0][0] > now:
            return 0
        # Collect the due batch first (a local list keeps run_due re-entrant).
        ready: list[TimerHandle] = []
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if handle.cancelled:
                self._drop_cancelled(handle)
            else:
                handle._queue = None
                ready.append(handle)
        ran = 0
        index = 0
        count = len(ready)
        try:
            while index < count:
                handle = ready[index]
                index += 1
                if handle.cancelled:  # cancelled by an earlier callback of this batch
                    continue
                callback, args = handle._callback, handle._args
                handle._callback = None
                handle._args = ()
                ran += 1
                try:
                    callback(*args)  # type: ignore[misc]
                except Exception as exc:
                    if self.on_error is None:
                        raise
                    self.on_error(exc, handle)
        finally:
            if index < count:
                # A callback raised: put the rest of the batch back, in order, so
                # the next run_due() still runs them.
                for handle in ready[index:]:
                    if not handle.cancelled:
                        handle._queue = self
                        self._seq += 1
                        heapq.heappush(heap, (handle.when, self._seq, handle))
        return ran

    def _drop_cancelled(self, handle: TimerHandle) -> None:
        handle._queue = None
        self._cancelled -= 1

    def _on_cancel(self) -> None:
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN_CANCELLED and self._cancelled * 2 > len(
            self._heap
        ):
            self._compact()

    def _compact(self) -> None:
        live = []
        for entry in self._heap:
            if entry[2].cancelled:
                entry[2]._queue = None
            else:
                live.append(entry)
        heapq.heapify(live)
        # In place: run_due() may hold a reference to the list while compacting.
        self._heap[:] = live
        self._cancelled = 0

    def clear(self) -> None:
        """Forget every timer (their handles count as cancelled)."""
        for _, _, handle in self._heap:
            handle._queue = None
            handle.cancel()
        self._heap.clear()
        self._cancelled = 0

    def __len__(self) -> int:
        """Number of live (scheduled, not cancelled, not yet run) timers."""
        return len(self._heap) - self._cancelled

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"<TimerQueue live={len(self)} heap={len(self._heap)}>"
