"""A connection as handlers see it: zero-copy reads, batched writes, thread-safe calls.

Reading (loop thread, usually inside on_traffic):
  peek(n=-1) -> memoryview of up to n buffered bytes (all of them for n < 0), not consumed
  next(n=-1) -> the same, consumed; discard(n) -> consumed count; read_into(buf) -> count
  The views point into the runtime's buffers: they are valid until on_traffic returns
  (copy with bytes(view) to keep data longer).
Writing (loop thread): write/writev queue the data; the loop sends it with one
  send/sendmsg when the current callback returns (or at flush()). bytes are never copied;
  memoryviews are referenced until the callback returns (the kernel refusal is copied
  then); bytearrays are copied at write() so callers may reuse them.
Other threads: async_write, async_writev, wake, close, close_with_callback.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from .eventloop import EventLoop

# Connection states.
OPEN = 0
CONNECTING = 1  # a dial in progress
CLOSING = 2  # close requested: flushing outbound, not reading any more
CLOSED = 3  # states >= CLOSING refuse writes

# Outbound states.
# IDLE: nothing queued, or queued by the conn's own on_traffic (loop._current).
# DIRTY: queued during a callback and listed in loop._dirty (flushed when it
# returns) or, a single small reply to the conn being read, in loop._batch (sent
# after the poll's events).
OUT_IDLE = 0
OUT_DIRTY = 1
OUT_WAITING = 2  # the kernel refused some: waiting for WRITABLE

_LINGER = struct.Struct("ii")

Callback = Callable[["Conn", BaseException | None], Any]


class ConnectionClosed(ConnectionError):
    """The connection closed before the operation could complete."""


class OutboundOverflow(ConnectionError):
    """More unsent bytes were queued than the write_buffer_cap option allows."""


class IdleTimeout(TimeoutError):
    """No bytes moved in either direction for idle_timeout seconds."""


class ReadTimeout(TimeoutError):
    """A partial frame stayed in the inbound buffer, unconsumed, for read_timeout seconds."""


class Conn:
    """One stream connection (TCP, unix, or a dialed UDP socket) owned by one loop."""

    __slots__ = (
        "loop",
        "sock",
        "fd",
        "context",
        "remote_addr",
        "_in",
        "_view",
        "_r",
        "_w",
        "_want",
        "_out",
        "_out_bytes",
        "_ostate",
        "_events",
        "_state",
        "_paused",
        "_last",
        "_deadline",
        "_timer",
        "_callbacks",
        "_sent",
        "_err",
    )

    # A dialed UDP socket sends each write as its own datagram.
    datagram = False

    def __init__(
        self, loop: "EventLoop", sock: socket.socket, remote_addr: Any
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.context: Any = None
        self.remote_addr = remote_addr
        # Inbound: the loop's shared buffer (empty between reads) or a pooled one
        # holding a partial frame.
        self._in: bytearray = loop._rbuf
        self._view: memoryview = loop._rview
        self._r = 0  # read position in _in
        self._w = 0  # write position in _in
        self._want = 0  # bytes a short peek asked for: a sizing hint for the buffer
        self._out: list | None = None  # queued outbound chunks
        self._out_bytes = 0
        self._ostate = OUT_IDLE
        self._events = 0  # interest currently registered with the poller
        self._state = OPEN
        self._paused = False
        self._last = 0.0  # loop time of the last traffic (idle timeout)
        self._deadline = 0.0  # read-timeout or drain deadline, 0 = none
        self._timer: Any = None
        self._callbacks: list | None = (
            None  # [(queued-bytes mark, callback)] and close cbs
        )
        # Bytes handed to the kernel, counted while async_write callbacks wait for
        # their marks (the fast path of a flush skips it when none wait).
        self._sent = 0
        self._err: BaseException | None = None  # reason of a graceful close in progress

    def __repr__(self) -> str:
        state = ("open", "connecting", "closing", "closed")[self._state]
        return f"<Conn fd={self.fd} {state} remote={self.remote_addr!r}>"

    # ------------------------------------------------------------------ reading
    def inbound_buffered(self) -> int:
        return self._w - self._r

    def peek(self, n: int = -1) -> memoryview:
        """Up to n buffered bytes (all for n < 0) without consuming them."""
        r = self._r
        w = self._w
        if n < 0 or r + n >= w:
            if n > w - r:
                self._want = n  # remember: the buffer will be sized to fit n
            return self._view[r:w]
        return self._view[r : r + n]

    def next(self, n: int = -1) -> memoryview:
        """Up to n buffered bytes (all for n < 0), consumed."""
        r = self._r
        w = self._w
        if n < 0 or r + n >= w:
            self._r = w
            self._want = 0
            return self._view[r:w]
        self._r = r + n
        self._want = 0
        return self._view[r : r + n]

    def discard(self, n: int = -1) -> int:
        """Consume up to n buffered bytes (all for n < 0); returns how many."""
        r = self._r
        w = self._w
        self._want = 0
        if n < 0 or r + n >= w:
            self._r = w
            return w - r
        self._r = r + n
        return n

    def read_into(self, buf: Any) -> int:
        """Copy buffered bytes into `buf` (a writable buffer), consuming them."""
        target = memoryview(buf).cast("B")
        r = self._r
        n = min(len(target), self._w - r)
        target[:n] = self._view[r : r + n]
        self._r = r + n
        self._want = 0
        return n

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue `data`; it is sent when the current callback returns (a small reply
        to the connection being read: with the poll's others, after its events).
        Loop thread only.

        memoryviews must have a byte format (peek/next return such views).
        """
        if type(data) is bytearray:
            data = bytes(data)  # the caller may reuse its bytearray at once
        n = len(data)
        if self._out is None and self.loop._current is self:
            # The common case: the first write in the connection's own on_traffic
            # (the loop flushes it when the callback returns; it is open then).
            if n:
                self._out = [data]
                self._out_bytes = n
            return n
        if self._state >= CLOSING:
            raise ConnectionClosed(f"write on a closed connection {self!r}")
        if not n:
            return 0
        out = self._out
        if out is None:
            self._out = [data]
            self._out_bytes = n
            if self._ostate == OUT_IDLE:
                self._ostate = OUT_DIRTY
                self.loop._dirty.append(self)
            return n
        if self._ostate == OUT_WAITING:
            # The kernel is refusing bytes: this chunk outlives the callback (own a
            # copy) and may push the queue over the water marks.
            out.append(data if type(data) is bytes else bytes(data))
            self._out_bytes += n
            if self._out_bytes > self.loop._high:
                self.loop._pressure(self)
            return n
        if (
            self._ostate == OUT_DIRTY
            and type(data) is not bytes
            and self.loop._current is not self
        ):
            # Another connection's callback: this one may be in the loop's batch of
            # small replies, sent after later reads reuse the buffer `data` may
            # view. Own a copy.
            data = bytes(data)
        out.append(data)
        self._out_bytes += n
        return n

    def writev(self, chunks: Iterable[bytes | bytearray | memoryview]) -> int:
        write = self.write
        return sum([write(chunk) for chunk in chunks])

    def flush(self) -> None:
        """Send queued bytes now instead of when the callback returns."""
        if self._out is not None and self._ostate != OUT_WAITING:
            self.loop._flush(self)

    def outbound_buffered(self) -> int:
        return self._out_bytes if self._out is not None else 0

    def is_write_paused(self) -> bool:
        """True while outbound bytes sit above write_high_water (reading is paused)."""
        return self._paused

    # ------------------------------------------------------ cross-thread calls
    def async_write(
        self, data: bytes | bytearray | memoryview, callback: Callback | None = None
    ) -> None:
        """Thread-safe write. `callback(conn, err)` runs on the loop thread once every
        byte of `data` was accepted by the kernel (err None), or with ConnectionClosed /
        the socket error when the connection closed first."""
        self.loop.call_soon_threadsafe(
            self.loop._async_write, self, (bytes(data),), callback
        )

    def async_writev(
        self,
        chunks: Iterable[bytes | bytearray | memoryview],
        callback: Callback | None = None,
    ) -> None:
        self.loop.call_soon_threadsafe(
            self.loop._async_write, self, tuple(bytes(c) for c in chunks), callback
        )

    def wake(self, callback: Callback | None = None) -> None:
        """Thread-safe: run on_traffic for this connection on its loop (even with no new
        bytes), then callback(conn, err)."""
        self.loop.call_soon_threadsafe(self.loop._wake, self, callback)

    def close(self) -> None:
        """Thread-safe graceful close: queued bytes are flushed first (bounded by
        drain_timeout), then the socket closes and on_close(conn, None) runs."""
        self.loop.call_soon_threadsafe(self.loop._close, self, None, True)

    def close_with_callback(self, callback: Callback | None) -> None:
        """Like close(); callback(conn, err) runs on the loop after on_close."""
        self.loop.call_soon_threadsafe(self.loop._close_with_callback, self, callback)

    # ------------------------------------------------------------ addressing
    @property
    def local_addr(self) -> Any:
        try:
            return self.sock.getsockname()
        except OSError:
            return None

    def fileno(self) -> int:
        return self.fd

    @property
    def closed(self) -> bool:
        return self._state == CLOSED

    # -------------------------------------------------------- socket options
    def set_no_delay(self, on: bool = True) -> None:
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if on else 0)

    def set_keep_alive(
        self,
        idle: float | None,
        interval: float | None = None,
        count: int | None = None,
    ) -> None:
        """Enable TCP keep-alive probes after `idle` seconds (None disables it)."""
        set_keep_alive(self.sock, idle, interval, count)

    def set_read_buffer(self, size: int) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def set_write_buffer(self, size: int) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def set_linger(self, seconds: int | None) -> None:
        """None: default close; 0: reset on close (drop unsent); n: block close up to n s."""
        if seconds is None:
            value = _LINGER.pack(0, 0)
        else:
            value = _LINGER.pack(1, int(seconds))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, value)


class DatagramConn(Conn):
    """A dialed (connected) UDP socket: each write is one datagram, each read one."""

    __slots__ = ()
    datagram = True


def set_keep_alive(
    sock: socket.socket, idle: float | None, interval: float | None, count: int | None
) -> None:
    if idle is None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_opt = getattr(socket, "TCP_KEEPIDLE", None) or getattr(
        socket, "TCP_KEEPALIVE", None
    )
    if idle_opt is not None:
        sock.setsockopt(socket.IPPROTO_TCP, idle_opt, max(1, int(idle)))
    if interval is not None and hasattr(socket, "TCP_KEEPINTVL"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(interval)))
    if count is not None and hasattr(socket, "TCP_KEEPCNT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, int(count))


def in_thread(loop: "EventLoop") -> bool:
    return threading.get_ident() == loop.thread_id


__all__ = [
    "Conn",
    "DatagramConn",
    "ConnectionClosed",
    "OutboundOverflow",
    "IdleTimeout",
    "ReadTimeout",
    "set_keep_alive",
]
