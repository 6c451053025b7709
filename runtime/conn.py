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

A Conn owns its `Inbound` (received bytes not consumed yet) and its `Outbound`
(queued bytes not sent yet); the read and write methods below are the handler's
side of those two buffers, the loop's single receive and send functions the
other side. Everything the loop does to a connection's byte stream goes through
`conn.transport` (the socket unless a transport wraps it, e.g. for TLS).
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .inbound import BufferBudgetExceeded, Inbound
from .outbound import OUT_DIRTY, OUT_IDLE, OUT_WAITING, Outbound

if TYPE_CHECKING:  # pragma: no cover
    from .eventloop import EventLoop

# Connection states.
OPEN = 0
CONNECTING = 1  # a dial in progress
CLOSING = 2  # close requested: flushing outbound, not reading any more
CLOSED = 3  # states >= CLOSING refuse writes

# End of stream, as far as the loop knows.
EOF_NONE = 0
EOF_SEEN = (
    1  # the peer shut down writing (a hang-up was polled): a short read is the end
)
EOF_PENDING = 2  # the end was read; buffered frames are still to be handled first
EOF_DONE = 3  # on_eof ran: nothing more will be read

# Work the loop owes a connection on its next pass (Conn.pending bits).
PENDING_TRAFFIC = 1  # call on_traffic on the bytes already buffered
PENDING_READ = 2  # an edge-triggered read filled its space: read again

_LINGER = struct.Struct("ii")

Callback = Callable[["Conn", BaseException | None], Any]


class ConnectionClosed(ConnectionError):
    """The connection closed before the operation could complete."""


class OutboundOverflow(ConnectionClosed):
    """More unsent bytes were queued than the write_buffer_cap option allows: the
    connection is closed (a ConnectionClosed, so a broadcast loop that skips
    closed connections skips this one too)."""


class IdleTimeout(TimeoutError):
    """No bytes moved in either direction for idle_timeout seconds."""


class ReadTimeout(TimeoutError):
    """A partial frame stayed in the inbound buffer, unconsumed, for read_timeout seconds."""


