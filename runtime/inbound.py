"""Inbound bytes: what a connection received and its handler has not consumed.

Every connection with nothing kept reads into its loop's one shared 64 KiB
buffer (its `Inbound.buffer` *is* that buffer, with r == w, between reads), and
the handler usually consumes all of it. Only what the handler leaves (an
unfinished frame) moves into a pooled buffer of the connection's own, sized by
the peek(n) hint, which goes back to the pool as soon as it is empty. An idle
connection therefore holds no buffer at all.

`InboundMemory` is the loop's side: the shared buffer, the pool, and the
limits on what unfinished frames may hold: per connection
(max_buffered_per_conn, at least the handler's max_frame) and per loop
(max_buffered_total, counted in buffer capacity, which is what they pin).
"""

from __future__ import annotations

from typing import Any

from protogen.errors import FrameTooLarge

from .buffer import BufferPool

SHARED_READ_SIZE = 64 * 1024  # one recv into the loop's buffer
# Never recv into less free space than this. Small on purpose: a peer that sent a
# few bytes of a frame pins only the smallest pool class (4 KiB) until it finishes.
MIN_READ = 1024
# Leftovers up to this size are read further in the shared buffer (one copy of the
# leftover per read) instead of growing the connection's own buffer.
SMALL_LEFTOVER = 8 * 1024


class BufferBudgetExceeded(ConnectionError):
    """The loop's budget for unfinished frames (max_buffered_total) is spent."""


class InboundMemory:
    """A loop's inbound memory: the shared read buffer, pooled buffers for
    unfinished frames, and the limits on them."""

    __slots__ = ("buffer", "view", "pool", "per_conn", "budget", "held")

    def __init__(self, pool: BufferPool, per_conn: int, budget: int) -> None:
        self.buffer = bytearray(SHARED_READ_SIZE)
        self.view = memoryview(self.buffer)
        self.pool = pool
        self.per_conn = per_conn  # bytes one connection may keep unconsumed
        self.budget = budget  # bytes of buffer every connection's frames may pin
        self.held = 0  # capacity of the pooled buffers connections hold now

    def acquire(self, size: int) -> bytearray:
        """A buffer of at least `size` bytes, charged to the loop's budget."""
        actual = self.pool.class_for(size) or size
        if self.held + actual > self.budget:
            raise BufferBudgetExceeded(
                f"unfinished frames on this loop hold {self.held} bytes; "
                f"{actual} more would exceed max_buffered_total {self.budget}"
            )
        buffer = self.pool.acquire(size)
        self.held += len(buffer)
        return buffer

    def release(self, buffer: bytearray) -> None:
        self.held -= len(buffer)
        self.pool.release(buffer)


class Inbound:
    """One connection's received, unconsumed bytes: `view[r:w]` of `buffer`.

    Conn's read methods move `r` (and set `want`, the size a short peek asked
    for); the loop's receive moves `w` (through `recv` when bytes are kept),
    then calls `settle` once the handler returned. `buffer` is the loop's shared
    buffer or a pooled one.
    """

    __slots__ = ("buffer", "view", "r", "w", "want")

    def __init__(self, memory: InboundMemory) -> None:
        self.buffer = memory.buffer
        self.view = memory.view
        self.r = 0
        self.w = 0
        self.want = 0

    def recv(self, transport: Any, memory: InboundMemory) -> int:
        """One recv_into for a connection holding kept bytes; returns the byte
        count (0 at the end). (With nothing kept, the loop's receive reads into
        the shared buffer itself and sets r = 0, w = n.)

        Raises what recv_into raises (BlockingIOError when nothing is there),
        FrameTooLarge for a connection over its cap and BufferBudgetExceeded when
        the loop's budget is spent.
        """
        buffer = self.buffer
        r = self.r
        kept = self.w - r
        if kept <= SMALL_LEFTOVER and self.want <= SHARED_READ_SIZE:
            # A small partial frame: read the rest into the shared buffer behind a
            # copy of it, so reads stay large while the connection keeps only a
            # small pooled buffer between reads. Its own copy stays valid until
            # the recv succeeds.
            shared = memory.view
            shared[:kept] = self.view[r : r + kept]
            n: int = transport.recv_into(shared[kept:])
            if n:
                memory.release(buffer)
                self.buffer = memory.buffer
                self.view = shared
                self.r = 0
                self.w = kept + n
            return n
        w = self.w
        if len(buffer) - w < MIN_READ or self.want > len(buffer) - r:
            self._grow(memory)
            w = self.w
        n = transport.recv_into(self.view[w:])
        self.w = w + n
        return n

    def settle(self, memory: InboundMemory, keep: bool) -> bool:
        """After the handler: keep what it left (`keep` False drops it).

        Returns True when bytes stay buffered. Raises FrameTooLarge or
        BufferBudgetExceeded when they may not.
        """
        r = self.r
        w = self.w
        if r == w or not keep:
            if self.buffer is not memory.buffer:
                memory.release(self.buffer)
                self.buffer = memory.buffer
                self.view = memory.view
            self.r = self.w = 0
            self.want = 0
            return False
        kept = w - r
        want = self.want
        cap = memory.per_conn
        if kept >= cap or want > cap:
            raise FrameTooLarge(max(kept, want), cap)
        if self.buffer is memory.buffer:
            # Off the shared buffer, which the next read of any connection reuses.
            new = memory.acquire(min(max(kept + MIN_READ, want), cap))
            view = memoryview(new)
            view[:kept] = memory.view[r:w]
            self.buffer = new
            self.view = view
            self.r = 0
            self.w = kept
        return True

    def _grow(self, memory: InboundMemory) -> None:
        """Make room to recv: compact, or move to a bigger pooled buffer."""
        old = self.buffer
        r = self.r
        kept = self.w - r
        cap = memory.per_conn
        if kept >= cap:
            raise FrameTooLarge(kept, cap)
        need = max(kept + MIN_READ, self.want)
        if need <= len(old):
            # Room enough once the consumed bytes are dropped: compact in place.
            view = self.view
            view[:kept] = bytes(view[r : r + kept])
            self.r = 0
            self.w = kept
            return
        if not self.want:
            # Frame size unknown: grow by half, so a frame pins at most about
            # twice its size while it arrives (pool classes add <= 25 %).
            need = max(need, len(old) + len(old) // 2)
        new = memory.acquire(min(need, cap))
        view = memoryview(new)
        view[:kept] = self.view[r : r + kept]
        memory.release(old)
        self.buffer = new
        self.view = view
        self.r = 0
        self.w = kept

    def drop(self, memory: InboundMemory) -> None:
        """Forget every buffered byte (the connection is closing)."""
        self.settle(memory, False)
