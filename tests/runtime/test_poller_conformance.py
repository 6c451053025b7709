"""Every poller backend available here behaves the same (protogen.runtime.poller).

The suite is parametrized over available_pollers(); the kqueue backend cannot run
on Linux, so its translation layer is checked against a scripted fake kqueue at
the end of this file.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from protogen.runtime import poller as poller_mod
from protogen.runtime.poller import (
    ERROR,
    HANGUP,
    READABLE,
    WRITABLE,
    KqueuePoller,
    Poller,
    PollerClosedError,
    Waker,
    available_pollers,
    new_poller,
)

BACKENDS = available_pollers()
EDGE_BACKENDS = [name for name in BACKENDS if name in ("epoll", "kqueue")]


@pytest.fixture(params=BACKENDS)
def poller(request: pytest.FixtureRequest) -> Iterator[Poller]:
    p = new_poller(request.param)
    yield p
    p.close()


@pytest.fixture(params=EDGE_BACKENDS)
def edge_poller(request: pytest.FixtureRequest) -> Iterator[Poller]:
    p = new_poller(request.param, edge_triggered=True)
    yield p
    p.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def events_for(p: Poller, fd: int, timeout: float = 0.0) -> int:
    """The merged events reported for `fd` by one poll (0 if not reported)."""
    result = p.poll(timeout)
    fds = [f for f, _ in result]
    assert len(fds) == len(set(fds)), f"duplicate fds in {result}"
    return dict(result).get(fd, 0)


def wait_events(p: Poller, fd: int, bits: int, timeout: float = 3.0) -> int:
    """Poll until `fd` reports any of `bits`; fail instead of hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = events_for(p, fd, 0.05)
        if ev & bits:
            return ev
    pytest.fail(f"fd {fd} never reported events 0x{bits:x} within {timeout}s")


# ------------------------------------------------------------------ basic readiness


def test_event_bits_match_epoll_values():
    assert (READABLE, WRITABLE, ERROR, HANGUP) == (0x1, 0x4, 0x8, 0x10)
    if hasattr(select, "epoll"):
        assert READABLE == select.EPOLLIN and WRITABLE == select.EPOLLOUT
        assert ERROR == select.EPOLLERR and HANGUP == select.EPOLLHUP


def test_poll_returns_a_list(poller, pair):
    a, _ = pair
    poller.register(a.fileno(), WRITABLE)
    result = poller.poll(1.0)
    assert isinstance(result, list)
    assert result == [(a.fileno(), WRITABLE)]


