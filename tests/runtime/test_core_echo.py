"""Echo through the runtime over every transport, with awkward framing."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from core_harness import (
    connect,
    frame,
    has_ipv6,
    recv_exact,
    recv_frame,
    serving,
    wait_for,
)
from protogen.runtime import Action, EventHandler
from runtime_echo import LengthPrefixedEcho


def roundtrip(url: str, payloads: list[bytes]) -> None:
    with connect(url) as sock:
        sock.sendall(b"".join(frame(p) for p in payloads))
        for payload in payloads:
            assert recv_frame(sock) == payload


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:0",
        "tcp4://127.0.0.1:0",
        pytest.param(
            "tcp6://[::1]:0", marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6")
        ),
        pytest.param(
            "tcp://[::1]:0", marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6")
        ),
    ],
)
def test_tcp_echo(url: str) -> None:
    with serving(LengthPrefixedEcho(), url) as engine:
        roundtrip(engine.urls[0], [b"hello", b"", b"x" * 1000])
        total = 4 + 5 + 4 + 4 + 1000
        # The counter is bumped right after send() returns: the peer may be faster.
        assert wait_for(lambda: engine.stats().bytes_out == total)
        stats = engine.stats()
    assert stats.connections_opened == 1
    assert stats.bytes_in == total


def test_unix_echo_and_socket_file_removed(tmp_path) -> None:
    path = tmp_path / "echo.sock"
    with serving(LengthPrefixedEcho(), f"unix://{path}") as engine:
        assert path.exists()
        roundtrip(engine.urls[0], [b"over unix", b"y" * 70000])
    assert not path.exists()


class UDPEcho(EventHandler):
    def on_traffic(self, conn) -> Action:
        conn.write(conn.next())  # answer the sender with the whole datagram
        return Action.NONE


@pytest.mark.parametrize(
    "url",
    [
        "udp://127.0.0.1:0",
        pytest.param(
            "udp6://[::1]:0", marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6")
        ),
    ],
)
def test_udp_echo(url: str) -> None:
    with serving(UDPEcho(), url) as engine:
        with connect(engine.urls[0]) as sock:
            for payload in (b"ping", b"z" * 1200, os.urandom(60000)):
                sock.send(payload)
                assert sock.recv(65536) == payload


class SendTo(EventHandler):
    """UDP: reply to an address named inside the datagram with send_to."""

    def on_traffic(self, conn) -> Action:
        port = int(bytes(conn.next()))
        conn.send_to(b"via send_to", ("127.0.0.1", port))
        return Action.NONE


def test_udp_send_to() -> None:
    with serving(SendTo(), "udp://127.0.0.1:0") as engine:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener,
            connect(engine.urls[0]) as sock,
        ):
            listener.bind(("127.0.0.1", 0))
            listener.settimeout(10)
            sock.send(str(listener.getsockname()[1]).encode())
            assert listener.recv(100) == b"via send_to"


def test_several_listeners_in_one_engine(tmp_path) -> None:
    urls = ["tcp://127.0.0.1:0", f"unix://{tmp_path}/a.sock", "tcp://127.0.0.1:0"]
    with serving(LengthPrefixedEcho(), *urls) as engine:
        assert len(engine.urls) == 3
        for url in engine.urls:
            roundtrip(url, [url.encode()])
        assert engine.stats().connections_opened == 3


def test_8_mib_payloads_both_ways_overflow_socket_buffers() -> None:
    big = [os.urandom(8 * 1024 * 1024), os.urandom(8 * 1024 * 1024 + 13)]
    with serving(
        LengthPrefixedEcho(),
        "tcp://127.0.0.1:0",
        socket_send_buffer=65536,
        socket_recv_buffer=65536,
    ) as engine:
        with connect(engine.urls[0]) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            # Send from a thread: the server answers while we are still sending.
            sender = threading.Thread(
                target=sock.sendall, args=(b"".join(frame(p) for p in big),)
            )
            sender.start()
            for payload in big:
                assert recv_frame(sock) == payload
            sender.join(20)


def test_many_frames_per_read() -> None:
    payloads = [os.urandom(i % 50) for i in range(5000)]
    with serving(LengthPrefixedEcho(), "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            blob = b"".join(frame(p) for p in payloads)
            sock.sendall(blob)
            assert recv_exact(sock, len(blob)) == blob


def test_frames_split_byte_by_byte() -> None:
    payloads = [b"split", b"", b"q" * 300]
    blob = b"".join(frame(p) for p in payloads)
    with serving(LengthPrefixedEcho(), "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(blob)):
                sock.send(blob[i : i + 1])
            assert recv_exact(sock, len(blob)) == blob


@pytest.mark.parametrize("poller", ["epoll", "selectors"])
@pytest.mark.parametrize("edge", [False, True])
def test_echo_on_each_poller_and_trigger_mode(poller: str, edge: bool) -> None:
    from protogen.runtime.poller import available_pollers

    if poller not in available_pollers():
        pytest.skip(f"{poller} not available")
    if edge and poller == "selectors":
        pytest.skip("selectors is level-triggered only")
    payloads = [os.urandom(n) for n in (1, 100, 70000, 300000)]
    with serving(
        LengthPrefixedEcho(), "tcp://127.0.0.1:0", poller=poller, edge_triggered=edge
    ) as engine:
        roundtrip(engine.urls[0], payloads)


class HeldFirstOpen(LengthPrefixedEcho):
    """Blocks the loop in the first on_open until released: connections queue up."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.held = threading.Event()

    def on_open(self, conn):
        if not self.held.is_set():
            self.held.set()
            self.release.wait(10)
        return None, Action.NONE


@pytest.mark.parametrize("edge", [None, False, True])
def test_a_burst_of_connections_beyond_one_accept_batch_is_served(edge) -> None:
    # Each readiness event accepts at most ACCEPT_BATCH: with edge-triggered
    # connections the listener must still be re-reported until its backlog is empty.
    from protogen.runtime.acceptor import ACCEPT_BATCH

    count = 3 * ACCEPT_BATCH + 5
    handler = HeldFirstOpen()
    with serving(handler, "tcp://127.0.0.1:0", edge_triggered=edge) as engine:
        url = engine.urls[0]
        socks = [connect(url)]
        try:
            assert handler.held.wait(5)
            socks += [connect(url) for _ in range(count - 1)]  # all in the backlog
            handler.release.set()
            for i, sock in enumerate(socks):
                sock.sendall(frame(b"burst %d" % i))
            for i, sock in enumerate(socks):
                assert recv_frame(sock) == b"burst %d" % i
            assert wait_for(lambda: engine.stats().connections_opened == count)
        finally:
            handler.release.set()
            for sock in socks:
                sock.close()
