"""UDP listeners: every datagram reaches on_traffic through a lightweight conn.

The conn's `write` answers the datagram's sender straight away (one sendto per
write: a datagram is never split or merged); `send_to(data, addr)` reaches anyone.
A datagram the kernel refuses (send buffer full) is dropped, as UDP allows, and
counted in `UDPListener.dropped`.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Iterable

from .conn import ConnectionClosed

if TYPE_CHECKING:  # pragma: no cover
    from .address import Address
    from .eventloop import EventLoop

DATAGRAM_BATCH = 64  # datagrams per readiness event
MAX_DATAGRAM = 65536


class UDPConn:
    """One received datagram plus its sender. Valid during on_traffic; write/
    send_to/async_write keep working afterwards (they only need the socket)."""

    __slots__ = ("loop", "listener", "remote_addr", "context", "_view", "_r", "_w")

    datagram = True

    def __init__(
        self, listener: "UDPListener", remote_addr: Any, view: memoryview
    ) -> None:
        self.loop = listener.loop
        self.listener = listener
        self.remote_addr = remote_addr
        self.context: Any = None
        self._view = view
        self._r = 0
        self._w = len(view)

    def __repr__(self) -> str:
        return f"<UDPConn from {self.remote_addr!r}>"

    # Reading: the same contract as Conn over a single datagram.
    def inbound_buffered(self) -> int:
        return self._w - self._r

    def peek(self, n: int = -1) -> memoryview:
        r = self._r
        if n < 0 or r + n >= self._w:
            return self._view[r : self._w]
        return self._view[r : r + n]

    def next(self, n: int = -1) -> memoryview:
        view = self.peek(n)
        self._r += len(view)
        return view

    def discard(self, n: int = -1) -> int:
        return len(self.next(n))

    def read_into(self, buf: Any) -> int:
        target = memoryview(buf).cast("B")
        view = self.next(len(target))
        target[: len(view)] = view
        return len(view)

    # Writing.
    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self.listener.send_to(data, self.remote_addr)

    def writev(self, chunks: Iterable[bytes | bytearray | memoryview]) -> int:
        return self.write(b"".join(chunks))

    def send_to(self, data: bytes | bytearray | memoryview, addr: Any) -> int:
        return self.listener.send_to(data, addr)

    def flush(self) -> None:
        """Datagrams are sent at write(); nothing is queued."""

    def outbound_buffered(self) -> int:
        return 0

    def is_write_paused(self) -> bool:
        return False

    def async_write(
        self, data: bytes | bytearray | memoryview, callback: Any = None
    ) -> None:
        self.loop.call_soon_threadsafe(self._async_send, bytes(data), callback)

    def async_writev(
        self, chunks: Iterable[bytes | bytearray | memoryview], callback: Any = None
    ) -> None:
        self.async_write(b"".join(bytes(c) for c in chunks), callback)

    def _async_send(self, data: bytes, callback: Any) -> None:
        if self.listener.closed:
            if callback is not None:
                callback(self, ConnectionClosed("UDP listener closed"))
            return
        err: BaseException | None = None
        try:
            self.listener.send_to(data, self.remote_addr)
        except OSError as exc:
            err = exc
        if callback is not None:
            callback(self, err)

    def wake(self, callback: Any = None) -> None:
        def run() -> None:
            self.listener.loop.handler.on_traffic(self)  # type: ignore[arg-type]
            if callback is not None:
                callback(self, None)

        self.loop.call_soon_threadsafe(run)

    def close(self) -> None:
        """A datagram 'connection' has nothing to close."""

    def close_with_callback(self, callback: Any) -> None:
        if callback is not None:
            self.loop.call_soon_threadsafe(callback, self, None)

    @property
    def local_addr(self) -> Any:
        return self.listener.sock.getsockname()

    def fileno(self) -> int:
        return self.listener.sock.fileno()


class UDPListener:
    """A bound UDP socket registered for reading on a loop."""

    stream = False

    def __init__(
        self, loop: "EventLoop", sock: socket.socket, address: "Address"
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.address = address
        self.closed = False
        self.dropped = 0
        self._buf = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buf)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send_to(self, data: bytes | bytearray | memoryview, addr: Any) -> int:
        try:
            n = self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
            return 0
        self.loop.bytes_out += n
        return n

    def on_event(self, events: int) -> None:
        loop = self.loop
        recvfrom_into = self.sock.recvfrom_into
        buf = self._buf
        view = self._view
        on_traffic = loop.handler.on_traffic
        for _ in range(DATAGRAM_BATCH):
            try:
                n, addr = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors surfacing on Linux
                loop.logger.debug("protogen: recvfrom on %s: %s", self.address.url, exc)
                continue
            loop.bytes_in += n
            conn = UDPConn(self, addr, view[:n])
            try:
                # A UDPConn offers a Conn's read and write methods for one datagram.
                action = on_traffic(conn)  # type: ignore[arg-type]
            except Exception as exc:
                loop.handler_error(None, exc, "on_traffic (udp)")
                continue
            if action:
                loop.apply(None, action)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
