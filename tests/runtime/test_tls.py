"""TLS listeners and dials (protogen.runtime.tls), against Python's ssl module,
`openssl s_client` and the runtime's own client, with certificates made by
trustme at test time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

trustme = pytest.importorskip("trustme")

from aio_helpers import build_example  # noqa: E402
from core_harness import TIMEOUT, serving  # noqa: E402

from protogen.errors import TLSHandshakeError  # noqa: E402
from protogen.runtime import Action, Client, Conn, EventHandler  # noqa: E402

HEADER = struct.Struct(">I")


@dataclass
class PKI:
    ca: Path  # the CA the server certificates chain to
    server: Path  # cert + key for 127.0.0.1, ::1, localhost, example.test
    other: Path  # cert + key for other.test (an SNI choice)
    client: Path  # a client certificate (mTLS)
    other_ca: Path  # an unrelated CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other_ca = trustme.CA()
    paths = PKI(
        root / "ca.pem",
        root / "server.pem",
        root / "other.pem",
        root / "client.pem",
        root / "other_ca.pem",
    )
    ca.cert_pem.write_to_path(str(paths.ca))
    other_ca.cert_pem.write_to_path(str(paths.other_ca))
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost", "example.test")
    cert.private_key_and_cert_chain_pem.write_to_path(str(paths.server))
    ca.issue_cert("other.test").private_key_and_cert_chain_pem.write_to_path(
        str(paths.other)
    )
    ca.issue_cert("client@example.test").private_key_and_cert_chain_pem.write_to_path(
        str(paths.client)
    )
    return paths


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build_example("echo.proto.dsl", tmp_path_factory.mktemp("tls_echo"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    return host.strip("[]"), int(port)


def client_context(pki: PKI, **kwargs: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    for name, value in kwargs.items():
        setattr(context, name, value)
    return context


def tls_connect(
    url: str, context: ssl.SSLContext, server_hostname: str = "127.0.0.1", **kw: Any
) -> ssl.SSLSocket:
    raw = socket.create_connection(host_port(url), timeout=TIMEOUT)
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname, **kw)
    except BaseException:
        raw.close()
        raise


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError(f"closed with {n} bytes missing")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class Recorder(EventHandler):
    """Echo everything; remember what each connection saw."""

    def __init__(self) -> None:
        self.opened: list[Any] = []  # conn.tls seen in on_open
        self.closed: list[BaseException | None] = []
        self.lock = threading.Lock()
        self.all_closed = threading.Condition(self.lock)

    def on_open(self, conn: Conn) -> tuple[bytes | None, Action]:
        self.opened.append(conn.tls)
        return None, Action.NONE

    def on_traffic(self, conn: Conn) -> Action:
        conn.write(conn.next())
        return Action.NONE

    def on_close(self, conn: Conn, err: BaseException | None) -> Action:
        with self.lock:
            self.closed.append(err)
            self.all_closed.notify_all()
        return Action.NONE

    def wait_closed(self, count: int) -> list[BaseException | None]:
        with self.lock:
            assert self.all_closed.wait_for(
                lambda: len(self.closed) >= count, TIMEOUT
            ), self.closed
            return list(self.closed)


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(HEADER.pack(len(payload)) + payload)
    (size,) = HEADER.unpack(recv_exact(sock, 4))
    return recv_exact(sock, size)


# ---------------------------------------------------------------- the echo spec


def test_openssl_s_client_round_trip(pki: PKI, echo: dict[str, ModuleType]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command")
    handler = echo["handler"].EchoEchoHandler()
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        host, port = host_port(engine.urls[0])
        process = subprocess.Popen(
            [
                openssl,
                "s_client",
                "-connect",
                f"{host}:{port}",
                "-CAfile",
                str(pki.ca),
                "-verify_return_error",
                "-verify_ip",
                host,
                "-brief",
                "-ign_eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            payload = b"over TLS with openssl"
            wire = HEADER.pack(len(payload)) + payload
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(wire)
            process.stdin.flush()
            got = b""
            deadline = time.monotonic() + TIMEOUT
            out = process.stdout.fileno()
            while len(got) < len(wire) and time.monotonic() < deadline:
                if select.select([out], [], [], 0.1)[0]:
                    chunk = os.read(out, len(wire) - len(got))
                    if not chunk:
                        break
                    got += chunk
            assert got == wire
        finally:
            process.kill()
            _, stderr = process.communicate(timeout=TIMEOUT)
        assert b"Verification: OK" in stderr


def test_generated_client_over_tls(pki: PKI, echo: dict[str, ModuleType]) -> None:
    client_module = echo["client"]
    message = echo["codec"].Message
    handler = echo["handler"].EchoEchoHandler()
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        url = engine.urls[0]
        context = ssl.create_default_context(cafile=str(pki.ca))
        with client_module.connect(url, ssl_context=context) as client:
            assert client.request(message(b"generated")).payload == b"generated"
            assert isinstance(client.sock, ssl.SSLSocket)
        # Verified by default: the test CA is not among the system's.
        with pytest.raises(ssl.SSLCertVerificationError):
            client_module.connect(url)
        # ... and for the name asked for.
        with pytest.raises(ssl.SSLCertVerificationError):
            client_module.connect(
                url, ssl_context=context, server_hostname="wrong.test"
            )


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "level"])
def test_8_mib_payloads_both_ways(
    pki: PKI, echo: dict[str, ModuleType], edge: bool
) -> None:
    handler = echo["handler"].EchoEchoHandler()
    payloads = [bytes(range(256)) * (32 * 1024), b"\x5a" * (8 << 20)]
    with serving(
        handler,
        "tls://127.0.0.1:0",
        tls_cert=str(pki.server),
        edge_triggered=edge,
    ) as engine:
        # One thread writes and reads the client's TLS connection (asyncio): an
        # SSLSocket sending in one thread while another receives shares one
        # OpenSSL connection between threads, which OpenSSL does not allow (it
        # corrupted records or crashed the test process now and then).
        echoed = asyncio.run(
            asyncio.wait_for(
                _exchange(engine.urls[0], client_context(pki), payloads), TIMEOUT
            )
        )
        assert [len(p) for p in echoed] == [len(p) for p in payloads]
        assert echoed == payloads


async def _exchange(
    url: str, context: ssl.SSLContext, payloads: list[bytes]
) -> list[bytes]:
    """Send every payload as a frame at once and read the echoes meanwhile:
    the server echoes the first while the second still arrives (backpressure
    both ways)."""
    host, port = host_port(url)
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="127.0.0.1", limit=1 << 20
    )
    writer.write(b"".join(HEADER.pack(len(p)) + p for p in payloads))
    sending = asyncio.ensure_future(writer.drain())
    echoed = []
    try:
        for _ in payloads:
            (size,) = HEADER.unpack(await reader.readexactly(4))
            echoed.append(await reader.readexactly(size))
        await sending
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    return echoed


class BlockingEcho(Recorder):
    """Echo; a plain connection's byte blocks the loop for a moment, so the TLS
    peer's bytes pile up in the kernel meanwhile."""

    def on_traffic(self, conn: Conn) -> Action:
        if conn.tls is None:
            conn.next()
            time.sleep(0.5)
            return Action.NONE
        return super().on_traffic(conn)


