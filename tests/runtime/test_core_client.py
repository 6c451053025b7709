"""Client: non-blocking dial (TCP, unix, UDP), failures via on_close, enroll."""

from __future__ import annotations

import socket
import threading

from core_harness import frame, serving, wait_for
from protogen.runtime import Action, Client, EventHandler
from protogen.runtime.conn import CONNECTING
from runtime_echo import LengthPrefixedEcho


class Collect(EventHandler):
    def __init__(self) -> None:
        self.opened: list = []
        self.closed: list = []
        self.data = bytearray()
        self.threads: set = set()
        self.got = threading.Event()

    def on_open(self, conn):
        self.opened.append(conn)
        self.threads.add(threading.get_ident())
        return frame(b"hello from " + str(conn.context).encode()), Action.NONE

    def on_traffic(self, conn):
        self.data += conn.next()
        self.got.set()
        return Action.NONE

    def on_close(self, conn, err):
        self.closed.append((conn, err))
        return Action.NONE


def test_dial_tcp_and_unix_roundtrip(tmp_path) -> None:
    for url in ("tcp://127.0.0.1:0", f"unix://{tmp_path}/c.sock"):
        with serving(LengthPrefixedEcho(), url) as engine:
            handler = Collect()
            with Client(handler) as client:
                conn = client.dial(engine.urls[0], context="ctx")
                assert wait_for(lambda: bytes(handler.data) == frame(b"hello from ctx"))
                assert handler.opened == [conn] and conn.context == "ctx"
                assert handler.threads == {client.loop.thread_id}
            # stopping the client closes its connections
            assert handler.closed == [(conn, None)]


def test_dial_closed_port_reports_error_through_on_close() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    handler = Collect()
    with Client(handler) as client:
        conn = client.dial(f"tcp://127.0.0.1:{port}")
        assert wait_for(lambda: handler.closed)
    assert handler.opened == []
    closed_conn, err = handler.closed[0]
    assert closed_conn is conn
    assert isinstance(err, ConnectionRefusedError) or (
        isinstance(err, OSError) and err.errno == 111
    )


def test_dial_does_not_block_the_loop() -> None:
    """A dial whose handshake cannot complete stays pending while others are served."""
    # A listener whose accept queue is full drops SYNs: connects to it hang.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(stuck.getsockname())
            fillers.append(filler)
        with serving(LengthPrefixedEcho(), "tcp://127.0.0.1:0") as engine:
            handler = Collect()
            with Client(handler) as client:
                pending = client.dial(
                    "tcp://127.0.0.1:%d" % stuck.getsockname()[1], context="stuck"
                )
                client.dial(engine.urls[0], context="fast")
                assert wait_for(
                    lambda: frame(b"hello from fast") in bytes(handler.data), timeout=10
                )
                assert pending.state == CONNECTING or pending in handler.opened
    finally:
        for filler in fillers:
            filler.close()
        stuck.close()


def test_udp_dial() -> None:
    class UDPEcho(EventHandler):
        def on_traffic(self, conn):
            conn.write(conn.next())
            return Action.NONE

    with serving(UDPEcho(), "udp://127.0.0.1:0") as engine:
        handler = Collect()
        with Client(handler) as client:
            client.dial(engine.urls[0], context="udp")
            assert wait_for(lambda: bytes(handler.data) == frame(b"hello from udp"))


def test_enroll_existing_socket() -> None:
    with serving(LengthPrefixedEcho(), "tcp://127.0.0.1:0") as engine:
        host, port = engine.bound_addresses[0]
        sock = socket.create_connection((host, port), timeout=10)
        handler = Collect()
        with Client(handler) as client:
            conn = client.enroll(sock, context="enrolled")
            assert wait_for(
                lambda: bytes(handler.data) == frame(b"hello from enrolled")
            )
            assert conn.fileno() == sock.fileno()
