"""The DNS example (examples/dns/): one spec served over UDP and TCP, driven by dig
(dnsutils), plus raw sockets for NOTIMP, FORMERR, EDNS, the length prefix, name
compression and bad input; the UDP guards (truncation past the amplification
factor, the response rate limit) on servers started with their flags."""

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
BADVERS = 16
TYPE_A, TYPE_MX, TYPE_TXT, TYPE_OPT = 1, 15, 16, 41

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
    """`python examples/dns/serve.py --port PORT [ARGS]`: UDP and TCP on one port."""

    def __init__(self, cache_dir: Path, *args: str) -> None:
        self.port = free_port_pair()
        env = dict(os.environ, PROTOGEN_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLES / "dns" / "serve.py"),
                "--port",
                str(self.port),
                *args,
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
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def serving(cache_dir: Path, *args: str) -> Iterator[DnsServer]:
    served = DnsServer(cache_dir, *args)
    try:
        yield served
    finally:
        alive = served.alive()
        served.stop()
        assert alive, "the DNS server died during the tests"


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[DnsServer]:
    """The defaults: UDP answers at most 8 times the query, no rate limit."""
    yield from serving(cache_dir)


@pytest.fixture(scope="module")
def unlimited_server(cache_dir: Path) -> Iterator[DnsServer]:
    """No amplification limit: only the 512-byte or EDNS size limits UDP."""
    yield from serving(cache_dir, "--udp-amplification", "0")


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


@needs_dig
def test_a_client_offering_a_big_edns_buffer_gets_it_all_without_the_factor(
    unlimited_server: DnsServer,
) -> None:
    whole = dig(
        unlimited_server, "big.example.com", "TXT", "+bufsize=4096", "+ignore",
        "+noall", "+comments",
    )  # fmt: skip
    assert "ANSWER: 10" in whole and " tc " not in whole
    # the client's size still applies: 1232 bytes do not hold 2 KiB
    small = dig(
        unlimited_server, "big.example.com", "TXT", "+bufsize=1232", "+ignore",
        "+noall", "+comments",
    )  # fmt: skip
    assert "flags: qr aa tc rd" in small and "ANSWER: 0" in small


@needs_dig
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_mx_ns_soa_and_cname(server: DnsServer, transport: str) -> None:
    assert dig(server, "example.com", "MX", "+short", transport).splitlines() == [
        "10 mail.example.com.",
        "20 backup.mail.example.com.",
    ]
    assert sorted(dig(server, "example.com", "NS", "+short", transport).split()) == [
        "ns1.example.com.",
        "ns2.example.com.",
    ]
    assert dig(server, "example.com", "SOA", "+short", transport).split() == [
        "ns1.example.com.", "hostmaster.example.com.", "2024010101", "7200",
        "3600", "1209600", "300",
    ]  # fmt: skip
    # a CNAME is followed inside the zone
    assert dig(server, "alias.example.com", "A", "+short", transport).split() == [
        "www.example.com.",
        "192.0.2.20",
    ]


@needs_dig
def test_negative_answers_carry_the_zone_soa(server: DnsServer) -> None:
    for name, qtype, status in [
        ("nope.example.com", "A", "NXDOMAIN"),
        ("ipv6.example.com", "A", "NOERROR"),
    ]:
        out = dig(server, name, qtype, "+noall", "+comments", "+authority")
        assert f"status: {status}" in out and "AUTHORITY: 1" in out
        soa = [line.split() for line in out.splitlines() if "\tSOA\t" in line]
        assert soa == [
            ["example.com.", "300", "IN", "SOA", "ns1.example.com.",
             "hostmaster.example.com.", "2024010101", "7200", "3600", "1209600", "300"]
        ]  # fmt: skip


@pytest.fixture(scope="module")
def huge_zone_server(cache_dir: Path) -> Iterator[DnsServer]:
    """A zone (--zone) whose one RRset is larger than any DNS message."""
    zone = cache_dir.parent / "huge.zone"
    records = [f'huge.example.com. TXT "{n:03d}{"x" * 197}"' for n in range(350)]
    head = "example.com. SOA ns1.example.com. h.example.com. 1 2 3 4 5"
    zone.write_text("\n".join([head, "www.example.com. A 192.0.2.80", *records]) + "\n")
    yield from serving(cache_dir, "--zone", str(zone), "--udp-amplification", "0")