def test_level_triggered_reads_what_tls_holds_decrypted(pki: PKI) -> None:
    # 200 KiB of records read at once fill the loop's 64 KiB buffer three times;
    # the last 8 KiB are decrypted but no longer in the socket, so the poller
    # will not report them: the loop must come back for them by itself.
    handler = BlockingEcho()
    payload = bytes(range(256)) * 800  # 200 KiB
    with serving(
        handler,
        "tls://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        tls_cert=str(pki.server),
        edge_triggered=False,
        socket_recv_buffer=4 << 20,
    ) as engine:
        with tls_connect(engine.urls[0], client_context(pki)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            with socket.create_connection(host_port(engine.urls[1])) as blocker:
                blocker.sendall(b"!")
                time.sleep(0.1)  # the loop sleeps in on_traffic now
                sock.sendall(payload)
                assert recv_exact(sock, len(payload)) == payload


def test_a_paused_connection_resumes_with_what_tls_holds_decrypted(
    pki: PKI,
) -> None:
    # The last records are read (the socket drained) while the echo is paused by
    # a peer that does not read yet: on resuming, the loop reads them again
    # without a readiness event (there will be none: the socket is empty).
    handler = BlockingEcho()
    payload = bytes(range(256)) * 800  # 200 KiB
    with serving(
        handler,
        "tls://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        tls_cert=str(pki.server),
        socket_recv_buffer=4 << 20,
        socket_send_buffer=8 * 1024,
        write_high_water=16 * 1024,
        write_low_water=4 * 1024,
    ) as engine:
        raw = socket.socket()
        raw.settimeout(TIMEOUT)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        raw.connect(host_port(engine.urls[0]))
        with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            with socket.create_connection(host_port(engine.urls[1])) as blocker:
                blocker.sendall(b"!")
                time.sleep(0.1)  # the loop sleeps in on_traffic now
                sock.sendall(payload)
                time.sleep(0.6)  # the echo pauses meanwhile
                assert recv_exact(sock, len(payload)) == payload


def test_unix_tls_round_trip(pki: PKI, tmp_path: Path) -> None:
    handler = Recorder()
    path = tmp_path / "tls.sock"
    with serving(handler, f"unix+tls://{path}", tls_cert=str(pki.server)):
        raw = socket.socket(socket.AF_UNIX)
        raw.settimeout(TIMEOUT)
        raw.connect(str(path))
        with client_context(pki).wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"over a unix socket")
            assert recv_exact(s, 18) == b"over a unix socket"


