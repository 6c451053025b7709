"""A hostile or careless peer cannot stall, exhaust or leak the runtime.

Each test drives a raw runtime handler through real loopback sockets: the end
of stream arriving with the last request, output piling up for a peer that
never reads, a server stopping while one peer is stuck, safe defaults, and the
memory unfinished frames may hold.
"""

from __future__ import annotations

import resource
import socket
import struct
import threading
import time
from typing import Any

import pytest

from core_harness import (
    connect,
    frame,
    is_closed_by_peer,
    recv_exact,
    recv_frame,
    serving,
    tcp_states,
    wait_for,
)
from protogen.errors import FrameTooLarge
from protogen.runtime import (
    Action,
    BufferBudgetExceeded,
    ConnectionClosed,
    EventHandler,
    Options,
    OutboundOverflow,
)
from protogen.runtime.buffer import BufferPool
from runtime_echo import LengthPrefixedEcho

KIB = 1024
MIB = 1024 * KIB
CLOSE_WAIT = "08"


def send_with_fin(sock: socket.socket, data: bytes) -> None:
    """Send `data` and the FIN in one TCP segment (corked until the shutdown)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def port_of_url(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# ----------------------------------------------------------------- end of stream
@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_data_and_fin_in_one_segment_are_answered_then_closed(edge: bool) -> None:
    handler = LengthPrefixedEcho()
    with serving(handler, "tcp://127.0.0.1:0", edge_triggered=edge) as engine:
        url = engine.urls[0]
        port = port_of_url(url)
        socks = [connect(url) for _ in range(20)]
        try:
            for i, sock in enumerate(socks):
                send_with_fin(sock, frame(b"request %d" % i))
            for i, sock in enumerate(socks):
                assert recv_frame(sock) == b"request %d" % i
            # Every server-side socket is closed: none is left in CLOSE_WAIT.
            assert wait_for(
                lambda: engine.count_connections() == 0
                and tcp_states(port).count(CLOSE_WAIT) == 0,
                timeout=5,
            ), (
                f"{engine.count_connections()} connections open, "
                f"{tcp_states(port).count(CLOSE_WAIT)} in CLOSE_WAIT"
            )
            for sock in socks:
                assert is_closed_by_peer(sock, timeout=2)
        finally:
            for sock in socks:
                sock.close()


class HalfOpen(LengthPrefixedEcho):
    """Keeps a half-closed connection open and answers once more before closing."""

    def __init__(self) -> None:
        super().__init__()
        self.eofs = 0

    def on_eof(self, conn: Any) -> Action:
        self.eofs += 1

        def late() -> None:
            conn.write(b"late answer")
            conn.close()

        conn.loop.call_later(0.05, late)
        return Action.NONE  # stay half-open: the handler closes it itself


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_a_handler_may_keep_a_half_closed_connection_open(edge: bool) -> None:
    handler = HalfOpen()
    with serving(handler, "tcp://127.0.0.1:0", edge_triggered=edge) as engine:
        with connect(engine.urls[0]) as sock:
            send_with_fin(sock, frame(b"question"))
            assert recv_frame(sock) == b"question"
            assert recv_exact(sock, len(b"late answer")) == b"late answer"
            assert is_closed_by_peer(sock, timeout=5)
    assert handler.eofs == 1


# ----------------------------------------------------------------- output caps
ANSWER = 256 * KIB
HIGH = 256 * KIB


class BigAnswers(EventHandler):
    """5-byte frames: b"B" asks for ANSWER bytes back, b"E" for an echo.

    It stops handling frames while the connection's output is paused, as a
    handler honouring backpressure does, and records the largest queue it saw.
    """

    def __init__(self) -> None:
        self.max_queued = 0
        self.answered = 0
        self.closes: list[BaseException | None] = []

    def on_traffic(self, conn: Any) -> None:
        data = conn.peek()
        pos = 0
        while len(data) - pos >= 5 and not conn.is_write_paused():
            kind = data[pos + 4 : pos + 5]
            if kind == b"B":
                conn.write(bytes(ANSWER))  # a fresh buffer, as a real reply is
                self.answered += 1
            else:
                conn.write(data[pos : pos + 5])
            pos += 5
            self.max_queued = max(self.max_queued, conn.outbound_buffered())
        conn.discard(pos)

    def on_close(self, conn: Any, err: BaseException | None) -> None:
        self.closes.append(err)


def small_receiver(url: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
    sock.settimeout(20)
    host, port = url.split("://")[1].rsplit(":", 1)
    sock.connect((host, int(port)))
    return sock


def test_output_for_a_peer_that_never_reads_stays_at_the_high_water_mark() -> None:
    handler = BigAnswers()
    options = dict(write_high_water=HIGH, write_low_water=64 * KIB)
    with serving(handler, "tcp://127.0.0.1:0", **options) as engine:
        url = engine.urls[0]
        hog = small_receiver(url)
        with hog, connect(url) as bystander:
            hog.sendall(b"\0\0\0\1B" * 100)  # 100 answers of 256 KiB: 25 MiB
            assert wait_for(lambda: handler.answered >= 1)
            time.sleep(0.3)  # let the loop do whatever it would do
            # The loop is responsive: the bystander is answered at once.
            for _ in range(3):
                bystander.sendall(b"\0\0\0\1E")
                assert recv_exact(bystander, 5) == b"\0\0\0\1E"
            assert handler.max_queued <= HIGH + ANSWER, handler.max_queued
            assert handler.answered < 100
            # Once the hog reads, the rest of its requests (already buffered on
            # the server: no new bytes will arrive for them) are answered.
            received = 0
            while received < 100 * ANSWER:
                chunk = hog.recv(1 << 20)
                assert chunk, f"EOF after {received} bytes"
                received += len(chunk)
            assert handler.answered == 100
    assert handler.max_queued <= HIGH + ANSWER


class Reckless(EventHandler):
    """Answers every 5-byte frame with 1 MiB, ignoring backpressure."""

    def __init__(self) -> None:
        self.max_queued = 0
        self.closes: list[BaseException | None] = []

    def on_traffic(self, conn: Any) -> None:
        data = conn.peek()
        for pos in range(0, len(data) - 4, 5):
            conn.write(bytes(MIB))
            self.max_queued = max(self.max_queued, conn.outbound_buffered())
        conn.discard(len(data) - len(data) % 5)

    def on_close(self, conn: Any, err: BaseException | None) -> None:
        self.closes.append(err)


def test_write_buffer_cap_closes_while_the_output_is_being_queued() -> None:
    handler = Reckless()
    cap = 8 * MIB
    with serving(handler, "tcp://127.0.0.1:0", write_buffer_cap=cap) as engine:
        url = engine.urls[0]
        with small_receiver(url) as hog, connect(url) as bystander:
            hog.sendall(b"\0\0\0\1B" * 64)  # 64 MiB of answers asked at once
            assert wait_for(lambda: handler.closes)
            bystander.sendall(b"\0\0\0\1E")
            assert len(recv_exact(bystander, MIB)) == MIB
    assert isinstance(handler.closes[0], OutboundOverflow)
    assert handler.max_queued <= cap, handler.max_queued


class Relay(EventHandler):
    """Each frame is relayed, 1 MiB at a time, to the first connection (which
    never reads); closed connections are skipped, as a broadcast loop does."""

    def __init__(self) -> None:
        self.conns: list[Any] = []
        self.closes: dict[int, BaseException | None] = {}
        self.skipped = 0

    def on_open(self, conn: Any) -> tuple[None, Action]:
        conn.context = len(self.conns)
        self.conns.append(conn)
        return None, Action.NONE

    def on_traffic(self, conn: Any) -> None:
        conn.discard()
        for _ in range(16):
            try:
                self.conns[0].write(bytes(MIB))
            except ConnectionClosed:
                self.skipped += 1
        conn.write(b"relayed")

    def on_close(self, conn: Any, err: BaseException | None) -> None:
        self.closes[conn.context] = err


def test_overflowing_another_connection_closes_that_one_not_the_writer() -> None:
    handler = Relay()
    with serving(handler, "tcp://127.0.0.1:0", write_buffer_cap=4 * MIB) as engine:
        url = engine.urls[0]
        with small_receiver(url):
            assert wait_for(lambda: len(handler.conns) == 1)
            with connect(url) as writer:
                writer.sendall(b"go")
                assert recv_exact(writer, 7) == b"relayed"
                assert wait_for(lambda: 0 in handler.closes)
                writer.sendall(b"again")
                assert recv_exact(writer, 7) == b"relayed"  # still served
    assert isinstance(handler.closes[0], OutboundOverflow)
    assert handler.skipped >= 16


# ----------------------------------------------------------------- shutdown
class Stuck(LengthPrefixedEcho):
    """Echo; a b"flood" frame is answered with 8 MiB (its peer never reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.closes: list[tuple[Any, BaseException | None]] = []

    def on_traffic(self, conn: Any) -> Action:
        if bytes(conn.peek(9)[4:]) == b"flood":
            conn.discard(9)
            conn.write(bytes(8 * MIB))
            return Action.NONE
        return super().on_traffic(conn)

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        self.closes.append((conn.context, err))
        return Action.NONE

    def on_open(self, conn: Any) -> tuple[None, Action]:
        conn.context = len(self.closes)
        return None, Action.NONE


def test_on_shutdown_each_connection_is_closed_as_soon_as_its_output_is_flushed() -> (
    None
):
    handler = Stuck()
    with serving(handler, "tcp://127.0.0.1:0", drain_timeout=3.0) as engine:
        url = engine.urls[0]
        stuck = small_receiver(url)
        with stuck, connect(url) as quick:
            stuck.sendall(frame(b"flood"))
            quick.sendall(frame(b"hi"))
            assert recv_frame(quick) == b"hi"
            engine.stop()
            # quick has nothing left to send: it gets its EOF while the stuck
            # connection is still draining (it can drain for drain_timeout).
            assert is_closed_by_peer(quick, timeout=2.5)
            still_open = engine.count_connections()
            assert still_open == 1, still_open
            assert wait_for(lambda: len(handler.closes) == 2, timeout=10)
    errors = [err for _, err in handler.closes]
    assert errors[0] is None and isinstance(errors[1], TimeoutError), errors


# ----------------------------------------------------------------- defaults
def test_the_defaults_are_safe_for_a_server_exposed_to_the_internet() -> None:
    options = Options()
    assert options.idle_timeout == 300.0
    assert options.read_timeout == 30.0
    assert options.max_buffered_per_conn == 1 * MIB
    assert options.max_buffered_total == 256 * MIB
    assert options.max_frames_per_callback == 64
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = options.connection_limit()
    assert 0 < limit < soft  # room is left for listeners, logs and dials


def test_default_per_connection_cap_on_unfinished_frames() -> None:
    class Greedy(EventHandler):
        """Never consumes anything: every byte stays buffered."""

        def __init__(self) -> None:
            self.closes: list[BaseException | None] = []

        def on_close(self, conn: Any, err: BaseException | None) -> None:
            self.closes.append(err)

    handler = Greedy()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            try:
                sock.sendall(bytes(2 * MIB))
            except (ConnectionResetError, BrokenPipeError):
                pass
            assert is_closed_by_peer(sock, timeout=5)
    assert isinstance(handler.closes[0], FrameTooLarge), handler.closes


def test_a_handler_declaring_max_frame_may_buffer_that_much() -> None:
    handler = LengthPrefixedEcho(max_frame=4 * MIB)
    handler.max_frame = 4 * MIB  # the runtime lets a connection buffer this much
    payload = bytes(range(256)) * (3 * MIB // 256)
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(frame(payload))
            assert recv_frame(sock) == payload


class Holds(LengthPrefixedEcho):
    def __init__(self) -> None:
        super().__init__()
        self.closes: list[BaseException | None] = []

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        self.closes.append(err)
        return Action.NONE


def test_a_loop_wide_budget_bounds_memory_held_by_unfinished_frames() -> None:
    handler = Holds()
    options = dict(max_buffered_per_conn=1 * MIB, max_buffered_total=3 * MIB)
    with serving(handler, "tcp://127.0.0.1:0", **options) as engine:
        socks = [connect(engine.urls[0]) for _ in range(6)]
        try:
            for sock in socks:
                # 700 KiB of a 900 KiB frame: each connection holds ~900 KiB.
                header = struct.pack(">I", 900 * KIB)
                try:
                    sock.sendall(header + bytes(700 * KIB))
                except (ConnectionResetError, BrokenPipeError):
                    pass
                time.sleep(0.05)
            assert wait_for(lambda: len(handler.closes) >= 3)
            assert engine.stats().inbound_held <= 3 * MIB
        finally:
            for sock in socks:
                sock.close()
    budget_errors = [e for e in handler.closes if isinstance(e, BufferBudgetExceeded)]
    assert len(budget_errors) >= 3, handler.closes


def test_unfinished_frames_pin_little_more_than_their_size() -> None:
    pool = BufferPool()
    for size in range(4 * KIB, 4 * MIB, 7919):
        assert pool.class_for(size) <= size * 1.25 + 4 * KIB, size


def test_a_frame_announced_with_peek_is_held_in_a_buffer_close_to_its_size() -> None:
    handler = LengthPrefixedEcho()  # peek(frame size) when a frame is unfinished
    handler.max_frame = 4 * MIB
    size = MIB + 1
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(struct.pack(">I", size) + bytes(size // 2))
            assert wait_for(lambda: engine.stats().inbound_held > 0)
            time.sleep(0.1)
            held = engine.stats().inbound_held
            assert held <= 1.25 * (size + 4), held
            sock.sendall(bytes(size - size // 2))
            assert len(recv_frame(sock)) == size
            assert wait_for(lambda: engine.stats().inbound_held == 0)


class Counting(Holds):
    """Echo recording which connections reached on_traffic and how many bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.received: dict[Any, int] = {}

    def on_traffic(self, conn: Any) -> Action:
        self.received[conn] = conn.inbound_buffered()
        return super().on_traffic(conn)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def test_announcing_a_huge_frame_pins_memory_in_proportion_to_the_bytes_sent() -> None:
    # Slowloris with amplification: each peer announces a max_frame (16 MiB)
    # frame and sends a few bytes of it. Sizing buffers by the announcement
    # pinned 16 MiB per peer (the loop's 256 MiB budget was spent by the 16th,
    # closing the rest); buffers must grow with what was received.
    handler = Counting()
    handler.max_frame = 16 * MIB
    peers = 48
    rss_before = rss_bytes()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        socks = [connect(engine.urls[0]) for _ in range(peers)]
        try:
            for sock in socks:
                sock.sendall(struct.pack(">I", 16 * MIB - 4) + b"hello")
            assert wait_for(
                lambda: len(handler.received) == peers or bool(handler.closes)
            )
            assert handler.closes == []
            held = engine.stats().inbound_held
            assert held <= peers * 4 * KIB, held  # one small pool class each
            assert rss_bytes() - rss_before < 32 * MIB
            # More of each frame arrives: the buffers grow with it, within
            # a small factor of the bytes received (doubling, pool classes).
            chunk = bytes(300 * KIB)
            for sock in socks:
                sock.sendall(chunk)
            received = 4 + 5 + len(chunk)
            assert wait_for(
                lambda: all(n == received for n in handler.received.values())
            ), sorted(set(handler.received.values()))
            held = engine.stats().inbound_held
            assert held <= peers * (2.5 * received + 4 * KIB), held
            assert handler.closes == []
        finally:
            for sock in socks:
                sock.close()


# ----------------------------------------------------------------- fairness
class Budgeted(EventHandler):
    """Echoes at most 4 bytes per call, then yields; records who ran when."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.echoed = 0
        self.order: list[tuple[str, int]] = []

    def on_traffic(self, conn: Any) -> Action | None:
        data = conn.next(4)
        conn.write(data)
        self.order.append((conn.context, len(data)))
        self.echoed += len(data)
        if self.echoed >= self.expected:
            self.loop.request_stop()
        return Action.YIELD if conn.inbound_buffered() else None


def test_a_yielding_connection_lets_the_others_run_before_its_next_turn() -> None:
    from protogen.runtime.eventloop import EventLoop

    handler = Budgeted(expected=13)
    loop = EventLoop(handler, Options(install_signal_handlers=False))
    handler.loop = loop
    clients = []
    for name, request in (("hog", b"x" * 12), ("bystander", b"b")):
        server_end, client_end = socket.socketpair()
        client_end.settimeout(10)
        client_end.sendall(request)  # both readable in the loop's first poll
        clients.append(client_end)
        loop.enroll(server_end, (name, 0), context=name)
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        assert recv_exact(clients[0], 12) == b"x" * 12  # no new bytes were needed
        assert recv_exact(clients[1], 1) == b"b"
    finally:
        thread.join(10)
        loop.close()
        for client in clients:
            client.close()
    hog_turns = [i for i, (who, _) in enumerate(handler.order) if who == "hog"]
    bystander = handler.order.index(("bystander", 1))
    assert [n for who, n in handler.order if who == "hog"] == [4, 4, 4]
    assert bystander < hog_turns[1], handler.order  # served between the hog's turns


class Nibbler(EventHandler):
    """Echoes 256 bytes per call and yields while bytes remain (a generated
    handler's frame budget, in miniature); records the most it had buffered."""

    def __init__(self) -> None:
        self.peak = 0
        self.closes: list[BaseException | None] = []

    def on_traffic(self, conn: Any) -> Action | None:
        self.peak = max(self.peak, conn.inbound_buffered())
        conn.write(conn.next(256))
        return Action.YIELD if conn.inbound_buffered() else None

    def on_close(self, conn: Any, err: BaseException | None) -> None:
        self.closes.append(err)


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_a_pipelining_peer_is_read_only_once_its_owed_frames_are_handled(
    edge: bool,
) -> None:
    # Reading a connection whose yielded frames still wait piled its requests
    # up in its buffer (to max_buffered_per_conn: 16 MiB for echo, copied at
    # each doubling) instead of leaving them to TCP's window.
    from protogen.runtime.inbound import SHARED_READ_SIZE

    handler = Nibbler()
    data = bytes(range(256)) * (1 * MIB // 256)
    options = dict(max_buffered_per_conn=512 * KIB, edge_triggered=edge)
    with serving(handler, "tcp://127.0.0.1:0", **options) as engine:
        with connect(engine.urls[0]) as sock:
            echoed: list[bytes] = []
            reader = threading.Thread(
                target=lambda: echoed.append(recv_exact(sock, len(data))),
                daemon=True,
            )
            reader.start()
            sock.sendall(data)
            reader.join(30)
            assert echoed == [data]
    assert handler.peak <= SHARED_READ_SIZE, handler.peak
    assert handler.closes == [None]
