"""One event loop: a poller, the connections it owns, their buffers, timers and tasks.

The hot path is `run()`, which inlines the common case of `_read()` and
`_traffic()`: recv into the shared buffer, the handler's on_data (or
on_traffic), one small reply queued for `_send_batch()` after the poll's events.
It keeps attribute chains out of the loop and allocates per event only the
memoryview slice for on_data and the reply's copy.

Inbound: a connection with nothing buffered reads into the loop's shared buffer;
only bytes the handler leaves unconsumed are copied into a pooled per-connection
buffer (sized by the peek() hint), which goes back to the pool as soon as it empties.
Outbound: writes are queued and sent when the callback returns, with one
send/sendmsg (a single small reply to the conn being read: with the poll's
others, after its events); WRITABLE interest is registered only while the
kernel refuses bytes.
"""

from __future__ import annotations

import collections
import threading
from time import monotonic
from typing import Any, Callable

from protogen.errors import ProtocolError

from .buffer import default_pool
from .conn import (
    CLOSED,
    CONNECTING,
    OPEN,
    OUT_DIRTY,
    OUT_IDLE,
    OUT_WAITING,
    Conn,
    ConnectionClosed,
    set_keep_alive,
)
from .handler import Action, EventHandler, data_hook, handler_overrides
from .inbound import SHARED_READ_SIZE, InboundMixin
from .lifecycle import LifecycleMixin
from .options import Options
from .outbound import BATCH_MAX_REPLIES, BATCH_WRITE_LIMIT, OutboundMixin
from .poller import (
    ERROR,
    RAW_HANGUP,
    READABLE,
    WRITABLE,
    Waker,
    new_poller,
    normalize,
)
from .ratelog import log_protocol_error
from .timer import TimerQueue

_ERRHUP = ERROR | RAW_HANGUP


