"""Multi-process engine: N worker processes, each running one event loop.

CPython threads do not run Python code in parallel, so where gnet starts one
event loop per core in goroutines, protogen forks one *worker process* per
loop.  ``protogen.runtime.run(handler, *addrs, loops=N)`` (or
``multicore=True``: one per CPU) lands here.

How the handler reaches the workers
    Workers are created with ``os.fork()`` (POSIX only), so each gets a copy
    of the handler object as it was when ``run()`` was called - no pickling,
    and closures, sockets and modules all work.  Each worker owns its copy:
    state set in one worker is invisible to the others (share through a
    database, shared memory, or the like).  Workers are forked again on
    restart, from the parent's pristine copy.

What runs where
    Parent (supervisor): the handler's constructor (the caller's code),
    address parsing, binding of acceptor-mode listeners, accepting and
    handing connections out, restarting dead workers, signal handling.
    No handler callback ever runs in the parent.
    Workers: everything else - ``on_boot`` (once per worker, on every
    (re)start), ``on_open``/``on_traffic``/``on_close``/``on_tick``, and
    ``on_shutdown``.  The ``engine`` given to ``on_boot``/``on_shutdown`` is
    a :class:`ClusterEngine`: ``stop()`` stops *every* worker,
    ``count_connections()`` sums every worker's live connections (shared
    memory), ``stats()`` sums every worker's counters (published twice a
    second), ``worker_index``/``workers`` say which loop this is; anything
    else is the worker's own engine.

Accept modes (as in gnet)
    acceptor (default for TCP and unix): the parent accepts and passes each
        connection to a worker over a unix socketpair (``socket.send_fds``),
        choosing by ``load_balancing``: ``round_robin``, ``least_connections``
        or ``source_addr_hash`` (remote IP only, not the port - see
        ``balancer.py``).
    reuseport (``load_balancing="reuseport"`` or ``reuse_port=True``): every
        worker binds its own ``SO_REUSEPORT`` listener and the kernel spreads
        connections.  Unix sockets cannot share a path that way; in this mode
        they are still accepted by the parent (round-robin).
    UDP always works the reuseport way: every worker binds the port.
    Port 0 is resolved once in the parent so every worker binds the same port.

Supervision and shutdown: see ``supervisor.py``.  A worker that dies is
logged and restarted with backoff; SIGINT/SIGTERM to the parent or
``engine.stop()`` in any worker stop all workers gracefully (each drains its
connections within ``drain_timeout``); a worker exiting on its own with
status 0 (``Action.SHUTDOWN``) stops the server too.  ``run()`` returns once
every worker has been reaped.

Room for loops in threads: the worker side only needs "an event loop plus a
channel to feed it sockets" (:func:`_serve_worker`); a thread-based variant
would run N such loops in threads of one process and feed them with
``EventLoop.enroll`` (thread-safe) instead of ``send_fds`` - the balancer,
counters and the acceptor logic are independent of processes.  That pays
off for handlers that release the GIL or on free-threaded Python; it is not
shipped yet.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any, Iterable, Sequence

from .address import Address, bind_listener, parse_address
from .balancer import (
    REUSEPORT,
    ROUND_ROBIN,
    ConnectionCounters,
    new_balancer,
    normalize_policy,
)
from .handler import EventHandler
from .options import Options
from .supervisor import Supervisor, WorkerLink

__all__ = [
    "ClusterEngine",
    "FatalWorkerError",
    "MulticoreServer",
    "accept_mode",
    "run_multicore",
    "worker_count",
]

STATS_INTERVAL = 0.5
EXIT_FATAL = 3  # a worker hit a fatal handler error: stop the server, report it


class FatalWorkerError(RuntimeError):
    """A worker stopped on a fatal handler error (``fatal_handler_errors``)."""


def worker_count(options: Options) -> int:
    if options.loops > 1:
        return options.loops
    if options.multicore:
        return max(1, os.cpu_count() or 1)
    return 1


def accept_mode(options: Options) -> str:
    """``"reuseport"`` or the acceptor-mode balancing policy."""
    if options.reuse_port:
        return REUSEPORT
    return normalize_policy(options.load_balancing)


class MulticoreServer:
    """The parent side: binds, forks, supervises.  ``run()`` blocks.

    ``stop()`` and ``count_connections()`` are safe from any thread; use
    ``wait_started()`` before relying on ``worker_pids()``.
    """

    def __init__(
        self,
        handler: EventHandler,
        addresses: Iterable[str | Address],
        options: Options,
    ) -> None:
        self.handler = handler
        self.options = options
        self.logger = options.get_logger()
        self.workers = worker_count(options)
        self.mode = accept_mode(options)
        self.addresses = [
            a if isinstance(a, Address) else parse_address(a) for a in addresses
        ]
        if not self.addresses:
            raise ValueError("run() needs at least one address to listen on")
        self.counters = ConnectionCounters(self.workers)
        self._listeners: list[socket.socket] = []
        self._listener_urls: list[str] = []  # the URL each was bound for
        self._unix_paths: list[str] = []
        self._worker_urls: list[str] = []
        self._urls: list[str] = []
        self._supervisor: Supervisor | None = None
        self._stop_requested = False
        self._fatal = False
        self._ready = threading.Event()
        # The metrics option: workers' snapshot files, served by the parent.
        self._metrics_dir: str | None = None
        self.metrics_server: Any = None

    # -- public ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._bind()
            self._urls = self.bound_addresses
            policy = ROUND_ROBIN if self.mode == REUSEPORT else self.mode
            balancer = (
                new_balancer(policy, self.workers, self.counters)
                if self._listeners
                else None
            )
            self._supervisor = Supervisor(
                workers=self.workers,
                worker_main=self._worker_main,
                counters=self.counters,
                listeners=self._listeners,
                balancer=balancer,
                logger=self.logger,
                stop_timeout=self.options.drain_timeout + self.options.stop_grace + 5.0,
                install_signal_handlers=self.options.install_signal_handlers,
                max_connections=self.options.connection_limit(),
                final_exit_codes=(0, EXIT_FATAL),
                on_exit_status=self._on_exit_status,
            )
            if self.options.metrics is not None:
                self._serve_metrics(self._supervisor)
            if self.options.install_signal_handlers:
                self._supervisor.on_reload = self._reexec
            self._supervisor.stop_grace = self.options.stop_grace
            if self._stop_requested:
                self._supervisor.stop()
            self._ready.set()
            self._supervisor.run()
        finally:
            self._ready.set()
            self._close_listeners()
            self.counters.close()
            self._close_metrics()
        if self._fatal:
            raise FatalWorkerError(
                "a worker stopped on a fatal handler error (see the log)"
            )
        if self._supervisor is not None and self._supervisor.gave_up:
            raise FatalWorkerError(
                "workers kept dying right after starting; gave up (see the log)"
            )

    def stop(self) -> None:
        self._stop_requested = True
        if self._supervisor is not None:
            self._supervisor.stop()

    def wait_started(self, timeout: float | None = None) -> bool:
        if not self._ready.wait(timeout):
            return False
        supervisor = self._supervisor
        return supervisor is not None and supervisor.wait_started(timeout)

    def count_connections(self) -> int:
        return self.counters.total_live()

    def worker_pids(self) -> list[int]:
        return self._supervisor.worker_pids() if self._supervisor else []

    @property
    def bound_addresses(self) -> list[str]:
        """URLs as bound (port 0 replaced by the real port)."""
        if self._urls:
            return list(self._urls)
        return [_url_of(sock) for sock in self._listeners] + list(self._worker_urls)

    # -- binding -----------------------------------------------------------------------

    def _bind(self) -> None:
        options = self.options
        for address in self.addresses:
            if address.fd is not None and address.network == "udp":
                raise OSError(f"cannot serve {address.url} with several workers: UDP")
            in_parent = (
                address.fd is not None  # inherited: one socket, the parent's
                or address.network == "unix"
                or (address.network == "tcp" and self.mode != REUSEPORT)
            )
            if in_parent and address.tls:
                # Workers adopt the parent's accepted sockets without knowing their
                # listener; each binding its own does know.
                raise ValueError(
                    f"{address.url}: TLS listeners with several loops need "
                    "load_balancing='reuseport' (--lb reuseport)"
                )
            if in_parent:
                sock = bind_listener(
                    address,
                    backlog=options.backlog,
                    reuse_addr=options.reuse_addr,
                    reuse_port=False,
                    recv_buffer=options.socket_recv_buffer,
                    send_buffer=options.socket_send_buffer,
                    unix_mode=options.unix_mode,
                )
                self._listeners.append(sock)
                self._listener_urls.append(address.url)
                if address.path and not address.is_abstract:
                    self._unix_paths.append(address.path)
            else:
                self._worker_urls.append(self._fix_port(address))

    def _fix_port(self, address: Address) -> str:
        """Probe-bind a worker address once in the parent.

        Workers must all bind one port, so port 0 is resolved here; and an
        address that cannot be bound (in use, not ours) fails ``run()`` at
        once with the bind error instead of crash-looping the workers.
        """
        if not hasattr(socket, "SO_REUSEPORT"):
            raise OSError(
                f"cannot serve {address.url} with several workers: no SO_REUSEPORT"
            )
        probe = socket.socket(address.family, address.socktype)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                probe.bind(address.sockaddr)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot bind {address.url}: {exc.strerror}"
                ) from exc
            port = probe.getsockname()[1]
        finally:
            probe.close()
        return address.url if address.port == port else _format_url(address, port)

    def _close_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._unix_paths.clear()

    def _serve_metrics(self, supervisor: Supervisor) -> None:
        """/metrics and /healthz in the parent, from the workers' snapshot files."""
        import tempfile

        from .metrics import MetricsServer, SnapshotFiles

        self._metrics_dir = tempfile.mkdtemp(prefix="protogen-metrics-")
        files = SnapshotFiles(self._metrics_dir)
        url = self.options.metrics
        assert url is not None

        def start(sup: Supervisor) -> None:
            self.metrics_server = MetricsServer(
                url,
                files.read,
                lambda: not sup.stopping,
                sup.add_reader,
                sup.remove_reader,
                self.logger,
            )

        supervisor.on_run.append(start)
        supervisor.parent_fds.append(
            lambda: self.metrics_server.fds() if self.metrics_server else []
        )

    def _reexec(self, retiring: list[int]) -> None:
        """SIGHUP: the same program again on these listening sockets (reload.py)."""
        from .reload import reexec

        sockets = list(zip(self._listener_urls, self._listeners))
        if self.metrics_server is not None:
            sockets.append((str(self.options.metrics), self.metrics_server.sock))
        if self._metrics_dir is not None:
            # The new image has its own; retiring workers stop publishing.
            import shutil

            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        try:
            reexec(sockets, retired=retiring)
        except OSError:
            self.logger.exception("reload failed: stopping")
            self.stop()

    def _close_metrics(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if self._metrics_dir is not None:
            import shutil

            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None

    def _on_exit_status(self, code: int) -> None:
        if code == EXIT_FATAL:
            self._fatal = True

    # -- the worker process --------------------------------------------------------------

    def _worker_main(self, link: WorkerLink) -> int:
        """Runs in the forked child; returns its exit status."""
        self._listeners = []  # the supervisor closed these fds in the child
        self._unix_paths = []  # files belong to the parent
        self.metrics_server = None  # the parent's (its fds are closed here)
        return _serve_worker(
            self.handler,
            self._worker_urls,
            self.options,
            link,
            self._urls,
            self._metrics_dir,
        )


def run_multicore(
    handler: EventHandler, addresses: Sequence[str | Address], options: Options
) -> None:
    """Serve ``addresses`` with ``worker_count(options)`` worker processes; blocks."""
    MulticoreServer(handler, addresses, options).run()


# ------------------------------------------------------------------ worker side


class ClusterEngine:
    """What ``on_boot``/``on_shutdown`` receive in a worker (see the module docs)."""

    def __init__(self, engine: Any, link: WorkerLink, urls: list[str]) -> None:
        self._engine = engine
        self._link = link
        self._urls = urls
        self.worker_index = link.index
        self.workers = link.workers

    def stop(self) -> None:
        """Stop the whole server (every worker), gracefully.  Thread-safe."""
        self._link.request_shutdown()

    def stop_worker(self) -> None:
        """Stop only this worker; the supervisor then stops the rest too."""
        self._engine.stop()

    def count_connections(self) -> int:
        return self._link.counters.total_live()

    def stats(self) -> Any:
        """``EngineStats`` summed over every worker (totals lag up to 0.5 s)."""
        from .engine import EngineStats

        counters = self._link.counters
        return EngineStats(
            connections_opened=counters.total(counters.OPENED),
            connections_closed=counters.total(counters.CLOSED),
            connections_active=counters.total_live(),
            bytes_in=counters.total(counters.BYTES_IN),
            bytes_out=counters.total(counters.BYTES_OUT),
        )

    @property
    def urls(self) -> list[str]:
        """Every URL the server listens on (real ports), parent- or worker-bound."""
        return list(self._urls or self._engine.urls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def __repr__(self) -> str:
        return f"<ClusterEngine worker {self.worker_index}/{self.workers} pid {os.getpid()}>"


class _Tally:
    """This worker's live connections, published for the balancer.

    The loop's watchers count every connection it opens and closes (on_open and
    on_close always pair, even when on_open raised), and the connections adopted
    from the parent, published together in one word so the parent never sees an
    adoption without its connection.
    """

    def __init__(self, link: WorkerLink) -> None:
        self.counters = link.counters
        self.index = link.index
        self.live = 0
        self.adopted = 0

    def publish(self) -> None:
        self.counters.publish_conns(self.index, self.live, self.adopted)

    def opened(self, conn: Any) -> None:
        self.live += 1
        self.publish()

    def closed(self, conn: Any, err: BaseException | None) -> None:
        self.live -= 1
        self.publish()


def _serve_worker(
    handler: EventHandler,
    urls: list[str],
    options: Options,
    link: WorkerLink,
    cluster_urls: list[str],
    metrics_dir: str | None = None,
) -> int:
    """Run one event loop in this (worker) process until it stops.

    ``urls`` are the addresses this worker binds itself (reuseport, UDP);
    ``cluster_urls`` everything the server listens on (for ``engine.urls``).
    """
    from . import engine as engine_module  # deferred: engine imports this module

    worker_options = options.replace(
        loops=1, multicore=False, reuse_port=True, metrics=None
    )
    engine = engine_module.Engine(handler, urls, worker_options)
    engine.reload_on_hup = False  # the supervisor reloads
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    snapshots: Any = None
    if metrics_dir is not None:
        from .metrics import SnapshotFiles

        engine.count_metrics()
        snapshots = SnapshotFiles(metrics_dir)
    engine.facade = ClusterEngine(engine, link, cluster_urls or urls)
    loop = engine.loop
    tally = _Tally(link)
    loop.watch(opened=tally.opened, closed=tally.closed)
    counters = link.counters
    index = link.index
    log = logging.getLogger("protogen.runtime.multicore")

    def adopt(fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        tally.adopted += 1  # published with the connection by tally.opened
        try:
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                loop.configure_socket(sock)
            if engine.proxy_gate is not None:
                engine.proxy_gate.begin(sock, sock.getpeername())
            else:
                loop.enroll(sock)  # on the loop thread: on_open runs right here
        except Exception:
            log.exception("worker %d: cannot adopt a connection", index)
            sock.close()
        tally.publish()  # in case it was not opened (stopping, or it failed)

    def on_channel(events: int) -> None:
        fds, quit_requested, parent_gone = link.receive()
        for fd in fds:
            adopt(fd)
        kind = link.retire_requested
        if kind is not None and not engine.retiring:
            from .reload import retire

            if kind == "reload":  # new workers start meanwhile
                retire(engine, options.reload_grace)
            else:  # the server stops: serve the open connections, then exit
                retire(engine, options.stop_grace, handover=False)
        if parent_gone:
            loop.remove_reader(link.channel.fileno())
        if (quit_requested or parent_gone) and not engine.retiring:
            engine.stop()

    def publish_stats() -> None:
        counters.set(index, counters.OPENED, loop.opened)
        counters.set(index, counters.CLOSED, loop.closed)
        counters.set(index, counters.BYTES_IN, loop.bytes_in)
        counters.set(index, counters.BYTES_OUT, loop.bytes_out)
        if snapshots is not None:
            snapshots.write(str(index), engine.metrics.snapshot())
        loop.call_later(STATS_INTERVAL, publish_stats)

    loop.add_reader(link.channel.fileno(), on_channel)
    loop.call_later(STATS_INTERVAL, publish_stats)
    try:
        engine.run()
        if snapshots is not None:
            snapshots.write(str(index), engine.metrics.snapshot())  # the last counts
    except BaseException:
        log.exception("worker %d (pid %d) failed", index, os.getpid())
        return EXIT_FATAL if loop.fatal_error is not None else 1
    if loop.fatal_error is not None:
        return EXIT_FATAL
    return 0


# ------------------------------------------------------------------ helpers


def _format_url(address: Address, port: int) -> str:
    scheme = address.url.partition("://")[0]
    host = address.host or ""
    if address.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _url_of(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode() if isinstance(name, bytes) else name
        if path.startswith("\0"):  # Linux abstract namespace
            path = "@" + path[1:]
        return f"unix://{path}"
    scheme = "udp" if sock.type == socket.SOCK_DGRAM else "tcp"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{name[0]}]:{name[1]}"
    return f"{scheme}://{name[0]}:{name[1]}"
