"""One event loop: a poller, the connections it owns, their buffers, timers and tasks.

The hot path is `run()` -> `_read()` -> `_traffic()` -> `_flush()`; they keep
attribute chains out of inner loops and allocate nothing per event beyond the
memoryview slice recv_into needs.

Inbound: a connection with nothing buffered reads into the loop's shared buffer;
only bytes the handler leaves unconsumed are copied into a pooled per-connection
buffer (sized by the peek() hint), which goes back to the pool as soon as it empties.
Outbound: writes are queued and sent when the callback returns, with one
send/sendmsg; WRITABLE interest is registered only while the kernel refuses bytes.
"""

from __future__ import annotations

import collections
import os
import threading
from time import monotonic
from typing import Any, Callable

from protogen.errors import FrameTooLarge, ProtocolError

from .buffer import default_pool
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
    IdleTimeout,
    OutboundOverflow,
    ReadTimeout,
    _EMPTY,
    set_keep_alive,
)
from .handler import Action, EventHandler, handler_overrides
from .options import Options
from .poller import ERROR, HANGUP, READABLE, WRITABLE, Waker, new_poller
from .timer import TimerQueue

try:
    IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024)
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    IOV_MAX = 16

SHARED_READ_SIZE = 64 * 1024  # one recv into the loop's buffer
MIN_READ = 4096  # never recv into less free space than this
JOIN_LIMIT = 65536  # below this many queued bytes, join chunks instead of sendmsg
_ERRHUP = ERROR | HANGUP


