"""Issue-6 hooks in the core: errors close one conn, backpressure, limits, timeouts."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from core_harness import (
    connect,
    frame,
    recv_frame,
    serving,
    wait_for,
    is_closed_by_peer,
)
from protogen.errors import FrameTooLarge, InvalidValue
from protogen.runtime import (
    Action,
    EventHandler,
    IdleTimeout,
    OutboundOverflow,
    ReadTimeout,
)
from runtime_echo import LengthPrefixedEcho


class Tracking(LengthPrefixedEcho):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.closes: list = []

    def on_close(self, conn, err):
        self.closes.append((conn.remote_addr, err))
        return Action.NONE


class Poisonable(Tracking):
    """Echo, except that a frame starting with b"boom"/b"bad" raises."""

    def on_traffic(self, conn):
        data = bytes(conn.peek(8))
        if data[4:8] == b"boom":
            raise RuntimeError("handler bug")
        if data[4:7] == b"bad":
            raise InvalidValue("magic", data[4:7], "b'ok!'")
        return super().on_traffic(conn)


def test_handler_exception_is_logged_and_closes_only_that_conn(caplog) -> None:
    handler = Poisonable()
    with caplog.at_level(logging.ERROR, logger="protogen.runtime"):
        with serving(handler, "tcp://127.0.0.1:0") as engine:
            with connect(engine.urls[0]) as good, connect(engine.urls[0]) as bad:
                good.sendall(frame(b"first"))
                assert recv_frame(good) == b"first"
                bad.sendall(frame(b"boom!"))
                assert is_closed_by_peer(bad)
                good.sendall(frame(b"still served"))
                assert recv_frame(good) == b"still served"
                assert wait_for(lambda: handler.closes)
                assert engine.count_connections() == 1
    assert isinstance(handler.closes[0][1], RuntimeError)
    assert "handler bug" in caplog.text and "Traceback" in caplog.text


class WritesThenRaises(Tracking):
    """Answers, then fails: what it wrote before failing must still be sent."""

    def on_traffic(self, conn):
        conn.write(frame(b"last words"))
        conn.discard()
        raise RuntimeError("after writing")


def test_a_write_made_before_the_handler_raised_is_flushed_before_close() -> None:
    # The first write of a conn's own on_traffic skips the dirty list; the
    # error path must still send it before the close.
    handler = WritesThenRaises()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(frame(b"hello"))
            assert recv_frame(sock) == b"last words"
            assert is_closed_by_peer(sock)
    assert isinstance(handler.closes[0][1], RuntimeError)


def test_protocol_error_reaches_on_close_and_spares_others() -> None:
    handler = Poisonable()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as good, connect(engine.urls[0]) as bad:
            bad.sendall(frame(b"bad frame"))
            assert is_closed_by_peer(bad)
            good.sendall(frame(b"ok"))
            assert recv_frame(good) == b"ok"
            assert wait_for(lambda: handler.closes)
    assert isinstance(handler.closes[0][1], InvalidValue)


class Hinting(EventHandler):
    """Echo declaring no max_frame: only the runtime's cap limits its frames,
    which it announces with peek(size)."""

    def __init__(self) -> None:
        self.closes: list = []

    def on_traffic(self, conn):
        data = conn.peek()
        while len(data) >= 4:
            size = 4 + int.from_bytes(data[:4], "big")
            if len(data) < size:
                conn.peek(size)
                break
            conn.write(conn.next(size))
            data = conn.peek()

    def on_close(self, conn, err):
        self.closes.append((conn.remote_addr, err))


def test_oversize_frame_rejected_before_it_is_buffered() -> None:
    handler = Hinting()
    cap = 64 * 1024
    with serving(handler, "tcp://127.0.0.1:0", max_buffered_per_conn=cap) as engine:
        with connect(engine.urls[0]) as bad, connect(engine.urls[0]) as good:
            bad.sendall(
                frame(b"x" * 100)[:4] + b"\x00" * 10
            )  # header only: asks for 100
            bad.sendall(b"\x00\x10\x00\x00")  # garbage after: ignored
            good.sendall(frame(b"a" * 1000))
            assert recv_frame(good) == b"a" * 1000
            # A frame announcing 1 MiB > max_buffered_per_conn: closed after the header.
            with connect(engine.urls[0]) as huge:
                huge.sendall(b"\x00\x10\x00\x00" + b"y" * 10)
                assert is_closed_by_peer(huge)
            assert wait_for(
                lambda: any(isinstance(e, FrameTooLarge) for _, e in handler.closes)
            )
    err = next(e for _, e in handler.closes if isinstance(e, FrameTooLarge))
    assert err.size == 4 + 0x100000 and err.limit == 64 * 1024


class Flooder(EventHandler):
    """Every byte received triggers a 256 KiB answer: a peer that never reads
    drives the connection above the high water mark."""

    def __init__(self) -> None:
        self.pauses: list = []
        self.conns: list = []
        self.reads = 0

    def on_open(self, conn):
        self.conns.append(conn)
        return None, Action.NONE

    def on_traffic(self, conn):
        self.reads += conn.discard()
        conn.write(b"F" * 262144)
        return Action.NONE

    def on_write_pause(self, conn, paused):
        self.pauses.append((paused, conn.is_write_paused(), conn.outbound_buffered()))


@pytest.mark.parametrize("edge", [False, True], ids=["level", "edge"])
def test_backpressure_pauses_reading_until_drained(edge: bool) -> None:
    handler = Flooder()
    options = dict(
        write_high_water=1 << 20,
        write_low_water=256 * 1024,
        socket_send_buffer=65536,
        edge_triggered=edge,
    )
    with serving(handler, "tcp://127.0.0.1:0", **options) as engine:
        with connect(engine.urls[0]) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.setblocking(False)
            sent = 0
            deadline = time.monotonic() + 10
            while not handler.pauses and time.monotonic() < deadline:
                try:
                    sent += sock.send(b"r")
                except BlockingIOError:
                    pass
                time.sleep(0.002)
            assert handler.pauses and handler.pauses[0][:2] == (True, True)
            assert handler.pauses[0][2] > 1 << 20
            # While paused the server reads nothing more.
            time.sleep(0.1)
            reads_when_paused = handler.reads
            for _ in range(50):
                sock.send(b"r")
            time.sleep(0.3)
            assert handler.reads == reads_when_paused
            assert handler.conns[0].is_write_paused()
            # Drain: reading resumes and the backlog of requests is served.
            sock.setblocking(True)
            sock.settimeout(10)
            received = 0
            while not (
                len(handler.pauses) >= 2 and handler.reads >= reads_when_paused + 50
            ):
                received += len(sock.recv(1 << 20))
    assert handler.pauses[1][:2] == (False, False)
    assert handler.pauses[1][2] <= 256 * 1024


def test_write_buffer_cap_closes_with_outbound_overflow() -> None:
    handler = Flooder()
    closes: list = []
    handler.on_close = lambda conn, err: closes.append(err)  # type: ignore[method-assign]
    options = dict(
        write_high_water=1 << 20,
        write_low_water=1 << 19,
        write_buffer_cap=2 << 20,
        socket_send_buffer=65536,
    )
    with serving(handler, "tcp://127.0.0.1:0", **options) as engine:
        with connect(engine.urls[0]) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            assert wait_for(lambda: handler.conns)
            conn = handler.conns[0]
            for _ in range(40):  # async writes bypass read pausing: the cap stops them
                conn.async_write(b"A" * (1 << 20))
            assert wait_for(lambda: closes)
    assert isinstance(closes[0], OutboundOverflow)


def test_idle_timeout_closes_only_idle_conns() -> None:
    handler = Tracking()
    with serving(handler, "tcp://127.0.0.1:0", idle_timeout=0.4) as engine:
        with connect(engine.urls[0]) as idle, connect(engine.urls[0]) as busy:
            start = time.monotonic()
            while time.monotonic() - start < 1.2:
                busy.sendall(frame(b"tick"))
                assert recv_frame(busy) == b"tick"
                time.sleep(0.05)
            assert is_closed_by_peer(idle, timeout=0.1)
            elapsed = time.monotonic() - start
            busy.sendall(frame(b"alive"))
            assert recv_frame(busy) == b"alive"
    idle_errors = [e for _, e in handler.closes if isinstance(e, IdleTimeout)]
    assert len(idle_errors) == 1
    assert elapsed >= 0.4


def test_read_timeout_closes_half_sent_frames_only() -> None:
    handler = Tracking()
    with serving(handler, "tcp://127.0.0.1:0", read_timeout=0.3) as engine:
        with (
            connect(engine.urls[0]) as slow,
            connect(engine.urls[0]) as quiet,
            connect(engine.urls[0]) as good,
        ):
            start = time.monotonic()
            slow.sendall(frame(b"x" * 100)[:50])  # half a frame, then a trickle
            for _ in range(4):
                time.sleep(0.1)
                try:
                    slow.send(b"x")
                except OSError:
                    break
            assert is_closed_by_peer(slow, timeout=3)
            closed_after = time.monotonic() - start
            good.sendall(frame(b"fine"))
            assert recv_frame(good) == b"fine"
            # quiet sent nothing: an empty buffer is not a read timeout.
            quiet.sendall(frame(b"late but whole"))
            assert recv_frame(quiet) == b"late but whole"
    errors = [e for _, e in handler.closes if isinstance(e, ReadTimeout)]
    assert len(errors) == 1
    assert 0.25 <= closed_after < 3


def test_max_connections_pauses_accepting_until_below() -> None:
    handler = Tracking()
    with serving(handler, "tcp://127.0.0.1:0", max_connections=2) as engine:
        a = connect(engine.urls[0])
        b = connect(engine.urls[0])
        assert wait_for(lambda: engine.count_connections() == 2)
        c = connect(
            engine.urls[0]
        )  # the kernel completes the handshake; we don't accept
        c.sendall(frame(b"waiting"))
        time.sleep(0.3)
        assert engine.count_connections() == 2
        a.close()
        assert recv_frame(c) == b"waiting"  # accepted once a slot freed
        assert engine.count_connections() == 2
        b.close()
        c.close()


def test_stop_during_stream_answers_every_frame_read() -> None:
    class Counting(LengthPrefixedEcho):
        def __init__(self) -> None:
            super().__init__()
            self.bytes_read = 0

        def on_traffic(self, conn):
            before = conn.inbound_buffered()
            result = super().on_traffic(conn)
            self.bytes_read += before - conn.inbound_buffered()
            return result

    handler = Counting()
    with serving(handler, "tcp://127.0.0.1:0", socket_send_buffer=32768) as engine:
        sock = connect(engine.urls[0])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        payload = frame(b"s" * 1000)
        stop_sending = threading.Event()

        def sender() -> None:
            try:
                while not stop_sending.is_set():
                    sock.sendall(payload * 20)
            except OSError:
                pass

        thread = threading.Thread(target=sender)
        thread.start()
        time.sleep(0.2)
        received = 0
        engine.stop()  # leaves the context's stop() a no-op
        try:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        except ConnectionResetError:
            pass
        stop_sending.set()
        thread.join(10)
        sock.close()
    # Every byte consumed by the handler went back before the close.
    assert received == handler.bytes_read > 0
