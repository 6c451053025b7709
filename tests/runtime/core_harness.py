"""Helpers shared by the runtime core tests: a server in a background thread,
blocking loopback clients with timeouts, and length-prefixed framing."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from protogen.runtime import Engine, EventHandler, Options

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

HEADER = struct.Struct(">I")
TIMEOUT = 20.0


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


@contextlib.contextmanager
def serving(handler: EventHandler, *urls: str, **options: Any) -> Iterator[Engine]:
    """Run an Engine in a thread; always stops it (and fails if it will not stop)."""
    options.setdefault("install_signal_handlers", False)
    engine = Engine(handler, urls, Options.from_kwargs(**options))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            engine.run()
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert engine.wait_started(TIMEOUT), "engine did not start"
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "engine did not stop"
    if errors:
        raise errors[0]


def connect(url: str, timeout: float = TIMEOUT) -> socket.socket:
    scheme, rest = url.split("://", 1)
    if scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(rest)
        return sock
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if scheme.startswith("udp") else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    sock.settimeout(timeout)
    sock.connect((host, int(port)))
    return sock


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        data = sock.recv(min(n - len(chunks), 1 << 20))
        if not data:
            raise ConnectionError(f"EOF after {len(chunks)} of {n} bytes")
        chunks += data
    return bytes(chunks)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = HEADER.unpack(recv_exact(sock, 4))
    return recv_exact(sock, size)


def wait_for(
    predicate: Callable[[], bool], timeout: float = TIMEOUT, interval: float = 0.01
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def is_closed_by_peer(sock: socket.socket, timeout: float = TIMEOUT) -> bool:
    """True when the server closed the socket (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def tcp_states(port: int) -> list[str]:
    """TCP states (hex, as /proc/net/tcp prints them: 08 = CLOSE_WAIT) of the
    server-side sockets of `port`: every socket with that local port that is not
    the listener. Linux only (empty elsewhere)."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as file:
                lines = file.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] != "0A":  # 0A = LISTEN
                states.append(fields[3])
    return states
