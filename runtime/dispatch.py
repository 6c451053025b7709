"""Accepting in the parent and handing connections to workers (acceptor mode).

:class:`Dispatcher` is the half of the supervisor that moves sockets: it
accepts on the parent's listeners, asks the balancer for a worker, queues the
descriptor on that worker's :class:`WorkerSlot` and passes queued descriptors
over the worker's channel in batches (``handoff.py``).  A full channel keeps
them queued and waits for it to become writable; a dead channel hands them to
the next live worker.  With ``max_connections`` a worker at its limit gets no
more, and when every worker is full accepting pauses until one has room.

It is a mixin of :class:`~protogen.runtime.supervisor.Supervisor`, which owns
the state it uses: ``_slots``, ``_selector``, ``_listeners``, ``_balancer``,
``counters``, ``_assigned``, ``_max_conns``, ``_accept_paused_until``,
``_stopping``, ``_log``, ``workers`` and ``stop()``.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .handoff import FDS_PER_MESSAGE, MSG_SHUTDOWN, send_fds

if TYPE_CHECKING:  # pragma: no cover
    from .balancer import Balancer, ConnectionCounters

__all__ = ["Dispatcher", "WorkerSlot"]

ACCEPTS_PER_WAKEUP = 256  # bound one listener's turn so others are served too
MAX_PENDING_PER_WORKER = 8192

_ACCEPT_PAUSE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_DEAD_CHANNEL_ERRNOS = {
    errno.EPIPE,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ENOTCONN,
}


@dataclass
class WorkerSlot:
    """The parent's view of one worker process."""

    index: int
    pid: int = 0
    channel: socket.socket | None = None  # parent end
    pidfd: int = -1
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    pending: deque = field(default_factory=deque)  # fds waiting for this worker
    want_write: bool = False

    @property
    def alive(self) -> bool:
        return self.pid > 0

    @property
    def usable(self) -> bool:
        """Alive and its channel still accepts connections."""
        return self.pid > 0 and self.channel is not None


