"""Closing a socket without losing the answers the kernel still has to send.

close() on a socket whose peer is still sending makes the kernel reset the
connection, which discards our unsent (or unacknowledged) bytes. So when bytes
are still in flight: send FIN (shutdown SHUT_WR), read and discard what the
peer sends, and close once the peer closed, everything was acknowledged, or
drain_timeout passed. Invisible to the handler: on_close has run already.
"""

from __future__ import annotations

import socket
from time import monotonic
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .eventloop import EventLoop

LINGER_CHECK = 0.05  # seconds between checks that a lingering close may finish
LINGER_READS = 16  # recvs per readiness event of a lingering socket

try:  # Linux: bytes not yet acknowledged by the peer (SIOCOUTQ == TIOCOUTQ)
    import fcntl
    import struct
    import termios

    _OUTQ = termios.TIOCOUTQ
    _INT = struct.Struct("i")

    def unsent_bytes(sock: socket.socket) -> int:
        try:
            return int(_INT.unpack(fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0])
        except OSError:
            return 0

except (ImportError, AttributeError):  # pragma: no cover - no SIOCOUTQ: always linger

    def unsent_bytes(sock: socket.socket) -> int:
        return 1


class Lingering:
    """The sockets of one loop that are closed for the handler but still flushing."""

    def __init__(self, loop: "EventLoop", timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.sockets: dict[int, socket.socket] = {}
        self._scratch = bytearray(16 * 1024)

    def __len__(self) -> int:
        return len(self.sockets)

    def close(self, sock: socket.socket) -> None:
        """Close `sock` now if the kernel sent everything, else linger."""
        if not unsent_bytes(sock):
            sock.close()
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        fd = sock.fileno()
        self.sockets[fd] = sock
        self.loop.add_reader(fd, lambda events: self._readable(fd))
        self.loop.call_later(LINGER_CHECK, self._check, fd, monotonic() + self.timeout)

    def _readable(self, fd: int) -> None:
        sock = self.sockets.get(fd)
        if sock is None:
            return
        try:
            for _ in range(LINGER_READS):
                if not sock.recv_into(self._scratch):
                    break  # the peer closed too
            else:
                if unsent_bytes(sock):
                    return
        except (BlockingIOError, InterruptedError):
            if unsent_bytes(sock):
                return
        except OSError:
            pass
        self._end(fd)

    def _check(self, fd: int, deadline: float) -> None:
        sock = self.sockets.get(fd)
        if sock is None:
            return
        if monotonic() >= deadline or not unsent_bytes(sock):
            self._end(fd)
        else:
            self.loop.call_later(LINGER_CHECK, self._check, fd, deadline)

    def _end(self, fd: int) -> None:
        sock = self.sockets.pop(fd, None)
        if sock is not None:
            self.loop.remove_reader(fd)
            sock.close()

    def close_all(self) -> None:
        for fd in list(self.sockets):
            self._end(fd)
