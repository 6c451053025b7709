"""Connection endings and beginnings: graceful close, per-conn timers, dialing,
listeners paused at capacity.

Mixed into EventLoop (uses its attributes); split out to keep modules small.
"""

from __future__ import annotations

import errno
import os
import socket
from time import monotonic
from typing import Any

from .conn import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OUT_DIRTY,
    OUT_IDLE,
    OUT_WAITING,
    Conn,
    ConnectionClosed,
    IdleTimeout,
    ReadTimeout,
)
from .handler import Action
from .poller import WRITABLE

LINGER_CHECK = 0.05  # seconds between checks that a lingering close may finish

try:  # Linux: bytes not yet acknowledged by the peer (SIOCOUTQ == TIOCOUTQ)
    import fcntl
    import struct
    import termios

    _OUTQ = termios.TIOCOUTQ
    _INT = struct.Struct("i")

    def _unsent_bytes(sock: socket.socket) -> int:
        try:
            return _INT.unpack(fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return 0

except (ImportError, AttributeError):  # pragma: no cover - no SIOCOUTQ: always linger

    def _unsent_bytes(sock: socket.socket) -> int:
        return 1


class LifecycleMixin:
    # ------------------------------------------------------------ closing
    def _close(self, conn: Conn, err: BaseException | None, graceful: bool) -> None:
        state = conn._state
        if state == CLOSED:
            return
        if graceful and conn._out is not None and state != CONNECTING:
            if state == CLOSING:
                return
            conn._state = CLOSING
            conn._err = err
            self._drop_inbound(conn)
            conn._deadline = monotonic() + self.options.drain_timeout
            if conn._timer is not None:
                conn._timer.cancel()
            conn._timer = self._timers.call_at(conn._deadline, self._conn_timer, conn)
            if self._current is conn:
                self._current = None  # its writes must see the close from now on
            if conn._ostate != OUT_WAITING:
                self._flush(conn)
            else:
                self._update_interest(conn)
            return
        self._finish_close(conn, err)

    def _finish_close(self, conn: Conn, err: BaseException | None) -> None:
        previous = conn._state
        if previous == CLOSED:
            return
        conn._state = CLOSED
        if self._current is conn:
            self._current = None
        fd = conn.fd
        if self._conns.get(fd) is conn:
            del self._conns[fd]
        if conn._events:
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass
            conn._events = 0
        # Socket errors (and OutboundOverflow) abort; orderly closes, protocol and
        # handler errors and timeouts still deliver the answers already sent.
        aborted = isinstance(err, OSError) and not isinstance(err, TimeoutError)
        if not aborted and previous != CONNECTING and not conn.datagram:
            self._close_socket_gracefully(conn.sock)
        else:
            try:
                conn.sock.close()
            except OSError:
                pass
        self._drop_inbound(conn)
        conn._out = None
        conn._out_bytes = 0
        conn._ostate = OUT_IDLE
        if conn._timer is not None:
            conn._timer.cancel()
            conn._timer = None
        if previous != CONNECTING:
            self.closed += 1
        callbacks = conn._callbacks
        conn._callbacks = None
        if callbacks:
            closed = err if err is not None else ConnectionClosed(f"{conn!r} closed")
            for mark, cb in callbacks:
                if mark is not None:
                    try:
                        cb(conn, closed)
                    except Exception:
                        self.logger.exception(
                            "protogen: async_write callback failed for %r", conn
                        )
        try:
            action = self.handler.on_close(conn, err)
        except Exception:
            self.logger.exception("protogen: on_close raised for %r", conn)
            action = None
        if callbacks:
            for mark, cb in callbacks:
                if mark is None:
                    try:
                        cb(conn, err)
                    except Exception:
                        self.logger.exception(
                            "protogen: close callback failed for %r", conn
                        )
        if action == Action.SHUTDOWN:
            self.request_stop()
        if self._accept_paused and not self.at_capacity():
            self._resume_accepting()

    # ------------------------------------------------------------ lingering close
    def _close_socket_gracefully(self, sock: socket.socket) -> None:
        """Close without losing answers the kernel still has to send.

        close() on a socket whose peer is still sending makes the kernel reset the
        connection, which discards our unsent (or unacknowledged) bytes. So when
        bytes are still in flight: send FIN (shutdown SHUT_WR), read and discard
        what the peer sends, and close once the peer closed, everything was
        acknowledged, or drain_timeout passed. Invisible to the handler: on_close
        has run already.
        """
        if not _unsent_bytes(sock):
            sock.close()
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        fd = sock.fileno()
        deadline = monotonic() + self.options.drain_timeout
        self._lingering[fd] = sock
        self.add_reader(fd, lambda events: self._linger_read(fd))
        self._timers.call_later(LINGER_CHECK, self._linger_check, fd, deadline)

    def _linger_read(self, fd: int) -> None:
        sock = self._lingering.get(fd)
        if sock is None:
            return
        try:
            for _ in range(16):
                if not sock.recv_into(self._rbuf):
                    break  # the peer closed too
            else:
                if _unsent_bytes(sock):
                    return
        except (BlockingIOError, InterruptedError):
            if _unsent_bytes(sock):
                return
        except OSError:
            pass
        self._end_linger(fd)

    def _linger_check(self, fd: int, deadline: float) -> None:
        sock = self._lingering.get(fd)
        if sock is None:
            return
        if monotonic() >= deadline or not _unsent_bytes(sock):
            self._end_linger(fd)
        else:
            self._timers.call_later(LINGER_CHECK, self._linger_check, fd, deadline)

    def _end_linger(self, fd: int) -> None:
        sock = self._lingering.pop(fd, None)
        if sock is not None:
            self.remove_reader(fd)
            sock.close()

    def _close_lingering(self) -> None:
        for fd in list(self._lingering):
            self._end_linger(fd)

    # ------------------------------------------------------------ timers
    def _conn_timer(self, conn: Conn) -> None:
        """One lazily re-armed timer per conn covers idle, read and drain deadlines."""
        conn._timer = None
        state = conn._state
        if state == CLOSED:
            return
        now = monotonic()
        if state == CLOSING:
            if now >= conn._deadline:
                self._finish_close(
                    conn, TimeoutError(f"drain_timeout: {conn._out_bytes} bytes unsent")
                )
            else:
                conn._timer = self._timers.call_at(
                    conn._deadline, self._conn_timer, conn
                )
            return
        next_due = 0.0
        idle = self._idle
        if idle:
            due = conn._last + idle
            if now >= due:
                self._close(conn, IdleTimeout(f"no traffic for {idle} s"), True)
                return
            next_due = due
        deadline = conn._deadline
        if deadline and conn._w > conn._r:
            if now >= deadline:
                self._close(
                    conn,
                    ReadTimeout(
                        f"partial frame of {conn._w - conn._r} bytes unconsumed for {self._read_timeout} s"
                    ),
                    True,
                )
                return
            next_due = min(next_due, deadline) if next_due else deadline
        if next_due:
            conn._timer = self._timers.call_at(next_due, self._conn_timer, conn)

    # ------------------------------------------------------------ dialing
    def _start_dial(self, conn: Conn, err: int) -> None:
        if self._stopping:
            self._finish_close(conn, ConnectionClosed("the client is stopping"))
        elif err in (0, errno.EISCONN):
            conn._state = CONNECTING
            self._connected(conn, registered=False)
        elif err in (
            errno.EINPROGRESS,
            errno.EAGAIN,
            errno.EWOULDBLOCK,
            errno.EALREADY,
        ):
            conn._state = CONNECTING
            self._conns[conn.fd] = conn
            self._poller.register(conn.fd, WRITABLE, level=conn.datagram)
            conn._events = WRITABLE
        else:
            self._finish_close(conn, OSError(err, os.strerror(err)))

    def _connected(self, conn: Conn, registered: bool = True) -> None:
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish_close(conn, OSError(err, os.strerror(err)))
            return
        if registered:
            self._conns.pop(conn.fd, None)
            try:
                self._poller.unregister(conn.fd)
            except (OSError, KeyError, ValueError):
                pass
            conn._events = 0
        self.configure_socket(conn.sock)
        if conn._out is not None:
            conn._ostate = OUT_DIRTY
        self._open(conn)

    # ------------------------------------------------------------ listeners
    def add_acceptor(self, acceptor: Any) -> None:
        """Register a listening socket's acceptor (acceptor.Acceptor / udp.UDPListener)."""
        self._acceptors.append(acceptor)
        self.add_reader(acceptor.fileno(), acceptor.on_event)

    def _pause_accepting(self) -> None:
        if not self._accept_paused:
            self._accept_paused = True
            for acceptor in self._acceptors:
                if acceptor.stream:
                    self.remove_reader(acceptor.fileno())

    def _resume_accepting(self) -> None:
        if self._accept_paused and not self._stopping:
            self._accept_paused = False
            for acceptor in self._acceptors:
                if acceptor.stream:
                    self.add_reader(acceptor.fileno(), acceptor.on_event)

    def at_capacity(self) -> bool:
        return bool(self._max_conns) and len(self._conns) >= self._max_conns