def test_readable_only_after_peer_sends(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    assert events_for(poller, a.fileno(), 0.0) == 0
    b.send(b"ping")
    ev = wait_events(poller, a.fileno(), READABLE)
    assert ev & READABLE
    assert not ev & WRITABLE  # not asked for
    assert a.recv(16) == b"ping"


def test_fresh_socket_is_writable_not_readable(poller, pair):
    a, _ = pair
    poller.register(a.fileno(), READABLE | WRITABLE)
    ev = wait_events(poller, a.fileno(), WRITABLE)
    assert ev & WRITABLE
    assert not ev & READABLE


def test_read_and_write_readiness_merge_into_one_entry(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE | WRITABLE)
    b.send(b"x")
    deadline = time.monotonic() + 3
    ev = 0
    while ev != READABLE | WRITABLE and time.monotonic() < deadline:
        ev = events_for(poller, a.fileno(), 0.05)  # asserts no duplicate fds
    assert ev == READABLE | WRITABLE


def test_modify_to_writable_only_stops_read_events(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    b.send(b"unread")
    wait_events(poller, a.fileno(), READABLE)
    poller.modify(a.fileno(), WRITABLE)
    for _ in range(3):
        ev = events_for(poller, a.fileno(), 0.02)
        assert ev & WRITABLE
        assert not ev & READABLE
    poller.modify(a.fileno(), READABLE)
    assert wait_events(poller, a.fileno(), READABLE) & READABLE


def test_unregister_stops_all_events(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE | WRITABLE)
    b.send(b"pending")
    wait_events(poller, a.fileno(), READABLE)
    poller.unregister(a.fileno())
    assert poller.poll(0.05) == []
    b.close()  # even a hang-up is no longer reported
    assert poller.poll(0.05) == []


def test_register_with_no_interest_then_modify(poller, pair):
    a, b = pair
    poller.register(a.fileno(), 0)
    b.send(b"x")
    assert events_for(poller, a.fileno(), 0.05) & (READABLE | WRITABLE) == 0
    poller.modify(a.fileno(), READABLE)
    assert wait_events(poller, a.fileno(), READABLE) & READABLE
    poller.modify(a.fileno(), 0)
    assert events_for(poller, a.fileno(), 0.02) & (READABLE | WRITABLE) == 0
    poller.unregister(a.fileno())


def test_peer_close_reports_hangup_or_readable(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    b.send(b"last words")
    b.close()
    ev = wait_events(poller, a.fileno(), HANGUP | READABLE)
    # Data queued before the close must still be readable, then EOF.
    assert ev & READABLE
    assert a.recv(64) == b"last words"
    assert a.recv(64) == b""
    if poller.name in ("epoll", "kqueue"):
        assert ev & HANGUP


def test_peer_half_close_reports_hangup_on_native_backends(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    b.shutdown(socket.SHUT_WR)
    ev = wait_events(poller, a.fileno(), HANGUP | READABLE)
    assert a.recv(8) == b""
    if poller.name in ("epoll", "kqueue"):
        assert ev & HANGUP
    # The other direction still works after a half-close.
    a.send(b"still here")
    assert b.recv(16) == b"still here"


def test_refused_connect_reports_error(poller):
    # Find a loopback port with nothing listening on it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = socket.socket()
    client.setblocking(False)
    try:
        client.connect_ex(("127.0.0.1", port))
        poller.register(client.fileno(), WRITABLE)
        ev = wait_events(poller, client.fileno(), WRITABLE | ERROR | HANGUP)
        if poller.name == "epoll":
            assert ev & ERROR
        err = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert err == errno.ECONNREFUSED
        poller.unregister(client.fileno())
    finally:
        client.close()


# ------------------------------------------------------------------------ timeouts


def test_timeout_returns_empty_list_after_roughly_the_timeout(poller, pair):
    a, _ = pair
    poller.register(a.fileno(), READABLE)
    start = time.monotonic()
    assert poller.poll(0.1) == []
    elapsed = time.monotonic() - start
    assert 0.09 <= elapsed < 2.0


def test_zero_and_negative_timeouts_do_not_block(poller, pair):
    a, _ = pair
    poller.register(a.fileno(), READABLE)
    start = time.monotonic()
    assert poller.poll(0) == []
    assert poller.poll(-5) == []
    assert time.monotonic() - start < 1.0


def test_none_timeout_blocks_until_an_event(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    timer = threading.Timer(0.05, b.send, args=(b"late",))
    timer.start()
    try:
        assert poller.poll(None) == [(a.fileno(), READABLE)]
    finally:
        timer.cancel()
        timer.join(5)


def test_signal_during_poll_does_not_raise(poller, pair):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    a, _ = pair
    poller.register(a.fileno(), READABLE)
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        assert poller.poll(0.2) == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == [1]


# --------------------------------------------------------- level vs edge triggering


def test_level_triggered_rereports_unread_data(poller, pair):
    a, b = pair
    assert not poller.edge_triggered
    poller.register(a.fileno(), READABLE)
    b.send(b"unread")
    wait_events(poller, a.fileno(), READABLE)
    for _ in range(3):
        assert events_for(poller, a.fileno(), 0.5) & READABLE
    a.recv(64)
    assert events_for(poller, a.fileno(), 0.02) == 0


def test_edge_triggered_reports_once_until_new_data(edge_poller, pair):
    a, b = pair
    assert edge_poller.edge_triggered
    edge_poller.register(a.fileno(), READABLE)
    b.send(b"first")
    assert wait_events(edge_poller, a.fileno(), READABLE) & READABLE
    # Nothing new arrived: no second report even though the data is unread.
    assert events_for(edge_poller, a.fileno(), 0.05) == 0
    b.send(b"second")
    assert wait_events(edge_poller, a.fileno(), READABLE) & READABLE
    assert events_for(edge_poller, a.fileno(), 0.05) == 0
    assert a.recv(64) == b"firstsecond"


def test_level_registration_on_an_edge_poller_rereports(edge_poller, pair):
    # Listeners and wakers take a bounded batch per event: they must stay level.
    a, b = pair
    edge_poller.register(a.fileno(), READABLE, level=True)
    b.send(b"unread")
    wait_events(edge_poller, a.fileno(), READABLE)
    for _ in range(3):
        assert events_for(edge_poller, a.fileno(), 0.5) & READABLE
    # modify() keeps the fd level-triggered; unregister forgets it.
    edge_poller.modify(a.fileno(), READABLE | WRITABLE)
    for _ in range(2):
        assert events_for(edge_poller, a.fileno(), 0.5) & READABLE
    edge_poller.unregister(a.fileno())
    edge_poller.register(a.fileno(), READABLE)
    assert wait_events(edge_poller, a.fileno(), READABLE) & READABLE
    assert events_for(edge_poller, a.fileno(), 0.05) == 0


def test_auto_mode_is_edge_triggered_where_the_backend_can_be():
    for name in BACKENDS:
        p = new_poller(name, edge_triggered=None)
        try:
            assert p.edge_triggered is (name != "selectors")
        finally:
            p.close()


def test_edge_triggered_writable_reported_once(edge_poller, pair):
    a, _ = pair
    edge_poller.register(a.fileno(), WRITABLE)
    assert wait_events(edge_poller, a.fileno(), WRITABLE) & WRITABLE
    assert events_for(edge_poller, a.fileno(), 0.05) == 0


def test_selectors_rejects_edge_triggered_by_name():
    with pytest.raises(ValueError, match="selectors"):
        new_poller("selectors", edge_triggered=True)


# ------------------------------------------------------------------------ many fds


def test_five_hundred_socketpairs_in_one_poll(poller):
    pairs = [socket.socketpair() for _ in range(500)]
    try:
        for a, _ in pairs:
            a.setblocking(False)
            poller.register(a.fileno(), READABLE)
        # Only the odd pairs get data: the even ones must stay silent.
        expected = set()
        for index, (a, b) in enumerate(pairs):
            if index % 2:
                b.send(b"x")
                expected.add(a.fileno())
        seen: dict[int, int] = {}
        deadline = time.monotonic() + 5
        while set(seen) != expected and time.monotonic() < deadline:
            for fd, ev in poller.poll(0.05):
                seen[fd] = ev
        assert set(seen) == expected
        assert all(ev & READABLE for ev in seen.values())
        # Level-triggered backends report every ready fd in a single poll.
        if not poller.edge_triggered:
            once = poller.poll(1.0)
            assert {fd for fd, _ in once} == expected
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# --------------------------------------------------------------------- registration


def test_double_register_and_unknown_fds_raise(poller, pair):
    a, b = pair
    poller.register(a.fileno(), READABLE)
    with pytest.raises(FileExistsError):
        poller.register(a.fileno(), WRITABLE)
    with pytest.raises(FileNotFoundError):
        poller.modify(b.fileno(), READABLE)
    with pytest.raises(FileNotFoundError):
        poller.unregister(b.fileno())
    poller.unregister(a.fileno())
    with pytest.raises(FileNotFoundError):
        poller.unregister(a.fileno())


def test_unregister_after_the_fd_was_closed_is_tolerated(poller):
    a, b = socket.socketpair()
    fd = a.fileno()
    poller.register(fd, READABLE)
    a.close()
    b.close()
    poller.unregister(fd)
    assert poller.poll(0) == []


def test_invalid_interest_mask_is_rejected(poller, pair):
    a, _ = pair
    with pytest.raises(ValueError, match="interest"):
        poller.register(a.fileno(), READABLE | HANGUP)


def test_closed_poller_raises_a_clear_error(poller, pair):
    a, _ = pair
    poller.register(a.fileno(), READABLE)
    poller.close()
    assert poller.closed
    poller.close()  # idempotent
    with pytest.raises(PollerClosedError, match=f"{poller.name}.*closed"):
        poller.poll(0)
    with pytest.raises(PollerClosedError):
        poller.register(a.fileno(), READABLE)
    with pytest.raises(PollerClosedError):
        poller.modify(a.fileno(), WRITABLE)
    with pytest.raises(PollerClosedError):
        poller.unregister(a.fileno())


def test_context_manager_closes(pair):
    with new_poller() as p:
        assert not p.closed
    assert p.closed


# ------------------------------------------------------------------- construction


def test_available_pollers_always_include_selectors_last():
    names = available_pollers()
    assert names[-1] == "selectors"
    assert ("epoll" in names) == hasattr(select, "epoll")
    assert ("kqueue" in names) == hasattr(select, "kqueue")


def test_auto_picks_the_best_backend():
    with new_poller() as p:
        assert p.name == available_pollers()[0]
        assert not p.edge_triggered
    with new_poller("auto", edge_triggered=bool(EDGE_BACKENDS)) as p:
        assert p.edge_triggered == bool(EDGE_BACKENDS)


def test_unknown_and_unavailable_backends_are_rejected():
    with pytest.raises(ValueError, match="unknown poller 'iocp'"):
        new_poller("iocp")
    missing = [n for n in ("epoll", "kqueue") if n not in available_pollers()]
    for name in missing:
        with pytest.raises(ValueError, match=f"{name}.*not available"):
            new_poller(name)


# --------------------------------------------------------------------------- waker


@pytest.fixture(params=["native", "pipe"])
def waker(request: pytest.FixtureRequest, monkeypatch) -> Iterator[Waker]:
    if request.param == "pipe":
        monkeypatch.delattr(os, "eventfd", raising=False)
    w = Waker()
    yield w
    w.close()


def test_waker_wakes_a_poll_blocked_in_another_thread(poller, waker):
    poller.register(waker.fileno(), READABLE)
    result: list[list[tuple[int, int]]] = []

    def blocked() -> None:
        result.append(poller.poll(10.0))

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.05)
    waker.wake()
    thread.join(5)
    assert not thread.is_alive(), "poll was not woken"
    assert result == [[(waker.fileno(), READABLE)]]


def test_waker_drain_clears_and_rearms(poller, waker):
    poller.register(waker.fileno(), READABLE)
    for _ in range(5):
        waker.wake()  # repeated wakes collapse into one pending wake-up
    assert events_for(poller, waker.fileno(), 1.0) & READABLE
    waker.drain()
    assert events_for(poller, waker.fileno(), 0.02) == 0
    waker.wake()
    assert events_for(poller, waker.fileno(), 1.0) & READABLE
    waker.drain()
    waker.drain()  # draining an idle waker does not block
    assert events_for(poller, waker.fileno(), 0.02) == 0


def test_waker_from_many_threads_is_never_lost(poller, waker):
    poller.register(waker.fileno(), READABLE)
    for _ in range(20):
        threads = [threading.Thread(target=waker.wake) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert events_for(poller, waker.fileno(), 2.0) & READABLE
        waker.drain()
        assert events_for(poller, waker.fileno(), 0) == 0


def test_waker_wake_after_close_is_harmless(waker):
    waker.close()
    assert waker.closed
    waker.wake()
    waker.close()


# ------------------------------------------------- kqueue translation (fake kernel)


class FakeKevent:
    def __init__(self, ident, filter=-1, flags=1, fflags=0, data=0, udata=0):
        self.ident, self.filter, self.flags = ident, filter, flags
        self.fflags, self.data = fflags, data

    def key(self):
        return (self.ident, self.filter, self.flags)


class FakeKqueue:
    """Records changelists; returns scripted kevents from control(None, ...)."""

    def __init__(self) -> None:
        self.changes: list[tuple[int, int, int]] = []
        self.scripted: list[FakeKevent] = []
        self.fail_deletes_with: int | None = None
        self.closed = False
        self.last_max_events = None

    def control(self, changes, max_events, timeout=None):
        if self.closed:
            raise ValueError("I/O operation on closed kqueue object")
        if changes:
            for change in changes:
                if change.flags & FAKE.KQ_EV_DELETE and self.fail_deletes_with:
                    raise OSError(
                        self.fail_deletes_with, os.strerror(self.fail_deletes_with)
                    )
                self.changes.append(change.key())
            return []
        self.last_max_events = max_events
        out, self.scripted = self.scripted, []
        return out

    def fileno(self):
        return -1

    def close(self):
        self.closed = True


class FAKE:  # BSD values
    KQ_FILTER_READ = -1
    KQ_FILTER_WRITE = -2
    KQ_EV_ADD = 0x1
    KQ_EV_DELETE = 0x2
    KQ_EV_CLEAR = 0x20
    KQ_EV_EOF = 0x8000
    KQ_EV_ERROR = 0x4000


@pytest.fixture
def fake_kqueue(monkeypatch) -> Iterator[FakeKqueue]:
    kq = FakeKqueue()
    monkeypatch.setattr(select, "kqueue", lambda: kq, raising=False)
    monkeypatch.setattr(select, "kevent", FakeKevent, raising=False)
    for name, value in vars(FAKE).items():
        if name.startswith("KQ_"):
            monkeypatch.setattr(select, name, value, raising=False)
    yield kq


def test_kqueue_register_modify_unregister_translate_to_filters(fake_kqueue):
    R, W = FAKE.KQ_FILTER_READ, FAKE.KQ_FILTER_WRITE
    ADD, DEL = FAKE.KQ_EV_ADD, FAKE.KQ_EV_DELETE
    p = KqueuePoller()
    p.register(7, READABLE | WRITABLE)
    assert fake_kqueue.changes == [(7, R, ADD), (7, W, ADD)]
    fake_kqueue.changes.clear()
    p.modify(7, WRITABLE)
    assert fake_kqueue.changes == [(7, R, DEL)]
    fake_kqueue.changes.clear()
    p.modify(7, WRITABLE)  # unchanged mask: no syscall work
    assert fake_kqueue.changes == []
    p.modify(7, READABLE)
    assert fake_kqueue.changes == [(7, R, ADD), (7, W, DEL)]
    fake_kqueue.changes.clear()
    p.unregister(7)
    assert fake_kqueue.changes == [(7, R, DEL)]
    with pytest.raises(FileNotFoundError):
        p.unregister(7)
    with pytest.raises(FileNotFoundError):
        p.modify(7, READABLE)
    p.register(8, 0)
    with pytest.raises(FileExistsError):
        p.register(8, READABLE)


def test_kqueue_edge_triggered_uses_ev_clear(fake_kqueue):
    p = KqueuePoller(edge_triggered=True)
    assert p.edge_triggered
    p.register(3, READABLE)
    assert fake_kqueue.changes == [
        (3, FAKE.KQ_FILTER_READ, FAKE.KQ_EV_ADD | FAKE.KQ_EV_CLEAR)
    ]


def test_kqueue_poll_merges_filters_and_maps_eof_and_errors(fake_kqueue):
    p = KqueuePoller()
    fake_kqueue.scripted = [
        FakeKevent(5, FAKE.KQ_FILTER_READ, FAKE.KQ_EV_ADD),
        FakeKevent(6, FAKE.KQ_FILTER_WRITE, FAKE.KQ_EV_ADD),
        FakeKevent(5, FAKE.KQ_FILTER_WRITE, FAKE.KQ_EV_ADD),
        FakeKevent(9, FAKE.KQ_FILTER_READ, FAKE.KQ_EV_EOF),
        FakeKevent(10, FAKE.KQ_FILTER_READ, FAKE.KQ_EV_EOF, fflags=errno.ECONNRESET),
        FakeKevent(11, FAKE.KQ_FILTER_WRITE, FAKE.KQ_EV_ERROR),
    ]
    assert p.poll(0) == [
        (5, READABLE | WRITABLE),
        (6, WRITABLE),
        (9, READABLE | HANGUP),
        (10, READABLE | HANGUP | ERROR),
        (11, WRITABLE | ERROR),
    ]
    assert p.poll(0) == []


def test_kqueue_unregister_tolerates_an_already_closed_fd(fake_kqueue):
    p = KqueuePoller()
    p.register(4, READABLE | WRITABLE)
    fake_kqueue.fail_deletes_with = errno.EBADF
    p.unregister(4)  # the kernel already dropped both filters
    fake_kqueue.fail_deletes_with = errno.EPERM
    p.register(4, READABLE)
    with pytest.raises(PermissionError):
        p.unregister(4)


def test_kqueue_closed_poller_raises_a_clear_error(fake_kqueue):
    p = KqueuePoller()
    p.close()
    assert p.closed
    with pytest.raises(PollerClosedError, match="kqueue poller is closed"):
        p.poll(0)


def test_epoll_grows_its_event_buffer_when_full():
    if "epoll" not in BACKENDS:
        pytest.skip("epoll only")
    p = poller_mod.EpollPoller()
    p._max_events = 4  # white-box: shrink so a handful of fds fill it
    pairs = [socket.socketpair() for _ in range(6)]
    try:
        for a, _ in pairs:
            p.register(a.fileno(), WRITABLE)
        assert len(p.poll(1.0)) == 4
        assert p._max_events == 8
        assert len(p.poll(1.0)) == 6
    finally:
        p.close()
        for a, b in pairs:
            a.close()
            b.close()