@needs_dig
def test_an_answer_larger_than_a_message_is_truncated_even_over_tcp(
    huge_zone_server: DnsServer,
) -> None:
    # 350 x 211 bytes: over the 65535 a message's length can say
    out = dig(
        huge_zone_server, "huge.example.com", "TXT", "+tcp", "+noall", "+comments"
    )
    assert "flags: qr aa tc rd" in out and "ANSWER: 0" in out
    # the server goes on, from its own zone file
    assert dig(huge_zone_server, "www.example.com", "+short", "+tcp").split() == [
        "192.0.2.80"
    ]
    assert "status: REFUSED" in dig(
        huge_zone_server, "example.net", "+noall", "+comments"
    )


# -- UDP amplification and the response rate limit ------------------------------------------


@needs_dig
def test_a_udp_answer_past_8_times_the_query_is_truncated_and_dig_retries_over_tcp(
    server: DnsServer,
) -> None:
    # 300 bytes of TXT: under 512, but over 8 x the 36-byte query without EDNS
    truncated = dig(
        server, "medium.example.com", "TXT", "+noedns", "+ignore", "+noall",
        "+comments",
    )  # fmt: skip
    assert "flags: qr aa tc rd" in truncated and "ANSWER: 0" in truncated
    retried = dig(server, "medium.example.com", "TXT", "+noedns")
    assert ";; Truncated, retrying in TCP mode." in retried
    assert "(TCP)" in retried and "ANSWER: 1," in retried
    assert f'"{"0" * 150}" "{"1" * 150}"' in retried
    # EDNS does not lift the factor: 2 KiB for a 50-byte query is truncated
    big = dig(
        server, "big.example.com", "TXT", "+bufsize=4096", "+ignore", "+noall",
        "+comments",
    )  # fmt: skip
    assert "flags: qr aa tc rd" in big and "ANSWER: 0" in big


def test_a_raw_udp_answer_never_exceeds_8_times_the_query(server: DnsServer) -> None:
    message = query("medium.example.com", TYPE_TXT)
    reply = udp_exchange(server, message)
    assert len(reply) <= 8 * len(message)
    assert HEADER.unpack_from(reply)[1] & TC and HEADER.unpack_from(reply)[3] == 0
    with tcp_connect(server) as sock:  # TCP answers whole
        sock.sendall(struct.pack(">H", len(message)) + message)
        whole = tcp_recv_message(sock)
    assert HEADER.unpack_from(whole)[3] == 1 and not HEADER.unpack_from(whole)[1] & TC


RRL_RATE = 2  # responses per second per client network
RRL_QUERIES = 30


@pytest.fixture(scope="module")
def limited_server(cache_dir: Path) -> Iterator[DnsServer]:
    yield from serving(cache_dir, "--rrl", str(RRL_RATE), "--rrl-slip", "2")


def _burst(server: DnsServer, source: str) -> tuple[int, int, float]:
    """(full answers, truncated answers, seconds from the first query to the last
    full answer) for RRL_QUERIES queries sent at once from `source`; the rest
    were dropped."""
    full = slipped = 0
    last_full = 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        started = time.monotonic()
        for qid in range(RRL_QUERIES):
            sock.sendto(query("example.com", qid=qid), ("127.0.0.1", server.port))
        sock.settimeout(1.0)
        while True:
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                break
            _, flags, _, ancount, _, _ = HEADER.unpack_from(reply)
            if flags & TC:
                assert ancount == 0
                slipped += 1
            else:
                assert ancount == 2
                full += 1
                last_full = time.monotonic() - started
    return full, slipped, last_full


def test_the_response_rate_limit_answers_a_burst_in_part(
    limited_server: DnsServer,
) -> None:
    full, slipped, elapsed = _burst(limited_server, "127.0.0.1")
    # the bucket holds one second's worth, and refills while the burst is served:
    # every full answer was sent before the last one arrived
    assert 1 <= full <= RRL_RATE + 1 + elapsed * RRL_RATE
    limited = RRL_QUERIES - full
    # at most one limited response in 2 is an empty truncated reply (the count
    # restarts after a refill), the others are dropped
    assert 1 <= slipped <= limited // 2
    # TCP is never limited, nor another /24 network
    message = query("example.com")
    with tcp_connect(limited_server) as sock:
        sock.sendall(struct.pack(">H", len(message)) + message)
        assert HEADER.unpack_from(tcp_recv_message(sock))[3] == 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.1.1", 0))
        sock.settimeout(3)
        sock.sendto(message, ("127.0.0.1", limited_server.port))
        assert HEADER.unpack_from(sock.recv(65535))[3] == 2