class Counter(EventHandler):
    """Client side: send one frame per connection on open, count echoes."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.echoed = 0
        self.tls_at_open: list[Any] = []
        self.errors: list[BaseException | None] = []
        self.done = threading.Event()

    def on_open(self, conn: Conn) -> tuple[bytes | None, Action]:
        self.tls_at_open.append(conn.tls)
        return b"ping", Action.NONE

    def on_traffic(self, conn: Conn) -> Action:
        if conn.inbound_buffered() < 4:
            return Action.NONE
        assert bytes(conn.next(4)) == b"ping"
        self.echoed += 1
        if self.echoed == self.total:
            self.done.set()
        return Action.NONE

    def on_close(self, conn: Conn, err: BaseException | None) -> Action:
        self.errors.append(err)
        if err is not None:
            self.done.set()
        return Action.NONE


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if want < 2200:
        pytest.skip(f"open-file limit {hard} is too low for 1 000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_1000_concurrent_tls_connections(pki: PKI, many_fds: None) -> None:
    total = 1000
    server = Recorder()
    with serving(
        server, "tls://127.0.0.1:0", tls_cert=str(pki.server), backlog=total
    ) as engine:
        counter = Counter(total)
        with Client(counter, tls_ca=str(pki.ca)) as client:
            conns = [client.dial(engine.urls[0]) for _ in range(total)]
            assert counter.done.wait(120), (counter.echoed, counter.errors[:3])
            assert counter.echoed == total and not counter.errors
            assert engine.count_connections() == total
            # on_open ran after the handshake, on both sides.
            assert all(t is not None for t in counter.tls_at_open)
            assert all(t.version in ("TLSv1.2", "TLSv1.3") for t in server.opened)
            assert len(conns) == total
        server.wait_closed(total)
        assert server.closed.count(None) == total


# ---------------------------------------------------------------- bad peers


def client_hello() -> bytes:
    """The first flight of a real client: a ClientHello record."""
    outgoing = ssl.MemoryBIO()
    sslobj = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing, server_hostname="example.test"
    )
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    return outgoing.read()


def test_garbage_and_stalled_handshakes_affect_only_their_connection(
    pki: PKI,
) -> None:
    handler = Recorder()
    with serving(
        handler,
        "tls://127.0.0.1:0",
        tls_cert=str(pki.server),
        tls_handshake_timeout=1.0,
    ) as engine:
        url = engine.urls[0]
        stalled = socket.create_connection(host_port(url), timeout=TIMEOUT)
        hello = client_hello()
        stalled.sendall(hello[: len(hello) // 2])  # then nothing
        garbage = socket.create_connection(host_port(url), timeout=TIMEOUT)
        garbage.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        try:
            # Refused with an alert, then closed; the others are unaffected.
            reply = garbage.recv(4096)
            assert reply[:1] == b"\x15" or reply == b""  # an alert record or FIN
            with tls_connect(url, client_context(pki)) as good:
                assert round_trip(good, b"still served") == b"still served"
            errors = handler.wait_closed(2)  # the garbage one and the good one
            assert sum(isinstance(e, TLSHandshakeError) for e in errors) == 1
            assert len(handler.opened) == 1  # on_open only after a handshake
            # The stalled one is closed by the handshake timeout.
            errors = handler.wait_closed(3)
            timeouts = [e for e in errors if isinstance(e, TLSHandshakeError)]
            assert len(timeouts) == 2 and "within 1 s" in str(timeouts[-1])
            assert stalled.recv(100) == b""
        finally:
            stalled.close()
            garbage.close()


def test_mtls_refuses_a_client_without_a_certificate(pki: PKI) -> None:
    handler = Recorder()
    with serving(
        handler, "tls://127.0.0.1:0", tls_cert=str(pki.server), tls_ca=str(pki.ca)
    ) as engine:
        url = engine.urls[0]
        with pytest.raises((ssl.SSLError, ConnectionError)):
            # TLS 1.3: the client's handshake ends before the server checks the
            # certificate; the refusal arrives as an alert on the first read.
            with tls_connect(url, client_context(pki)) as anonymous:
                anonymous.sendall(b"hello")
                if not anonymous.recv(10):
                    raise ConnectionError("closed")
        errors = handler.wait_closed(1)
        assert isinstance(errors[0], TLSHandshakeError)
        assert not handler.opened
        context = client_context(pki)
        context.load_cert_chain(str(pki.client))
        with tls_connect(url, context) as known:
            assert round_trip(known, b"mutual") == b"mutual"
        peer = handler.opened[0].peer_cert
        assert peer is not None
        assert ("email", "client@example.test") in [
            tuple(item) for item in peer.get("subjectAltName", ())
        ]


def test_alpn_sni_and_conn_tls(pki: PKI) -> None:
    handler = Recorder()
    with serving(
        handler,
        "tls://127.0.0.1:0",
        tls_cert=str(pki.server),
        tls_alpn="h2,http/1.1",
        tls_sni={"other.test": (str(pki.other), None)},
    ) as engine:
        url = engine.urls[0]
        context = client_context(pki)
        context.set_alpn_protocols(["http/1.1"])
        with tls_connect(url, context, server_hostname="other.test") as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
            names = [v for k, v in sock.getpeercert()["subjectAltName"]]
            assert names == ["other.test"]  # the SNI choice
            assert round_trip(sock, b"x") == b"x"
        with tls_connect(url, client_context(pki), "example.test") as sock:
            assert "example.test" in [
                v for k, v in sock.getpeercert()["subjectAltName"]
            ]
            assert round_trip(sock, b"y") == b"y"
    first, second = handler.opened
    assert first.alpn_protocol == "http/1.1" and first.server_name == "other.test"
    assert first.version == "TLSv1.3" and first.cipher
    assert second.alpn_protocol is None and second.server_name == "example.test"
    assert first.peer_cert is None  # no client certificate asked for


def test_minimum_version_is_tls_1_2(pki: PKI) -> None:
    handler = Recorder()
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        context = client_context(pki)
        with warnings.catch_warnings():  # (what the server must refuse is deprecated)
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_connect(engine.urls[0], context).close()
        errors = handler.wait_closed(1)
        assert isinstance(errors[0], TLSHandshakeError)
        context = client_context(pki)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with tls_connect(engine.urls[0], context) as sock:
            assert sock.version() == "TLSv1.2"
            assert round_trip(sock, b"1.2") == b"1.2"


@pytest.mark.parametrize("tickets", [True, False])
def test_session_resumption(pki: PKI, tickets: bool) -> None:
    handler = Recorder()
    with serving(
        handler,
        "tls://127.0.0.1:0",
        tls_cert=str(pki.server),
        tls_session_tickets=tickets,
    ) as engine:
        context = client_context(pki)
        with tls_connect(engine.urls[0], context) as first:
            assert round_trip(first, b"one") == b"one"  # the tickets arrive
            session = first.session
        with tls_connect(engine.urls[0], context, session=session) as second:
            assert round_trip(second, b"two") == b"two"
            assert second.session_reused is tickets
    assert [t.session_reused for t in handler.opened] == [False, tickets]


# ---------------------------------------------------------------- output path


def stream(size: int) -> bytes:
    """`size` bytes in which a lost, doubled or moved chunk shows."""
    return b"".join(i.to_bytes(4, "big") for i in range(size // 4))


class Flood(EventHandler):
    """Writes `stream(size)` on open, in `chunk`-byte writes, to a peer that reads
    slowly."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.size = size
        self.chunk = chunk
        self.pauses: list[bool] = []
        self.closed: list[BaseException | None] = []
        self.done = threading.Event()

    def on_open(self, conn: Conn) -> tuple[bytes | None, Action]:
        data = memoryview(stream(self.size))
        for offset in range(0, self.size, self.chunk):
            conn.write(bytes(data[offset : offset + self.chunk]))
        return None, Action.CLOSE  # graceful: everything flushed, close_notify

    def on_write_pause(self, conn: Conn, paused: bool) -> None:
        self.pauses.append(paused)

    def on_close(self, conn: Conn, err: BaseException | None) -> Action:
        self.closed.append(err)
        self.done.set()
        return Action.NONE


