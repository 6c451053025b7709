"""OpenSSL over memory BIOs (what runtime/tls.py does) against OpenSSL reading
and writing the socket itself (a non-blocking `ssl.SSLSocket`): the server's
CPU time (user + system, `time.thread_time`) per echoed batch.

    .venv/bin/python bench/tlsio.py                 # 16 frames of 64 B per batch
    .venv/bin/python bench/tlsio.py --size 4096     # 16 frames of 4 KiB

A client SSL socket writes a batch of 16 frames in one write (one record for
small frames, four for 4 KiB ones) over a socketpair; the server side reads
every record of it, writes the plaintext back in one SSL write and sends it;
only the server's steps are timed. Over BIOs that is one `recv`, the decrypts,
the encrypt and one `send`; over the socket OpenSSL makes two `read` calls per
record (header, body: no read-ahead), a failing one to find the socket
drained, and a `write` per record. The minimal Python around each, so what
differs is the I/O design (docs/tls.md, *Design*).
"""

from __future__ import annotations

import argparse
import socket
import ssl
import threading
import time
from typing import Any

import trustme

READ = 65536


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def connected(bio: bool) -> tuple[Any, ...]:
    server_ctx, client_ctx = contexts()
    a, b = socket.socketpair()
    client = client_ctx.wrap_socket(
        b, server_hostname="localhost", do_handshake_on_connect=False
    )
    helper = threading.Thread(target=client.do_handshake)
    helper.start()
    if bio:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        server = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
        a.setblocking(False)
        while True:
            try:
                server.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    a.send(outgoing.read())
                try:
                    incoming.write(a.recv(READ))
                except BlockingIOError:
                    time.sleep(0.001)
        a.send(outgoing.read())
        helper.join()
        client.send(b"a")  # and the session tickets reach the client
        time.sleep(0.05)
        incoming.write(a.recv(READ))
        server.read(READ)
        return a, client, server._sslobj, incoming, outgoing
    tls = server_ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    tls.do_handshake()
    helper.join()
    tls.setblocking(False)
    client.send(b"a")
    time.sleep(0.05)
    tls.read(READ)
    return tls, client, tls._sslobj, None, None  # (tls owns the fd now)


def drain(client: ssl.SSLSocket, n: int) -> None:
    while n:
        n -= len(client.recv(n))


def over_bios(batch: bytes, batches: int) -> float:
    sock, client, server, incoming, outgoing = connected(True)
    buffer = memoryview(bytearray(READ))
    scratch = memoryview(bytearray(READ))
    spent = 0.0
    for _ in range(batches):
        client.sendall(batch)
        started = time.thread_time()
        left = len(batch)
        while left:
            try:
                n = sock.recv_into(scratch)
            except BlockingIOError:
                break
            incoming.write(scratch[:n])
            got = 0
            try:
                while got < READ:
                    got += server.read(READ - got, buffer[got:])
                    if not incoming.pending:
                        break
            except ssl.SSLWantReadError:
                pass
            server.write(buffer[:got])
            sock.send(outgoing.read())
            left -= got
        spent += time.thread_time() - started
        drain(client, len(batch))
    return spent / batches * 1e6


def over_socket(batch: bytes, batches: int) -> float:
    _owner, client, server, _, _ = connected(False)
    buffer = memoryview(bytearray(READ))
    spent = 0.0
    for _ in range(batches):
        client.sendall(batch)
        started = time.thread_time()
        left = len(batch)
        while left:
            got = 0
            try:
                while got < READ:
                    got += server.read(READ - got, buffer[got:])
            except ssl.SSLWantReadError:
                pass  # drained
            if not got:
                break
            server.write(buffer[:got])
            left -= got
        spent += time.thread_time() - started
        drain(client, len(batch))
    return spent / batches * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="bytes per frame")
    parser.add_argument("--depth", type=int, default=16, help="frames per batch")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    frame = args.size.to_bytes(4, "big") + b"x" * args.size
    batch = frame * args.depth
    batches = max(1000, 20_000_000 // (len(batch) * 16))
    print(f"server CPU µs per batch of {args.depth} × {args.size} B")
    for _ in range(args.rounds):
        bios, direct = over_bios(batch, batches), over_socket(batch, batches)
        print(f"  memory BIOs {bios:7.2f}   SSLSocket {direct:7.2f}", flush=True)


if __name__ == "__main__":
    main()
