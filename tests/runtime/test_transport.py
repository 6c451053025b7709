"""The transport seam: a layer between the socket and the loop (what TLS or a
PROXY-protocol reader plug into), installed on a listener's acceptor."""

from __future__ import annotations

import socket
import threading
from typing import Any

from core_harness import TIMEOUT, connect, frame, recv_exact
from protogen.runtime import Engine, Options
from runtime_echo import LengthPrefixedEcho

KEY = 0x5A
XOR = bytes(b ^ KEY for b in range(256))


class XorTransport:
    """Scrambles the byte stream both ways: the handler must only ever see the
    plain bytes, the peer only the scrambled ones."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = 0

    def recv_into(self, buffer: Any) -> int:
        view = memoryview(buffer)
        n = self.sock.recv_into(view)
        view[:n] = bytes(view[:n]).translate(XOR)
        self.received += n
        return n

    def send(self, data: Any) -> int:
        return self.sock.send(bytes(data).translate(XOR))

    def sendmsg(self, chunks: Any) -> int:
        return self.send(b"".join(bytes(chunk) for chunk in chunks))


def test_an_acceptor_transport_carries_every_byte_both_ways() -> None:
    transports: list[XorTransport] = []

    def wrap(conn: Any) -> XorTransport:
        transports.append(XorTransport(conn.sock))
        return transports[-1]

    options = Options(install_signal_handlers=False)
    engine = Engine(LengthPrefixedEcho(), ["tcp://127.0.0.1:0"], options)
    engine.listen()
    engine.listeners[0].transport = wrap
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    assert engine.wait_started(TIMEOUT)
    try:
        payloads = [b"hello", b"x" * 100_000, b""]  # one large: partial reads
        wire = b"".join(frame(p) for p in payloads)
        with connect(engine.urls[0]) as sock:
            sock.sendall(wire.translate(XOR))
            assert recv_exact(sock, len(wire)).translate(XOR) == wire
    finally:
        engine.stop()
        thread.join(TIMEOUT)
    assert len(transports) == 1 and transports[0].received == len(wire)
