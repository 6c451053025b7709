"""The WebSocket echo example (examples/websocket/), driven by the `websockets`
package as the client, plus raw sockets for frames a correct client never sends."""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from served_example import EXAMPLES, ExampleServer, recv_until_closed

websockets_client = pytest.importorskip("websockets.sync.client")
from websockets.exceptions import ConnectionClosedError  # noqa: E402

sys.path.insert(0, str(EXAMPLES / "websocket"))

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # the RFC 6455 section 1.3 example
HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    served = ExampleServer("websocket", tmp_path_factory.mktemp("cache"))
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


def client(server: ExampleServer):  # type: ignore[no-untyped-def]
    return websockets_client.connect(
        f"ws://127.0.0.1:{server.port}/",
        compression=None,
        max_size=None,
        proxy=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=10,
    )


# -- the real client ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 1 << 20])
def test_echo_of_every_length_form(server: ExampleServer, size: int) -> None:
    payload = os.urandom(size)
    text = "é" * (size // 2) + "x" * (size % 2)  # a size-byte UTF-8 text
    with client(server) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
        ws.send(text)
        assert ws.recv(timeout=10) == text


def test_fragmented_message_is_reassembled(server: ExampleServer) -> None:
    with client(server) as ws:
        ws.send(["frag", "men", "ted ", "é"])
        assert ws.recv(timeout=10) == "fragmented é"
        ws.send([b"\x00" * 70_000, b"\x01", b""])
        assert ws.recv(timeout=10) == b"\x00" * 70_000 + b"\x01"


def test_ping_gets_its_pong(server: ExampleServer) -> None:
    with client(server) as ws:
        pong = ws.ping(b"are you there")
        assert pong.wait(timeout=10)
        ws.send("still echoing")
        assert ws.recv(timeout=10) == "still echoing"


def test_close_handshake_echoes_the_code(server: ExampleServer) -> None:
    with client(server) as ws:
        ws.send("bye soon")
        assert ws.recv(timeout=10) == "bye soon"
        ws.close(1000, "done")
        assert (ws.close_code, ws.close_reason) == (1000, "done")


def test_many_messages_on_one_connection(server: ExampleServer) -> None:
    with client(server) as ws:
        for n in range(200):
            ws.send(f"message {n}")
        assert [ws.recv(timeout=10) for _ in range(200)] == [f"message {n}" for n in range(200)]


# -- raw frames ------------------------------------------------------------------------------


def _raw(server: ExampleServer) -> socket.socket:
    sock = server.connect()
    sock.sendall(HANDSHAKE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    # RFC 6455 section 1.3's example accept value for this key.
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
    return sock


def _masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    head = bytes((0x80 * fin | opcode, 0x80 | len(payload)))
    return head + key + masked


def _close_code(data: bytes) -> int:
    assert data[0] == 0x88, data[:4]
    return struct.unpack(">H", data[2:4])[0]


def test_an_unmasked_frame_is_a_protocol_error(server: ExampleServer) -> None:
    with _raw(server) as sock:
        sock.sendall(b"\x81\x02hi")
        assert _close_code(recv_until_closed(sock)) == 1002


def test_a_fragmented_ping_is_refused(server: ExampleServer) -> None:
    with _raw(server) as sock:
        sock.sendall(_masked(0x9, b"ping", fin=False))
        assert _close_code(recv_until_closed(sock)) == 1002


def test_a_non_minimal_length_is_refused(server: ExampleServer) -> None:
    with _raw(server) as sock:
        sock.sendall(b"\x82\xfe\x00\x05" + b"\x00" * 4 + b"hello")
        data = recv_until_closed(sock)
        assert _close_code(data) == 1002 and b"shortest form" in data


def test_invalid_utf8_text_is_closed_with_1007(server: ExampleServer) -> None:
    with _raw(server) as sock:
        sock.sendall(_masked(0x1, b"\xff\xfe"))
        assert _close_code(recv_until_closed(sock)) == 1007


def test_a_close_with_a_reserved_code_is_refused(server: ExampleServer) -> None:
    with _raw(server) as sock:
        sock.sendall(_masked(0x8, struct.pack(">H", 1005)))
        assert _close_code(recv_until_closed(sock)) == 1002


def test_a_bad_handshake_gets_400(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(HANDSHAKE.replace(b"Version: 13", b"Version: 8"))
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_a_broken_client_does_not_disturb_another(server: ExampleServer) -> None:
    with client(server) as ws, _raw(server) as sock:
        sock.sendall(b"\x8f\x80" + b"\x00" * 4)  # reserved opcode 0xF
        assert _close_code(recv_until_closed(sock)) == 1002
        ws.send(b"fine")
        assert ws.recv(timeout=10) == b"fine"
    with pytest.raises(ConnectionClosedError) as closed, client(server) as ws:
        ws.send(b"x" * 10)
        assert ws.recv(timeout=10) == b"x" * 10
        ws.socket.sendall(b"\x82\xff" + b"\x7f" + b"\xff" * 7)  # 2**63 - 1 bytes
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_frames_in_the_handshake_segment_are_decoded_as_frames(server: ExampleServer) -> None:
    """The switch from the opening handshake to frames happens at the byte after
    the request head, also when the frames arrive in the same segment."""
    for cut in (len(HANDSHAKE) - 1, len(HANDSHAKE), len(HANDSHAKE) + 1, None):
        stream = HANDSHAKE + _masked(0x1, b"one") + _masked(0x2, b"two")
        with server.connect() as sock:
            if cut is None:
                sock.sendall(stream)
            else:
                sock.sendall(stream[:cut])
                sock.sendall(stream[cut:])
            sock.settimeout(5)
            data = b""
            while not data.endswith(b"\x82\x03two"):
                chunk = sock.recv(4096)
                assert chunk, data
                data += chunk
        head, _, frames = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert frames == b"\x81\x03one\x82\x03two", cut


def test_a_frame_before_the_upgrade_gets_400(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(_masked(0x1, b"early") + b"\r\n\r\n")
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_a_request_head_over_8_kib_gets_400(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000)
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")
