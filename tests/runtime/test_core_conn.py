"""Conn API: reading primitives, cross-thread writes, wake, close, socket options."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from core_harness import (
    connect,
    frame,
    recv_exact,
    recv_frame,
    serving,
    wait_for,
    is_closed_by_peer,
)
from protogen.runtime import Action, ConnectionClosed, EventHandler


class Recorder(EventHandler):
    """Keeps the server-side conns and lets the test drive them from its thread."""

    def __init__(self) -> None:
        self.conns: list = []
        self.closed: list = []
        self.opened = threading.Event()
        self.closed_event = threading.Event()

    def on_open(self, conn):
        self.conns.append(conn)
        self.opened.set()
        return None, Action.NONE

    def on_close(self, conn, err):
        self.closed.append((conn, err))
        self.closed_event.set()
        return Action.NONE


def test_peek_next_discard_read_into_semantics() -> None:
    seen: list = []

    class Reader(Recorder):
        def on_traffic(self, conn):
            if conn.inbound_buffered() < 10:
                short = conn.peek(10)
                seen.append(("short", bytes(short)))
                return Action.NONE
            seen.append(
                (
                    "all",
                    bytes(conn.peek()),
                    bytes(conn.peek(-1)),
                    conn.inbound_buffered(),
                )
            )
            seen.append(("peek3", bytes(conn.peek(3)), conn.inbound_buffered()))
            seen.append(("next2", bytes(conn.next(2)), conn.inbound_buffered()))
            seen.append(("discard", conn.discard(3), conn.inbound_buffered()))
            buf = bytearray(4)
            seen.append(
                ("read_into", conn.read_into(buf), bytes(buf), conn.inbound_buffered())
            )
            seen.append(
                (
                    "discard_rest",
                    conn.discard(100),
                    conn.inbound_buffered(),
                    bytes(conn.peek()),
                )
            )
            conn.write(b"done")
            return Action.NONE

    with serving(Reader(), "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(b"01234")
            assert wait_for(lambda: len(seen) == 1)
            sock.sendall(b"56789AB")
            assert recv_exact(sock, 4) == b"done"
    assert seen[0] == ("short", b"01234")
    assert seen[1:] == [
        ("all", b"0123456789AB", b"0123456789AB", 12),
        ("peek3", b"012", 12),
        ("next2", b"01", 10),
        ("discard", 3, 7),
        ("read_into", 4, b"5678", 3),
        ("discard_rest", 3, 0, b""),
    ]


def test_partial_frame_survives_between_reads() -> None:
    """A frame left in the buffer is kept (off the shared buffer) until completed."""
    from runtime_echo import LengthPrefixedEcho

    with serving(LengthPrefixedEcho(), "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            blob = frame(b"A" * 5000) + frame(b"B" * 10)
            sock.sendall(blob[:3000])
            # Another connection's traffic reuses the loop's shared buffer meanwhile.
            with connect(engine.urls[0]) as other:
                other.sendall(frame(b"Z" * 4000))
                assert recv_frame(other) == b"Z" * 4000
            sock.sendall(blob[3000:])
            assert recv_frame(sock) == b"A" * 5000
            assert recv_frame(sock) == b"B" * 10


def test_async_write_from_8_threads_keeps_per_thread_order() -> None:
    handler = Recorder()
    per_thread = 500
    record = struct.Struct(">II")  # thread id, sequence
    callbacks: list = []
    lock = threading.Lock()

    def done(conn, err):
        with lock:
            callbacks.append(err)

    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            assert handler.opened.wait(10)
            conn = handler.conns[0]

            def producer(tid: int) -> None:
                for seq in range(per_thread):
                    conn.async_write(
                        record.pack(tid, seq), done if seq == per_thread - 1 else None
                    )

            threads = [threading.Thread(target=producer, args=(t,)) for t in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(20)
            data = recv_exact(sock, 8 * per_thread * record.size)
            assert wait_for(lambda: len(callbacks) == 8)
    last = {}
    for tid, seq in record.iter_unpack(data):
        assert (
            seq == last.get(tid, -1) + 1
        ), f"thread {tid}: {seq} after {last.get(tid)}"
        last[tid] = seq
    assert last == {t: per_thread - 1 for t in range(8)}
    assert callbacks == [None] * 8


def test_async_writev_and_callback_after_close_reports_error() -> None:
    handler = Recorder()
    results: list = []
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            assert handler.opened.wait(10)
            conn = handler.conns[0]
            conn.async_writev(
                [b"ab", bytearray(b"cd"), memoryview(b"ef")],
                lambda c, e: results.append(e),
            )
            assert recv_exact(sock, 6) == b"abcdef"
            conn.close()
            assert handler.closed_event.wait(10)
            conn.async_write(b"late", lambda c, e: results.append(e))
            assert wait_for(lambda: len(results) == 2)
    assert results[0] is None
    assert isinstance(results[1], ConnectionClosed)


def test_wake_runs_on_traffic_on_the_loop_thread() -> None:
    calls: list = []

    class Waking(Recorder):
        def on_traffic(self, conn):
            calls.append((threading.get_ident(), conn.inbound_buffered()))
            conn.write(b"woken")
            return Action.NONE

    handler = Waking()
    woke: list = []
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            assert handler.opened.wait(10)
            handler.conns[0].wake(lambda c, e: woke.append((threading.get_ident(), e)))
            assert recv_exact(sock, 5) == b"woken"
            assert wait_for(lambda: woke)
    loop_thread = engine.loop.thread_id
    assert calls == [(loop_thread, 0)]
    assert woke == [(loop_thread, None)]


def test_close_with_pending_writes_delivers_them() -> None:
    big = bytes(range(256)) * 16384  # 4 MiB: far more than the socket buffers hold

    class WriteThenClose(Recorder):
        def on_open(self, conn):
            super().on_open(conn)
            return big, Action.CLOSE

    handler = WriteThenClose()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            assert handler.opened.wait(10)
            assert wait_for(
                lambda: handler.conns[0].outbound_buffered() > 0 or handler.closed
            )
            assert recv_exact(sock, len(big)) == big
            assert sock.recv(10) == b""  # then the orderly close
            assert handler.closed_event.wait(10)
    assert handler.closed[0][1] is None


class Greedy:
    """A transport whose kernel takes everything but `room` bytes (then EAGAIN)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.calls: list[int] = []

    def sendmsg(self, chunks) -> int:
        self.calls.append(len(chunks))
        if not self.room:
            raise BlockingIOError
        n = min(self.room, sum(len(chunk) for chunk in chunks))
        self.room -= n
        return n