class EventLoop(InboundMixin, OutboundMixin, LifecycleMixin):
    """A single-threaded reactor. Create it, add listeners/conns, then `run()`.

    Thread-safe entry points: call_soon_threadsafe, enroll, stop.
    """

    def __init__(
        self,
        handler: EventHandler,
        options: Options,
        *,
        engine: Any = None,
        index: int = 0,
    ) -> None:
        self.handler = handler
        self.options = options
        self.engine = engine
        self.index = index
        self.logger = options.get_logger()
        self.thread_id: int | None = None
        self._poller = new_poller(options.poller, edge_triggered=options.edge_triggered)
        self._edge = self._poller.edge_triggered
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
        self._current: Conn | None = None  # the conn whose on_traffic is running
        self._more: list[Conn] = []  # edge-triggered conns with bytes maybe left
        self._flushing = False
        self._acceptors: list[Any] = []
        self._lingering: dict[int, Any] = {}  # fd -> closed-but-flushing socket
        self._accept_paused = False
        self._stopping = False
        self._finished = False  # run() returned: tasks run in the caller's thread
        self._running = False
        self._drain_deadline = 0.0
        self._linger_deadline = 0.0
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
        self._views: dict[int, memoryview] = {}  # see _view_of
        self._batch: list[Conn] = []  # small replies of this poll, see _send_batch
        # The optional fast path: on_data(conn, view) -> bytes consumed, or None
        # for "use on_traffic". Taken only when nothing is kept from earlier reads.
        self._on_data = data_hook(handler)
        self._pause_hook = (
            handler.on_write_pause
            if handler_overrides(handler, "on_write_pause")
            else None
        )
        self._poller.register(self._waker.fileno(), READABLE, level=True)
        self._specials[self._waker.fileno()] = self._on_waker

    # ------------------------------------------------------------ scheduling
    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread_id

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn(*args) on the loop thread; one wake-up per batch of calls.

        Once the loop has finished, fn runs at once in the calling thread (every
        connection is closed then: async_write callbacks get ConnectionClosed).
        """
        if self._finished:
            fn(*args)
            return
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
        # Level-triggered even in edge mode: such callbacks take a bounded batch.
        self._poller.register(fd, READABLE, level=True)

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

    # ------------------------------------------------------------ connections
    def enroll(
        self,
        sock: Any,
        remote_addr: Any = None,
        *,
        context: Any = None,
        conn_class: type = Conn,
    ) -> Conn:
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
                set_keep_alive(
                    sock,
                    options.tcp_keepalive,
                    options.tcp_keepalive_interval,
                    options.tcp_keepalive_count,
                )
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
        # Dialed UDP conns stay level-triggered: one datagram per read.
        self._poller.register(fd, events, level=conn.datagram)
        conn._events = events
        self.opened += 1
        if self._idle:
            conn._timer = self._timers.call_at(
                self.now + self._idle, self._conn_timer, conn
            )
        try:
            result = self.handler.on_open(conn)
        except Exception as exc:
            self._handler_error(conn, exc, "on_open")
            return
        if result is not None:
            if isinstance(result, tuple):
                data, action = result
            else:  # tolerate a bare Action
                data, action = None, result
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

    def _special_event(self, fd: int, ev: int) -> None:
        """An event for a listener, the waker or an add_reader fd (not a conn)."""
        callback = self._specials.get(fd)
        if callback is not None:
            try:
                callback(normalize(ev))
            except Exception:
                self.logger.exception("protogen: reader callback for fd %d failed", fd)

    def _handler_error(self, conn: Conn | None, exc: BaseException, where: str) -> None:
        """A callback raised: protocol errors close the conn quietly, others are logged."""
        if isinstance(exc, ProtocolError):
            log_protocol_error(self.logger, conn, exc)  # INFO, rate-limited
        else:
            self.logger.error("protogen: %s raised for %r", where, conn, exc_info=exc)
            if self.options.fatal_handler_errors:
                if self.fatal_error is None:
                    self.fatal_error = exc
                self.request_stop()
        if conn is not None:
            self._close(conn, exc, True)

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
        self._linger_deadline = self._drain_deadline + self.options.drain_timeout
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
        poll = self._poller.poll_raw
        timers = self._timers
        tasks = self._tasks
        read = self._read
        on_traffic = self._on_traffic
        on_data = self._on_data
        rbuf = self._rbuf
        views = self._views
        batch = self._batch
        edge = self._edge
        flush = self._flush
        readish = READABLE | _ERRHUP
        more = self._more
        try:
            while True:
                if tasks:
                    self._run_tasks()
                if self._stopping and self._drained():
                    if self._conns:
                        self._shutdown_conns()  # graceful closes may linger
                    if not self._lingering or monotonic() >= self._linger_deadline:
                        break
                if more:
                    # Edge-triggered reads that filled their space: read them again
                    # after this poll's events, as level-triggered epoll would.
                    again = more
                    more = self._more = []
                else:
                    again = None
                if tasks or again:
                    timeout: float | None = 0.0
                else:
                    timeout = timers.next_delay(monotonic()) if len(timers) else None
                    if self._stopping:
                        timeout = 0.05 if timeout is None else min(timeout, 0.05)
                events = poll(timeout)
                self.now = now = monotonic()
                for fd, ev in events:
                    conn = conns.get(fd)
                    if conn is None:
                        self._special_event(fd, ev)
                        continue
                    if ev & WRITABLE:
                        if conn._state == CONNECTING:
                            self._connected(conn)
                            continue
                        if conn._ostate == OUT_WAITING:
                            flush(conn)
                    if not ev & readish:
                        continue
                    if not conn._events & READABLE:
                        self._unread_event(conn, ev)
                        continue
                    if conn._in is not rbuf:
                        if read(conn) and edge:
                            more.append(conn)
                        continue
                    # The common case of _read() and _traffic(), inlined (their two
                    # calls and checks were ~10 % of an echo's Python time): nothing
                    # kept from earlier reads, so recv into the loop's buffer; the
                    # handler consumes it all and writes one reply.
                    try:
                        n = conn.sock.recv_into(rbuf)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        self._finish_close(conn, exc)
                        continue
                    if not n:
                        if not conn.datagram:
                            self._close(conn, None, True)  # EOF
                        continue
                    conn._r = 0
                    conn._w = n
                    self.bytes_in += n
                    conn._last = now
                    self._current = conn
                    try:
                        if on_data is None:
                            action = on_traffic(conn)
                        else:
                            action = None
                            data = views.get(n)
                            if data is None:
                                data = self._view_of(n)
                            used = on_data(conn, data)
                            if used == n and conn._w == n:
                                conn._r = n
                            elif used is None:
                                action = on_traffic(conn)
                            else:
                                self._consumed(conn, used, n)
                    except Exception as exc:
                        self._traffic_failed(conn, exc, 0)
                        continue
                    self._current = None
                    if n == SHARED_READ_SIZE and edge:
                        more.append(conn)
                    if (
                        action  # CLOSE or SHUTDOWN (None and Action.NONE are falsy)
                        or conn._r != n
                        or conn._deadline
                        or self._dirty
                    ):
                        self._settle(conn, action, 0)
                        continue
                    out = conn._out
                    if out is None:
                        continue
                    if (
                        len(out) == 1
                        and conn._out_bytes <= BATCH_WRITE_LIMIT
                        and conn._ostate == OUT_IDLE
                        and conn._callbacks is None
                        and conn._state == OPEN
                    ):
                        # One small reply: sent with the poll's others after its
                        # events (_send_batch). Copied, as later reads reuse rbuf.
                        chunk = out[0]
                        if type(chunk) is memoryview:
                            out[0] = chunk.tobytes()  # cheaper than bytes(view)
                        elif type(chunk) is not bytes:
                            out[0] = bytes(chunk)
                        conn._ostate = OUT_DIRTY
                        batch.append(conn)
                        if len(batch) == BATCH_MAX_REPLIES:
                            self._send_batch(batch)  # bounds the added latency
                    else:
                        self._settle(conn, None, 0)  # sends a large one at once
                if batch:
                    self._send_batch(batch)
                if again:
                    self._read_again(again)
                if self._dirty:  # safety net: nothing stays unsent across a poll
                    self._flush_dirty()
                if len(timers):
                    timers.run_due(monotonic())  # not self.now: callbacks ran since
                    if self._dirty:
                        self._flush_dirty()
        finally:
            self._shutdown_conns()
            self._close_lingering()
            self._finished = True
            if self._tasks:
                self._run_tasks()  # late cross-thread calls see closed conns

    def _shutdown_conns(self) -> None:
        for conn in list(self._conns.values()):
            if conn._out is not None:
                self._finish_close(
                    conn, TimeoutError(f"drain_timeout: {conn._out_bytes} bytes unsent")
                )
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