@pytest.mark.parametrize("chunk", [64 * 1024, 100])
def test_slow_reader_gets_everything_then_close_notify(pki: PKI, chunk: int) -> None:
    # 100-byte writes: the queue's chunks are joined into records across their
    # boundaries, and a refused send leaves a step's last byte mid-chunk. Its
    # 40 000 chunks are also more than one sendmsg carries (IOV_MAX): once the
    # reader speeds up, the kernel takes whole slices, which the loop used to
    # take for a refusal (waiting for a WRITABLE edge that never came).
    size = 4 << 20
    handler = Flood(size, chunk)
    with serving(
        handler,
        "tls://127.0.0.1:0",
        tls_cert=str(pki.server),
        socket_send_buffer=32 * 1024,
        drain_timeout=60.0,
    ) as engine:
        # suppress_ragged_eofs=False: a TCP end without close_notify would raise.
        with tls_connect(
            engine.urls[0], client_context(pki), suppress_ragged_eofs=False
        ) as sock:
            time.sleep(0.3)  # the server's queue fills up meanwhile
            got = bytearray()
            while True:
                chunk = sock.recv(16 * 1024)
                if not chunk:
                    break  # close_notify
                got += chunk
                if len(got) < size // 8:
                    time.sleep(0.001)  # slow at first
        assert len(got) == size
        assert got == stream(size)
        assert handler.done.wait(TIMEOUT)
    assert handler.closed == [None]
    assert handler.pauses[:1] == [True]  # backpressure over TLS