@needs_dig
def test_dig_gets_through_the_rate_limit_over_tcp(limited_server: DnsServer) -> None:
    _burst(limited_server, "127.0.0.2")  # spend 127.0.0.0/24's tokens
    assert dig(limited_server, "www.example.com", "A", "+short", "+tcp").split() == [
        "192.0.2.20"
    ]


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


def test_a_tcp_query_that_does_not_decode_gets_formerr_between_pipelined_ones(
    server: DnsServer,
) -> None:
    bad = HEADER.pack(2, RD, 1, 0, 0, 0) + b"\x07exam"  # a label past the end
    batch = b"".join(
        struct.pack(">H", len(m)) + m
        for m in (query("example.com", qid=1), bad, query("www.example.com", qid=3))
    )
    with tcp_connect(server) as sock:
        sock.sendall(batch)
        replies = [tcp_recv_message(sock) for _ in range(3)]
    assert [HEADER.unpack_from(r)[0] for r in replies] == [1, 2, 3]
    assert [rcode(r) for r in replies] == [NOERROR, FORMERR, NOERROR]


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


def opt_record(version: int = 0, size: int = 1232) -> bytes:
    """An EDNS OPT pseudo-record: root owner, type 41, payload size, version."""
    return b"\x00" + struct.pack(">HHBBHH", TYPE_OPT, size, 0, version, 0, 0)


def with_additional(message: bytes, *records: bytes) -> bytes:
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(message)
    header = HEADER.pack(qid, flags, qd, an, ns, ar + len(records))
    return header + message[12:] + b"".join(records)


def reply_opt(reply: bytes) -> tuple[int, int, int]:
    """(payload size, extended rcode, version) of the reply's OPT record, its last."""
    assert reply[-11] == 0 and struct.unpack_from(">H", reply, len(reply) - 10) == (
        TYPE_OPT,
    )
    size, extended, version = struct.unpack_from(">HBB", reply, len(reply) - 8)
    return size, extended, version


@pytest.mark.parametrize("name", ["example.org", "com", "notexample.com"])
def test_names_outside_the_zone_are_refused_not_authoritative(
    server: DnsServer, name: str
) -> None:
    reply = udp_exchange(server, query(name))
    _, flags, qd, an, ns, _ = HEADER.unpack_from(reply)
    assert rcode(reply) == REFUSED and not flags & AA
    assert (qd, an, ns) == (1, 0, 0)


@needs_dig
def test_dig_sees_refused_outside_the_zone(server: DnsServer) -> None:
    out = dig(server, "www.example.org", "A", "+noall", "+comments")
    assert "status: REFUSED" in out and "flags: qr rd;" in out


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_an_edns_version_other_than_0_gets_badvers(
    server: DnsServer, transport: str
) -> None:
    message = with_additional(query("example.com"), opt_record(version=1))
    if transport == "udp":
        reply = udp_exchange(server, message)
    else:
        with tcp_connect(server) as sock:
            sock.sendall(struct.pack(">H", len(message)) + message)
            reply = tcp_recv_message(sock)
    _, _, qd, an, _, ar = HEADER.unpack_from(reply)
    assert (qd, an, ar) == (1, 0, 1)
    # BADVERS is 16: 0 in the header's 4 bits, 1 in the OPT's upper 8
    _, extended, version = reply_opt(reply)
    assert (extended << 4 | rcode(reply), version) == (BADVERS, 0)


@needs_dig
def test_dig_sees_badvers(server: DnsServer) -> None:
    out = dig(server, "example.com", "A", "+edns=1", "+noednsnegotiation", "+noall",
              "+comments")  # fmt: skip
    assert "status: BADVERS" in out and "EDNS: version: 0" in out


def test_edns_version_0_is_answered_with_an_opt_record(server: DnsServer) -> None:
    reply = udp_exchange(server, with_additional(query("example.com"), opt_record()))
    assert rcode(reply) == NOERROR and HEADER.unpack_from(reply)[3] == 2
    assert reply_opt(reply) == (4096, 0, 0)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_two_opt_records_get_formerr(server: DnsServer, transport: str) -> None:
    message = with_additional(query("example.com"), opt_record(), opt_record())
    if transport == "udp":
        reply = udp_exchange(server, message)
    else:
        with tcp_connect(server) as sock:
            sock.sendall(struct.pack(">H", len(message)) + message)
            reply = tcp_recv_message(sock)
    assert HEADER.unpack_from(reply)[0] == 0x1234 and rcode(reply) == FORMERR
    assert HEADER.unpack_from(reply)[3] == 0
    assert reply_opt(reply)[1:] == (0, 0)


