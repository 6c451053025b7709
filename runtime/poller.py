"""I/O readiness pollers: epoll, kqueue and a portable `selectors` fallback.

Every backend speaks the same tiny dialect so the event loop never branches on
the platform:

* interest and result masks use READABLE / WRITABLE (the epoll bit values, so
  the epoll backend needs no translation on the way in);
* results may additionally carry ERROR (socket error pending) and HANGUP (the
  peer hung up, at least its sending side). HANGUP does not mean "no data":
  bytes may still be queued, and READABLE is reported alongside whenever a
  recv() would not block. A loop should read until recv() returns b"" and only
  then close;
* ``poll()`` returns a fresh ``list[(fd, events)]`` with one entry per fd;
  EINTR yields ``[]`` so the caller simply runs its next iteration.

Edge-triggered mode (epoll EPOLLET, kqueue EV_CLEAR) reports a readiness change
once; the loop must then drain the fd until EAGAIN. Level-triggered mode (the
default) re-reports for as long as the condition holds.

Unregister an fd *before* closing it. Unregistering an fd that is already
closed is tolerated (the kernel has dropped it), unregistering an fd that was
never registered raises FileNotFoundError, registering twice FileExistsError.
"""

from __future__ import annotations

import abc
import errno
import os
import select
import selectors
import sys

READABLE = 0x1  # == select.EPOLLIN
WRITABLE = 0x4  # == select.EPOLLOUT
ERROR = 0x8  # == select.EPOLLERR
HANGUP = 0x10  # == select.EPOLLHUP
# poll_raw() may report a hang-up as the backend's own bit too (epoll's EPOLLRDHUP);
# test raw masks against RAW_HANGUP, and normalize() them before handing them on.
RAW_HANGUP = HANGUP | 0x2000

_INTEREST = READABLE | WRITABLE

# epoll can return at most this many events per call; the buffer doubles (up to
# the cap) whenever a poll fills it, the way gnet grows its event list.
_INITIAL_MAX_EVENTS = 1024
_MAX_MAX_EVENTS = 65536


class PollerClosedError(RuntimeError):
    """The poller was used after close()."""


def normalize(events: int) -> int:
    """A poll_raw() mask in the common dialect (EPOLLRDHUP becomes HANGUP)."""
    # 0x1D keeps READABLE|WRITABLE|ERROR|HANGUP; EPOLLRDHUP (bit 13) >> 9 is HANGUP.
    return events & 0x1D | events >> 9 & HANGUP


def _check_interest(events: int) -> None:
    if events & ~_INTEREST:
        raise ValueError(
            f"invalid interest mask {events!r}: only READABLE|WRITABLE may be requested"
        )