class Conn:
    """One stream connection (TCP, unix, or a dialed UDP socket) owned by one loop."""

    __slots__ = (
        "loop",
        "sock",
        "transport",
        "context",
        "remote_addr",
        "inbound",
        "outbound",
        "state",
        "events",
        "write_paused",
        "read_paused",
        "eof",
        "pending",
        "last",
        "timer",
        "queue_limit",
    )

    # A dialed UDP socket sends each write as its own datagram.
    datagram = False
    # The PROXY protocol header the connection began with (proxy_protocol
    # option; a ProxiedConn holds it), else None.
    proxy: Any = None

    def __init__(
        self, loop: "EventLoop", sock: socket.socket, remote_addr: Any
    ) -> None:
        self.loop = loop
        self.sock = sock
        # What the loop reads from and writes to: the socket, or a transport
        # wrapping it (same recv_into/send/sendmsg contract; see docs/runtime.md).
        self.transport: Any = sock
        self.context: Any = None
        self.remote_addr = remote_addr
        self.inbound = Inbound(loop.memory)
        self.outbound = Outbound()
        self.state = OPEN
        self.events = 0  # interest registered with the poller
        # True while queued output is above write_high_water: the loop does not
        # read the connection and generated handlers stop decoding. Read-only.
        self.write_paused = False
        # True between pause_reading() and resume_reading(): the application
        # throttles this peer (a broker over its memory budget). Read-only.
        self.read_paused = False
        self.eof = EOF_NONE
        self.pending = 0  # PENDING_* work queued on loop's ready list
        self.last = 0.0  # loop time of the last bytes in or out (idle timeout)
        self.timer: Any = None  # read-timeout or drain deadline (a TimerHandle)
        # While the connection's own callback runs (and it is open): the queue
        # size up to which write() takes its fast path (write_high_water); -1
        # otherwise. One field, so that the common write (its own callback, below
        # the mark) is one comparison and touches neither the loop nor its state.
        self.queue_limit = -1

    def __repr__(self) -> str:
        state = ("open", "connecting", "closing", "closed")[self.state]
        return f"<Conn fd={self.fd} {state} remote={self.remote_addr!r}>"

    # ------------------------------------------------------------------ reading
    def inbound_buffered(self) -> int:
        inbound = self.inbound
        return inbound.w - inbound.r

    def peek(self, n: int = -1) -> memoryview:
        """Up to n buffered bytes (all for n < 0) without consuming them.

        A short peek(n) is a sizing hint: the buffer, growing with the bytes
        received, stops at n for this frame (the hint alone allocates nothing).
        """
        inbound = self.inbound
        r = inbound.r
        w = inbound.w
        if n < 0 or r + n >= w:
            if n > w - r:
                inbound.want = n
            return inbound.view[r:w]
        return inbound.view[r : r + n]

    def next(self, n: int = -1) -> memoryview:
        """Up to n buffered bytes (all for n < 0), consumed."""
        inbound = self.inbound
        r = inbound.r
        w = inbound.w
        inbound.want = 0
        if n < 0 or r + n >= w:
            inbound.r = w
            return inbound.view[r:w]
        inbound.r = r + n
        return inbound.view[r : r + n]

    def discard(self, n: int = -1) -> int:
        """Consume up to n buffered bytes (all for n < 0); returns how many."""
        inbound = self.inbound
        r = inbound.r
        w = inbound.w
        inbound.want = 0
        if n < 0 or r + n >= w:
            inbound.r = w
            return w - r
        inbound.r = r + n
        return n

    def read_into(self, buf: Any) -> int:
        """Copy buffered bytes into `buf` (a writable buffer), consuming them."""
        target = memoryview(buf).cast("B")
        inbound = self.inbound
        r = inbound.r
        n = min(len(target), inbound.w - r)
        target[:n] = inbound.view[r : r + n]
        inbound.r = r + n
        inbound.want = 0
        return n

    # ------------------------------------------------------------------ writing
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue `data`; it is sent when the current callback returns. Loop thread.

        Raises ConnectionClosed on a closing or closed connection, and
        OutboundOverflow when the queue exceeds write_buffer_cap (its bytes are
        dropped and the connection closes). memoryviews must have a byte format.
        """
        if type(data) is bytearray:
            data = bytes(data)  # the caller may reuse its bytearray at once
        n = len(data)
        out = self.outbound
        size = out.size + n  # (out.size is 0 while nothing is queued)
        if size <= self.queue_limit:
            # Its own callback, below the high-water mark: the loop sends the
            # queue when the callback returns, so nothing is scheduled here.
            chunks = out.chunks
            if chunks is None:
                # (The send path checks a single chunk against the water marks.)
                if n:
                    out.chunks = [data]
                    out.size = n
                return n
            chunks.append(data)  # (a view behind refused bytes is copied by the loop)
            out.size = size
            return n
        loop = self.loop
        if self.queue_limit >= 0:
            # Its own callback, the queue going over the high-water mark.
            chunks = out.chunks
            if chunks is None:
                # One chunk: the send path checks it against the water marks.
                out.chunks = [data]
                out.size = n
                return n
            chunks.append(data)
            out.size = size
            loop.pressure(self, size)
            return n
        if self.state >= CLOSING:
            raise ConnectionClosed(f"write on a closed connection {self!r}")
        if not n:
            return 0
        chunks = out.chunks
        if chunks is None:
            out.chunks = [data]
            out.size = n
            if out.state == OUT_IDLE:
                out.state = OUT_DIRTY
                loop.dirty.append(self)
            if n > loop.high:
                loop.pressure(self, n)
            return n
        if type(data) is not bytes:
            # Another callback's view: the conn may be in the loop's batch of
            # replies or waiting for the kernel, sent after the buffer the view
            # points into is reused. Own a copy.
            data = bytes(data)
        chunks.append(data)
        size = out.size = out.size + n
        if out.state == OUT_IDLE:
            out.state = OUT_DIRTY
            loop.dirty.append(self)
        if size > loop.high:
            loop.pressure(self, size)
        return n

    def writev(self, chunks: Iterable[bytes | bytearray | memoryview]) -> int:
        write = self.write
        return sum([write(chunk) for chunk in chunks])

    def flush(self) -> None:
        """Send queued bytes now instead of when the callback returns."""
        out = self.outbound
        if out.chunks is not None and out.state != OUT_WAITING:
            self.loop.send(self)

    def outbound_buffered(self) -> int:
        out = self.outbound
        return out.size if out.chunks is not None else 0

    def is_write_paused(self) -> bool:
        """True while outbound bytes sit above write_high_water (reading is paused)."""
        return self.write_paused

    def pause_reading(self) -> None:
        """Stop reading this connection (loop thread) until `resume_reading()`:
        the peer's bytes wait in the kernel, so TCP flow control slows it down.
        Frames already buffered may still reach on_traffic."""
        if not self.read_paused:
            self.read_paused = True
            self.loop.read_pause(self, True)

    def resume_reading(self) -> None:
        """Read again after `pause_reading()`; frames left buffered are handled."""
        if self.read_paused:
            self.read_paused = False
            self.loop.read_pause(self, False)

    # ------------------------------------------------------ cross-thread calls
    def async_write(
        self, data: bytes | bytearray | memoryview, callback: Callback | None = None
    ) -> None:
        """Thread-safe write. `callback(conn, err)` runs on the loop thread once every
        byte of `data` was accepted by the kernel (err None), or with ConnectionClosed /
        the socket error when the connection closed first."""
        self.loop.call_soon_threadsafe(
            self.loop.async_write, self, (bytes(data),), callback
        )

    def async_writev(
        self,
        chunks: Iterable[bytes | bytearray | memoryview],
        callback: Callback | None = None,
    ) -> None:
        self.loop.call_soon_threadsafe(
            self.loop.async_write, self, tuple(bytes(c) for c in chunks), callback
        )

    def wake(self, callback: Callback | None = None) -> None:
        """Thread-safe: run on_traffic for this connection on its loop (even with no new
        bytes), then callback(conn, err)."""
        self.loop.call_soon_threadsafe(self.loop.wake, self, callback)

    def close(self) -> None:
        """Thread-safe graceful close: queued bytes are flushed first (bounded by
        drain_timeout), then the socket closes and on_close(conn, None) runs."""
        self.loop.call_soon_threadsafe(self.loop.close_conn, self, None)

    def close_with_callback(self, callback: Callback | None) -> None:
        """Like close(); callback(conn, err) runs on the loop after on_close."""
        self.loop.call_soon_threadsafe(self.loop.close_with_callback, self, callback)

    # ------------------------------------------------------------ addressing
    @property
    def local_addr(self) -> Any:
        try:
            return self.sock.getsockname()
        except OSError:
            return None

    @property
    def fd(self) -> int:
        """The socket's descriptor (-1 once closed)."""
        return self.sock.fileno()

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    @property
    def tls(self) -> Any:
        """A `protogen.runtime.tls.TLSInfo` (version, cipher, ALPN protocol, SNI
        name, peer certificate) once a TLS handshake finished; else None."""
        return getattr(self.transport, "tls", None)

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


__all__ = [
    "BufferBudgetExceeded",
    "Conn",
    "ConnectionClosed",
    "DatagramConn",
    "IdleTimeout",
    "OutboundOverflow",
    "ReadTimeout",
    "set_keep_alive",
]
