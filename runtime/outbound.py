"""Outbound half of the event loop: batched sends, backpressure, cross-thread ops.

Writes are queued and sent when the callback returns with one send (small
chunks joined) or sendmsg (scatter-gather, <= IOV_MAX chunks); WRITABLE interest
is registered only while the kernel refuses bytes. Mixed into EventLoop.
"""

from __future__ import annotations

import os
from typing import Any

from .conn import (
    CLOSED,
    CLOSING,
    CONNECTING,
    OPEN,
    OUT_DIRTY,
    OUT_IDLE,
    OUT_WAITING,
    Conn,
    ConnectionClosed,
    OutboundOverflow,
)
from .poller import READABLE, WRITABLE

try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    IOV_MAX = 16

JOIN_LIMIT = 65536  # below this many queued bytes, join chunks instead of sendmsg
COALESCE_LIMIT = 1 << 20  # a refused tail up to this size is joined into one chunk
# A reply up to this size, written by the only callback that wrote to its conn, is
# sent after the poll's other events (copied, then sent back to back with the
# others: see _send_batch); a larger one is sent at once, without the copy.
BATCH_WRITE_LIMIT = 2048
# A batch is sent when it holds this many replies (a 15 000-connection poll would
# otherwise hold the first reply back for the whole poll's work).
BATCH_MAX_REPLIES = 256


