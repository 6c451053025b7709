"""1 000 clients send requests and never read their answers: the generated
server's memory stays bounded (backpressure stops reading them) and a
well-behaved client is still served."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import robust_specs as specs
from robust_harness import connect, recv_exact, serving, wait_for

KIB = 1024
MIB = 1024 * KIB
CLIENTS = 1000
HIGH_WATER = 16 * KIB
LOW_WATER = 4 * KIB
SOCKET_BUFFER = 4 * KIB  # server SO_RCVBUF/SO_SNDBUF and client SO_RCVBUF/SO_SNDBUF
BUDGET = 512 * KIB  # what each client would push if the server kept reading

# Why the ceiling holds: a paused connection is not read, so the server holds at
# most its outbound queue (the high water mark plus the answers to the one read
# that crossed it; a read is bounded by SO_RCVBUF, which the kernel doubles, so
# <= 8 KiB of requests -> <= 8 KiB of echoes), a partial frame kept in the smallest
# pool buffer class (4 KiB) and the Conn itself (~1 KiB): about 16+8+4+1 = 29 KiB.
# Allow ~35% for allocator slack: 40 KiB per connection over the baseline
# (measured: ~23 KiB). A server that ignored backpressure would hold about BUDGET
# (512 KiB) per connection; one whose partial-frame buffers keep doubling, 64 KiB+.
PER_CONNECTION_CEILING = 40 * KIB
CEILING = CLIENTS * PER_CONNECTION_CEILING


def flood(socks: list[socket.socket], chunk: bytes, deadline: float) -> list[int]:
    """Send without ever reading until every socket is stuck (or its budget is sent).

    A partly sent chunk is finished before the next one starts, so each stream
    stays a sequence of whole frames.
    """
    sent = [0] * len(socks)
    offset = [0] * len(socks)
    view = memoryview(chunk)
    stuck_rounds = 0
    while stuck_rounds < 5 and time.monotonic() < deadline:
        progress = 0
        for i, sock in enumerate(socks):
            if sent[i] >= BUDGET:
                continue
            try:
                n = sock.send(view[offset[i] :])
            except (BlockingIOError, InterruptedError):
                continue
            offset[i] = (offset[i] + n) % len(chunk)
            sent[i] += n
            progress += n
        stuck_rounds = stuck_rounds + 1 if progress == 0 else 0
        if not progress:
            time.sleep(0.1)
    return sent


def test_clients_that_never_read_do_not_grow_the_server(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    request = codec.Message(payload=bytes(1000)).encode()
    chunk = request * 16  # ~16 KiB of whole frames per send
    options = {
        "write_high_water": HIGH_WATER,
        "write_low_water": LOW_WATER,
        "socket_recv_buffer": SOCKET_BUFFER,
        "socket_send_buffer": SOCKET_BUFFER,
    }
    with serving(directory, protocol, tmp_path / "work", options=options) as served:
        with connect(served.url) as probe:  # warm up the code paths first
            probe.sendall(request)
            assert recv_exact(probe, len(request)) == request
        baseline = served.rss()
        socks: list[socket.socket] = []
        try:
            for _ in range(CLIENTS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
                sock.settimeout(10)
                host, port = served.url.removeprefix("tcp://").rsplit(":", 1)
                sock.connect((host, int(port)))
                sock.setblocking(False)
            sent = flood(socks, chunk, time.monotonic() + 40)
            assert all(n < BUDGET for n in sent), "some client was never slowed down"
            assert wait_for(lambda: len(served.find("open")) >= CLIENTS + 1, 10)
            # The handler observed the backpressure on (nearly) every connection.
            assert len(served.find("pause")) >= CLIENTS * 0.9
            grown = served.rss() - baseline
            assert grown < CEILING, (
                f"RSS grew {grown / MIB:.1f} MiB for {CLIENTS} non-reading clients "
                f"(ceiling {CEILING / MIB:.1f} MiB; clients pushed {sum(sent) / MIB:.1f} MiB)"
            )
            # Stuck clients keep the server no busier: it still answers others.
            with connect(served.url, timeout=10) as good:
                for n in range(20):
                    wire = codec.Message(payload=b"still served %d" % n).encode()
                    good.sendall(wire)
                    assert recv_exact(good, len(wire)) == wire
            # And nothing grows while they stay stuck.
            time.sleep(0.5)
            assert served.rss() - baseline < CEILING
        finally:
            for sock in socks:
                sock.close()