class Poller(abc.ABC):
    """Readiness notification for a set of file descriptors."""

    name: str = "abstract"
    edge_triggered: bool = False

    @abc.abstractmethod
    def register(self, fd: int, events: int, *, level: bool = False) -> None:
        """Start watching `fd` for `events` (READABLE|WRITABLE, may be 0).

        level=True keeps this fd level-triggered on an edge-triggered poller: for
        listeners and wakers whose callbacks take only a bounded batch per event.
        """

    @abc.abstractmethod
    def modify(self, fd: int, events: int) -> None:
        """Replace the interest mask of a registered fd."""

    @abc.abstractmethod
    def unregister(self, fd: int) -> None:
        """Stop watching `fd`."""

    @abc.abstractmethod
    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to `timeout` seconds (None: forever, 0: don't block)."""

    def poll_raw(self, timeout: float | None) -> list[tuple[int, int]]:
        """poll() without normalizing masks: HANGUP may appear as any RAW_HANGUP bit.

        The event loop's hot path uses it to skip one tuple per event.
        """
        return self.poll(timeout)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the kernel object; further use raises PollerClosedError."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once close() was called."""

    def _closed_error(self) -> PollerClosedError:
        return PollerClosedError(f"{self.name} poller is closed")

    def __enter__(self) -> "Poller":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "edge" if self.edge_triggered else "level"
        state = " closed" if self.closed else ""
        return f"<{type(self).__name__} {self.name} {mode}-triggered{state}>"


# --------------------------------------------------------------------------- epoll


if hasattr(select, "epoll"):
    _EPOLLET = select.EPOLLET
    _EPOLLRDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
    # normalize() and RAW_HANGUP hard-code these bit positions.
    assert _EPOLLRDHUP == RAW_HANGUP & ~HANGUP == HANGUP << 9


class EpollPoller(Poller):
    """Linux epoll; level-triggered by default, EPOLLET when edge_triggered."""

    name = "epoll"

    def __init__(self, *, edge_triggered: bool = False) -> None:
        if not hasattr(select, "epoll"):
            raise ValueError("the epoll poller is not available on this platform")
        self.edge_triggered = edge_triggered
        self._epoll = select.epoll()
        self._max_events = _INITIAL_MAX_EVENTS
        # Kernel masks for every valid interest value (0..5), computed once so
        # register/modify on the hot path are a tuple index.
        et_flag = _EPOLLET if edge_triggered else 0
        self._masks = tuple(
            self._kernel_mask(events, et_flag) if not events & ~_INTEREST else -1
            for events in range(_INTEREST + 1)
        )
        self._level_masks = tuple(
            self._kernel_mask(events, 0) if not events & ~_INTEREST else -1
            for events in range(_INTEREST + 1)
        )
        self._level: set[int] = set()  # fds registered level=True (edge mode only)

    @staticmethod
    def _kernel_mask(events: int, et_flag: int) -> int:
        mask = events | et_flag
        if events & READABLE:
            # Ask for RDHUP so a peer's shutdown(SHUT_WR) is visible as HANGUP.
            mask |= _EPOLLRDHUP
        return mask

    def _mask(self, events: int, fd: int = -1) -> int:
        try:
            if fd in self._level:
                mask = self._level_masks[events]
            else:
                mask = self._masks[events]
        except (IndexError, TypeError):
            mask = -1
        if mask < 0 or events < 0:
            _check_interest(events)
            raise ValueError(f"invalid interest mask {events!r}")
        return mask

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(self, fd: int, events: int, *, level: bool = False) -> None:
        level = level and self.edge_triggered
        if level:
            self._level.add(fd)  # first: _mask picks the level-triggered table
        try:
            self._epoll.register(fd, self._mask(events, fd))
        except ValueError:  # raised for a bad mask or a closed epoll object
            if level:
                self._level.discard(fd)
            if self._epoll.closed:
                raise self._closed_error() from None
            raise

    def modify(self, fd: int, events: int) -> None:
        mask = self._mask(events, fd)
        try:
            self._epoll.modify(fd, mask)
        except ValueError:  # only raised for a closed epoll object
            if self._epoll.closed:
                raise self._closed_error() from None
            raise

    def unregister(self, fd: int) -> None:
        if self._epoll.closed:
            raise self._closed_error()
        self._level.discard(fd)
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            # A closed fd was already removed from the interest list by the kernel.
            if exc.errno != errno.EBADF:
                raise

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return [(fd, normalize(ev)) for fd, ev in self.poll_raw(timeout)]

    def poll_raw(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is None:
            timeout = -1.0
        elif timeout < 0:
            timeout = 0.0
        try:
            # CPython rounds the timeout *up* to whole milliseconds, so a 0.3 ms
            # timer deadline never degrades into a busy loop.
            ready = self._epoll.poll(timeout, self._max_events)
        except InterruptedError:
            return []
        except ValueError:
            if self._epoll.closed:
                raise self._closed_error() from None
            raise
        if len(ready) == self._max_events and self._max_events < _MAX_MAX_EVENTS:
            self._max_events *= 2
        return ready

    def close(self) -> None:
        self._epoll.close()

    @property
    def closed(self) -> bool:
        return self._epoll.closed


# -------------------------------------------------------------------------- kqueue


class KqueuePoller(Poller):
    """BSD/macOS kqueue: one EVFILT_READ and/or EVFILT_WRITE filter per fd.

    kqueue reports read and write readiness as separate kevents; poll() merges
    them into one (fd, events) tuple per fd. EV_CLEAR gives edge-triggered
    semantics. Interest masks are tracked here because kqueue can only add or
    delete individual filters, not replace a mask.
    """

    name = "kqueue"

    def __init__(self, *, edge_triggered: bool = False) -> None:
        if not hasattr(select, "kqueue"):
            raise ValueError("the kqueue poller is not available on this platform")
        self.edge_triggered = edge_triggered
        self._kq = select.kqueue()
        self._interest: dict[int, int] = {}
        self._max_events = _INITIAL_MAX_EVENTS
        self._add_flags = select.KQ_EV_ADD | (
            select.KQ_EV_CLEAR if edge_triggered else 0
        )
        self._level: set[int] = set()  # fds registered level=True (no EV_CLEAR)

    def fileno(self) -> int:
        return self._kq.fileno()

    def _changes(self, fd: int, old: int, new: int) -> list["select.kevent"]:
        changes = []
        add_flags = select.KQ_EV_ADD if fd in self._level else self._add_flags
        for bit, kfilter in (
            (READABLE, select.KQ_FILTER_READ),
            (WRITABLE, select.KQ_FILTER_WRITE),
        ):
            if new & bit and not old & bit:
                changes.append(select.kevent(fd, kfilter, add_flags))
            elif old & bit and not new & bit:
                changes.append(select.kevent(fd, kfilter, select.KQ_EV_DELETE))
        return changes

    def _apply(self, changes: list["select.kevent"]) -> None:
        if changes:
            self._kq.control(changes, 0, 0)

    def register(self, fd: int, events: int, *, level: bool = False) -> None:
        if self._kq.closed:
            raise self._closed_error()
        _check_interest(events)
        if fd in self._interest:
            raise FileExistsError(errno.EEXIST, f"fd {fd} is already registered")
        if level:
            self._level.add(fd)
        try:
            self._apply(self._changes(fd, 0, events))
        except BaseException:
            self._level.discard(fd)
            raise
        self._interest[fd] = events

    def modify(self, fd: int, events: int) -> None:
        if self._kq.closed:
            raise self._closed_error()
        _check_interest(events)
        try:
            old = self._interest[fd]
        except KeyError:
            raise FileNotFoundError(
                errno.ENOENT, f"fd {fd} is not registered"
            ) from None
        self._apply(self._changes(fd, old, events))
        self._interest[fd] = events

    def unregister(self, fd: int) -> None:
        if self._kq.closed:
            raise self._closed_error()
        try:
            old = self._interest.pop(fd)
        except KeyError:
            raise FileNotFoundError(
                errno.ENOENT, f"fd {fd} is not registered"
            ) from None
        self._level.discard(fd)
        # Delete filters one at a time: if the fd was already closed the kernel
        # dropped its filters and each delete fails independently (EBADF/ENOENT).
        for change in self._changes(fd, old, 0):
            try:
                self._kq.control([change], 0, 0)
            except OSError as exc:
                if exc.errno not in (errno.EBADF, errno.ENOENT):
                    raise

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None and timeout < 0:
            timeout = 0.0
        try:
            kevents = self._kq.control(None, self._max_events, timeout)
        except InterruptedError:
            return []
        except ValueError:
            if self._kq.closed:
                raise self._closed_error() from None
            raise
        if len(kevents) == self._max_events and self._max_events < _MAX_MAX_EVENTS:
            self._max_events *= 2
        merged: dict[int, int] = {}
        kq_read = select.KQ_FILTER_READ
        kq_write = select.KQ_FILTER_WRITE
        kq_eof = select.KQ_EV_EOF
        kq_error = select.KQ_EV_ERROR
        for kev in kevents:
            flags = kev.flags
            kfilter = kev.filter
            if kfilter == kq_read:
                events = READABLE
            elif kfilter == kq_write:
                events = WRITABLE
            else:  # pragma: no cover - we only register read/write filters
                continue
            if flags & kq_eof:
                events |= HANGUP
                if kev.fflags:  # EOF carrying a socket error (errno in fflags)
                    events |= ERROR
            if flags & kq_error:
                events |= ERROR
            fd = kev.ident
            merged[fd] = merged.get(fd, 0) | events
        return list(merged.items())

    def close(self) -> None:
        self._kq.close()
        self._interest.clear()

    @property
    def closed(self) -> bool:
        return self._kq.closed


# ----------------------------------------------------------------------- selectors


class SelectorsPoller(Poller):
    """Portable fallback on `selectors.DefaultSelector` (level-triggered only).

    The selectors API cannot express ERROR/HANGUP: a hung-up or failed socket is
    reported as READABLE (and WRITABLE if asked), and recv()/send() then surface
    the condition. An interest mask of 0 is kept here, not in the selector,
    which rejects empty masks.
    """

    name = "selectors"

    def __init__(self, *, edge_triggered: bool = False) -> None:
        if edge_triggered:
            raise ValueError(
                "the selectors poller is level-triggered only; "
                "use edge_triggered=False or the epoll/kqueue poller"
            )
        self.edge_triggered = False
        self._selector = selectors.DefaultSelector()
        self._interest: dict[int, int] = {}
        self._closed = False

    @staticmethod
    def _to_selector(events: int) -> int:
        mask = 0
        if events & READABLE:
            mask |= selectors.EVENT_READ
        if events & WRITABLE:
            mask |= selectors.EVENT_WRITE
        return mask

    def register(self, fd: int, events: int, *, level: bool = False) -> None:
        if self._closed:
            raise self._closed_error()
        _check_interest(events)
        if fd in self._interest:
            raise FileExistsError(errno.EEXIST, f"fd {fd} is already registered")
        if events:
            self._selector.register(fd, self._to_selector(events))
        self._interest[fd] = events

    def modify(self, fd: int, events: int) -> None:
        if self._closed:
            raise self._closed_error()
        _check_interest(events)
        try:
            old = self._interest[fd]
        except KeyError:
            raise FileNotFoundError(
                errno.ENOENT, f"fd {fd} is not registered"
            ) from None
        if old == events:
            return
        if not events:
            self._selector.unregister(fd)
        elif not old:
            self._selector.register(fd, self._to_selector(events))
        else:
            self._selector.modify(fd, self._to_selector(events))
        self._interest[fd] = events

    def unregister(self, fd: int) -> None:
        if self._closed:
            raise self._closed_error()
        try:
            old = self._interest.pop(fd)
        except KeyError:
            raise FileNotFoundError(
                errno.ENOENT, f"fd {fd} is not registered"
            ) from None
        if old:
            # Selector implementations already ignore EBADF from a closed fd.
            self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if self._closed:
            raise self._closed_error()
        if timeout is not None and timeout < 0:
            timeout = 0.0
        try:
            ready = self._selector.select(timeout)
        except InterruptedError:
            return []
        ev_read = selectors.EVENT_READ
        ev_write = selectors.EVENT_WRITE
        return [
            (
                key.fd,
                (READABLE if mask & ev_read else 0)
                | (WRITABLE if mask & ev_write else 0),
            )
            for key, mask in ready
        ]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._selector.close()
            self._interest.clear()

    @property
    def closed(self) -> bool:
        return self._closed


# -------------------------------------------------------------------- construction

_BACKENDS: dict[str, type[Poller]] = {
    "epoll": EpollPoller,
    "kqueue": KqueuePoller,
    "selectors": SelectorsPoller,
}


def available_pollers() -> list[str]:
    """Backends usable on this machine, best first."""
    names = []
    if hasattr(select, "epoll"):
        names.append("epoll")
    if hasattr(select, "kqueue"):
        names.append("kqueue")
    names.append("selectors")
    return names


def new_poller(kind: str = "auto", *, edge_triggered: bool | None = False) -> Poller:
    """Create a poller; "auto" picks the best backend available here.

    edge_triggered=None: edge-triggered where the backend can be (epoll, kqueue).
    """
    available = available_pollers()
    if kind == "auto":
        kind = available[0]
    if kind not in _BACKENDS:
        raise ValueError(
            f"unknown poller {kind!r}; choose 'auto' or one of {', '.join(_BACKENDS)}"
        )
    if kind not in available:
        raise ValueError(
            f"poller {kind!r} is not available on {sys.platform}; "
            f"available here: {', '.join(available)}"
        )
    if edge_triggered is None:
        edge_triggered = kind != "selectors"
    return _BACKENDS[kind](edge_triggered=edge_triggered)


# --------------------------------------------------------------------------- waker


class Waker:
    """Wakes a poll() blocked in another thread.

    Register `fileno()` for READABLE; other threads call `wake()`, the loop calls
    `drain()` when the fd is readable, *before* running the work that was queued
    for it. wake() never blocks and skips the syscall while a wake-up is already
    pending, so a burst of cross-thread submissions costs one write.
    """

    def __init__(self) -> None:
        self._pending = False
        self._closed = False
        if hasattr(os, "eventfd"):
            self._rfd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._uses_eventfd = True
        else:
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)
            self._uses_eventfd = False

    def fileno(self) -> int:
        return self._rfd

    def wake(self) -> None:
        if self._pending or self._closed:
            return
        # Set the flag before writing: a concurrent drain() that clears it early
        # only causes one spurious (harmless) wake-up, never a lost one.
        self._pending = True
        try:
            if self._uses_eventfd:
                os.eventfd_write(self._wfd, 1)
            else:
                os.write(self._wfd, b"\x01")
        except BlockingIOError:
            pass  # counter/pipe full: the reader is certainly going to wake
        except OSError:
            if not self._closed:
                raise

    def drain(self) -> None:
        self._pending = False
        try:
            if self._uses_eventfd:
                os.eventfd_read(self._rfd)
            else:
                while os.read(self._rfd, 4096):
                    pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self._rfd)
        if self._wfd != self._rfd:
            os.close(self._wfd)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Waker":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
