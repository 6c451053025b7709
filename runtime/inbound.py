"""Inbound half of the event loop: recv into the shared/pooled buffers, on_traffic.

A connection with nothing buffered reads into the loop's shared buffer (its
`_in` *is* that buffer, with `_r == _w` between reads); only the bytes the
handler leaves unconsumed are copied into a pooled per-connection buffer (sized
by the peek() hint), returned to the pool as soon as it empties.
One recv per readiness event, then on_traffic (or the handler's on_data fast
path; run() inlines the common case of _read and _traffic). Level-triggered,
the loop comes straight back to a socket that still has data, and between two
reads of a busy peer every other ready connection gets its turn.
Edge-triggered (the default on epoll/kqueue) must read on until a short read: a
short read is the common case and costs no extra recv; a full one puts the conn
on the loop's `_more` list, read again after the next poll's events (fair, like
level-triggered mode).

Mixed into EventLoop (uses its attributes); split out to keep modules small.
"""

from __future__ import annotations

from typing import Any

from protogen.errors import FrameTooLarge

from .conn import CLOSED, CONNECTING, OPEN, OUT_IDLE, OUT_WAITING, Conn
from .poller import ERROR, RAW_HANGUP, READABLE

_ERRHUP = ERROR | RAW_HANGUP

SHARED_READ_SIZE = 64 * 1024  # one recv into the loop's buffer
# Never recv into less free space than this. Small on purpose: a peer that sent a
# few bytes of a frame pins only the smallest pool class (4 KiB) until it finishes.
MIN_READ = 1024
# Leftovers up to this size are read further in the shared buffer (one copy of the
# leftover per read) instead of growing the connection's own buffer.
SMALL_LEFTOVER = 8 * 1024
# on_data's views of the shared buffer are cached for sizes up to this, this many.
VIEW_CACHE_MAX_SIZE = 16 * 1024
VIEW_CACHE_ENTRIES = 512