def test_runtime_client_verifies_and_opens_after_the_handshake(pki: PKI) -> None:
    server = Recorder()
    with serving(server, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        url = engine.urls[0]
        # Without the test CA: refused, on_open never runs.
        refused = Counter(1)
        with Client(refused) as client:
            client.dial(url)
            assert refused.done.wait(TIMEOUT)
        assert not refused.tls_at_open and not refused.echoed
        assert isinstance(refused.errors[0], TLSHandshakeError)
        assert "certificate verify failed" in str(refused.errors[0])
        # With it (a ready ssl_context per dial too); server_hostname checked.
        trusted = Counter(2)
        with Client(trusted, tls_ca=str(pki.ca)) as client:
            client.dial(url)
            client.dial(
                url, ssl_context=client_context(pki), server_hostname="localhost"
            )
            assert trusted.done.wait(TIMEOUT)
            assert trusted.echoed == 2
        assert [t.server_name for t in trusted.tls_at_open] == [
            "127.0.0.1",
            "localhost",
        ]
        wrong = Counter(1)
        with Client(wrong, tls_ca=str(pki.ca)) as client:
            client.dial(url, server_hostname="wrong.test")
            assert wrong.done.wait(TIMEOUT)
        assert isinstance(wrong.errors[0], TLSHandshakeError)


def test_tls_listener_needs_a_certificate() -> None:
    from protogen.runtime.address import parse_address
    from protogen.runtime.options import Options
    from protogen.runtime.tls import check_tls_options

    with pytest.raises(ValueError, match="tls_cert"):
        check_tls_options([parse_address("tls://127.0.0.1:0")], Options())
    check_tls_options([parse_address("tcp://127.0.0.1:0")], Options())
    with pytest.raises(ValueError, match="tls_alpn"):
        Options.from_kwargs(tls_alpn=["h2", ""])
    with pytest.raises(ValueError, match="tls_handshake_timeout"):
        Options.from_kwargs(tls_handshake_timeout=0)


# ---------------------------------------------------------------- command line

ECHO_SPEC = Path(__file__).resolve().parents[2] / "examples" / "echo.proto.dsl"


def protogen_serve(
    tmp_path: Path, *args: str
) -> tuple[subprocess.Popen[str], list[str]]:
    env = dict(os.environ, PROTOGEN_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "protogen", "serve", str(ECHO_SPEC), *args]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, command


def wait_serving(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"exited with {process.wait()}")
        if "serving" in line:
            return line
    raise AssertionError("never served")


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    return process.returncode


def test_protogen_serve_tls_reloads_its_certificate_on_sighup(
    pki: PKI, tmp_path: Path
) -> None:
    cert_file = tmp_path / "live.pem"
    shutil.copy(pki.server, cert_file)
    port = free_port()
    process, _ = protogen_serve(
        tmp_path, "--listen", f"tls://127.0.0.1:{port}", "--tls-cert", str(cert_file)
    )
    try:
        line = wait_serving(process)
        assert f"tls://127.0.0.1:{port}" in line
        url = f"tls://127.0.0.1:{port}"
        before = tls_connect(url, client_context(pki))
        try:
            assert round_trip(before, b"before") == b"before"
            new_ca = trustme.CA()
            new_ca_file = tmp_path / "new_ca.pem"
            new_ca.cert_pem.write_to_path(str(new_ca_file))
            new_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
                str(cert_file)
            )
            process.send_signal(signal.SIGHUP)
            new_context = ssl.create_default_context(cafile=str(new_ca_file))
            deadline = time.monotonic() + TIMEOUT
            while True:  # the signal is handled between two of the loop's steps
                try:
                    with tls_connect(url, new_context) as after:
                        assert round_trip(after, b"after") == b"after"
                    break
                except ssl.SSLCertVerificationError:
                    assert time.monotonic() < deadline, "never reloaded"
                    time.sleep(0.05)
            with pytest.raises(ssl.SSLCertVerificationError):
                tls_connect(url, client_context(pki))
            # The connection made before the reload was not dropped.
            assert round_trip(before, b"still here") == b"still here"
        finally:
            before.close()
    finally:
        assert stop(process) == 0


