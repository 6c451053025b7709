"""5 000 concurrent connections through one loop; idle connections stay small."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from core_harness import frame

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 5000

SERVER = """
import sys
sys.path.insert(0, {examples!r})
from runtime_echo import LengthPrefixedEcho
from protogen.runtime import run

class Announce(LengthPrefixedEcho):
    def on_boot(self, engine):
        print(engine.urls[0], flush=True)
        return super().on_boot(engine)

run(Announce(), "tcp://127.0.0.1:0")
"""


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_5000_concurrent_connections_and_idle_memory() -> None:
    code = SERVER.format(examples=str(ROOT / "examples"))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    socks: list[socket.socket] = []
    try:
        url = proc.stdout.readline().strip()
        host, port = url.split("://")[1].rsplit(":", 1)
        addr = (host, int(port))
        # Warm up: one connection so lazily built structures exist before measuring.
        warm = socket.create_connection(addr, timeout=20)
        warm.sendall(frame(b"warm"))
        assert warm.recv(100) == frame(b"warm")
        before = rss_bytes(proc.pid)
        for _ in range(CONNECTIONS):
            socks.append(socket.create_connection(addr, timeout=20))
        # Every connection sends a distinct frame; all get their own answer back.
        for i, sock in enumerate(socks):
            sock.sendall(frame(b"conn-%d" % i))
        for i, sock in enumerate(socks):
            expected = frame(b"conn-%d" % i)
            got = b""
            while len(got) < len(expected):
                chunk = sock.recv(len(expected) - len(got))
                assert chunk, f"conn {i} closed early"
                got += chunk
            assert got == expected
        after = rss_bytes(proc.pid)
        per_conn = (after - before) / CONNECTIONS
        # The goal is < 600 bytes of Conn state per idle conn; the ceiling leaves room
        # for the socket object, the dict slot and allocator slack (pages, arenas).
        assert per_conn < 2048, f"{per_conn:.0f} bytes of RSS per idle connection"
        print(f"RSS per idle connection: {per_conn:.0f} bytes")
        warm.close()
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
