"""The engine: listeners + one event loop, boot/shutdown protocol, `run()`.

    run(handler, "tcp://127.0.0.1:9000", "unix:///tmp/app.sock", ticker=True)

blocks until shutdown (engine.stop(), Action.SHUTDOWN, SIGINT or SIGTERM).
With loops > 1 or multicore=True, run() hands over to
protogen.runtime.multicore.run_multicore.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .acceptor import Acceptor
from .address import Address, bind_listener, parse_address
from .eventloop import EventLoop
from .handler import Action, EventHandler
from .options import Options
from .pool import event_loop_thread
from .udp import UDPListener


class BootError(RuntimeError):
    """`on_boot` raised: the server does not start and `run()` raises this.

    A handler may raise it from `on_boot` to refuse to start (wrong options,
    say); its message is then logged without a traceback.
    """


def _boot_failed(engine: "Engine", exc: Exception) -> BootError:
    name = type(engine.handler).__qualname__
    if isinstance(exc, BootError):
        engine.loop.logger.error("protogen: %s refused to start: %s", name, exc)
        return exc
    engine.loop.logger.error(
        "protogen: %s.on_boot raised; not serving", name, exc_info=exc
    )
    return BootError(f"{name}.on_boot raised {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class EngineStats:
    connections_opened: int
    connections_closed: int
    connections_active: int
    bytes_in: int
    bytes_out: int
    # Capacity of the buffers unfinished frames hold (max_buffered_total bounds it).
    inbound_held: int = 0


class Engine:
    """One process, one loop. Passed to on_boot/on_shutdown.

    Thread-safe: stop(), count_connections(), stats().
    """

    def __init__(
        self,
        handler: EventHandler,
        addresses: Iterable[str | Address] = (),
        options: Options | None = None,
    ) -> None:
        self.handler = handler
        self.options = options or Options()
        self.addresses = [
            a if isinstance(a, Address) else parse_address(a) for a in addresses
        ]
        self.loop = EventLoop(handler, self.options, engine=self)
        # What on_boot/on_shutdown receive as `engine`: this engine, or the view a
        # multi-process worker gives of the whole server (multicore.ClusterEngine).
        self.facade: Any = self
        self.listeners: list[Acceptor | UDPListener] = []
        self.started = threading.Event()
        self.stopped = threading.Event()
        self._stop_requested = False
        # Called in the loop's thread once on_boot returned, before the loop
        # polls: what it reports (the CLI's "serving" line) comes before any
        # connection is served, and not at all if the server stops first.
        self.on_started: Callable[[], None] | None = None
        self._unix_paths: list[str] = []
        # The tls:// listeners' TLS layer (made by listen(); SIGHUP reloads it).
        self.tls: Any = None
        # The PROXY protocol stage accepted sockets pass first (proxy_protocol).
        self.proxy_gate: Any = None
        if self.options.proxy_protocol:
            from .proxygate import ProxyGate

            self.proxy_gate = ProxyGate(self.loop, self.options)
        if self.options.access_log:
            from .accesslog import AccessLog

            AccessLog(self.loop)
        # Prometheus metrics: this loop's counts (the metrics option; a worker
        # process sets them up itself and its parent serves them).
        self.metrics: Any = None
        self._metrics_server: Any = None
        # SIGHUP reloads (reload.py); a multi-process worker leaves that to
        # its supervisor.
        self.reload_on_hup = True
        self.retiring = False
        if self.options.metrics is not None:
            self.count_metrics()

    def count_metrics(self) -> Any:
        from .metrics import LoopMetrics

        self.metrics = LoopMetrics(self.loop, self.handler)
        if self.proxy_gate is not None:
            self.proxy_gate.refusal_watchers.append(self.metrics.count_error)
        return self.metrics

    # ------------------------------------------------------------ public API
    def stop(self) -> None:
        """Begin a graceful shutdown; callable from any thread (or a signal handler)."""
        self._stop_requested = True
        self.loop.request_stop()

    def count_connections(self) -> int:
        return self.loop.count_connections()

    def stats(self) -> EngineStats:
        loop = self.loop
        return EngineStats(
            loop.opened,
            loop.closed,
            loop.count_connections(),
            loop.bytes_in,
            loop.bytes_out,
            loop.memory.held,
        )

    @property
    def bound_addresses(self) -> list[Any]:
        """The sockaddr each listener is bound to (real ports when 0 was asked)."""
        return [listener.sock.getsockname() for listener in self.listeners]

    @property
    def urls(self) -> list[str]:
        """Listener URLs with real ports, e.g. tcp://127.0.0.1:41234."""
        urls = []
        for listener in self.listeners:
            address = listener.address
            if address.network == "unix":
                urls.append(address.url)
                continue
            host, port = listener.sock.getsockname()[:2]
            scheme = address.url.split("://", 1)[0]
            host = f"[{host}]" if ":" in host else host
            urls.append(f"{scheme}://{host}:{port}")
        return urls

    def reload_tls(self) -> bool:
        """Load the TLS certificate files again (SIGHUP does this): connections
        from now on use them, open ones are not touched. False when there are no
        tls:// listeners or the files do not load (the old ones stay)."""
        return self.tls is not None and bool(self.tls.reload())

    def wait_started(self, timeout: float | None = None) -> bool:
        return self.started.wait(timeout)

    # ------------------------------------------------------------ lifecycle
    def listen(self) -> None:
        """Bind every address (before run(); run() calls it if needed)."""
        if self.listeners:
            return
        options = self.options
        try:
            for address in self.addresses:
                sock = bind_listener(
                    address,
                    backlog=options.backlog,
                    reuse_addr=options.reuse_addr,
                    reuse_port=options.reuse_port,
                    recv_buffer=options.socket_recv_buffer,
                    send_buffer=options.socket_send_buffer,
                    unix_mode=options.unix_mode,
                )
                if address.network == "udp":
                    listener: Acceptor | UDPListener = UDPListener(
                        self.loop, sock, address
                    )
                else:
                    listener = Acceptor(self.loop, sock, address)
                    if address.tls:
                        if self.tls is None:
                            from .tls import TLSServer  # lazy: most servers are plain

                            self.tls = TLSServer(options)
                        listener.transport = self.tls
                    if self.proxy_gate is not None:
                        listener.open_conn = self.proxy_gate.begin
                    if (
                        address.network == "unix"
                        and not address.is_abstract
                        and address.path
                    ):
                        self._unix_paths.append(address.path)
                self.listeners.append(listener)
                self.loop.add_listener(listener)
            if options.metrics is not None:
                from .metrics import MetricsServer

                loop = self.loop
                metrics = self.metrics
                self._metrics_server = MetricsServer(
                    options.metrics,
                    lambda: [("0", metrics.snapshot())],
                    lambda: not loop.stopping and not self.retiring,
                    loop.add_reader,
                    loop.remove_reader,
                    loop.logger,
                )
        except BaseException:
            self._close_listeners()
            raise

    def run(self) -> None:
        """Listen, boot, serve until stopped, then shut down gracefully."""
        previous = self._install_signals()
        loop_thread = event_loop_thread()  # pool.submit() never blocks this thread
        loop_thread.__enter__()
        try:
            self.listen()
            self.loop.thread_id = threading.get_ident()
            if self.reload_on_hup:
                from .reload import reap_on, retired_pids

                reap_on(self.loop, retired_pids())  # the image before a reload
            try:
                action = self.handler.on_boot(self.facade)
            except Exception as exc:  # the server must not run half-booted
                self.loop.fatal_error = error = _boot_failed(self, exc)
                if error is exc:
                    raise
                raise error from exc
            if action == Action.SHUTDOWN or self._stop_requested:
                self.loop.request_stop()
            elif self.on_started is not None:
                self.on_started()
            if self.options.ticker:
                self.loop.call_soon_threadsafe(self._tick)
            self.started.set()
            self.loop.run()
            try:
                self.handler.on_shutdown(self.facade)
            except Exception:
                self.loop.logger.exception("protogen: on_shutdown raised")
        finally:
            loop_thread.__exit__()
            if self.proxy_gate is not None:
                self.proxy_gate.close()
            self._close_listeners()
            self.loop.close()
            self._restore_signals(previous)
            self.started.set()
            self.stopped.set()
        if self.loop.fatal_error is not None:
            raise self.loop.fatal_error

    def _tick(self) -> None:
        loop = self.loop
        if loop.stopping:
            return
        try:
            result = self.handler.on_tick()
        except Exception as exc:
            loop.handler_error(None, exc, "on_tick")
            result = None
        delay, action = result if result is not None else (1.0, Action.NONE)
        if action == Action.SHUTDOWN:
            loop.request_stop()
            return
        loop.call_later(
            max(0.0, float(delay if delay is not None else 1.0)), self._tick
        )

    @property
    def metrics_url(self) -> str | None:
        """Where /metrics and /healthz are served (real port), if they are."""
        server = self._metrics_server
        return server.url if server is not None else None

    def _close_listeners(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        for listener in self.listeners:
            try:
                self.loop.remove_reader(listener.fileno())
            except (OSError, ValueError):
                pass
            try:
                listener.close()
            except OSError:
                pass
        for path in self._unix_paths:
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
        self._unix_paths.clear()

    def _install_signals(self) -> dict[int, Any] | None:
        if not self.options.install_signal_handlers:
            return None
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda _s, _f: self._signalled())
        if self.reload_on_hup:
            previous[signal.SIGHUP] = signal.signal(
                signal.SIGHUP, lambda _s, _f: self.loop.call_from_signal(self.hup)
            )
        elif any(a.tls for a in self.addresses) and hasattr(signal, "SIGHUP"):
            # A worker under a supervisor: its SIGHUP only reloads certificates.
            # Between two bytecodes of the loop thread: new connections get the
            # new context, a handshake in progress keeps the one it began with.
            previous[signal.SIGHUP] = signal.signal(
                signal.SIGHUP, lambda _s, _f: self.reload_tls()
            )
        return previous

    def _signalled(self) -> None:
        """SIGINT/SIGTERM: stop, after stop_grace if one is set (once; a
        second signal stops at once)."""
        if self.options.stop_grace and not self.retiring:
            from .reload import retire

            grace = self.options.stop_grace
            self.loop.call_from_signal(lambda: retire(self, grace, handover=False))
            self.retiring = True  # (retire sets it too, on the loop)
            return
        self.stop()

    # ------------------------------------------------------------ reload
    def hup(self) -> None:
        """Loop thread (SIGHUP): reload. The tls:// listeners' certificate
        files are loaded first, so that files that do not load leave the
        server serving as it was (with the old certificates) rather than
        re-executing into a server that cannot start."""
        if self.tls is not None and not self.reload_tls():
            self.loop.logger.error(
                "protogen: SIGHUP: the TLS certificate files do not load; "
                "not reloading, serving on with the old ones"
            )
            return
        self.reload()

    def reload(self) -> None:
        """Loop thread (SIGHUP): re-execute this program on the same listening
        sockets; a fork of this process keeps serving the open connections
        until they close or reload_grace ends (reload.py)."""
        from .reload import reexec, retire

        if self.retiring or self.loop.stopping:
            return
        sockets = [(listener.address.url, listener.sock) for listener in self.listeners]
        if self._metrics_server is not None:
            sockets.append((self.options.metrics, self._metrics_server.sock))
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the retiring copy: it owns the open connections now
            self.retiring = True
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            retire(self, self.options.reload_grace)
            return
        try:
            reexec(sockets, retired=(pid,))
        except OSError:
            self.loop.logger.exception("protogen: reload failed; serving on")
            os.kill(pid, signal.SIGTERM)

    def accept_backlog(self) -> None:
        """Accept the connections waiting in the stream listeners' queues (an
        accept batch ends early once the queue is empty)."""
        for listener in self.listeners:
            if listener.stream:
                for _ in range(16):
                    listener.on_event(0)

    def release_listeners(self, metrics: bool = True) -> None:
        """Stop serving the listeners and close this process's copies, leaving
        unix socket files in place (a reload's new process serves them);
        `metrics`: the metrics endpoint too."""
        for listener in self.listeners:
            self.loop.remove_listener(listener)
        self._unix_paths.clear()
        if metrics and self._metrics_server is not None:
            self._metrics_server.close(unlink=False)
            self._metrics_server = None
        for listener in self.listeners:
            try:
                listener.close()
            except OSError:
                pass
        self.listeners.clear()

    @staticmethod
    def _restore_signals(previous: dict[int, Any] | None) -> None:
        if previous:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run(handler: EventHandler, *addrs: str, **options: Any) -> None:
    """Serve `handler` on every address URL until shutdown (blocks).

    Unknown options raise TypeError; bad values ValueError; bad URLs AddressError.
    """
    opts = Options.from_kwargs(**options)
    addresses = [parse_address(a) for a in addrs]
    if not addresses:
        raise ValueError(
            "run() needs at least one address URL, e.g. tcp://127.0.0.1:9000"
        )
    if opts.loops > 1 or opts.multicore:
        from .multicore import run_multicore  # lazy: most servers are single-loop

        return run_multicore(handler, addresses, opts)
    Engine(handler, addresses, opts).run()
    return None


__all__ = ["BootError", "Engine", "EngineStats", "run"]