def test_protogen_serve_tls_without_a_certificate_is_a_usage_error(
    tmp_path: Path,
) -> None:
    process, _ = protogen_serve(tmp_path, "--listen", "tls://127.0.0.1:0")
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    assert "--tls-cert" in stderr


def test_generated_asyncio_client_over_tls(
    pki: PKI, echo: dict[str, ModuleType]
) -> None:
    import asyncio

    aio = echo["aio"]
    message = echo["codec"].Message
    handler = echo["handler"].EchoEchoHandler()
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        url = engine.urls[0]

        async def main() -> None:
            context = client_context(pki)
            async with aio.connect(url, ssl_context=context) as client:
                assert (await client.request(message(b"aio"))).payload == b"aio"
            with pytest.raises(ssl.SSLCertVerificationError):
                await aio.connect(url)  # verified by default

        asyncio.run(main())


def test_a_peers_close_notify_is_the_end_of_stream_answered_in_kind(
    pki: PKI,
) -> None:
    handler = Recorder()
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        sock = tls_connect(engine.urls[0], client_context(pki))
        try:
            assert round_trip(sock, b"bye") == b"bye"
            sock.settimeout(5)
            plain = sock.unwrap()  # sends close_notify, waits for the server's
        finally:
            sock.close()
        plain.close()
        assert handler.wait_closed(1) == [None]  # on_eof: close once answered


