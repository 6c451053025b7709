"""The parent process of the multi-process engine: forks, feeds and supervises workers.

One :class:`Supervisor` owns N worker processes, each forked with a channel
(``handoff.py``) that carries accepted connections and stop requests.

Supervision: a worker that exits with a non-zero status or a signal is logged
and restarted after a backoff (``backoff_initial`` doubling per consecutive
quick failure, capped at ``backoff_max``; a worker that lived
``stable_after`` seconds resets the backoff).  After ``max_quick_failures``
quick deaths in a row of one worker the supervisor gives up and stops (a
crash loop is a bug to report, not to hide).  A worker that exits 0 on its
own asked for shutdown, and the supervisor stops everything.  Connections
for a dead worker go to the next live one; if none is alive they wait (in
the parent, bounded) for the restart.

Stopping (``stop()`` from any thread, or SIGINT/SIGTERM when the supervisor
runs in the main thread): listeners are closed, every worker gets ``b"Q"``,
and workers still alive after ``stop_timeout`` are killed.  Every child is
reaped before :meth:`Supervisor.run` returns.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Callable, Iterable, Sequence

from .balancer import Balancer, ConnectionCounters, LeastConnections
from .dispatch import Dispatcher, WorkerSlot
from .handoff import MSG_GRACE, MSG_QUIT, MSG_RELOAD, WorkerLink, new_channel

__all__ = ["Supervisor", "WorkerLink"]

WorkerMain = Callable[[WorkerLink], int]


class Supervisor(Dispatcher):
    def __init__(
        self,
        *,
        workers: int,
        worker_main: WorkerMain,
        counters: ConnectionCounters,
        listeners: Sequence[socket.socket] = (),
        balancer: Balancer | None = None,
        logger: logging.Logger | None = None,
        stop_timeout: float = 10.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        stable_after: float = 5.0,
        max_quick_failures: int = 8,
        max_connections: int = 0,
        install_signal_handlers: bool = True,
        final_exit_codes: Iterable[int] = (0,),
        on_exit_status: Callable[[int], None] | None = None,
    ) -> None:
        if listeners and balancer is None:
            raise ValueError("listeners in the parent need a balancer")
        self.workers = workers
        self.counters = counters
        self._worker_main = worker_main
        self._listeners = list(listeners)
        self._balancer = balancer
        self._log = logger or logging.getLogger("protogen.runtime.multicore")
        self._stop_timeout = stop_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stable_after = stable_after
        self._max_quick_failures = max_quick_failures
        # Per-worker connection limit (0 = none), enforced here in acceptor
        # mode: a worker at its limit gets no more; all at their limit pauses accepting.
        self._max_conns = max_connections
        self._assigned = [0] * workers  # fds assigned per worker (since its start)
        self.gave_up = False
        self._install_signals = install_signal_handlers
        # A worker exiting by itself with one of these stops the server.
        self._final_exit_codes = frozenset(final_exit_codes)
        self._on_exit_status = on_exit_status
        self._slots = [WorkerSlot(i) for i in range(workers)]
        self._selector: selectors.BaseSelector | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._started = threading.Event()
        self._accept_paused_until: float | None = None
        self.restarts = 0
        # Run once the selector exists (the metrics endpoint registers there),
        # and descriptors of such parent-side servers, closed in each worker.
        self.on_run: list[Callable[["Supervisor"], None]] = []
        self._reader_fds: set[int] = set()
        self.parent_fds: list[Callable[[], list[int]]] = []
        # SIGHUP: on_reload(pids of the retiring workers) re-executes (reload.py).
        self.on_reload: Callable[[list[int]], None] | None = None
        self._reload_requested = False
        self._retired: list[int] = []
        # stop_grace: on stop, workers serve their open connections this long.
        self.stop_grace = 0.0

    def add_reader(self, fd: int, callback: Callable[[int], object]) -> None:
        """In the parent's poller: callback(events) when fd is readable."""
        assert self._selector is not None
        self._selector.register(fd, selectors.EVENT_READ, lambda _k, ev: callback(ev))
        self._reader_fds.add(fd)

    def remove_reader(self, fd: int) -> None:
        self._reader_fds.discard(fd)
        if self._selector is not None:
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass

    def _serve_readers(self, timeout: float) -> None:
        """While stopping: wait up to `timeout`, serving only add_reader fds
        (the metrics endpoint answers 503 until the workers are gone)."""
        assert self._selector is not None
        if not self._reader_fds:
            time.sleep(timeout)
            return
        for key, events in self._selector.select(timeout):
            if key.fd in self._reader_fds:
                key.data(key, events)

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- public ------------------------------------------------------------------

    def stop(self) -> None:
        """Begin a graceful stop; safe from any thread and from signal handlers."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # pipe full (a wake-up is pending anyway) or already closed

    def count_connections(self) -> int:
        return self.counters.total_live()

    def worker_pids(self) -> list[int]:
        return [slot.pid for slot in self._slots if slot.alive]

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def run(self) -> None:
        """Fork the workers and supervise them until stopped; reaps every child."""
        previous = self._install_signal_handlers()
        self._selector = selectors.DefaultSelector()
        try:
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
            for listener in self._listeners:
                listener.setblocking(False)
                self._selector.register(listener, selectors.EVENT_READ, self._on_accept)
            if self.on_reload is not None:
                from .reload import retired_pids

                self._retired = retired_pids()  # the image before a reload
            for hook in self.on_run:
                hook(self)
            for slot in self._slots:
                self._spawn(slot)
            self._started.set()
            self._serve()
        finally:
            try:
                self._shutdown()
            finally:
                self._restore_signal_handlers(previous)
                self._selector.close()
                os.close(self._wake_r)
                os.close(self._wake_w)

    # -- signals -------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, object]:
        previous: dict[int, object] = {}
        if (
            not self._install_signals
            or threading.current_thread() is not threading.main_thread()
        ):
            return previous
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: self.stop())
        if self.on_reload is not None:
            previous[signal.SIGHUP] = signal.signal(
                signal.SIGHUP, lambda *_: self.request_reload()
            )
        return previous

    def request_reload(self) -> None:
        """Retire the workers and re-execute (safe from a signal handler)."""
        self._reload_requested = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _reload(self) -> None:
        from .reload import reap

        self._reload_requested = False
        assert self.on_reload is not None
        retiring = []
        for slot in self._slots:
            if slot.usable and slot.pending:
                self._flush_blocking(slot)  # every accepted connection is served
            if slot.alive and slot.channel is not None:
                try:
                    slot.channel.send(MSG_RELOAD)
                    retiring.append(slot.pid)
                except OSError:
                    pass
        self._log.info("reload: retiring workers %s", retiring)
        self.on_reload(retiring + reap(self._retired))

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    # -- the parent's loop ---------------------------------------------------------------

    def _serve(self) -> None:
        selector = self._selector
        assert selector is not None
        while not self._stopping:
            timeout = self._next_timeout()
            for key, events in selector.select(timeout):
                key.data(key, events)
                if self._stopping:
                    return
            if self._reload_requested:
                self._reload()
            if self._retired:
                from .reload import reap

                self._retired = reap(self._retired)
            self._reap_without_pidfd()
            self._restart_due()
            self._resume_accepting()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        # Without pidfds deaths are only noticed by polling waitpid.
        timeout = 1.0 if all(s.pidfd >= 0 or not s.alive for s in self._slots) else 0.1
        for slot in self._slots:
            if slot.restart_at is not None:
                timeout = min(timeout, max(0.0, slot.restart_at - now))
        if self._accept_paused_until is not None:
            timeout = min(timeout, max(0.0, self._accept_paused_until - now))
        return timeout

    def _on_wake(self, key: selectors.SelectorKey, events: int) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # -- workers: fork, death, restart --------------------------------------------------

    def _spawn(self, slot: WorkerSlot) -> None:
        parent_end, child_end = new_channel()
        parent_end.setblocking(False)
        child_end.setblocking(False)
        _flush_std_streams()  # else the child would write the parent's buffered output too
        try:
            pid = os.fork()
        except BaseException:
            parent_end.close()
            child_end.close()
            raise
        if pid == 0:  # the worker
            code = 1
            try:
                parent_end.close()
                self._close_in_child()
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = self._worker_main(
                    WorkerLink(slot.index, self.workers, child_end, self.counters)
                )
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                _flush_std_streams()  # os._exit skips it; keep the worker's prints
                os._exit(code)
        child_end.close()
        self.counters.reset(slot.index)
        self._assigned[slot.index] = 0
        if isinstance(self._balancer, LeastConnections):
            self._balancer.worker_restarted(slot.index)
        slot.pid = pid
        slot.channel = parent_end
        slot.started = time.monotonic()
        slot.restart_at = None
        slot.want_write = False
        assert self._selector is not None
        self._selector.register(parent_end, selectors.EVENT_READ, self._on_channel)
        try:
            slot.pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            slot.pidfd = -1
        else:
            self._selector.register(slot.pidfd, selectors.EVENT_READ, self._on_pidfd)
        self._log.debug("worker %d started (pid %d)", slot.index, pid)
        if slot.pending:
            self._flush(slot)

    def _close_in_child(self) -> None:
        """Close the parent's descriptors in a new worker.

        Listeners, other workers' channels, the parent's poller: a worker
        holding them would keep sockets alive after the parent closes them
        (and would hide the parent's death from other workers).  Socket
        objects are detached first so nothing closes a reused fd number later.
        """
        fds = [self._wake_r, self._wake_w]
        for parent_fds in self.parent_fds:
            fds.extend(parent_fds())
        for sock in self._listeners:
            fds.append(sock.detach())
        for slot in self._slots:
            if slot.channel is not None:
                fds.append(slot.channel.detach())
                slot.channel = None
            if slot.pidfd >= 0:
                fds.append(slot.pidfd)
                slot.pidfd = -1
            fds.extend(slot.pending)
            slot.pending.clear()
        if self._selector is not None and hasattr(self._selector, "fileno"):
            fds.append(self._selector.fileno())
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _on_pidfd(self, key: selectors.SelectorKey, events: int) -> None:
        for slot in self._slots:
            if slot.pidfd == key.fd:
                self._reap(slot, block=False)
                return

    def _reap_without_pidfd(self) -> None:
        for slot in self._slots:
            if slot.alive and slot.pidfd < 0:
                self._reap(slot, block=False)

    def _reap(self, slot: WorkerSlot, *, block: bool) -> bool:
        """Collect the worker's exit status if it has exited; True if it had."""
        try:
            pid, status = os.waitpid(slot.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            # Reaped behind our back (SIGCHLD ignored?): the status is lost;
            # count it as a crash rather than a request to shut down.
            pid, status = slot.pid, _UNKNOWN_STATUS
        if pid == 0:
            return False
        self._forget(slot)
        if self._stopping:
            return True
        lived = time.monotonic() - slot.started
        if status != _UNKNOWN_STATUS and os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            if self._on_exit_status is not None:
                self._on_exit_status(code)
            if code in self._final_exit_codes:
                self._log.info(
                    "worker %d (pid %d) exited with status %d: stopping the server",
                    slot.index,
                    pid,
                    code,
                )
                self.stop()
                return True
        slot.failures = 1 if lived >= self._stable_after else slot.failures + 1
        if slot.failures > self._max_quick_failures:
            self._log.critical(
                "worker %d (pid %d) died (%s) %d times in a row within %.0fs of "
                "starting: giving up, stopping the server",
                slot.index,
                pid,
                _describe_status(status),
                slot.failures,
                self._stable_after,
            )
            self.gave_up = True
            self.stop()
            return True
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (slot.failures - 1))
        slot.restart_at = time.monotonic() + delay
        self._log.error(
            "worker %d (pid %d) died (%s) after %.1fs; restarting in %.2fs",
            slot.index,
            pid,
            _describe_status(status),
            lived,
            delay,
        )
        self._redistribute(slot)
        return True

    def _forget(self, slot: WorkerSlot) -> None:
        selector = self._selector
        if slot.channel is not None:
            if selector is not None:
                selector.unregister(slot.channel)
            slot.channel.close()
            slot.channel = None
        if slot.pidfd >= 0:
            if selector is not None:
                selector.unregister(slot.pidfd)
            os.close(slot.pidfd)
            slot.pidfd = -1
        self.counters.reset(slot.index)
        slot.pid = 0
        slot.want_write = False

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if (
                slot.restart_at is not None
                and slot.restart_at <= now
                and not self._stopping
            ):
                self.restarts += 1
                try:
                    self._spawn(slot)
                except OSError as exc:  # fork/socketpair failed: out of resources
                    slot.failures += 1
                    delay = min(
                        self._backoff_max, self._backoff_initial * 2**slot.failures
                    )
                    slot.restart_at = now + delay
                    self._log.error(
                        "cannot restart worker %d (%s); retrying in %.2fs",
                        slot.index,
                        exc,
                        delay,
                    )

    # -- shutdown -----------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._stopping = True
        selector = self._selector
        assert selector is not None
        if self.stop_grace and not self.gave_up:
            # Connections in the accept queues are served; then the listeners
            # close, so new ones are refused (a balancer retries elsewhere).
            for listener in self._listeners:
                try:
                    for _ in range(16):
                        self._on_accept(_ListenerKey(listener), selectors.EVENT_READ)
                except OSError:
                    pass
        for listener in self._listeners:
            try:
                selector.unregister(listener)
            except (KeyError, ValueError):
                pass
            if self.stop_grace:
                listener.close()
        # Connections handed over are delivered; the rest are closed unserved.
        for slot in self._slots:
            if slot.usable and slot.pending:
                self._flush_blocking(slot)
            while slot.pending:
                os.close(slot.pending.popleft())
            slot.restart_at = None
        for slot in self._slots:
            if slot.alive:
                self._tell_quit(slot)
        deadline = time.monotonic() + self._stop_timeout
        while any(slot.alive for slot in self._slots):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for slot in self._slots:
                if slot.alive:
                    self._reap(slot, block=False)
            self._serve_readers(min(0.02, remaining))
        for slot in self._slots:
            if slot.alive:
                self._log.error(
                    "worker %d (pid %d) did not stop within %.1fs: killing it",
                    slot.index,
                    slot.pid,
                    self._stop_timeout,
                )
                try:
                    os.kill(slot.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._reap(slot, block=True)

    def _tell_quit(self, slot: WorkerSlot) -> None:
        try:
            if slot.channel is None:
                raise ConnectionResetError
            slot.channel.send(MSG_GRACE if self.stop_grace else MSG_QUIT)
        except OSError:
            try:
                os.kill(slot.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


class _ListenerKey:
    """What `_on_accept` reads of a selector key."""

    def __init__(self, listener: socket.socket) -> None:
        self.fileobj = listener


_UNKNOWN_STATUS = -1


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _describe_status(status: int) -> str:
    if status == _UNKNOWN_STATUS:
        return "status unknown"
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"status {status:#x}"