def test_a_label_holding_a_dot_is_one_label(server: DnsServer) -> None:
    tail = b"\x07example\x03com\x00" + struct.pack(">HH", TYPE_A, 1)
    header = HEADER.pack(9, RD, 1, 0, 0, 0)
    one_label = udp_exchange(server, header + b"\x03a.b" + tail)
    two_labels = udp_exchange(server, header + b"\x01a\x01b" + tail)
    assert rcode(one_label) == rcode(two_labels) == NOERROR
    assert one_label.endswith(socket.inet_aton("192.0.2.32"))
    assert two_labels.endswith(socket.inet_aton("192.0.2.31"))
    # the question comes back as it was sent: one 3-byte label
    assert one_label[12:].startswith(b"\x03a.b" + tail)


@needs_dig
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_asks_for_a_label_holding_a_dot(server: DnsServer, transport: str) -> None:
    out = dig(server, "a\\.b.example.com", "A", "+noall", "+answer", transport)
    assert out.split() == ["a\\.b.example.com.", "300", "IN", "A", "192.0.2.32"]


def test_answer_and_rdata_names_are_compressed(server: DnsServer) -> None:
    reply = udp_exchange(server, query("example.com", TYPE_MX))
    question_end = 12 + len(b"\x07example\x03com\x00") + 4
    first = reply[question_end:]
    assert first[:2] == b"\xc0\x0c"  # the owner: a pointer to the question
    assert struct.unpack_from(">HHIH", first, 2) == (TYPE_MX, 1, 300, 9)
    # preference 10, then "mail" and a pointer to example.com at offset 12
    assert first[12:21] == b"\x00\x0a\x04mail\xc0\x0c"
    second = first[21:]
    assert second[:2] == b"\xc0\x0c"
    # "backup" then a pointer to mail.example.com in the first answer's RDATA
    mail_at = question_end + 14
    assert second[12:23] == b"\x00\x14\x06backup" + bytes([0xC0, mail_at])
    assert len(reply) == question_end + 21 + 23


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(b"\xc0\x1d", id="pointer to itself"),
        pytest.param(b"\x01x\xc0\x1d", id="pointer to its own label"),
        pytest.param(b"\xc0\x40", id="pointer forward"),
    ],
)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_compression_pointer_loops_get_formerr(
    server: DnsServer, name: bytes, transport: str
) -> None:
    # an additional record whose owner name is the pointer, at offset 29
    message = with_additional(
        query("example.com"), name + struct.pack(">HHIH", TYPE_A, 1, 0, 4) + bytes(4)
    )
    if transport == "udp":
        reply = udp_exchange(server, message)
    else:
        with tcp_connect(server) as sock:
            sock.sendall(struct.pack(">H", len(message)) + message)
            reply = tcp_recv_message(sock)
            # the connection goes on after the FORMERR
            ok = query("www.example.com")
            sock.sendall(struct.pack(">H", len(ok)) + ok)
            assert rcode(tcp_recv_message(sock)) == NOERROR
    assert HEADER.unpack_from(reply)[0] == 0x1234 and rcode(reply) == FORMERR


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
    codec = generated["codec"]
    request = codec.Message(
        id=0x4242, qr=0, opcode=0, aa=0, tc=0, rd=1, ra=0, z=0, ad=0, cd=0, rcode=0,
        questions=[codec.Question("Hello.Example.com", TYPE_TXT, 1)],
        answers=[], authority=[],
        additional=[codec.ResourceRecord("", TYPE_OPT, codec.Opt(1232, 0, 0, 0, 0, []))],
    )  # fmt: skip
    with generated["client"].connect(
        f"{scheme}://127.0.0.1:{server.port}", timeout=5
    ) as client:
        reply = client.request(request)
    assert (reply.id, reply.qr, reply.aa, reply.rd, reply.rcode) == (0x4242, 1, 1, 1, 0)
    assert reply.questions == request.questions  # the name's case kept
    assert reply.answers == [
        codec.ResourceRecord(
            "Hello.Example.com", TYPE_TXT, codec.Record(1, 300, [b"hello", b"world"])
        )
    ]
    assert reply.authority == []
    assert reply.additional == [
        codec.ResourceRecord("", TYPE_OPT, codec.Opt(4096, 0, 0, 0, 0, []))
    ]