def test_send_many_offers_every_slice_the_kernel_takes_whole() -> None:
    # More chunks than one sendmsg may carry (IOV_MAX): a slice taken whole is
    # no refusal, so the next one goes too; only a short count or EAGAIN
    # (after which WRITABLE does come) ends the send.
    from protogen.runtime.outbound import IOV_MAX, Outbound

    out = Outbound()
    out.chunks = [bytes(100)] * (3 * IOV_MAX + 5)
    out.size = 100 * len(out.chunks)
    greedy = Greedy(room=1 << 30)
    assert out.send_many(greedy, datagrams=False) == out.size
    assert greedy.calls == [IOV_MAX, IOV_MAX, IOV_MAX, 5]
    short = Greedy(room=100 * IOV_MAX + 50)  # the second slice is cut short
    assert out.send_many(short, datagrams=False) == 100 * IOV_MAX + 50
    assert short.calls == [IOV_MAX, IOV_MAX]
    refused = Greedy(room=100 * IOV_MAX)  # EAGAIN on the second slice
    assert out.send_many(refused, datagrams=False) == 100 * IOV_MAX
    assert refused.calls == [IOV_MAX, IOV_MAX]


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_many_small_writes_reach_a_reader_that_keeps_up(edge: bool) -> None:
    # 40 000 100-byte writes (4 MB: never joined into one chunk) to a reader
    # fast enough that the kernel takes a whole IOV_MAX slice at a time: the
    # loop used to wait for a WRITABLE edge after such a send, and an
    # edge-triggered loop waited forever (the socket never became unwritable).
    count = 40_000
    data = bytes(range(100))

    class Flood(Recorder):
        def on_open(self, conn):
            super().on_open(conn)
            for _ in range(count):
                conn.write(data)
            return None, Action.CLOSE

    handler = Flood()
    with serving(handler, "tcp://127.0.0.1:0", edge_triggered=edge) as engine:
        with connect(engine.urls[0], timeout=5.0) as sock:
            assert recv_exact(sock, count * len(data)) == data * count
            assert sock.recv(10) == b""
            assert handler.closed_event.wait(10)
    assert handler.closed[0][1] is None


