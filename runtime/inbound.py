"""Inbound bytes: what a connection received and its handler has not consumed.

Every connection with nothing kept reads into its loop's one shared 64 KiB
buffer (its `Inbound.view` *is* that buffer's view, with r == w, between reads), and
the handler usually consumes all of it. Only what the handler leaves (an
unfinished frame) moves into a pooled buffer of the connection's own, which goes
back to the pool as soon as it is empty. An idle connection therefore holds no
buffer at all.

That buffer grows with the bytes actually received, doubling what the
connection holds, never to the size a frame announces (the peek(n) hint) at
once: the hint only caps a step, so a frame that is all there fits without
slack. A peer announcing a 16 MiB frame and sending five bytes pins one small
buffer, not 16 MiB. While a frame arrives its buffer's capacity stays within
about 2.5 times the bytes received (doubling, then pool classes up to 25 %
apart), plus one small class; a leftover of up to 8 KiB moves back to the
shared buffer with the next read.

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

    def acquire(self, size: int) -> memoryview:
        """A view of a pooled buffer of at least `size` bytes, charged to the
        loop's budget."""
        actual = self.pool.class_for(size) or size
        if self.held + actual > self.budget:
            raise BufferBudgetExceeded(
                f"unfinished frames on this loop hold {self.held} bytes; "
                f"{actual} more would exceed max_buffered_total {self.budget}"
            )
        buffer = self.pool.acquire(size)
        self.held += len(buffer)
        return memoryview(buffer)

    def release(self, view: memoryview) -> None:
        """Give a connection's buffer (its view) back to the pool."""
        buffer = view.obj
        assert isinstance(buffer, bytearray)
        self.held -= len(buffer)
        self.pool.release(buffer)


class Inbound:
    """One connection's received, unconsumed bytes: `view[r:w]`.

    `view` is a memoryview of the loop's shared buffer (`memory.view`) or of a
    pooled bytearray of the connection's own (`view.obj`). Conn's read methods
    move `r` (and set `want`, the size a short peek asked for); the loop's
    receive moves `w` (through `recv` when bytes are kept), then calls `settle`
    once the handler returned.
    """

    __slots__ = ("view", "r", "w", "want")

    def __init__(self, memory: InboundMemory) -> None:
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
        view = self.view
        r = self.r
        kept = self.w - r
        if kept <= SMALL_LEFTOVER:
            # A small partial frame: read the rest into the shared buffer behind a
            # copy of it, so reads stay large while the connection keeps only a
            # small pooled buffer between reads. Its own copy stays valid until
            # the recv succeeds.
            shared = memory.view
            shared[:kept] = view[r : r + kept]
            n: int = transport.recv_into(shared[kept:])
            if n:
                memory.release(view)
                self.view = shared
                self.r = 0
                self.w = kept + n
            return n
        w = self.w
        if len(view) - w < MIN_READ:
            self._grow(memory)
            view = self.view
            w = self.w
        n = transport.recv_into(view[w:])
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
            if self.view is not memory.view:
                memory.release(self.view)
                self.view = memory.view
            self.r = self.w = 0
            self.want = 0
            return False
        kept = w - r
        want = self.want
        cap = memory.per_conn
        if kept >= cap or want > cap:
            raise FrameTooLarge(max(kept, want), cap)
        if self.view is memory.view:
            # Off the shared buffer, which the next read of any connection reuses.
            view = memory.acquire(_capacity(kept, want, cap))
            view[:kept] = memory.view[r:w]
            self.view = view
            self.r = 0
            self.w = kept
        return True

    def _grow(self, memory: InboundMemory) -> None:
        """Make room to recv: compact, or move to a bigger pooled buffer."""
        old = self.view
        r = self.r
        kept = self.w - r
        cap = memory.per_conn
        if kept >= cap:
            raise FrameTooLarge(kept, cap)
        size = _capacity(kept, self.want, cap)
        if size <= len(old):
            # Room enough once the consumed bytes are dropped (or as much as the
            # cap allows): compact in place.
            if r:
                old[:kept] = bytes(old[r : r + kept])
                self.r = 0
                self.w = kept
            return
        view = memory.acquire(size)
        view[:kept] = old[r : r + kept]
        memory.release(old)
        self.view = view
        self.r = 0
        self.w = kept

    def drop(self, memory: InboundMemory) -> None:
        """Forget every buffered byte (the connection is closing)."""
        self.settle(memory, False)


def _capacity(kept: int, want: int, cap: int) -> int:
    """The buffer a connection holding `kept` bytes of an unfinished frame moves
    to: room for MIN_READ more, else twice what it holds, but no more than the
    announced frame (`want`, a peek(n) hint) or the per-connection cap.

    Bytes received pay for the memory, never the announcement: sizing by `want`
    alone would let each of many peers pin a max_frame buffer with five bytes.
    Doubling keeps the copies of a large frame arriving to about its size.
    """
    size = kept + kept
    if kept < want < size:
        size = want
    return min(max(size, kept + MIN_READ), cap)
