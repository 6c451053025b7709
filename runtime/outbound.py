"""Outbound bytes: what a connection queued and the kernel has not taken yet.

Writes made during a callback are queued (Conn.write) and sent when it returns,
with one send (small chunks joined) or sendmsg (scatter-gather, <= IOV_MAX
chunks). What the kernel refuses stays queued, owned (views copied), and the
loop waits for WRITABLE. The loop's `send` is the one place queued chunks
reach the transport (`Outbound.send_many` for several), and does the
bookkeeping around it.
"""

from __future__ import annotations

import os
from typing import Any, Callable

try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    IOV_MAX = 16

JOIN_LIMIT = 65536  # below this many queued bytes, join chunks instead of sendmsg
COALESCE_LIMIT = 1 << 20  # a refused tail up to this size is joined into one chunk

# Scheduling states of a connection's queue.
OUT_IDLE = 0  # empty, or written by the conn's own running callback
OUT_DIRTY = 1  # queued outside its own callback: on the loop's dirty list or batch
OUT_WAITING = 2  # the kernel refused some: waiting for WRITABLE


class Waiters:
    """async_write callbacks waiting for their bytes to be sent, and the count of
    bytes sent since they began waiting (their marks are on that count)."""

    __slots__ = ("sent", "items")

    def __init__(self) -> None:
        self.sent = 0
        # (mark, callback): fires once `sent` reaches mark; mark None: a close
        # callback, run after on_close.
        self.items: list[tuple[int | None, Callable[..., Any]]] = []


class Outbound:
    """Queued chunks (None when empty), their byte count, the queue's scheduling
    state and the write callbacks waiting for it (None when there are none)."""

    __slots__ = ("chunks", "size", "state", "waiters")

    def __init__(self) -> None:
        self.chunks: list[Any] | None = None
        self.size = 0  # queued bytes, valid while chunks is not None
        self.state = OUT_IDLE
        self.waiters: Waiters | None = None

    def send_many(self, transport: Any, datagrams: bool) -> int:
        """One send/sendmsg of a queue of several chunks (the loop sends a single
        chunk itself); returns how many bytes the kernel took. Less than the
        queue only when the kernel refused the rest: the loop then waits for
        WRITABLE, an edge that comes once the full socket drains.

        Raises OSError for socket errors; a refusal (EAGAIN) is 0.
        """
        chunks = self.chunks
        assert chunks is not None
        try:
            if datagrams:
                n: int = _send_datagrams(transport, chunks)
            elif self.size <= JOIN_LIMIT:
                # Many small chunks: one memcpy beats building an iovec per chunk.
                n = transport.send(b"".join(chunks))
            elif len(chunks) <= IOV_MAX:
                n = transport.sendmsg(chunks)
            else:
                return _send_slices(transport, chunks)
        except (BlockingIOError, InterruptedError):
            return 0
        return n

    def advance(self, n: int) -> int:
        """Drop `n` sent bytes from the front; returns the bytes still queued."""
        remaining = self.size - n
        if self.waiters is not None:
            self.waiters.sent += n
        if remaining <= 0:
            self.chunks = None
            self.size = 0
            return 0
        chunks = self.chunks
        assert chunks is not None
        i = 0
        while n:
            chunk = chunks[i]
            size = len(chunk)
            if n >= size:
                n -= size
                i += 1
            else:
                chunks[i] = memoryview(chunk)[n:]
                n = 0
        if i:
            del chunks[:i]
        self.size = remaining
        return remaining

    def own(self, coalesce: bool) -> None:
        """Copy chunks that may view buffers reused after the callback (the loop's
        read buffer, a caller's memory); with `coalesce`, a modest tail becomes
        one bytes (once: when the kernel first refuses)."""
        chunks = self.chunks
        if chunks is None:
            return
        if coalesce and len(chunks) > 1 and self.size <= COALESCE_LIMIT:
            chunks[:] = [b"".join(chunks)]
        for i, chunk in enumerate(chunks):
            if type(chunk) is not bytes and not (
                type(chunk) is memoryview and type(chunk.obj) is bytes
            ):
                chunks[i] = bytes(chunk)

    def take_due(self) -> list[Callable[..., Any]]:
        """Remove and return the async_write callbacks whose bytes were all sent."""
        waiters = self.waiters
        if waiters is None:
            return []
        sent = waiters.sent
        items = waiters.items
        due = [cb for mark, cb in items if mark is not None and mark <= sent]
        if due:
            waiters.items = [
                item for item in items if item[0] is None or item[0] > sent
            ]
            if not waiters.items:
                self.waiters = None
        return due

    def add_waiter(self, callback: Callable[..., Any], *, on_close: bool) -> None:
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = Waiters()
        mark = None if on_close else waiters.sent + (self.size if self.chunks else 0)
        waiters.items.append((mark, callback))

    def clear(self) -> list[tuple[int | None, Callable[..., Any]]]:
        """Drop the queue; returns the waiters (the connection is closing)."""
        items = self.waiters.items if self.waiters is not None else []
        self.chunks = None
        self.size = 0
        self.state = OUT_IDLE
        self.waiters = None
        return items


def _send_slices(transport: Any, chunks: list[Any]) -> int:
    """A queue longer than IOV_MAX: one sendmsg per IOV_MAX chunks until the
    kernel refuses some. A slice taken whole is no refusal: the socket may still
    be writable, and an edge-triggered loop waiting for WRITABLE after it would
    wait for an edge that never comes (the interest is unchanged, so no
    epoll_ctl re-reports the readiness either)."""
    sent = 0
    for start in range(0, len(chunks), IOV_MAX):
        part = chunks[start : start + IOV_MAX]
        try:
            n: int = transport.sendmsg(part)
        except (BlockingIOError, InterruptedError):
            break
        sent += n
        if n < sum(map(len, part)):
            break
    return sent


def _send_datagrams(transport: Any, chunks: list[Any]) -> int:
    """Each queued chunk is one datagram: send them one by one until EAGAIN."""
    sent = 0
    send = transport.send
    for chunk in chunks:
        try:
            send(chunk)
        except (BlockingIOError, InterruptedError):
            break
        sent += len(chunk)
    return sent