def test_close_with_callback_from_another_thread() -> None:
    handler = Recorder()
    order: list = []

    class Ordered(Recorder):
        def on_close(self, conn, err):
            order.append("on_close")
            return super().on_close(conn, err)

    handler = Ordered()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            assert handler.opened.wait(10)
            handler.conns[0].close_with_callback(lambda c, e: order.append(("cb", e)))
            assert is_closed_by_peer(sock)
            assert wait_for(lambda: len(order) == 2)
    assert order == ["on_close", ("cb", None)]


def test_context_addresses_fileno_and_socket_options() -> None:
    info: dict = {}

    class Inspect(EventHandler):
        def on_open(self, conn):
            conn.context = {"greeted": True}
            conn.set_no_delay(True)
            conn.set_keep_alive(30, 5, 3)
            conn.set_read_buffer(131072)
            conn.set_write_buffer(131072)
            conn.set_linger(0)
            conn.set_linger(None)
            sock = socket.socket(fileno=socket.dup(conn.fileno()))
            info.update(
                local=conn.local_addr,
                remote=conn.remote_addr,
                nodelay=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                keepalive=sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                keepidle=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            )
            sock.close()
            return b"hi", Action.NONE

        def on_traffic(self, conn):
            info["context"] = conn.context
            conn.discard()
            conn.write(b"ok")
            return Action.NONE

    with serving(Inspect(), "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            assert recv_exact(sock, 2) == b"hi"
            sock.sendall(b"x")
            assert recv_exact(sock, 2) == b"ok"
            assert info["local"] == sock.getpeername()
            assert info["remote"] == sock.getsockname()
    assert info["nodelay"] and info["keepalive"] and info["keepidle"] == 30
    assert info["context"] == {"greeted": True}


def test_write_after_close_raises_and_bytearray_is_copied() -> None:
    outcome: list = []

    class Writer(EventHandler):
        def on_traffic(self, conn):
            scratch = bytearray(b"first")
            conn.write(scratch)
            scratch[:] = b"XXXXX"  # reusing the buffer must not change what is sent
            conn.discard()
            return Action.CLOSE

        def on_close(self, conn, err):
            try:
                conn.write(b"after")
            except ConnectionClosed as exc:
                outcome.append(exc)
            return Action.NONE

    with serving(Writer(), "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(b"go")
            assert recv_exact(sock, 5) == b"first"
            assert wait_for(lambda: outcome)
    assert isinstance(outcome[0], ConnectionClosed)


def test_own_callback_writes_count_toward_the_marks_and_the_cap() -> None:
    """Writes in the connection's own callback: below write_high_water they are
    only queued; the one crossing it pauses the connection; the one crossing
    write_buffer_cap raises OutboundOverflow, and every write after it
    ConnectionClosed (nothing of the callback's is sent)."""
    seen: list = []

    class Flood(EventHandler):
        def on_traffic(self, conn):
            conn.discard()
            for i in range(40):
                try:
                    conn.write(b"x" * 1000)
                except ConnectionClosed as exc:
                    seen.append((i, type(exc).__name__))
                    if type(exc) is ConnectionClosed:
                        break
                    continue
                seen.append((i, conn.is_write_paused(), conn.outbound_buffered()))
            return Action.NONE

    options = dict(write_high_water=4500, write_low_water=1000, write_buffer_cap=9500)
    with serving(Flood(), "tcp://127.0.0.1:0", **options) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(b"go")
            assert wait_for(lambda: len(seen) >= 11)
            assert is_closed_by_peer(sock)
    assert seen[:4] == [(i, False, 1000 * (i + 1)) for i in range(4)]
    assert seen[4:9] == [(i, True, 1000 * (i + 1)) for i in range(4, 9)]
    assert seen[9:] == [(9, "OutboundOverflow"), (10, "ConnectionClosed")]


def test_cross_thread_calls_after_shutdown_report_closed() -> None:
    handler = Recorder()
    results: list = []
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        sock = connect(engine.urls[0])
        assert handler.opened.wait(10)
    sock.close()
    conn = handler.conns[0]
    conn.async_write(b"too late", lambda c, e: results.append(e))
    conn.wake(lambda c, e: results.append(e))
    assert len(results) == 2
    assert all(isinstance(e, ConnectionClosed) for e in results)
    assert handler.closed == [(conn, None)]


def test_idle_connection_holds_no_buffer_after_a_partial_frame() -> None:
    from runtime_echo import LengthPrefixedEcho

    class Keep(LengthPrefixedEcho):
        conns: list = []

        def on_open(self, conn):
            self.conns.append(conn)
            return None, Action.NONE

    handler = Keep()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            blob = frame(b"p" * 100000)
            sock.sendall(blob[:50000])
            conn = handler.conns[0] if wait_for(lambda: handler.conns) else None
            assert wait_for(lambda: conn.inbound_buffered() == 50000)
            # One pooled buffer, sized once to the peek() hint.
            held = engine.stats().inbound_held
            assert 100004 <= held <= 1.25 * 100004
            sock.sendall(blob[50000:])
            assert recv_frame(sock) == b"p" * 100000
            # Back on the loop's shared buffer: the connection holds none.
            assert wait_for(lambda: engine.stats().inbound_held == 0)
            assert conn.inbound_buffered() == 0 and conn.outbound_buffered() == 0


def test_udp_handler_exception_keeps_the_listener_serving(caplog) -> None:
    class Picky(EventHandler):
        def on_traffic(self, conn):
            data = bytes(conn.next())
            if data == b"crash":
                raise RuntimeError("bad datagram")
            conn.write(data)
            return Action.NONE

    with serving(Picky(), "udp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.send(b"crash")
            sock.send(b"fine")
            assert sock.recv(100) == b"fine"
    assert "bad datagram" in caplog.text


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_pause_reading_holds_a_peer_until_resume_reading(edge: bool) -> None:
    # Lines: "pause" pauses the sender, "resume" (from another connection)
    # resumes it; every line handled is logged and echoed.
    log: list[str] = []

    class Throttling(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.paused: list = []

        def on_traffic(self, conn):
            data = bytes(conn.peek())
            lines = data.split(b"\n")
            conn.discard(len(data) - len(lines[-1]))
            for line in lines[:-1]:
                log.append(line.decode())
                if line == b"pause":
                    conn.pause_reading()
                    self.paused.append(conn)
                elif line == b"resume":
                    self.paused.pop().resume_reading()
                conn.write(line + b"\n")
            return Action.NONE

    with serving(Throttling(), "tcp://127.0.0.1:0", edge_triggered=edge) as engine:
        with connect(engine.urls[0]) as publisher, connect(engine.urls[0]) as other:
            publisher.sendall(b"pause\n")
            assert recv_exact(publisher, 6) == b"pause\n"
            publisher.sendall(b"data\n")
            # Not read while paused: the other connection's line is handled first.
            threading.Event().wait(0.3)
            other.sendall(b"resume\n")
            assert recv_exact(other, 7) == b"resume\n"
            assert recv_exact(publisher, 5) == b"data\n"
    assert log == ["pause", "resume", "data"]


def test_connections_from_one_host_share_its_address_string() -> None:
    # An idle connection's memory budget (600 B) has no room for a private copy
    # of the peer's host string per connection.
    hosts: list[str] = []

    class Record(EventHandler):
        def on_open(self, conn):
            hosts.append(conn.remote_addr[0])
            return b"k", Action.NONE

    with serving(Record(), "tcp://127.0.0.1:0") as engine:
        socks = [connect(engine.urls[0]) for _ in range(3)]
        try:
            for sock in socks:
                assert recv_exact(sock, 1) == b"k"
        finally:
            for sock in socks:
                sock.close()
    assert hosts == ["127.0.0.1"] * 3
    assert hosts[0] is hosts[1] is hosts[2]