class Dispatcher:
    """Mixin: the parent's accept-and-hand-over machinery (see the module docs)."""

    _slots: list[WorkerSlot]
    _selector: selectors.BaseSelector | None
    _listeners: list[socket.socket]
    _balancer: "Balancer | None"
    counters: "ConnectionCounters"
    _assigned: list[int]
    _max_conns: int
    _accept_paused_until: float | None
    _stopping: bool
    _log: Any
    workers: int

    def stop(self) -> None:  # pragma: no cover - provided by Supervisor
        raise NotImplementedError

    def _drop_channel(self, slot: WorkerSlot) -> None:
        """The worker's channel is dead: hand its waiting fds to a live worker."""
        if slot.channel is not None:
            if self._selector is not None:
                self._selector.unregister(slot.channel)
            slot.channel.close()
            slot.channel = None
            slot.want_write = False
        if not self._stopping:
            self._redistribute(slot)

    # -- channels ---------------------------------------------------------------------

    def _on_channel(self, key: selectors.SelectorKey, events: int) -> None:
        slot = next(s for s in self._slots if s.channel is key.fileobj)
        if events & selectors.EVENT_WRITE:
            self._flush(slot)
        if events & selectors.EVENT_READ and slot.channel is not None:
            try:
                data = slot.channel.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if MSG_SHUTDOWN in data:
                self._log.info("worker %d requested shutdown", slot.index)
                self.stop()
            elif not data:
                # The worker closed its end: it is exiting.  The pidfd/waitpid
                # path records the death; stop using the channel now.
                self._drop_channel(slot)

    def _flush(self, slot: WorkerSlot) -> None:
        """Send the slot's pending fds; keeps what the channel cannot take yet."""
        channel = slot.channel
        while slot.pending and channel is not None:
            batch = [
                slot.pending[i] for i in range(min(FDS_PER_MESSAGE, len(slot.pending)))
            ]
            try:
                send_fds(channel, batch)
            except (BlockingIOError, InterruptedError):
                self._want_write(slot, True)
                return
            except OSError as exc:
                if exc.errno in _DEAD_CHANNEL_ERRNOS:
                    self._drop_channel(slot)
                    return
                raise
            for _ in batch:
                os.close(slot.pending.popleft())
        self._want_write(slot, False)

    def _want_write(self, slot: WorkerSlot, on: bool) -> None:
        if slot.want_write == on or slot.channel is None or self._selector is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        self._selector.modify(slot.channel, events, self._on_channel)
        slot.want_write = on

    def _redistribute(self, dead: WorkerSlot) -> None:
        if not dead.pending:
            return
        target = self._live_slot(dead.index)
        if target is None:
            return  # nobody alive: keep them for the restart
        self._assigned[target.index] += len(dead.pending)
        if self._balancer is not None:
            for _ in dead.pending:
                self._balancer.handed(target.index)
        target.pending.extend(dead.pending)
        dead.pending.clear()
        self._flush(target)

    def _live_slot(self, preferred: int) -> WorkerSlot | None:
        for offset in range(self.workers):
            slot = self._slots[(preferred + offset) % self.workers]
            if slot.usable:
                return slot
        return None

    # -- accepting -----------------------------------------------------------------------

    def _on_accept(self, key: selectors.SelectorKey, events: int) -> None:
        listener: socket.socket = key.fileobj  # type: ignore[assignment]
        balancer = self._balancer
        assert balancer is not None
        touched: set[int] = set()
        limit = self._max_conns
        for _ in range(ACCEPTS_PER_WAKEUP):
            if limit and self._all_full():
                self._pause_accepting(None)  # resumed when a worker has room
                break
            try:
                # _accept() gives the raw fd: no socket object is needed in
                # the parent, the fd only passes through to a worker.
                fd, remote = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_PAUSE_ERRNOS:
                    self._pause_accepting(exc)
                    break
                raise
            slot = self._live_slot(balancer.choose(remote)) or self._slots[0]
            if limit and self._load(slot.index) >= limit:
                slot = self._roomy_slot(slot.index) or slot
            if len(slot.pending) >= MAX_PENDING_PER_WORKER:
                os.close(fd)  # no worker can take it: shed load rather than hoard fds
                continue
            slot.pending.append(fd)
            # Counted as soon as it is assigned: the next choice in this very
            # batch must already see it (least-connections).
            balancer.handed(slot.index)
            self._assigned[slot.index] += 1
            touched.add(slot.index)
        for index in touched:
            slot = self._slots[index]
            if slot.usable and not slot.want_write:
                self._flush(slot)

    def _load(self, index: int) -> int:
        """Live connections of a worker plus those assigned but not adopted yet."""
        return self.counters.load(index, self._assigned[index])

    def _roomy_slot(self, preferred: int) -> WorkerSlot | None:
        for offset in range(1, self.workers):
            slot = self._slots[(preferred + offset) % self.workers]
            if slot.usable and self._load(slot.index) < self._max_conns:
                return slot
        return None

    def _all_full(self) -> bool:
        return all(
            not slot.usable or self._load(slot.index) >= self._max_conns
            for slot in self._slots
        )

    def _pause_accepting(self, exc: OSError | None) -> None:
        if exc is not None:
            self._log.error("accept failed (%s); pausing accepts for 100 ms", exc)
        assert self._selector is not None
        for listener in self._listeners:
            self._selector.unregister(listener)
        # Checked again then: out of fds -> retry; at max_connections -> poll for room.
        self._accept_paused_until = time.monotonic() + (
            0.1 if exc is not None else 0.02
        )

    def _resume_accepting(self) -> None:
        if (
            self._accept_paused_until is None
            or time.monotonic() < self._accept_paused_until
        ):
            return
        if self._max_conns and self._all_full():
            self._accept_paused_until = time.monotonic() + 0.02
            return
        self._accept_paused_until = None
        assert self._selector is not None
        for listener in self._listeners:
            self._selector.register(listener, selectors.EVENT_READ, self._on_accept)

    def _flush_blocking(self, slot: WorkerSlot, timeout: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while slot.pending and slot.usable and time.monotonic() < deadline:
            self._flush(slot)
            if slot.pending:
                time.sleep(0.005)