def test_tls6_and_a_callable_sni_choice(pki: PKI) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.load_cert_chain(str(pki.other))
    asked: list[str] = []

    def choose(name: str) -> ssl.SSLContext | None:
        asked.append(name)
        return other if name == "other.test" else None

    handler = Recorder()
    try:
        engine_cm = serving(
            handler, "tls6://[::1]:0", tls_cert=str(pki.server), tls_sni=choose
        )
        engine = engine_cm.__enter__()
    except OSError:
        pytest.skip("cannot bind ::1")
    try:
        assert engine.urls[0].startswith("tls6://[::1]:")
        with tls_connect(engine.urls[0], client_context(pki), "other.test") as sock:
            assert [v for k, v in sock.getpeercert()["subjectAltName"]] == [
                "other.test"
            ]
            assert round_trip(sock, b"v6") == b"v6"
        with tls_connect(engine.urls[0], client_context(pki), "example.test") as sock:
            assert round_trip(sock, b"default") == b"default"
    finally:
        engine_cm.__exit__(None, None, None)
    assert asked == ["other.test", "example.test"]


def test_a_reload_from_broken_files_keeps_the_old_certificate(
    pki: PKI, tmp_path: Path
) -> None:
    cert_file = tmp_path / "live.pem"
    shutil.copy(pki.server, cert_file)
    handler = Recorder()
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(cert_file)) as engine:
        cert_file.write_text("not a certificate")
        assert engine.reload_tls() is False
        with tls_connect(engine.urls[0], client_context(pki)) as sock:
            assert round_trip(sock, b"old cert") == b"old cert"
        shutil.copy(pki.server, cert_file)
        assert engine.reload_tls() is True


def test_small_writes_go_out_in_full_records(pki: PKI) -> None:
    # 2 000 writes of 100 bytes, queued at once: joined into 16 KiB records
    # (a dozen), not a record and a send per write.
    size, chunk = 200_000, 100
    handler = Flood(size, chunk)
    with serving(handler, "tls://127.0.0.1:0", tls_cert=str(pki.server)) as engine:
        raw = socket.create_connection(host_port(engine.urls[0]), timeout=TIMEOUT)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = client_context(pki).wrap_bio(
            incoming, outgoing, server_hostname="127.0.0.1"
        )
        wire = bytearray()  # every byte the server sent

        def receive() -> None:
            data = raw.recv(1 << 20)
            assert data, "closed early"
            wire.extend(data)
            incoming.write(data)

        got = bytearray()
        with raw:
            while True:
                try:
                    sslobj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    receive()
            raw.sendall(outgoing.read())
            while len(got) < size:
                try:
                    got += sslobj.read(1 << 20)
                except ssl.SSLWantReadError:
                    receive()
        assert got == stream(size)
        records = []
        at = 0
        while at + 5 <= len(wire):
            records.append(wire[at])
            at += 5 + int.from_bytes(wire[at + 3 : at + 5], "big")
        # The handshake's flights and the session tickets are a few more.
        assert records.count(23) < 30, len(records)  # 23: application data
        assert handler.done.wait(TIMEOUT)


def test_send_steps_cover_the_queue_in_order() -> None:
    from protogen.runtime.tls import RECORD, SEND_BATCH, _steps

    rng = random.Random(17)
    for _ in range(300):
        chunks: list[Any] = [
            bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 300])))
            * rng.choice([1, 10, 400])
            for _ in range(rng.randrange(1, 40))
        ]
        chunks = [c if rng.random() < 0.5 else memoryview(c) for c in chunks]
        whole = b"".join(chunks)
        skip = rng.choice([0, 0, 1, len(chunks[0]), len(whole) // 2])
        steps = [bytes(step) for step in _steps(chunks, skip)]
        assert b"".join(steps) == whole[skip:]
        assert all(steps)
        # Full steps, the last one with a rest of at most a record.
        assert all(len(step) == SEND_BATCH for step in steps[:-1])
        assert not steps or len(steps[-1]) <= SEND_BATCH + RECORD
