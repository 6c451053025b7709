"""Generated servers against hostile peers: the end of stream arriving with the
last request, a peer pipelining large answers it never reads, a peer pipelining
thousands of frames at once, and a datagram holding thousands of frames."""

from __future__ import annotations

import importlib
import socket
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

import robust_specs as specs
from protogen.runtime import Options
from robust_harness import (
    connect,
    in_thread,
    port_of,
    recv_exact,
    serving,
    tcp_states,
    wait_for,
)

KIB = 1024
CLOSE_WAIT = "08"

Built = Callable[[str], tuple[Path, str, ModuleType]]

BIG = """
protocol hardbig
max_frame 1 MiB
frame Message {
    framing length(length)
    header big { length: u32 }
    body { payload: bytes[rest] }
}
"""

UDP_LINES = """
protocol hardudp
transport udp
frame Line {
    framing delimited "\\n"
    max_frame 64 KiB
    body { payload: bytes[rest] }
}
"""


def handler_module(built: Built, spec: str) -> tuple[ModuleType, ModuleType]:
    _, protocol, codec = built(spec)
    return codec, importlib.import_module(f"{protocol}_handler")


def send_with_fin(sock: socket.socket, data: bytes) -> None:
    """Send `data` and the FIN in one TCP segment (corked until the shutdown)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_generated_server_answers_data_sent_with_fin_then_closes(
    edge: bool, built: Built, tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    options = {"edge_triggered": edge}
    with serving(directory, protocol, tmp_path / "w", options=options) as served:
        port = int(served.url.rsplit(":", 1)[1])
        socks = [connect(served.url) for _ in range(20)]
        try:
            wires = [codec.Message(payload=b"req %d" % i).encode() for i in range(20)]
            for sock, wire in zip(socks, wires):
                send_with_fin(sock, wire)
            for sock, wire in zip(socks, wires):
                assert recv_exact(sock, len(wire)) == wire
            for sock in socks:
                served.close_of(port_of(sock), timeout=5)
            assert wait_for(lambda: tcp_states(port).count(CLOSE_WAIT) == 0, 5)
        finally:
            for sock in socks:
                sock.close()
    closes = served.find("close")
    assert len(closes) == 20 and all(c["err"] is None for c in closes), closes


ANSWER = 256 * KIB


def test_decoding_stops_while_output_is_over_the_high_water_mark(built: Built) -> None:
    codec, module = handler_module(built, BIG)

    class BigReplies(module.HardbigHandler):  # type: ignore[misc, name-defined]
        max_queued = 0
        answered = 0

        def on_message(self, conn: Any, frame: Any) -> None:
            if bytes(frame.payload) == b"B":
                self.send(conn, codec.Message(bytes(ANSWER)))
                self.answered += 1
            else:
                self.send(conn, frame)
            self.max_queued = max(self.max_queued, conn.outbound_buffered())

    handler = BigReplies()
    high = 256 * KIB
    request = codec.Message(b"B").encode()
    options = dict(write_high_water=high, write_low_water=64 * KIB)
    with in_thread(handler, **options) as engine:
        url = engine.urls[0]
        hog = socket.socket()
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KIB)
        hog.settimeout(20)
        host, port = url.split("://")[1].rsplit(":", 1)
        hog.connect((host, int(port)))
        with hog, connect(url) as bystander:
            hog.sendall(request * 100)  # 100 answers of 256 KiB, never read
            assert wait_for(lambda: handler.answered >= 1)
            time.sleep(0.3)
            ping = codec.Message(b"ping").encode()
            bystander.sendall(ping)
            assert recv_exact(bystander, len(ping)) == ping
            assert handler.max_queued <= high + ANSWER + 64, handler.max_queued
            assert handler.answered < 100
            # Reading now: the requests still buffered on the server are decoded
            # as the queue drains, without new bytes arriving.
            expected = len(codec.Message(bytes(ANSWER)).encode()) * 100
            received = 0
            while received < expected:
                chunk = hog.recv(1 << 20)
                assert chunk, f"EOF after {received} of {expected} bytes"
                received += len(chunk)
            assert handler.answered == 100


def test_a_pipelining_peer_gets_a_bounded_number_of_frames_per_callback(
    built: Built,
) -> None:
    codec, module = handler_module(built, BIG)

    class Counting(module.HardbigHandler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.per_call: list[int] = []

        def on_traffic(self, conn: Any) -> Any:
            self.per_call.append(0)
            return super().on_traffic(conn)

        def on_message(self, conn: Any, frame: Any) -> None:
            self.per_call[-1] += 1
            self.send(conn, frame)

    handler = Counting()
    frames = [codec.Message(b"%d" % i).encode() for i in range(2000)]
    wire = b"".join(frames)
    with in_thread(handler) as engine:
        with connect(engine.urls[0]) as sock:
            sock.sendall(wire)
            assert recv_exact(sock, len(wire)) == wire  # all answered, in order
    budget = getattr(Options(), "max_frames_per_callback", 64)
    assert sum(handler.per_call) == 2000
    assert max(handler.per_call) <= budget, max(handler.per_call)


def test_one_datagram_holding_thousands_of_frames_is_not_answered_thousands_of_times(
    built: Built,
) -> None:
    codec, module = handler_module(built, UDP_LINES)
    handler = module.EchoHardudpHandler()
    with in_thread(handler, "udp://127.0.0.1:0") as engine:
        host, port = engine.urls[0].split("://")[1].rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.connect((host, int(port)))
            sock.send(b"x\n" * 30000)  # 60 000 bytes, 30 000 frames
            sock.send(b"one\ntwo\n")  # a datagram of two frames is answered
            replies = []
            try:
                while True:
                    replies.append(sock.recv(65536))
            except socket.timeout:
                pass
    cap = getattr(module.HardudpHandler, "max_frames_per_datagram", 64)
    assert replies.count(b"x\n") <= cap, len(replies)
    assert replies[-2:] == [b"one\n", b"two\n"], replies[-2:]
