"""max_connections on a generated server, as docs/runtime.md documents it: at the
limit the server stops accepting; a new client's handshake completes in the
kernel's backlog but nothing is read until a connection closes, then it is
accepted and served. Existing connections are unaffected."""

from __future__ import annotations

import socket
from pathlib import Path
from types import ModuleType
from typing import Callable

import robust_specs as specs
from robust_harness import connect, port_of, recv_exact, serving, wait_for

LIMIT = 3


def echo(sock: socket.socket, wire: bytes) -> None:
    sock.sendall(wire)
    assert recv_exact(sock, len(wire)) == wire


def test_at_the_limit_new_clients_wait_until_a_connection_closes(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    wire = codec.Message(payload=b"hello").encode()
    with serving(
        directory, protocol, tmp_path / "work", options={"max_connections": LIMIT}
    ) as served:
        first = [connect(served.url) for _ in range(LIMIT)]
        extra = None
        try:
            for sock in first:
                echo(sock, wire)
            extra = connect(served.url)  # the kernel completes the handshake
            extra.sendall(wire)
            extra.settimeout(0.8)
            try:
                data = extra.recv(100)
            except socket.timeout:
                data = None
            assert data is None, "a connection over the limit was served"
            assert len(served.find("open")) == LIMIT
            assert not served.find("open", peer=port_of(extra))
            for sock in first:  # the others are unaffected
                echo(sock, wire)

            first.pop(0).close()
            extra.settimeout(10)
            # Accepted as soon as a slot is free; its early request is answered.
            assert recv_exact(extra, len(wire)) == wire
            assert wait_for(lambda: served.find("open", peer=port_of(extra)), 5)
            assert len(served.find("close")) == 1
            for sock in first:
                echo(sock, wire)
        finally:
            for sock in first:
                sock.close()
            if extra is not None:
                extra.close()
