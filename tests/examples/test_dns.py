"""The DNS example (examples/dns/): one spec served over UDP and TCP, driven by dig
(dnsutils), plus raw sockets for NOTIMP, FORMERR, the length prefix and bad input."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from served_example import EXAMPLES, STOP_TIMEOUT, recv_until_closed

START_TIMEOUT = 60.0  # the first start builds the spec into the cache
DIG_TIMEOUT = 15.0
HEADER = struct.Struct(">HHHHHH")
QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5

needs_dig = pytest.mark.skipif(
    shutil.which("dig") is None, reason="dig (dnsutils) not installed"
)


def free_port_pair() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP")


class DnsServer:
    """`python examples/dns/serve.py --port PORT`: UDP and TCP on one port."""

    def __init__(self, cache_dir: Path) -> None:
        self.port = free_port_pair()
        env = dict(os.environ, PROTOGEN_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLES / "dns" / "serve.py"),
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited early: {self.process.communicate(timeout=5)}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the DNS server never listened")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    served = DnsServer(tmp_path_factory.mktemp("cache"))
    try:
        yield served
    finally:
        alive = served.alive()
        served.stop()
        assert alive, "the DNS server died during the tests"


def dig(server: DnsServer, *args: str) -> str:
    result = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+time=3", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=DIG_TIMEOUT,
    )
    return result.stdout


# -- dig ----------------------------------------------------------------------------------


@needs_dig
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_a_records_over_udp_and_tcp(server: DnsServer, transport: str) -> None:
    out = dig(server, "example.com", "A", "+short", transport)
    assert sorted(out.split()) == ["192.0.2.10", "192.0.2.11"]
    assert dig(server, "WWW.Example.COM", "A", "+short", transport).split() == [
        "192.0.2.20"
    ]


@needs_dig
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_aaaa_and_txt(server: DnsServer, transport: str) -> None:
    assert dig(server, "ipv6.example.com", "AAAA", "+short", transport).split() == [
        "2001:db8::6"
    ]
    assert dig(server, "example.com", "AAAA", "+short", transport).split() == [
        "2001:db8::10"
    ]
    assert (
        dig(server, "hello.example.com", "TXT", "+short", transport).strip()
        == '"hello" "world"'
    )
    assert (
        dig(server, "example.com", "TXT", "+short", transport).strip()
        == '"v=spf1 -all"'
    )


@needs_dig
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_nxdomain_and_nodata(server: DnsServer, transport: str) -> None:
    missing = dig(server, "nope.example.com", "A", "+noall", "+comments", transport)
    assert "status: NXDOMAIN" in missing
    assert "flags: qr aa" in missing
    nodata = dig(server, "ipv6.example.com", "A", "+noall", "+comments", transport)
    assert "status: NOERROR" in nodata and "ANSWER: 0" in nodata


@needs_dig
def test_answers_are_authoritative_with_the_question_echoed(server: DnsServer) -> None:
    out = dig(
        server, "www.example.com", "A", "+noall", "+comments", "+question", "+answer"
    )
    assert "flags: qr aa rd" in out
    assert ";www.example.com.\t\tIN\tA" in out
    assert "www.example.com.\t60\tIN\tA\t192.0.2.20" in out


@needs_dig
@pytest.mark.parametrize("edns", ["+noedns", "+edns=0"])
def test_a_big_answer_is_truncated_over_udp(server: DnsServer, edns: str) -> None:
    # about 2 KiB of TXT: more than 512 bytes (no EDNS) and than dig's 1232 (EDNS)
    out = dig(server, "big.example.com", "TXT", "+ignore", "+noall", "+comments", edns)
    assert "flags: qr aa tc rd" in out
    assert "ANSWER: 0" in out


@needs_dig
def test_a_big_answer_is_whole_over_tcp_and_after_dig_retries(
    server: DnsServer,
) -> None:
    zone = (EXAMPLES / "dns" / "example.zone").read_text().splitlines()
    expected = sorted(line.split()[-1] for line in zone if line.startswith("big."))
    assert len(expected) == 10
    over_tcp = dig(server, "big.example.com", "TXT", "+short", "+tcp").splitlines()
    assert sorted(over_tcp) == expected
    retried = dig(
        server, "big.example.com", "TXT", "+short"
    ).splitlines()  # UDP, TC, then TCP
    assert sorted(retried) == expected
    # a client offering a big enough EDNS buffer gets it all over UDP
    whole = dig(
        server,
        "big.example.com",
        "TXT",
        "+bufsize=4096",
        "+ignore",
        "+noall",
        "+comments",
    )
    assert "ANSWER: 10" in whole and " tc " not in whole


# -- raw sockets ------------------------------------------------------------------------------


def query(
    name: str, qtype: int = 1, *, qid: int = 0x1234, flags: int = RD, qclass: int = 1
) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return (
        HEADER.pack(qid, flags, 1, 0, 0, 0)
        + labels
        + b"\x00"
        + struct.pack(">HH", qtype, qclass)
    )


def udp_exchange(server: DnsServer, message: bytes, timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, ("127.0.0.1", server.port))
        return sock.recv(65535)


def tcp_connect(server: DnsServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def tcp_recv_message(sock: socket.socket) -> bytes:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    (length,) = struct.unpack(">H", exactly(2))
    return exactly(length)


def rcode(message: bytes) -> int:
    return HEADER.unpack_from(message)[1] & 0xF


def test_answer_names_point_at_the_question(server: DnsServer) -> None:
    reply = udp_exchange(server, query("www.example.com"))
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(reply)
    assert (qid, qd, an, ns, ar) == (0x1234, 1, 1, 0, 0)
    assert flags & (QR | AA | RD) == QR | AA | RD and rcode(reply) == NOERROR
    question_end = 12 + len(b"\x03www\x07example\x03com\x00") + 4
    answer = reply[question_end:]
    assert answer[:2] == b"\xc0\x0c"  # compressed: a pointer to offset 12
    assert struct.unpack(">HHIH", answer[2:12]) == (1, 1, 60, 4)
    assert answer[12:] == socket.inet_aton("192.0.2.20")


def test_tcp_pipelined_queries_each_get_a_length_prefixed_reply(
    server: DnsServer,
) -> None:
    with tcp_connect(server) as sock:
        batch = b""
        for qid, name in enumerate(
            ["example.com", "nope.example.com", "www.example.com"], 1
        ):
            message = query(name, qid=qid)
            batch += struct.pack(">H", len(message)) + message
        sock.sendall(batch)
        replies = [tcp_recv_message(sock) for _ in range(3)]
    assert [HEADER.unpack_from(r)[0] for r in replies] == [1, 2, 3]
    assert [rcode(r) for r in replies] == [NOERROR, NXDOMAIN, NOERROR]
    assert [HEADER.unpack_from(r)[3] for r in replies] == [2, 0, 1]


def test_unsupported_opcode_gets_notimp(server: DnsServer) -> None:
    status_opcode = 2 << 11
    reply = udp_exchange(server, query("example.com", flags=status_opcode))
    assert rcode(reply) == NOTIMP
    assert HEADER.unpack_from(reply)[1] & 0x7800 == status_opcode


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(HEADER.pack(7, RD, 1, 0, 0, 0), id="question missing"),
        pytest.param(
            HEADER.pack(7, RD, 1, 0, 0, 0) + b"\x07exam", id="label past the end"
        ),
        pytest.param(HEADER.pack(7, RD, 0, 0, 0, 0), id="no question"),
        pytest.param(
            HEADER.pack(7, RD, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2,
            id="two questions",
        ),
        pytest.param(
            HEADER.pack(7, RD, 1, 0, 0, 1) + b"\x00\x00\x01\x00\x01",
            id="additional record missing",
        ),
        pytest.param(
            HEADER.pack(7, RD, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
            id="pointer in question",
        ),
    ],
)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_garbage_that_frames_gets_formerr(
    server: DnsServer, message: bytes, transport: str
) -> None:
    if transport == "udp":
        reply = udp_exchange(server, message)
    else:
        with tcp_connect(server) as sock:
            sock.sendall(struct.pack(">H", len(message)) + message)
            reply = tcp_recv_message(sock)
    qid, flags, *_ = HEADER.unpack_from(reply)
    assert qid == 7 and flags & QR and rcode(reply) == FORMERR


def test_class_other_than_in_is_refused(server: DnsServer) -> None:
    assert rcode(udp_exchange(server, query("example.com", qclass=3))) == REFUSED


def test_a_datagram_shorter_than_a_header_is_dropped(server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(b"\x12\x34\x01", ("127.0.0.1", server.port))
        with pytest.raises(TimeoutError):
            sock.recv(65535)
        sock.settimeout(3)
        sock.sendto(query("example.com"), ("127.0.0.1", server.port))  # still served
        assert rcode(sock.recv(65535)) == NOERROR


def test_responses_are_not_answered(server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(query("example.com", flags=QR), ("127.0.0.1", server.port))
        with pytest.raises(TimeoutError):
            sock.recv(65535)


def test_a_bad_tcp_length_prefix_closes_that_connection_only(server: DnsServer) -> None:
    with tcp_connect(server) as good, tcp_connect(server) as bad:
        # a length of 5: shorter than the 12-byte DNS header that follows it
        bad.sendall(b"\x00\x05" + query("example.com"))
        assert recv_until_closed(bad) == b""
        message = query("example.com")
        good.sendall(struct.pack(">H", len(message)) + message)
        assert rcode(tcp_recv_message(good)) == NOERROR
    assert server.alive()


# -- the generated client: the same frames over both transports ---------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import importlib.util

    saved = os.environ.get("PROTOGEN_CACHE_DIR")
    os.environ["PROTOGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("client-cache"))
    try:
        loader = importlib.util.spec_from_file_location(
            "dns_example_serve", EXAMPLES / "dns" / "serve.py"
        )
        assert loader is not None and loader.loader is not None
        serve = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(serve)
        modules, _ = serve.load_example()
        return modules
    finally:
        if saved is None:
            del os.environ["PROTOGEN_CACHE_DIR"]
        else:
            os.environ["PROTOGEN_CACHE_DIR"] = saved


@pytest.mark.parametrize("scheme", ["udp", "tcp"])
def test_generated_client_queries_over_both_transports(
    server: DnsServer, generated: dict, scheme: str
) -> None:
    Message = generated["codec"].Message
    question = query("hello.example.com", 16)[12:]
    with generated["client"].connect(
        f"{scheme}://127.0.0.1:{server.port}", timeout=5
    ) as client:
        reply = client.request(Message(0x4242, RD, 1, 0, 0, 0, question))
    assert reply.id == 0x4242 and reply.flags & QR and reply.ancount == 1
    assert reply.sections.startswith(question)
    assert reply.sections.endswith(b"\x05hello\x05world")
