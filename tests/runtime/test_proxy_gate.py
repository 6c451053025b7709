"""proxy_protocol=True on a running engine: the handler sees the announced
client from on_open on, never a header byte; bad, late or unauthorised
headers close only their own connection."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest

from core_harness import TIMEOUT, connect, frame, recv_exact, serving
from protogen.runtime import Conn
from protogen.runtime.proxy import V2_SIGNATURE
from runtime_echo import LengthPrefixedEcho


class RecordingEcho(LengthPrefixedEcho):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[Any, Any]] = []
        self.closed: list[BaseException | None] = []

    def on_open(self, conn: Conn) -> Any:
        self.opened.append((conn.remote_addr, conn.proxy))
        return None

    def on_close(self, conn: Conn, err: BaseException | None) -> Any:
        self.closed.append(err)
        return None


V1 = b"PROXY TCP4 198.51.100.9 10.1.2.3 40000 9000\r\n"


def v2_inet(authority: bytes = b"svc.example") -> bytes:
    tlv = struct.pack("!BH", 0x02, len(authority)) + authority
    body = (
        socket.inet_pton(socket.AF_INET, "198.51.100.10")
        + socket.inet_pton(socket.AF_INET, "10.1.2.3")
        + struct.pack("!HH", 40001, 9000)
        + tlv
    )
    return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(body)) + body


def wait_for(predicate: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def assert_closed_by_server(sock: socket.socket) -> None:
    try:
        assert sock.recv(1024) == b""
    except ConnectionResetError:
        pass


@pytest.mark.parametrize("header", [V1, v2_inet()], ids=["v1", "v2"])
def test_header_and_payload_in_one_segment(header: bytes) -> None:
    handler = RecordingEcho()
    with serving(handler, "tcp://127.0.0.1:0", proxy_protocol=True) as engine:
        with connect(engine.urls[0]) as sock:
            payload = frame(b"hello") + frame(b"x" * 70_000)
            sock.sendall(header + payload)  # header and frames together
            assert recv_exact(sock, len(payload)) == payload
    remote, proxy = handler.opened[0]
    assert proxy is not None and proxy.length == len(header)
    assert remote == proxy.source
    assert remote[0] in ("198.51.100.9", "198.51.100.10")
    if proxy.version == 2:
        assert proxy.authority == "svc.example"


def test_header_trickled_byte_by_byte() -> None:
    handler = RecordingEcho()
    with serving(handler, "tcp://127.0.0.1:0", proxy_protocol=True) as engine:
        with connect(engine.urls[0]) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(V1)):
                sock.send(V1[i : i + 1])
                time.sleep(0.002)
            sock.sendall(frame(b"after"))
            assert recv_exact(sock, 9) == frame(b"after")
    assert handler.opened[0][0] == ("198.51.100.9", 40000)


def test_a_connection_without_a_header_is_closed_and_others_go_on() -> None:
    handler = RecordingEcho()
    with serving(handler, "tcp://127.0.0.1:0", proxy_protocol=True) as engine:
        with connect(engine.urls[0]) as good, connect(engine.urls[0]) as bad:
            good.sendall(V1)
            bad.sendall(frame(b"no header"))
            assert_closed_by_server(bad)
            good.sendall(frame(b"still"))
            assert recv_exact(good, 9) == frame(b"still")
        assert engine.proxy_gate.refused == 1
    assert len(handler.opened) == 1  # the handler never saw the bad one


def test_oversized_v1_line_is_closed() -> None:
    handler = RecordingEcho()
    with serving(handler, "tcp://127.0.0.1:0", proxy_protocol=True) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(b"PROXY UNKNOWN " + b"a" * 300 + b"\r\n")
            assert_closed_by_server(sock)
    assert handler.opened == []


def test_header_timeout_closes_a_silent_connection() -> None:
    handler = RecordingEcho()
    with serving(
        handler, "tcp://127.0.0.1:0", proxy_protocol=True, proxy_header_timeout=0.2
    ) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(V1[:10])  # part of a header, then nothing
            assert_closed_by_server(sock)
        assert engine.proxy_gate.pending() == 0
    assert handler.opened == []


def test_proxy_from_refuses_other_sources() -> None:
    handler = RecordingEcho()
    with serving(
        handler,
        "tcp://127.0.0.1:0",
        proxy_protocol=True,
        proxy_from=("192.0.2.0/24",),  # loopback is not in it
    ) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(V1 + frame(b"x"))
            assert_closed_by_server(sock)
    assert handler.opened == []
    with serving(
        handler,
        "tcp://127.0.0.1:0",
        proxy_protocol=True,
        proxy_from=("192.0.2.0/24", "127.0.0.0/8"),
    ) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(V1 + frame(b"x"))
            assert recv_exact(sock, 5) == frame(b"x")
    assert handler.opened[0][0] == ("198.51.100.9", 40000)


def test_v2_local_keeps_the_peer_address() -> None:
    handler = RecordingEcho()
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"  # LOCAL: a health check
    with serving(handler, "tcp://127.0.0.1:0", proxy_protocol=True) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(local + frame(b"ok"))
            assert recv_exact(sock, 6) == frame(b"ok")
            mine = sock.getsockname()
    remote, proxy = handler.opened[0]
    assert proxy.command == "LOCAL" and remote == mine


def test_without_the_option_conn_proxy_is_none() -> None:
    handler = RecordingEcho()
    with serving(handler, "tcp://127.0.0.1:0") as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(frame(b"x"))
            recv_exact(sock, 5)
    assert handler.opened[0][1] is None


def test_unix_listener_with_proxy_header(tmp_path: Any) -> None:
    handler = RecordingEcho()
    url = f"unix://{tmp_path}/p.sock"
    with serving(handler, url, proxy_protocol=True, proxy_from=("10.0.0.0/8",)):
        with connect(url) as sock:  # unix peers are not subject to proxy_from
            sock.sendall(V1 + frame(b"u"))
            assert recv_exact(sock, 5) == frame(b"u")
    assert handler.opened[0][0] == ("198.51.100.9", 40000)


def test_refused_headers_are_counted_in_metrics() -> None:
    handler = RecordingEcho()
    with serving(
        handler,
        "tcp://127.0.0.1:0",
        proxy_protocol=True,
        metrics="tcp://127.0.0.1:0",
        proxy_header_timeout=0.2,
    ) as engine:
        with connect(engine.urls[0]) as bad:
            bad.sendall(b"HELLO\r\n")
            assert_closed_by_server(bad)
        with connect(engine.urls[0]) as late:
            assert_closed_by_server(late)  # says nothing: the header times out
        wait_for(lambda: sum(engine.metrics.errors.values()) == 2)
        assert engine.metrics.errors == {
            "ProxyHeaderError": 1,
            "ProxyHeaderTimeout": 1,
        }
