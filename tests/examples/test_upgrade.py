"""HTTP/1.1 until `GET /ws`, then the WebSocket example's generated handler takes
the connection over: the upgrade example (examples/upgrade/, a minimal one) and
the HTTP example's `/ws` route (examples/http/), each test run against both.
Driven by the `websockets` package as the client (and curl-like raw requests)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from served_example import ExampleServer, recv_until_closed

websockets_client = pytest.importorskip("websockets.sync.client")

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 section 1.3 example
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


# A plain request each example answers, and how its answer ends.
PLAIN = {
    "upgrade": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"at /ws\n"),
    "http": (b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n", b"Hello, World!"),
}


@pytest.fixture(scope="module", params=sorted(PLAIN))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleServer]:
    served = ExampleServer(request.param, tmp_path_factory.mktemp("cache"))
    served.example = request.param  # type: ignore[attr-defined]
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


def client(server: ExampleServer):  # type: ignore[no-untyped-def]
    return websockets_client.connect(
        f"ws://127.0.0.1:{server.port}/ws",
        compression=None,
        max_size=None,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
    )


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    key = b"\x01\x02\x03\x04"
    data = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 * fin | opcode, 0x80 | len(payload))) + key + data


def read_until(sock: socket.socket, end: bytes) -> bytes:
    sock.settimeout(5)
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 1 << 20])
def test_echo_after_the_upgrade(server: ExampleServer, size: int) -> None:
    payload = os.urandom(size)
    text = "é" * (size // 2) + "x" * (size % 2)
    with client(server) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        ws.send(text)
        assert ws.recv(timeout=10) == text


def test_fragmented_message_ping_many_messages_and_close(server: ExampleServer) -> None:
    with client(server) as ws:
        ws.send(["frag", "mented ", "message"])
        assert ws.recv(timeout=10) == "fragmented message"
        ws.ping(b"are you there").wait(timeout=10)
        for index in range(200):
            ws.send(f"message {index}")
        assert [ws.recv(timeout=10) for _ in range(200)] == [
            f"message {index}" for index in range(200)
        ]
        ws.close(1000)
        assert ws.close_code == 1000


def test_plain_requests_before_the_upgrade_on_one_connection(
    server: ExampleServer,
) -> None:
    """HTTP keep-alive, then the upgrade, then frames in the same segment."""
    plain, end = PLAIN[server.example]  # type: ignore[attr-defined]
    with server.connect() as sock:
        sock.sendall(plain)
        assert read_until(sock, end).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.sendall(
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            + UPGRADE
            + masked(0x1, b"hi")
            + masked(0x9, b"p")
        )
        data = read_until(sock, b"\x8a\x01p")
    assert data.startswith(b"HTTP/1.1 404 ")
    assert b"HTTP/1.1 101 Switching Protocols\r\n" in data
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data
    assert data.endswith(b"\r\n\r\n\x81\x02hi\x8a\x01p")


@pytest.mark.parametrize(
    "cut", [len(UPGRADE) - 1, len(UPGRADE), len(UPGRADE) + 1, len(UPGRADE) + 3]
)
def test_the_hand_over_point_split_across_reads(
    server: ExampleServer, cut: int
) -> None:
    stream = UPGRADE + masked(0x2, b"first") + masked(0x2, b"second")
    with server.connect() as sock:
        sock.sendall(stream[:cut])
        sock.sendall(stream[cut:])
        data = read_until(sock, b"\x82\x06second")
    assert data.split(b"\r\n\r\n", 1)[1] == b"\x82\x05first\x82\x06second"


def test_a_websocket_frame_before_the_upgrade_gets_400(server: ExampleServer) -> None:
    """...and closes only its own connection: an upgraded bystander echoes on."""
    with client(server) as ws, server.connect() as sock:
        sock.sendall(masked(0x1, b"too early") + b"\r\n\r\n")
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"


def test_a_bad_handshake_gets_400(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(UPGRADE.replace(b"Version: 13", b"Version: 8"))
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_websocket_protocol_errors_are_the_websocket_handlers(
    server: ExampleServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(UPGRADE + b"\x81\x02hi")  # unmasked: close 1002
        data = recv_until_closed(sock)
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames[0] == 0x88 and frames[2:4] == b"\x03\xea"  # close, 1002


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("cut", [None, 1, 7, 64])
def test_a_request_with_a_body_pipelined_before_the_upgrade(
    server: ExampleServer, framing: str, cut: int | None
) -> None:
    """The request before the upgrade, its body, the upgrade and the frames
    behind it in one stream, however cut: each answered once, in order."""
    if framing == "chunked" and server.example != "http":  # type: ignore[attr-defined]
        pytest.skip("the upgrade example frames Content-Length bodies only")
    body = b"0123456789" * 30
    if framing == "chunked":
        request = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(
                b"%x\r\n%s\r\n" % (len(body[i : i + 50]), body[i : i + 50])
                for i in range(0, len(body), 50)
            )
            + b"0\r\n\r\n"
        )
    else:
        request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body),
            body,
        )
    frames = b"".join(masked(0x2, b"frame %d" % index) for index in range(20))
    stream = request + UPGRADE + frames
    expected = b"".join(b"\x82\x07frame %d" % index for index in range(10))
    expected += b"".join(b"\x82\x08frame %d" % index for index in range(10, 20))
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step = cut or len(stream)
        for start in range(0, len(stream), step):
            sock.sendall(stream[start : start + step])
        data = read_until(sock, expected)
    answer, upgraded = data.split(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert answer.startswith(b"HTTP/1.1 ")
    if server.example == "http":  # type: ignore[attr-defined]
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(body)
    assert upgraded.split(b"\r\n\r\n", 1)[1] == expected


def test_a_websocket_frame_without_a_head_end_gets_400(server: ExampleServer) -> None:
    """No empty line ever comes: the bytes are refused as they are, not waited on."""
    if server.example != "http":  # type: ignore[attr-defined]
        pytest.skip("the upgrade example waits for a whole head")
    with server.connect() as sock:
        sock.sendall(masked(0x1, b"too early"))
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")