class InboundMixin:
    # ------------------------------------------------------------ reading
    def _read(self, conn: Conn) -> bool:
        """One recv then on_traffic. True when the recv filled the space (more may wait)."""
        buf = conn._in
        try:
            if buf is self._rbuf:
                # Nothing kept from earlier reads: the common case.
                n = conn.sock.recv_into(buf)
                conn._r = 0
                conn._w = n
                full = n == SHARED_READ_SIZE
            elif conn._w - conn._r <= SMALL_LEFTOVER and conn._want <= SHARED_READ_SIZE:
                # A small partial frame: read the rest into the shared buffer behind
                # a copy of it, so reads stay large while the connection keeps only a
                # small pooled buffer between reads. The private copy stays valid
                # until the recv succeeds.
                r = conn._r
                data = conn._w - r
                rview = self._rview
                rview[:data] = conn._view[r : r + data]
                n = conn.sock.recv_into(rview[data:])
                if n:
                    self._pool.release(buf)
                    conn._in = self._rbuf
                    conn._view = rview
                    conn._r = 0
                    conn._w = data + n
                full = n == SHARED_READ_SIZE - data
            else:
                w = conn._w
                space = len(buf) - w
                if space < MIN_READ or conn._want > len(buf) - conn._r:
                    if not self._grow(conn):
                        return False
                    buf = conn._in
                    w = conn._w
                    space = len(buf) - w
                n = conn.sock.recv_into(conn._view[w:])
                conn._w = w + n
                full = n == space
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self._finish_close(conn, exc)
            return False
        if not n:
            if conn.datagram:
                return False
            self._close(conn, None, True)  # EOF: flush what is queued, then close
            return False
        self.bytes_in += n
        conn._last = self.now
        self._traffic(conn)
        return full

    def _view_of(self, n: int) -> memoryview:
        """rbuf[:n] for on_data, cached per size (a slice costs ~4 % of an echo event)."""
        view = self._rview[:n]
        if n <= VIEW_CACHE_MAX_SIZE and len(self._views) < VIEW_CACHE_ENTRIES:
            self._views[n] = view
        return view

    def _read_again(self, conns: list[Conn]) -> None:
        """Edge-triggered: one more read of each conn whose last recv filled its space.

        Level-triggered epoll would report them again; edge-triggered it will not, so
        the loop reads them once per pass until a short read (the queue was empty
        then), while every other ready connection still gets its turn in between.
        """
        more = self._more
        for conn in conns:
            if conn._events & READABLE and self._read(conn):  # open, not paused
                more.append(conn)

    def _consumed(self, conn: Conn, used: Any, n: int) -> None:
        """on_data consumed part of the `n` bytes it was given (or returned nonsense)."""
        if type(used) is not int or not 0 <= used <= n:
            raise TypeError(
                f"on_data must return the number of bytes it consumed (0..{n}) "
                f"or None, not {used!r}"
            )
        if conn._w == n:  # else the connection closed and dropped its bytes
            conn._r = used

    def _unread_event(self, conn: Conn, ev: int) -> None:
        """Readable/hang-up on a conn not being read: a dial completing, or a
        paused/stopping conn whose peer is gone."""
        if conn._state == CONNECTING:
            self._connected(conn)
        elif ev & _ERRHUP and conn._state != CLOSED:
            if conn._out is not None:
                self._flush(conn)
            if conn._state != CLOSED:
                lost = conn._out is not None
                self._finish_close(
                    conn, ConnectionResetError("peer hung up") if lost else None
                )

    def _traffic(self, conn: Conn) -> None:
        """on_traffic, then send what it wrote and keep what it left (run() inlines this)."""
        r0 = conn._r
        # Writes to the conn itself skip the dirty list while it is current.
        self._current = conn
        try:
            action = self._on_traffic(conn)
        except Exception as exc:
            self._traffic_failed(conn, exc, r0)
            return
        self._current = None
        self._settle(conn, action, r0)

    def _traffic_failed(self, conn: Conn, exc: Exception, r0: int) -> None:
        self._current = None
        # A handler that released a cached on_data view (see _view_of) must not
        # break the next reads of that size.
        self._views.clear()
        self._handler_error(conn, exc, "on_traffic")  # flushes, then closes
        self._settle(conn, None, r0)

    def _settle(self, conn: Conn, action: Any, r0: int) -> None:
        """After on_traffic: send its writes, apply its action, keep a partial frame."""
        out = conn._out
        if out is not None:
            if (
                len(out) == 1
                and conn._ostate == OUT_IDLE
                and conn._callbacks is None
                and conn._state == OPEN
            ):
                # The common case, _flush inlined: one write in its own callback.
                # (_last is fresh: the read or wake that led here set it.)
                try:
                    n = conn.sock.send(out[0])
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as exc:
                    self._finish_close(conn, exc)
                    n = -1
                if n == conn._out_bytes:
                    self.bytes_out += n
                    conn._out = None
                elif n >= 0:
                    self._account(conn, n)
            elif conn._ostate != OUT_WAITING:
                self._flush(conn)
        if self._dirty:
            self._flush_dirty()
        if action:
            self._apply(conn, action)
        r = conn._r
        if r == conn._w:
            buf = conn._in
            if buf is not self._rbuf:  # a kept partial frame was completed
                self._pool.release(buf)
                conn._in = self._rbuf
                conn._view = self._rview
            if conn._deadline and conn._state == OPEN:
                conn._deadline = 0.0
            return
        self._keep_leftover(conn, r != r0)

    def _keep_leftover(self, conn: Conn, progressed: bool) -> None:
        """The handler left a partial frame: keep it (off the shared buffer) and watch it."""
        if conn._state != OPEN or conn.datagram:
            # Closing: no one will read it. Datagrams never span reads.
            self._drop_inbound(conn)
            return
        r = conn._r
        data = conn._w - r
        want = conn._want
        cap = self._read_cap
        if data >= cap or want > cap:
            self._drop_inbound(conn)
            self._close(conn, FrameTooLarge(max(data, want), cap), True)
            return
        if conn._in is self._rbuf:
            new = self._pool.acquire(min(max(data + MIN_READ, want), cap))
            view = memoryview(new)
            view[:data] = self._rview[r : r + data]
            conn._in = new
            conn._view = view
            conn._r = 0
            conn._w = data
        timeout = self._read_timeout
        if timeout and (progressed or not conn._deadline):
            deadline = self.now + timeout
            conn._deadline = deadline
            timer = conn._timer
            if timer is None or timer.when > deadline:
                if timer is not None:
                    timer.cancel()
                conn._timer = self._timers.call_at(deadline, self._conn_timer, conn)

    def _grow(self, conn: Conn) -> bool:
        """Make room to recv: move the partial frame into a (bigger) pooled buffer."""
        old = conn._in
        r = conn._r
        data = conn._w - r
        cap = self._read_cap
        if data >= cap:
            self._drop_inbound(conn)
            self._close(conn, FrameTooLarge(data, cap), True)
            return False
        need = max(data + MIN_READ, conn._want)
        if need <= len(old) and old is not self._rbuf:
            # Room enough once the consumed bytes are dropped: compact in place.
            view = conn._view
            view[:data] = bytes(view[r : r + data])
            conn._r = 0
            conn._w = data
            return True
        if not conn._want:
            need = max(need, 2 * len(old))  # unknown frame size: grow geometrically
        new = self._pool.acquire(min(need, cap))
        view = memoryview(new)
        view[:data] = conn._view[r : r + data]
        conn._in = new
        conn._view = view
        conn._r = 0
        conn._w = data
        if old is not self._rbuf:
            self._pool.release(old)
        return True

    def _drop_inbound(self, conn: Conn) -> None:
        buf = conn._in
        if buf is not self._rbuf:
            self._pool.release(buf)
            conn._in = self._rbuf
            conn._view = self._rview
        conn._r = conn._w = 0
