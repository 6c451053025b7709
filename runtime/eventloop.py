"""One event loop: a poller, the connections it owns, their buffers, timers and tasks.

The loop is the one owner of its connections' state. Each connection's bytes
move through one receive function (`_dispatch`: a poll's events, each a recv
into the connection's `Inbound`, then on_traffic and what follows it) and one
send function (`_send`: the connections' `Outbound` queues to the kernel, then
`_sent` for what did not fit). Acceptors, UDP listeners, the client and the
multi-process engine use the small API below (`open`, `enroll`, `dial`,
`add_listener`, `pause_accepting`, `watch`, `handler_error`, ...), never a
connection's fields.

Per read event: `poll -> dict fd->Conn -> recv_into -> on_traffic -> one send`
(a small reply is sent after the poll's other events, with theirs). Work a
connection is owed without a new read event -- frames left because the handler
yielded (fairness) or because its output was over the high-water mark, an
edge-triggered read that filled its buffer -- goes on the `ready` list, served
after the next poll's events.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import threading
from time import monotonic
from typing import Any, Callable

from protogen.errors import FrameTooLarge, ProtocolError

from .buffer import default_pool
from .conn import (
    CLOSED,
    CLOSING,
    CONNECTING,
    EOF_DONE,
    EOF_PENDING,
    EOF_SEEN,
    OPEN,
    PENDING_READ,
    PENDING_TRAFFIC,
    Conn,
    ConnectionClosed,
    IdleTimeout,
    OutboundOverflow,
    ReadTimeout,
    set_keep_alive,
)
from .handler import Action, EventHandler, handler_overrides
from .inbound import SHARED_READ_SIZE, BufferBudgetExceeded, InboundMemory
from .linger import Lingering
from .options import Options
from .outbound import OUT_DIRTY, OUT_IDLE, OUT_WAITING
from .poller import (
    ERROR,
    RAW_HANGUP,
    READABLE,
    WRITABLE,
    Poller,
    Waker,
    new_poller,
    normalize,
)
from .ratelog import log_protocol_error
from .timer import TimerQueue

_ERRHUP = ERROR | RAW_HANGUP
_READISH = READABLE | _ERRHUP
# A pseudo event bit (beyond the poller's): run on_traffic without a recv.
_HANDLE = 1 << 30

# A reply up to this size, written by the only callback that wrote to its conn, is
# sent after the poll's other events (copied, then sent back to back with the
# others: see _send_batch); a larger one is sent at once, without the copy.
BATCH_WRITE_LIMIT = 2048
# A batch is sent when it holds this many replies (a 15 000-connection poll would
# otherwise hold the first reply back for the whole poll's work).
BATCH_MAX_REPLIES = 256
# Idle connections are looked for this often (at most), a fraction of idle_timeout.
IDLE_SWEEP_MAX = 5.0

Watcher = Callable[..., Any]


class EventLoop:
    """A single-threaded reactor. Create it, add listeners/conns, then `run()`.

    Thread-safe entry points: call_soon_threadsafe, enroll, dial, request_stop.
    Everything else runs on the loop thread.
    """

    __slots__ = (
        "handler",
        "options",
        "engine",
        "index",
        "logger",
        "thread_id",
        "_poller",
        "_edge",
        "_waker",
        "_conns",
        "_specials",
        "_tasks",
        "_wake_pending",
        "_timers",
        "memory",
        "_lingering",
        "_closing",
        "_listeners",
        "_accept_paused",
        "_opened_watchers",
        "_closed_watchers",
        "_stopping",
        "_finished",
        "_drain_deadline",
        "_linger_deadline",
        "fatal_error",
        "now",
        "opened",
        "closed",
        "bytes_in",
        "bytes_out",
        "dirty",
        "high",
        "_low",
        "_write_cap",
        "_flushing",
        "_batch",
        "_ready",
        "_idle",
        "_read_timeout",
        "_max_conns",
        "frame_budget",
        "_on_traffic",
        "_pause_hook",
    )

    def __init__(
        self,
        handler: EventHandler,
        options: Options,
        *,
        engine: Any = None,
        index: int = 0,
        poller: Poller | None = None,
    ) -> None:
        self.handler = handler
        self.options = options
        self.engine = engine
        self.index = index
        self.logger = options.get_logger()
        self.thread_id: int | None = None
        # `poller`: one already made (bench/hotpath.py scripts one), else per options.
        self._poller = poller or new_poller(
            options.poller, edge_triggered=options.edge_triggered
        )
        self._edge = self._poller.edge_triggered
        self._waker = Waker()
        self._conns: dict[int, Conn] = {}
        self._specials: dict[int, Callable[[int], Any]] = {}
        self._tasks: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._wake_pending = False
        self._timers = TimerQueue(on_error=self._timer_error)
        # The handler's max_frame: a connection may always buffer one whole frame.
        max_frame = getattr(handler, "max_frame", None)
        per_conn = options.max_buffered_per_conn
        if isinstance(max_frame, int) and max_frame > per_conn:
            per_conn = max_frame
        self.memory = InboundMemory(
            default_pool(), per_conn, options.max_buffered_total
        )
        self._lingering = Lingering(self, options.drain_timeout)
        # Why each connection flushing its queue before closing is closed.
        self._closing: dict[Conn, BaseException | None] = {}
        self._listeners: list[Any] = []
        self._accept_paused = False
        self._opened_watchers: list[Watcher] = []
        self._closed_watchers: list[Watcher] = []
        self._stopping = False
        self._finished = False  # run() returned: tasks run in the caller's thread
        self._drain_deadline = 0.0
        self._linger_deadline = 0.0
        self.fatal_error: BaseException | None = None
        self.now = monotonic()
        # Stats (read by Engine.stats()).
        self.opened = 0
        self.closed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        # Shared with Conn.write (the write path's half of the loop's state).
        self.dirty: list[Conn] = []  # conns written to outside their own callback
        self.high = options.write_high_water
        self._low = options.write_low_water
        self._write_cap = options.write_buffer_cap
        self._flushing = False
        self._batch: list[Conn] = []  # small replies of this poll, see _send_batch
        self._ready: list[Conn] = []  # conns owed work on the next pass (Conn.pending)
        self._idle = options.idle_timeout
        self._read_timeout = options.read_timeout
        self._max_conns = options.connection_limit()
        # Read by generated handlers: frames they decode per callback.
        self.frame_budget = options.max_frames_per_callback
        self._on_traffic = handler.on_traffic
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

    def watch(
        self, opened: Watcher | None = None, closed: Watcher | None = None
    ) -> None:
        """Observe every connection: opened(conn) before its on_open, closed(conn,
        err) after its on_close (only for connections that were opened).

        For the runtime's own bookkeeping (worker tallies, metrics): a watcher
        must not raise and should be cheap.
        """
        if opened is not None:
            self._opened_watchers.append(opened)
        if closed is not None:
            self._closed_watchers.append(closed)

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
        if self.dirty:
            self._flush_dirty()

    # ------------------------------------------------------------ connections
    def open(
        self,
        sock: Any,
        remote_addr: Any,
        *,
        context: Any = None,
        conn_class: type[Conn] = Conn,
        transport: Callable[[Conn], Any] | None = None,
    ) -> Conn:
        """Loop thread: adopt a connected non-blocking socket and run on_open.

        `transport(conn)` may return the object the loop reads and writes through
        instead of the socket (a TLS layer, say); it is called before on_open.
        """
        conn = conn_class(self, sock, remote_addr)
        conn.context = context
        if transport is not None:
            conn.transport = transport(conn)
        self._open(conn)
        return conn

    def enroll(
        self,
        sock: Any,
        remote_addr: Any = None,
        *,
        context: Any = None,
        conn_class: type[Conn] = Conn,
        transport: Callable[[Conn], Any] | None = None,
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
        if transport is not None:
            conn.transport = transport(conn)
        if self.in_loop_thread():
            self._open(conn)
        else:
            self.call_soon_threadsafe(self._open, conn)
        return conn

    def dial(
        self,
        sock: Any,
        remote_addr: Any,
        err: int,
        context: Any = None,
        transport: Callable[[Conn], Any] | None = None,
    ) -> Conn:
        """Thread-safe: a conn for `sock`, whose connect_ex returned `err`; the
        connect completes on the loop (on_open, or on_close with the error)."""
        conn = Conn(self, sock, remote_addr)
        conn.state = CONNECTING
        conn.context = context
        if transport is not None:
            conn.transport = transport(conn)
        self.call_soon_threadsafe(self._start_dial, conn, err)
        return conn

    def configure_socket(self, sock: Any) -> None:
        """Apply the per-connection socket options to an accepted/enrolled TCP socket."""
        options = self.options
        if options.tcp_no_delay:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            conn.state = CLOSED
            conn.sock.close()
            return
        fd = conn.fd
        conn.state = OPEN
        conn.last = self.now
        self._conns[fd] = conn
        events = READABLE | (WRITABLE if conn.outbound.state == OUT_WAITING else 0)
        # Dialed UDP conns stay level-triggered: one datagram per read.
        self._poller.register(fd, events, level=conn.datagram)
        conn.events = events
        self.opened += 1
        for watcher in self._opened_watchers:
            watcher(conn)
        if self._max_conns and len(self._conns) >= self._max_conns:
            self.pause_accepting()
        transport = conn.transport
        if transport is not conn.sock and getattr(transport, "handshaking", False):
            # A layer with a handshake (TLS): it calls start_conn once done.
            try:
                transport.begin()
            except OSError as exc:
                self._finish_close(conn, exc)
            return
        self.start_conn(conn)

    def start_conn(self, conn: Conn) -> None:
        """Run on_open and what it returns: from `_open`, or from a transport
        whose handshake just completed (inside its recv_into)."""
        try:
            result = self.handler.on_open(conn)
        except Exception as exc:
            self.handler_error(conn, exc, "on_open")
            return
        if result is not None:
            if isinstance(result, tuple):
                data, action = result
            else:  # tolerate a bare Action
                data, action = None, result
            if data and conn.state == OPEN:
                conn.write(data)
            if action:
                self.apply(conn, action)
        if conn.outbound.chunks is not None and conn.outbound.state == OUT_DIRTY:
            self.send(conn)
        if self.dirty:
            self._flush_dirty()

    def apply(self, conn: Conn | None, action: Any) -> None:
        """What a callback's Action asks of the loop (None/NONE: nothing)."""
        if action == Action.CLOSE:
            if conn is not None:
                self._close(conn, None)
        elif action == Action.SHUTDOWN:
            self.request_stop()
        elif action == Action.YIELD and conn is not None:
            self._owe(conn, PENDING_TRAFFIC)

    def handler_error(self, conn: Conn | None, exc: BaseException, where: str) -> None:
        """A callback raised: protocol errors close the conn quietly, others are logged."""
        if isinstance(exc, (ProtocolError, OutboundOverflow)):
            log_protocol_error(self.logger, conn, exc)  # INFO, rate-limited
        else:
            self.logger.error("protogen: %s raised for %r", where, conn, exc_info=exc)
            if self.options.fatal_handler_errors:
                if self.fatal_error is None:
                    self.fatal_error = exc
                self.request_stop()
        if conn is not None:
            self._close(conn, exc)

    def _special_event(self, fd: int, ev: int) -> None:
        """An event for a listener, the waker or an add_reader fd (not a conn)."""
        callback = self._specials.get(fd)
        if callback is not None:
            try:
                callback(normalize(ev))
            except Exception:
                self.logger.exception("protogen: reader callback for fd %d failed", fd)

    def _owe(self, conn: Conn, work: int) -> None:
        """Queue `work` (PENDING_*) for the connection on the next pass."""
        if not conn.pending:
            self._ready.append(conn)
        conn.pending |= work

    # ------------------------------------------------------------ receiving
    def _dispatch(self, events: Any, conns: dict[int, Conn]) -> None:
        """The receive path: for each (fd, mask) of a poll, the connection's one
        recv into its Inbound, then on_traffic, its writes, its action and the
        bytes it left. A mask holding `_HANDLE` (work owed by an earlier pass,
        `conn.wake()`) runs on_traffic without a recv; `conns` maps the fds
        (the loop's connections, or just those the work is for).

        With nothing kept from earlier reads, the recv lands in the loop's shared
        buffer (the common case, handled here); `Inbound.recv` handles the rest.
        One call per poll, not per event: a call is ~2 % of an echo's event.
        """
        memory = self.memory
        # The shared buffer and its view are the loop's for its whole life.
        shared = memory.view
        shared_buffer = memory.buffer
        on_traffic = self._on_traffic
        high = self.high
        now = self.now
        for fd, ev in events:
            conn = conns.get(fd)
            if conn is None:
                self._special_event(fd, ev)
                continue
            if ev & WRITABLE:
                if conn.state == CONNECTING:
                    self._connected(conn)
                    continue
                if conn.outbound.state == OUT_WAITING:
                    self.send(conn)
            inbound = conn.inbound
            if ev & _READISH:
                if not conn.events & READABLE:
                    self._unread_event(conn, ev)
                    continue
                if ev & RAW_HANGUP and not conn.eof:
                    conn.eof = EOF_SEEN  # the peer shut down: a short read is the end
                if conn.pending and conn.pending & PENDING_TRAFFIC:
                    # Frames it is owed are unhandled yet: read once they are, so a
                    # pipelining peer meets TCP's window, not a growing buffer.
                    conn.pending |= PENDING_READ
                    continue
                try:
                    if inbound.view is shared:
                        n = conn.transport.recv_into(shared_buffer)
                        inbound.r = 0
                        r0 = 0  # (what on_traffic starts from)
                        inbound.w = n
                        full = n == SHARED_READ_SIZE
                    else:
                        n = inbound.recv(conn.transport, memory)
                        r0 = inbound.r
                        full = inbound.w == len(inbound.view)
                except (BlockingIOError, InterruptedError):
                    if conn.eof == EOF_SEEN:
                        self._end_of_stream(conn)  # nothing left before the end
                    continue
                except (FrameTooLarge, BufferBudgetExceeded) as exc:
                    self._refuse(conn, exc)
                    continue
                except OSError as exc:
                    self._finish_close(conn, exc)
                    continue
                if not n:
                    if not conn.datagram:
                        self._end_of_stream(conn)
                    continue
                self.bytes_in += n
                conn.last = now
                if full:  # the recv filled its space
                    if self._edge or conn.transport is not conn.sock:
                        # epoll will not report the rest (nor the bytes a
                        # transport such as TLS holds decoded already)
                        self._owe(conn, PENDING_READ)
                elif conn.eof and conn.eof == EOF_SEEN:
                    # Data and FIN in one read: answer the data, then the end.
                    conn.eof = EOF_PENDING
            elif ev & _HANDLE:
                r0 = inbound.r
            else:
                continue  # writable only
            # Its writes skip the dirty list while it runs (Conn.queue_limit).
            conn.queue_limit = high
            try:
                action = on_traffic(conn)
            except Exception as exc:
                conn.queue_limit = -1
                self.handler_error(conn, exc, "on_traffic")  # flushes, then closes
                self._settle(conn, r0)
                continue
            conn.queue_limit = -1
            if (
                action  # CLOSE, SHUTDOWN or YIELD (None and Action.NONE are falsy)
                or inbound.r != inbound.w
                or inbound.view is not shared
                or conn.timer  # a read deadline to cancel (TimerHandle is truthy)
                or conn.eof
                or self.dirty
                or self._stopping
            ):
                self._after(conn, action, r0)
                continue
            out = conn.outbound
            chunks = out.chunks
            if chunks is None:
                continue
            if (
                out.size <= BATCH_WRITE_LIMIT
                and out.state == OUT_IDLE
                and out.waiters is None
            ):
                # Small replies: sent with the poll's others after its events
                # (_send_batch). Copied, as later reads reuse the shared buffer.
                if len(chunks) == 1:
                    chunk = chunks[0]
                    if type(chunk) is not bytes:  # (bytes, the common case: one test)
                        chunks[0] = (
                            chunk.tobytes()  # cheaper than bytes(view)
                            if type(chunk) is memoryview
                            else bytes(chunk)
                        )
                elif conn.datagram:
                    self.send(conn)  # one datagram per chunk: never joined
                    continue
                else:
                    # The replies to pipelined frames: joined now, as the send
                    # would, so that they too wait in the batch, not a send each.
                    out.chunks = [b"".join(chunks)]
                out.state = OUT_DIRTY
                batch = self._batch
                batch.append(conn)
                if len(batch) == BATCH_MAX_REPLIES:
                    self._send_batch()  # bounds the added latency
            else:
                self.send(conn)

    def _serve(self, conn: Conn, ev: int) -> None:
        """_dispatch for one connection: `_HANDLE` (on_traffic only) or READABLE."""
        self._dispatch(((conn.fd, ev),), {conn.fd: conn})

    def _after(self, conn: Conn, action: Any, r0: int) -> None:
        """The uncommon rest of _dispatch: anything beyond one small reply."""
        out = conn.outbound
        if out.chunks is not None:
            if out.state == OUT_WAITING:
                out.own(coalesce=False)  # its new chunks wait behind refused bytes
            else:
                self.send(conn)
        if self.dirty:
            self._flush_dirty()
        if action:
            self.apply(conn, action)
        if conn.state != OPEN:
            return
        self._settle(conn, r0)
        if conn.state != OPEN:
            return
        self._update_interest(conn)
        if conn.eof == EOF_PENDING:
            self._end_of_stream(conn)  # (or later, if frames still wait)
        elif self._stopping:
            self._close_if_done(conn)

    def _settle(self, conn: Conn, r0: int) -> None:
        """Keep the bytes the handler left (off the shared buffer) and time them."""
        inbound = conn.inbound
        progressed = inbound.r != r0
        try:
            kept = inbound.settle(self.memory, conn.state == OPEN and not conn.datagram)
        except (FrameTooLarge, BufferBudgetExceeded) as exc:
            self._refuse(conn, exc)
            return
        timer = conn.timer
        if not kept:
            if timer is not None and conn.state == OPEN:
                timer.cancel()
                conn.timer = None
            return
        timeout = self._read_timeout
        if timeout and (progressed or timer is None):
            # Slowloris: a trickle of bytes does not move this deadline; handling
            # a frame does.
            if timer is not None:
                timer.cancel()
            conn.timer = self._timers.call_at(self.now + timeout, self._deadline, conn)

    def _refuse(self, conn: Conn, exc: BaseException) -> None:
        """The connection may not buffer more: drop its bytes and close it."""
        conn.inbound.drop(self.memory)
        self.logger.debug("protogen: %r closed: %s", conn, exc)
        self._close(conn, exc)

    def _end_of_stream(self, conn: Conn) -> None:
        """The peer will send nothing more: on_eof once its frames are handled."""
        if conn.state != OPEN or conn.eof == EOF_DONE:
            return
        inbound = conn.inbound
        if conn.pending & PENDING_TRAFFIC or (
            conn.write_paused and inbound.r != inbound.w
        ):
            conn.eof = EOF_PENDING  # after the frames it still has to handle
            self._update_interest(conn)
            return
        conn.eof = EOF_DONE
        self._update_interest(conn)  # nothing more to read
        try:
            action = self.handler.on_eof(conn)
        except Exception as exc:
            self.handler_error(conn, exc, "on_eof")
            return
        if action:
            self.apply(conn, action)
        elif self._stopping:
            self._close_if_done(conn)

    def _serve_ready(self, conns: list[Conn]) -> None:
        """Work owed without a new read event (see Conn.pending), as one dispatch."""
        events: list[tuple[int, int]] = []
        targets: dict[int, Conn] = {}
        for conn in conns:
            pending = conn.pending
            conn.pending = 0
            if conn.state != OPEN:
                continue
            fd = conn.fd
            if pending & PENDING_TRAFFIC:
                if conn.write_paused:
                    continue  # resumed (and owed again) once its output drains
                if pending & PENDING_READ:
                    self._owe(conn, PENDING_READ)  # its socket, on the next pass
                events.append((fd, _HANDLE))
            elif pending & PENDING_READ and conn.events & READABLE:
                events.append((fd, READABLE))
            else:
                continue
            targets[fd] = conn
        if events:
            self._dispatch(events, targets)

    def _unread_event(self, conn: Conn, ev: int) -> None:
        """Readable/hang-up on a conn not being read: a dial completing, or a
        paused/stopping/closing conn whose peer is gone."""
        if conn.state == CONNECTING:
            self._connected(conn)
        elif ev & _ERRHUP and conn.state != CLOSED:
            if conn.outbound.chunks is not None:
                self.send(conn)
            if conn.state != CLOSED:
                lost = conn.outbound.chunks is not None
                self._finish_close(
                    conn, ConnectionResetError("peer hung up") if lost else None
                )

    # ------------------------------------------------------------ sending
    def send(self, conn: Conn) -> None:
        """Send the conn's queued bytes now (see _send)."""
        self._send((conn,))

    def _send(self, conns: Any) -> None:
        """The send path: each conn's queued bytes to the kernel with one send or
        sendmsg; what it refuses stays queued until WRITABLE (`_sent`).

        It takes a sequence so that a poll's batch of replies costs one call.
        """
        now = self.now
        sent = 0
        for conn in conns:
            out = conn.outbound
            chunks = out.chunks
            if chunks is None:
                if out.state == OUT_DIRTY:
                    out.state = OUT_IDLE
                continue
            state = conn.state
            if state == CONNECTING:
                continue  # sent once the dial completes
            try:
                if len(chunks) == 1:  # (a datagram conn too: one chunk, one datagram)
                    n = conn.transport.send(chunks[0])
                else:
                    n = out.send_many(conn.transport, conn.datagram)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._finish_close(conn, exc)
                continue
            if n:
                sent += n
                conn.last = now
            if (
                n == out.size
                and state == OPEN
                and out.waiters is None
                and out.state != OUT_WAITING
                and not conn.write_paused
            ):
                # The common case: everything went out at once.
                out.chunks = None
                out.size = 0  # (Conn.write adds to it without a None check)
                out.state = OUT_IDLE
                continue
            self._sent(conn, n)
        self.bytes_out += sent

    def _sent(self, conn: Conn, n: int) -> None:
        """After a send of `n` queued bytes that left work: callbacks, a tail, a
        close, backpressure."""
        out = conn.outbound
        previous = out.state
        remaining = out.advance(n)
        if out.waiters:
            self._fire_write_callbacks(conn)
        if not remaining:
            out.state = OUT_IDLE
            if conn.state == CLOSING:
                self._finish_close(conn, self._closing.get(conn))
                return
            if conn.write_paused:
                self._resume(conn)
            if previous == OUT_WAITING or not conn.events & READABLE:
                self._update_interest(conn)
            if self._stopping:
                self._close_if_done(conn)
            return
        # Outlives the callback: copy what views reused buffers (chunks a callback
        # added behind refused bytes too).
        out.own(coalesce=previous != OUT_WAITING)
        out.state = OUT_WAITING
        if remaining > self._write_cap:
            # One write bigger than the cap (Conn.write checks the queue from the
            # second chunk of a callback on).
            self._finish_close(
                conn,
                OutboundOverflow(
                    f"{remaining} unsent bytes exceed write_buffer_cap {self._write_cap}"
                ),
            )
            return
        if remaining > self.high:
            if not conn.write_paused:
                self._pause(conn)
        elif conn.write_paused and remaining <= self._low:
            self._resume(conn)
        self._update_interest(conn)

    def _send_batch(self) -> None:
        """Send the small replies queued while handling one poll's events.

        Sending each at once would wake the peer once per reply: a closed-loop
        peer sleeps again between two of them. Sent back to back after the
        events, most find it awake: less kernel time per request (figures in
        docs/runtime.md), for at most BATCH_MAX_REPLIES replies of added latency.
        (A batched conn flushed or closed since has nothing queued: skipped.)
        """
        batch = self._batch
        self._batch = []
        self._send(batch)

    def _flush_dirty(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        dirty = self.dirty
        try:
            # The list itself: sending may close conns whose on_close writes to
            # others, appended to it meanwhile (and sent too).
            self._send(dirty)
            dirty.clear()
        finally:
            self._flushing = False

    def pressure(self, conn: Conn, size: int) -> None:
        """Conn.write is taking the queue to `size` bytes, above the high mark."""
        if size > self._write_cap:
            exc = OutboundOverflow(
                f"{size} unsent bytes would exceed write_buffer_cap {self._write_cap}"
            )
            if conn.state < CLOSING:
                # Closed once the running callback returns (closing inside the
                # caller's write would pull the conn from under it).
                conn.state = CLOSING
                self._closing[conn] = exc
                conn.queue_limit = -1  # its next writes see the close
                conn.outbound.chunks = None
                conn.outbound.size = 0
                conn.outbound.state = OUT_IDLE
                self._tasks.append((self._finish_close, (conn, exc)))
            raise exc
        if not conn.write_paused:
            self._pause(conn)
            self._update_interest(conn)  # reading stops

    def _pause(self, conn: Conn) -> None:
        conn.write_paused = True
        if self._pause_hook is not None:
            self._call_pause_hook(conn, True)

    def _resume(self, conn: Conn) -> None:
        """Leave the paused state (drained to the low water mark); frames left
        buffered meanwhile are handled on the next pass."""
        conn.write_paused = False
        if self._pause_hook is not None:
            self._call_pause_hook(conn, False)
        inbound = conn.inbound
        if conn.state == OPEN:
            if inbound.r != inbound.w:
                self._owe(conn, PENDING_TRAFFIC)
            if conn.transport is not conn.sock:
                # It may hold bytes read while paused (TLS records): the poller
                # reports only what is still in the socket.
                self._owe(conn, PENDING_READ)

    def read_pause(self, conn: Conn, paused: bool) -> None:
        """Conn.pause_reading / resume_reading: read interest off or on again."""
        if conn.state != OPEN:
            return
        self._update_interest(conn)
        inbound = conn.inbound
        if not paused and inbound.r != inbound.w:
            self._owe(conn, PENDING_TRAFFIC)  # frames that arrived before the pause

    def _call_pause_hook(self, conn: Conn, paused: bool) -> None:
        assert self._pause_hook is not None
        try:
            self._pause_hook(conn, paused)
        except Exception as exc:
            self.handler_error(conn, exc, "on_write_pause")

    def _update_interest(self, conn: Conn) -> None:
        state = conn.state
        if state == CLOSED:
            return
        events = 0
        if (
            state == OPEN
            and not conn.write_paused
            and not conn.read_paused
            and not self._stopping
            and conn.eof < EOF_PENDING
        ):
            events = READABLE
        if conn.outbound.state == OUT_WAITING or state == CONNECTING:
            events |= WRITABLE
        current = conn.events
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
        conn.events = events

    def _fire_write_callbacks(self, conn: Conn) -> None:
        for callback in conn.outbound.take_due():
            try:
                callback(conn, None)
            except Exception:
                self.logger.exception(
                    "protogen: async_write callback failed for %r", conn
                )

    # ------------------------------------------------------------ thread-safe ops
    # (run as tasks on the loop thread: Conn.async_write, wake, close, ...)
    def async_write(self, conn: Conn, chunks: tuple[bytes, ...], callback: Any) -> None:
        if conn.state >= CLOSING:
            if callback is not None:
                callback(conn, ConnectionClosed(f"{conn!r} closed before async_write"))
            return
        try:
            for chunk in chunks:
                conn.write(chunk)
        except ConnectionClosed as exc:  # OutboundOverflow: it is closing now
            if callback is not None:
                callback(conn, exc)
            return
        if callback is not None:
            if conn.outbound.chunks is None:
                callback(conn, None)
            else:
                conn.outbound.add_waiter(callback, on_close=False)

    def wake(self, conn: Conn, callback: Any) -> None:
        if conn.state >= CLOSING:
            if callback is not None:
                callback(conn, ConnectionClosed(f"{conn!r} closed before wake"))
            return
        self._serve(conn, _HANDLE)
        if callback is not None:
            callback(conn, None)

    def close_conn(self, conn: Conn, err: BaseException | None) -> None:
        """Graceful close: flush what is queued (drain_timeout), then close."""
        self._close(conn, err)

    def close_with_callback(self, conn: Conn, callback: Any) -> None:
        if conn.state == CLOSED:
            if callback is not None:
                callback(conn, None)
            return
        if callback is not None:
            conn.outbound.add_waiter(callback, on_close=True)
        self._close(conn, None)

    # ------------------------------------------------------------ closing
    def _close(self, conn: Conn, err: BaseException | None) -> None:
        state = conn.state
        if state == CLOSED:
            return
        if conn.outbound.chunks is not None and state != CONNECTING:
            if state == CLOSING:
                return
            conn.state = CLOSING
            self._closing[conn] = err
            conn.pending = 0
            conn.inbound.drop(self.memory)
            if conn.timer is not None:
                conn.timer.cancel()
            conn.timer = self._timers.call_at(
                monotonic() + self.options.drain_timeout, self._deadline, conn
            )
            conn.queue_limit = -1  # its writes must see the close from now on
            if conn.outbound.state != OUT_WAITING:
                self.send(conn)
            else:
                self._update_interest(conn)
            return
        self._finish_close(conn, err)

    def _finish_close(self, conn: Conn, err: BaseException | None) -> None:
        previous = conn.state
        if previous == CLOSED:
            return
        conn.state = CLOSED
        conn.pending = 0
        self._closing.pop(conn, None)
        conn.queue_limit = -1
        fd = conn.fd
        if self._conns.get(fd) is conn:
            del self._conns[fd]
        if conn.events:
            try:
                self._poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass
            conn.events = 0
        # Socket errors and OutboundOverflow abort; orderly closes, protocol and
        # handler errors, limits and timeouts still deliver the answers sent.
        aborted = isinstance(err, OSError) and not isinstance(
            err, (TimeoutError, BufferBudgetExceeded)
        )
        if not aborted and previous != CONNECTING and not conn.datagram:
            transport = conn.transport
            if transport is not conn.sock:
                closing = getattr(transport, "closing", None)
                if closing is not None:
                    closing()  # its last bytes before the FIN (TLS close_notify)
            self._lingering.close(conn.sock)
        else:
            try:
                conn.sock.close()
            except OSError:
                pass
        conn.inbound.drop(self.memory)
        waiters = conn.outbound.clear()
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if previous != CONNECTING:
            self.closed += 1
        if waiters:
            closed = err if err is not None else ConnectionClosed(f"{conn!r} closed")
            for mark, callback in waiters:
                if mark is not None:
                    try:
                        callback(conn, closed)
                    except Exception:
                        self.logger.exception(
                            "protogen: async_write callback failed for %r", conn
                        )
        try:
            action = self.handler.on_close(conn, err)
        except Exception:
            self.logger.exception("protogen: on_close raised for %r", conn)
            action = None
        if previous != CONNECTING:
            for watcher in self._closed_watchers:
                watcher(conn, err)
        for mark, callback in waiters:
            if mark is None:
                try:
                    callback(conn, err)
                except Exception:
                    self.logger.exception(
                        "protogen: close callback failed for %r", conn
                    )
        if action == Action.SHUTDOWN:
            self.request_stop()
        if self._accept_paused and not self.at_capacity():
            self.resume_accepting()

    def _close_if_done(self, conn: Conn) -> None:
        """Stopping: close a connection as soon as it has nothing left to do."""
        if (
            conn.state == OPEN
            and not conn.pending
            and conn.outbound.chunks is None
            and conn.eof != EOF_PENDING
        ):
            self._close(conn, None)

    # ------------------------------------------------------------ timers
    def _deadline(self, conn: Conn) -> None:
        """A conn's one timer: its drain deadline (closing) or read deadline."""
        conn.timer = None
        state = conn.state
        if state == CLOSED:
            return
        if state == CLOSING:
            self._finish_close(
                conn,
                TimeoutError(f"drain_timeout: {conn.outbound.size} bytes unsent"),
            )
            return
        inbound = conn.inbound
        if inbound.r == inbound.w or self._read_timeout is None:
            return
        if conn.write_paused or conn.pending:
            # Its frames wait for the loop (backpressure, fairness), not the peer.
            conn.timer = self._timers.call_later(
                self._read_timeout, self._deadline, conn
            )
            return
        self._close(
            conn,
            ReadTimeout(
                f"partial frame of {inbound.w - inbound.r} bytes unconsumed for "
                f"{self._read_timeout} s"
            ),
        )

    def _sweep_idle(self) -> None:
        """Close connections without bytes in either direction for idle_timeout.

        One sweep over the connections every fraction of the timeout instead of
        a timer per connection: no memory per idle connection.
        """
        idle = self._idle
        assert idle is not None
        cutoff = monotonic() - idle
        for conn in [c for c in self._conns.values() if c.last < cutoff]:
            if conn.state == OPEN:
                self._close(conn, IdleTimeout(f"no traffic for {idle} s"))
        if not self._stopping:
            self._timers.call_later(min(idle / 8, IDLE_SWEEP_MAX), self._sweep_idle)

    # ------------------------------------------------------------ dialing
    def _start_dial(self, conn: Conn, err: int) -> None:
        if self._stopping:
            self._finish_close(conn, ConnectionClosed("the client is stopping"))
        elif err in (0, errno.EISCONN):
            self._connected(conn, registered=False)
        elif err in (
            errno.EINPROGRESS,
            errno.EAGAIN,
            errno.EWOULDBLOCK,
            errno.EALREADY,
        ):
            self._conns[conn.fd] = conn
            self._poller.register(conn.fd, WRITABLE, level=conn.datagram)
            conn.events = WRITABLE
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
            conn.events = 0
        self.configure_socket(conn.sock)
        if conn.outbound.chunks is not None:
            conn.outbound.state = OUT_DIRTY
        self._open(conn)

    # ------------------------------------------------------------ listeners
    def add_listener(self, listener: Any) -> None:
        """Serve a listener (acceptor.Acceptor / udp.UDPListener): its on_event
        runs whenever its socket is readable."""
        self._listeners.append(listener)
        self.add_reader(listener.fileno(), listener.on_event)

    def remove_listener(self, listener: Any) -> None:
        """Stop serving a listener (a reload hands it to the new process)."""
        if listener in self._listeners:
            self._listeners.remove(listener)
            self.remove_reader(listener.fileno())

    def call_from_signal(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a signal handler (it runs on the loop thread while poll blocks):
        run fn(*args) on the loop, waking it."""
        self._tasks.append((fn, args))
        self._wake_pending = True
        self._waker.wake()

    def pause_accepting(self, retry_after: float | None = None) -> None:
        """Stop accepting stream connections: until a connection closes, or for
        `retry_after` seconds (out of descriptors)."""
        if not self._accept_paused:
            self._accept_paused = True
            for listener in self._listeners:
                if listener.stream:
                    self.remove_reader(listener.fileno())
        if retry_after is not None:
            self.call_later(retry_after, self.resume_accepting)

    def resume_accepting(self) -> None:
        if self._accept_paused and not self._stopping:
            self._accept_paused = False
            for listener in self._listeners:
                if listener.stream:
                    self.add_reader(listener.fileno(), listener.on_event)

    def at_capacity(self) -> bool:
        return bool(self._max_conns) and len(self._conns) >= self._max_conns

    # ------------------------------------------------------------ running
    def request_stop(self) -> None:
        """Thread-safe: begin a graceful shutdown of this loop."""
        # Always wake: a signal handler runs on the loop thread while poll() blocks.
        self._tasks.append((self._begin_shutdown, ()))
        self._wake_pending = True
        self._waker.wake()

    stop = request_stop

    def _begin_shutdown(self) -> None:
        """Stop accepting and reading; each connection closes (FIN) as soon as its
        own frames are handled and its output is flushed."""
        if self._stopping:
            return
        self._stopping = True
        for listener in self._listeners:
            self.remove_reader(listener.fileno())
        self._drain_deadline = monotonic() + self.options.drain_timeout
        self._linger_deadline = self._drain_deadline + self.options.drain_timeout
        for conn in list(self._conns.values()):
            if conn.state == CONNECTING:
                self._finish_close(conn, ConnectionClosed("engine stopping"))
            elif conn.state == OPEN:
                self._update_interest(conn)  # no more reading
                self._close_if_done(conn)

    def run(self) -> None:
        """Run until stopped; on the way out every connection is closed (on_close)."""
        self.thread_id = threading.get_ident()
        conns = self._conns
        poll = self._poller.poll_raw
        timers = self._timers
        tasks = self._tasks
        dispatch = self._dispatch
        if self._idle:
            self._timers.call_later(
                min(self._idle / 8, IDLE_SWEEP_MAX), self._sweep_idle
            )
        try:
            while True:
                if tasks:
                    self._run_tasks()
                if self._stopping and (
                    not conns or monotonic() >= self._drain_deadline
                ):
                    if conns:
                        self._shutdown_conns()
                    if not self._lingering or monotonic() >= self._linger_deadline:
                        break
                ready = self._ready
                if ready:
                    self._ready = []
                if tasks or ready:
                    timeout: float | None = 0.0
                else:
                    timeout = timers.next_delay(monotonic()) if len(timers) else None
                    if self._stopping:
                        timeout = 0.05 if timeout is None else min(timeout, 0.05)
                events = poll(timeout)
                self.now = monotonic()
                if events:
                    dispatch(events, conns)
                if self._batch:
                    self._send_batch()
                if ready:
                    self._serve_ready(ready)
                    if self._batch:
                        self._send_batch()
                if self.dirty:  # safety net: nothing stays unsent across a poll
                    self._flush_dirty()
                if len(timers):
                    timers.run_due(monotonic())  # not self.now: callbacks ran since
                    if self.dirty:
                        self._flush_dirty()
        finally:
            self._shutdown_conns()
            self._lingering.close_all()
            self._finished = True
            if self._tasks:
                self._run_tasks()  # late cross-thread calls see closed conns

    def _shutdown_conns(self) -> None:
        for conn in list(self._conns.values()):
            if conn.outbound.chunks is not None:
                self._finish_close(
                    conn,
                    TimeoutError(f"drain_timeout: {conn.outbound.size} bytes unsent"),
                )
            else:
                self._finish_close(conn, None)

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
    @property
    def stopping(self) -> bool:
        """A graceful shutdown has begun."""
        return self._stopping

    def count_connections(self) -> int:
        return len(self._conns)

    def connections(self) -> list[Conn]:
        return list(self._conns.values())


__all__ = ["EventLoop", "BATCH_WRITE_LIMIT", "BATCH_MAX_REPLIES"]