class EventLoop:
    """A single-threaded reactor. Create it, add listeners/conns, then `run()`.

    Thread-safe entry points: call_soon_threadsafe, enroll, stop.
    """

    def __init__(self, handler: EventHandler, options: Options, *, engine: Any = None, index: int = 0) -> None:
        self.handler = handler
        self.options = options
        self.engine = engine
        self.index = index
        self.logger = options.get_logger()
        self.thread_id: int | None = None
        self._poller = new_poller(options.poller, edge_triggered=options.edge_triggered)
        self._edge = options.edge_triggered
        self._waker = Waker()
        self._conns: dict[int, Conn] = {}
        self._specials: dict[int, Callable[[int], Any]] = {}
        self._tasks: collections.deque = collections.deque()
        self._wake_pending = False
        self._timers = TimerQueue(on_error=self._timer_error)
        self._pool = default_pool()
        self._rbuf = bytearray(SHARED_READ_SIZE)
        self._rview = memoryview(self._rbuf)
        self._dirty: list[Conn] = []
        self._flushing = False
        self._acceptors: list[Any] = []
        self._accept_paused = False
        self._stopping = False
        self._running = False
        self._drain_deadline = 0.0
        self.fatal_error: BaseException | None = None
        self.now = monotonic()
        # Stats (read by Engine.stats()).
        self.opened = 0
        self.closed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # Cached options and handler methods for the hot path.
        self._read_cap = options.read_buffer_cap
        self._write_cap = options.write_buffer_cap
        self._high = options.write_high_water
        self._low = options.write_low_water
        self._idle = options.idle_timeout
        self._read_timeout = options.read_timeout
        self._max_conns = options.max_connections
        self._on_traffic = handler.on_traffic
        self._pause_hook = handler.on_write_pause if handler_overrides(handler, "on_write_pause") else None
        self._poller.register(self._waker.fileno(), READABLE)
        self._specials[self._waker.fileno()] = self._on_waker

    # ------------------------------------------------------------ scheduling
    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread_id

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the loop thread; one wake-up per batch of calls."""
        self._tasks.append((fn, args))
        if not self._wake_pending and threading.get_ident() != self.thread_id:
            self._wake_pending = True
            self._waker.wake()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Loop thread only: run fn(*args) after `delay` seconds; returns a TimerHandle."""
        return self._timers.call_later(delay, fn, *args)

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Any:
        return self._timers.call_at(when, fn, *args)

    def add_reader(self, fd: int, callback: Callable[[int], Any]) -> None:
        """Loop thread (or before run): callback(events) whenever fd is readable."""
        self._specials[fd] = callback
        self._poller.register(fd, READABLE)

    def remove_reader(self, fd: int) -> None:
        if self._specials.pop(fd, None) is not None:
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass

    def _timer_error(self, exc: BaseException, handle: Any) -> None:
        self.logger.error("protogen: timer callback %r raised", handle, exc_info=exc)
        if self.options.fatal_handler_errors and self.fatal_error is None:
            self.fatal_error = exc
            self.request_stop()

    def _on_waker(self, events: int) -> None:
        self._waker.drain()

    def _run_tasks(self) -> None:
        self._wake_pending = False
        tasks = self._tasks
        for _ in range(len(tasks)):
            fn, args = tasks.popleft()
            try:
                fn(*args)
            except Exception:
                self.logger.exception("protogen: task %r failed", fn)
        if self._dirty:
            self._flush_dirty()

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

    # ------------------------------------------------------------ connections
    def enroll(self, sock: Any, remote_addr: Any = None, *, context: Any = None, conn_class: type = Conn) -> Conn:
        """Adopt a connected socket; on_open fires on the loop. Thread-safe."""
        sock.setblocking(False)
        if remote_addr is None:
            try:
                remote_addr = sock.getpeername()
            except OSError:
                remote_addr = None
        conn = conn_class(self, sock, remote_addr)
        conn.context = context
        if self.in_loop_thread():
            self._open(conn)
        else:
            self.call_soon_threadsafe(self._open, conn)
        return conn

    def configure_socket(self, sock: Any) -> None:
        """Apply the per-connection socket options to an accepted/enrolled TCP socket."""
        options = self.options
        if options.tcp_no_delay:
            try:
                sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
            except OSError:
                pass  # not TCP (unix); harmless
        if options.tcp_keepalive is not None:
            try:
                set_keep_alive(sock, options.tcp_keepalive, options.tcp_keepalive_interval, options.tcp_keepalive_count)
            except OSError:
                pass

    def _open(self, conn: Conn) -> None:
        """Register a connected conn, count it and run on_open."""
        if self._stopping:
            conn._state = CLOSED
            conn.sock.close()
            return
        fd = conn.fd
        conn._state = OPEN
        conn._last = self.now
        self._conns[fd] = conn
        events = READABLE | (WRITABLE if conn._ostate == OUT_WAITING else 0)
        self._poller.register(fd, events)
        conn._events = events
        self.opened += 1
        if self._idle:
            conn._timer = self._timers.call_at(self.now + self._idle, self._conn_timer, conn)
        try:
            result = self.handler.on_open(conn)
        except Exception as exc:
            self._handler_error(conn, exc, "on_open")
            return
        if result is not None:
            data, action = result
            if data and conn._state == OPEN:
                conn.write(data)
            if action:
                self._apply(conn, action)
        if conn._out is not None and conn._ostate == OUT_DIRTY:
            self._flush(conn)
        if self._dirty:
            self._flush_dirty()
        if self._max_conns and len(self._conns) >= self._max_conns:
            self._pause_accepting()

    def _apply(self, conn: Conn | None, action: Any) -> None:
        if action == Action.CLOSE and conn is not None:
            self._close(conn, None, True)
        elif action == Action.SHUTDOWN:
            self.request_stop()

    def _handler_error(self, conn: Conn | None, exc: BaseException, where: str) -> None:
        """A callback raised: protocol errors close the conn quietly, others are logged."""
        if isinstance(exc, ProtocolError):
            self.logger.debug("protogen: %r closed: %s", conn, exc)
        else:
            self.logger.error("protogen: %s raised for %r", where, conn, exc_info=exc)
            if self.options.fatal_handler_errors:
                if self.fatal_error is None:
                    self.fatal_error = exc
                self.request_stop()
        if conn is not None:
            self._close(conn, exc, True)

    # ------------------------------------------------------------ reading
    def _read(self, conn: Conn) -> bool:
        """One recv then on_traffic. True when the recv filled the space (more may wait)."""
        buf = conn._in
        try:
            if buf is None:
                n = conn.sock.recv_into(self._rbuf)
                if n:
                    conn._in = self._rbuf
                    conn._view = self._rview
                    conn._r = 0
                    conn._w = n
                full = n == SHARED_READ_SIZE
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

    def _read_edge(self, conn: Conn) -> None:
        # Edge-triggered: read until a short read (the kernel queue was empty then).
        while self._read(conn) and conn._state == OPEN and not conn._paused and not self._stopping:
            pass

    def _traffic(self, conn: Conn) -> None:
        r0 = conn._r
        try:
            action = self._on_traffic(conn)
        except Exception as exc:
            self._handler_error(conn, exc, "on_traffic")
            action = None
        if self._dirty:
            self._flush_dirty()
        if action:
            self._apply(conn, action)
        r = conn._r
        w = conn._w
        if r == w:
            buf = conn._in
            if buf is not None:
                if buf is not self._rbuf:
                    self._pool.release(buf)
                conn._in = None
                conn._view = _EMPTY
                conn._r = conn._w = 0
            if conn._state == OPEN:
                conn._deadline = 0.0
            return
        self._keep_leftover(conn, r != r0)

    def _keep_leftover(self, conn: Conn, progressed: bool) -> None:
        """The handler left a partial frame: keep it (off the shared buffer) and watch it."""
        if conn._state != OPEN or conn.datagram:
            self._drop_inbound(conn)  # closing: no one will read it; datagrams do not span reads
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
        if need > len(old) - r and not conn._want:
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
        if buf is not None and buf is not self._rbuf:
            self._pool.release(buf)
        conn._in = None
        conn._view = _EMPTY
        conn._r = conn._w = 0

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
            if conn.datagram:
                n = self._send_datagrams(conn, out)
            elif len(out) == 1:
                n = sock.send(out[0])
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
            # Chunks may view buffers the loop or the caller reuse after this callback.
            for j, chunk in enumerate(out):
                if type(chunk) is not bytes and not (type(chunk) is memoryview and type(chunk.obj) is bytes):
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
                conn, OutboundOverflow(f"{conn._out_bytes} unsent bytes exceed write_buffer_cap {self._write_cap}")
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
                self._poller.register(conn.fd, events)
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
        conn._callbacks = [item for item in callbacks if item[0] is None or item[0] > sent] or None
        for cb in due:
            try:
                cb(conn, None)
            except Exception:
                self.logger.exception("protogen: async_write callback failed for %r", conn)

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
        if conn._state == CLOSED:
            if callback is not None:
                callback(conn, ConnectionClosed(f"{conn!r} closed before wake"))
            return
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
            if conn._ostate == OUT_DIRTY:
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
        fd = conn.fd
        if self._conns.get(fd) is conn:
            del self._conns[fd]
        if conn._events:
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass
            conn._events = 0
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
                        self.logger.exception("protogen: async_write callback failed for %r", conn)
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
                        self.logger.exception("protogen: close callback failed for %r", conn)
        if action == Action.SHUTDOWN:
            self.request_stop()
        if self._accept_paused and not self.at_capacity():
            self._resume_accepting()

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
                self._finish_close(conn, TimeoutError(f"drain_timeout: {conn._out_bytes} bytes unsent"))
            else:
                conn._timer = self._timers.call_at(conn._deadline, self._conn_timer, conn)
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
                self._close(conn, ReadTimeout(f"partial frame of {conn._w - conn._r} bytes unconsumed for {self._read_timeout} s"), True)
                return
            next_due = min(next_due, deadline) if next_due else deadline
        if next_due:
            conn._timer = self._timers.call_at(next_due, self._conn_timer, conn)

    # ------------------------------------------------------------ dialing
    def _start_dial(self, conn: Conn, err: int) -> None:
        import errno

        if err in (0, errno.EISCONN):
            conn._state = CONNECTING
            self._connected(conn, registered=False)
        elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY):
            conn._state = CONNECTING
            self._conns[conn.fd] = conn
            self._poller.register(conn.fd, WRITABLE)
            conn._events = WRITABLE
        else:
            self._finish_close(conn, OSError(err, os.strerror(err)))

    def _connected(self, conn: Conn, registered: bool = True) -> None:
        import socket as _socket

        err = conn.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
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

    # ------------------------------------------------------------ running
    def request_stop(self) -> None:
        """Thread-safe: begin a graceful shutdown of this loop."""
        # Always wake: a signal handler runs on the loop thread while poll() blocks.
        self._tasks.append((self._begin_shutdown, ()))
        self._wake_pending = True
        self._waker.wake()

    stop = request_stop

    def _begin_shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for acceptor in self._acceptors:
            self.remove_reader(acceptor.fileno())
        self._drain_deadline = monotonic() + self.options.drain_timeout
        for conn in list(self._conns.values()):
            if conn._state == CONNECTING:
                self._finish_close(conn, ConnectionClosed("engine stopping"))
            else:
                self._update_interest(conn)  # no more reading; flush only

    def _drained(self) -> bool:
        if monotonic() >= self._drain_deadline:
            return True
        for conn in self._conns.values():
            if conn._out is not None:
                return False
        return True

    def run(self) -> None:
        """Run until stopped; on the way out every connection is closed (on_close)."""
        self.thread_id = threading.get_ident()
        self._running = True
        conns = self._conns
        specials = self._specials
        poll = self._poller.poll
        timers = self._timers
        tasks = self._tasks
        read = self._read_edge if self._edge else self._read
        flush = self._flush
        readish = READABLE | ERROR | HANGUP
        try:
            while True:
                if tasks:
                    self._run_tasks()
                if self._stopping and self._drained():
                    break
                if tasks:
                    timeout: float | None = 0.0
                else:
                    timeout = timers.next_delay(monotonic()) if len(timers) else None
                    if self._stopping:
                        timeout = 0.05 if timeout is None else min(timeout, 0.05)
                events = poll(timeout)
                self.now = monotonic()
                for fd, ev in events:
                    conn = conns.get(fd)
                    if conn is None:
                        callback = specials.get(fd)
                        if callback is not None:
                            try:
                                callback(ev)
                            except Exception:
                                self.logger.exception("protogen: reader callback for fd %d failed", fd)
                        continue
                    if ev & WRITABLE:
                        if conn._state == CONNECTING:
                            self._connected(conn)
                            continue
                        if conn._ostate == OUT_WAITING:
                            flush(conn)
                    if ev & readish:
                        if conn._events & READABLE:
                            read(conn)
                        elif conn._state == CONNECTING:
                            self._connected(conn)
                        elif ev & _ERRHUP and conn._state != CLOSED:
                            # Not reading (paused/stopping) but the peer is gone.
                            if conn._out is not None:
                                flush(conn)
                            if conn._state != CLOSED:
                                lost = conn._out is not None
                                self._finish_close(conn, ConnectionResetError("peer hung up") if lost else None)
                if len(timers):
                    timers.run_due(monotonic())
                    if self._dirty:
                        self._flush_dirty()
        finally:
            self._shutdown_conns()

    def _shutdown_conns(self) -> None:
        for conn in list(self._conns.values()):
            if conn._out is not None:
                self._finish_close(conn, TimeoutError(f"drain_timeout: {conn._out_bytes} bytes unsent"))
            else:
                self._finish_close(conn, None)
        self._running = False

    def close(self) -> None:
        """Release the poller and waker (after run() returned)."""
        for fd in list(self._specials):
            self.remove_reader(fd)
        self._poller.close()
        try:
            self._waker.close()
        except AttributeError:
            pass

    # ------------------------------------------------------------ introspection
    def count_connections(self) -> int:
        return len(self._conns)

    def connections(self) -> list[Conn]:
        return list(self._conns.values())