class OutboundMixin:
    # ------------------------------------------------------------ writing
    def _flush_dirty(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        dirty = self._dirty
        try:
            i = 0
            while i < len(dirty):  # flushing may close conns whose on_close writes more
                conn = dirty[i]
                i += 1
                if conn._ostate == OUT_DIRTY:
                    self._flush(conn)
            dirty.clear()
        finally:
            self._flushing = False

    def _send_batch(self, batch: list[Conn]) -> None:
        """Send the small replies queued while handling one poll's events.

        Sending each at once would wake the peer once per reply: a closed-loop
        peer sleeps again between two of them. Sent back to back after the
        events, most find it awake: less kernel time per request (figures in
        docs/runtime.md), for at most BATCH_MAX_REPLIES replies of added latency.
        """
        sent_total = 0
        for conn in batch:
            if conn._ostate != OUT_DIRTY:
                continue  # closed, or flushed since
            out = conn._out
            # _flush's common case, inlined (calling _flush per reply costs ~9 % of
            # an echo event). No callbacks or close can be added to a batched conn
            # before this: they are tasks, run between polls.
            if len(out) != 1:
                self._flush(conn)  # another connection's callback wrote to it too
                continue
            try:
                n = conn.sock.send(out[0])
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._finish_close(conn, exc)
                continue
            if n == conn._out_bytes:
                sent_total += n
                conn._out = None
                conn._ostate = OUT_IDLE
            else:
                self._account(conn, n)
        batch.clear()
        self.bytes_out += sent_total

    def _flush(self, conn: Conn) -> None:
        """Send queued bytes with one send/sendmsg; queue what the kernel refuses."""
        out = conn._out
        if out is None:
            if conn._ostate == OUT_DIRTY:
                conn._ostate = OUT_IDLE
            return
        if conn._state == CONNECTING:
            return  # sent once the dial completes
        sock = conn.sock
        try:
            if len(out) == 1:  # (for a datagram conn too: one chunk, one datagram)
                n = sock.send(out[0])
            elif conn.datagram:
                n = self._send_datagrams(conn, out)
            elif conn._out_bytes <= JOIN_LIMIT:
                # Many small chunks: one memcpy beats building an iovec per chunk.
                n = sock.send(b"".join(out))
            elif len(out) <= IOV_MAX:
                n = sock.sendmsg(out)
            else:
                n = sock.sendmsg(out[:IOV_MAX])
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._finish_close(conn, exc)
            return
        if (
            n == conn._out_bytes
            and conn._ostate != OUT_WAITING
            and conn._callbacks is None
            and conn._state == OPEN
        ):
            # The common case: everything a callback wrote went out at once. (A paused
            # conn is always OUT_WAITING; _sent only has to move while callbacks wait
            # for their marks; _out_bytes is stale while _out is None.)
            self.bytes_out += n
            conn._last = self.now
            conn._out = None
            conn._ostate = OUT_IDLE
            return
        self._account(conn, n)

    def _account(self, conn: Conn, n: int) -> None:
        """After a send of `n` queued bytes that left work: callbacks, a tail, a close."""
        out = conn._out
        if n:
            self.bytes_out += n
            conn._sent += n
            conn._last = self.now
        remaining = conn._out_bytes - n
        conn._out_bytes = remaining
        if remaining <= 0:
            conn._out = None
            conn._out_bytes = 0
            previous = conn._ostate
            conn._ostate = OUT_IDLE
            if conn._callbacks:
                self._fire_write_callbacks(conn)
            if conn._state == CLOSING:
                self._finish_close(conn, conn._err)
                return
            if conn._paused:
                self._resume(conn)
                self._update_interest(conn)
            elif previous == OUT_WAITING:
                self._update_interest(conn)
            return
        # Drop fully sent chunks, keep the tail of a partly sent one.
        i = 0
        while n:
            chunk = out[i]
            size = len(chunk)
            if n >= size:
                n -= size
                i += 1
            else:
                out[i] = memoryview(chunk)[n:]
                n = 0
        if i:
            del out[:i]
        if conn._callbacks:
            self._fire_write_callbacks(conn)
        if conn._ostate != OUT_WAITING:
            # Chunks may view buffers the loop or the caller reuse after this callback:
            # own them. A modest tail becomes one bytes (one copy, one later send).
            if len(out) > 1 and remaining <= COALESCE_LIMIT:
                out[:] = [b"".join(out)]
            for j, chunk in enumerate(out):
                if type(chunk) is not bytes and not (
                    type(chunk) is memoryview and type(chunk.obj) is bytes
                ):
                    out[j] = bytes(chunk)
            conn._ostate = OUT_WAITING
        if remaining > self._write_cap:
            self._overflow(conn)
            return
        if remaining > self._high and not conn._paused:
            conn._paused = True
            if self._pause_hook is not None:
                self._call_pause_hook(conn, True)
        elif conn._paused and remaining <= self._low:
            self._resume(conn)
        self._update_interest(conn)

    @staticmethod
    def _send_datagrams(conn: Conn, out: list) -> int:
        """Each queued chunk is one datagram: send them one by one until EAGAIN."""
        sent = 0
        send = conn.sock.send
        for chunk in out:
            try:
                send(chunk)
            except (BlockingIOError, InterruptedError):
                break
            sent += len(chunk)
        return sent

    def _pressure(self, conn: Conn) -> None:
        """A write while the kernel refuses bytes took the queue above the high mark."""
        if conn._out_bytes > self._write_cap:
            # Closing inside the caller's write would pull the conn from under it.
            self._tasks.append((self._overflow, (conn,)))
        elif not conn._paused:
            conn._paused = True
            if self._pause_hook is not None:
                self._call_pause_hook(conn, True)
            self._update_interest(conn)

    def _overflow(self, conn: Conn) -> None:
        if conn._state != CLOSED and conn._out_bytes > self._write_cap:
            self._finish_close(
                conn,
                OutboundOverflow(
                    f"{conn._out_bytes} unsent bytes exceed write_buffer_cap {self._write_cap}"
                ),
            )

    def _resume(self, conn: Conn) -> None:
        """Leave the paused state (drained below the low water mark)."""
        conn._paused = False
        if self._pause_hook is not None:
            self._call_pause_hook(conn, False)

    def _call_pause_hook(self, conn: Conn, paused: bool) -> None:
        try:
            self._pause_hook(conn, paused)
        except Exception as exc:
            self._handler_error(conn, exc, "on_write_pause")

    def _update_interest(self, conn: Conn) -> None:
        state = conn._state
        if state == CLOSED:
            return
        events = 0
        if state == OPEN and not conn._paused and not self._stopping:
            events = READABLE
        if conn._ostate == OUT_WAITING or state == CONNECTING:
            events |= WRITABLE
        current = conn._events
        if events == current:
            return
        try:
            if not current:
                self._poller.register(conn.fd, events, level=conn.datagram)
            elif not events:
                self._poller.unregister(conn.fd)
            else:
                self._poller.modify(conn.fd, events)
        except OSError as exc:
            self._finish_close(conn, exc)
            return
        conn._events = events

    def _fire_write_callbacks(self, conn: Conn) -> None:
        sent = conn._sent
        callbacks = conn._callbacks
        due = [cb for mark, cb in callbacks if mark is not None and mark <= sent]
        if not due:
            return
        conn._callbacks = [
            item for item in callbacks if item[0] is None or item[0] > sent
        ] or None
        for cb in due:
            try:
                cb(conn, None)
            except Exception:
                self.logger.exception(
                    "protogen: async_write callback failed for %r", conn
                )

    # ------------------------------------------------------------ cross-thread ops
    def _async_write(self, conn: Conn, chunks: tuple, callback: Any) -> None:
        if conn._state == CLOSED or conn._state == CLOSING:
            if callback is not None:
                callback(conn, ConnectionClosed(f"{conn!r} closed before async_write"))
            return
        for chunk in chunks:
            conn.write(chunk)
        if callback is not None:
            if conn._out is None:
                callback(conn, None)
            else:
                if conn._callbacks is None:
                    conn._callbacks = []
                conn._callbacks.append((conn._sent + conn._out_bytes, callback))

    def _wake(self, conn: Conn, callback: Any) -> None:
        if conn._state >= CLOSING:
            if callback is not None:
                callback(conn, ConnectionClosed(f"{conn!r} closed before wake"))
            return
        conn._last = self.now
        self._traffic(conn)
        if callback is not None:
            callback(conn, None)

    def _close_with_callback(self, conn: Conn, callback: Any) -> None:
        if conn._state == CLOSED:
            if callback is not None:
                callback(conn, None)
            return
        if callback is not None:
            if conn._callbacks is None:
                conn._callbacks = []
            conn._callbacks.append((None, callback))
        self._close(conn, None, True)
