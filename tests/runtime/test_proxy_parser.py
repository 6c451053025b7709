"""The sans-I/O PROXY protocol parser: fed in chunks of every size, it takes
exactly the header's bytes and refuses what the spec does not allow."""

from __future__ import annotations

import random
import socket
import struct

import pytest

from protogen.errors import ProtocolError
from protogen.runtime.proxy import (
    TLV,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeaderError,
    ProxyHeaderParser,
    parse_proxy_header,
)

PAYLOAD = b"\x00\x00\x00\x05hello and more bytes after the header"


def v2(
    command: int = 1,
    family: int = 1,
    transport: int = 1,
    addresses: bytes | None = None,
    tlvs: bytes = b"",
    version: int = 2,
) -> bytes:
    if addresses is None:
        addresses = (
            socket.inet_pton(socket.AF_INET, "203.0.113.7")
            + socket.inet_pton(socket.AF_INET, "10.0.0.1")
            + struct.pack("!HH", 51234, 443)
        )
    body = addresses + tlvs
    return (
        V2_SIGNATURE
        + bytes([(version << 4) | command, (family << 4) | transport])
        + struct.pack("!H", len(body))
        + body
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def feed_in_chunks(data: bytes, rng: random.Random) -> tuple[ProxyHeaderParser, int]:
    """Feed random-sized chunks until the header is complete; the bytes taken."""
    parser = ProxyHeaderParser()
    offset = 0
    taken = 0
    while parser.header is None:
        assert offset < len(data), "the parser wants more than the header"
        size = rng.randint(1, 40)
        chunk = data[offset : offset + size]
        used = parser.feed(chunk)
        assert 0 <= used <= len(chunk)
        taken += used
        if parser.header is None:
            assert used == len(chunk)  # everything before the end is header
        offset += len(chunk)
    return parser, taken


HEADERS = [
    b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n",
    b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    v2(),
    v2(tlvs=tlv(TLV.AUTHORITY, b"example.com") + tlv(TLV.NOOP, b"")),
    v2(command=0, family=0, transport=0, addresses=b""),
]


@pytest.mark.parametrize("header", HEADERS)
def test_random_chunks_take_exactly_the_header(header: bytes) -> None:
    rng = random.Random(header)
    for _ in range(200):
        parser, taken = feed_in_chunks(header + PAYLOAD, rng)
        assert taken == len(header) == parser.header.length
        assert parser.feed(PAYLOAD) == 0  # done: the rest is the payload's


def test_v1_tcp4_fields() -> None:
    header = parse_proxy_header(HEADERS[0] + PAYLOAD)
    assert header is not None
    assert (header.version, header.command, header.family) == (1, "PROXY", "TCP4")
    assert header.source == ("203.0.113.7", 51234)
    assert header.destination == ("10.0.0.1", 443)


def test_v1_tcp6_addresses_are_accept_style_tuples() -> None:
    header = parse_proxy_header(HEADERS[1])
    assert header is not None
    assert header.source == ("2001:db8::7", 51234, 0, 0)


def test_v1_unknown_has_no_addresses() -> None:
    header = parse_proxy_header(HEADERS[3])
    assert header is not None and header.family == "UNKNOWN"
    assert header.source is None and header.destination is None


def test_v2_inet_with_tlvs() -> None:
    ssl = struct.pack("!BI", 0x07, 0) + tlv(TLV.SSL_VERSION, b"TLSv1.3")
    ssl += tlv(TLV.SSL_CN, b"client.example") + tlv(TLV.SSL_CIPHER, b"TLS_AES")
    data = v2(
        tlvs=tlv(TLV.AUTHORITY, b"api.example.com")
        + tlv(TLV.ALPN, b"h2")
        + tlv(TLV.UNIQUE_ID, b"id-1")
        + tlv(TLV.SSL, ssl)
        + tlv(0xE0, b"custom")
    )
    header = parse_proxy_header(data + PAYLOAD)
    assert header is not None
    assert header.length == len(data)
    assert header.source == ("203.0.113.7", 51234)
    assert header.destination == ("10.0.0.1", 443)
    assert header.authority == "api.example.com"
    assert header.alpn == b"h2"
    assert header.unique_id == b"id-1"
    assert header.tlv(0xE0) == b"custom"
    assert header.ssl is not None and header.ssl.tls
    assert (header.ssl.version, header.ssl.cn, header.ssl.cipher) == (
        "TLSv1.3",
        "client.example",
        "TLS_AES",
    )
    assert header.ssl.verify == 0


def test_v2_inet6_and_unix() -> None:
    six = (
        socket.inet_pton(socket.AF_INET6, "2001:db8::7")
        + socket.inet_pton(socket.AF_INET6, "::1")
        + struct.pack("!HH", 1, 2)
    )
    header = parse_proxy_header(v2(family=2, addresses=six))
    assert header is not None and header.source == ("2001:db8::7", 1, 0, 0)
    paths = b"/run/client".ljust(108, b"\0") + b"/run/server".ljust(108, b"\0")
    header = parse_proxy_header(v2(family=3, addresses=paths))
    assert header is not None
    assert (header.source, header.destination) == ("/run/client", "/run/server")


def test_v2_local_keeps_no_address() -> None:
    header = parse_proxy_header(v2(command=0))  # LOCAL may carry addresses
    assert header is not None and header.command == "LOCAL"
    assert header.source is None


BAD = {
    "not a header": b"GET / HTTP/1.1\r\n\r\n",
    "v1 lower case": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 unknown protocol": b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 missing field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "v1 bad address": b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
    "v1 family mismatch": b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    "v1 port too big": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "v1 port leading zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "v1 double space": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "v1 bare LF": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "v2 bad signature": V2_SIGNATURE[:-1] + b"X" + bytes(4),
    "v2 version 3": v2(version=3),
    "v2 unknown command": v2(command=2),
    "v2 unknown family": v2(family=4),
    "v2 unknown transport": v2(transport=3),
    "v2 short address block": v2(addresses=b"\x01\x02\x03"),
    "v2 TLV overruns": v2(tlvs=b"\x02\x00\x09abc"),
    "v2 truncated TLV": v2(tlvs=b"\x02\x00"),
    "v2 short SSL TLV": v2(tlvs=tlv(TLV.SSL, b"\x01")),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_headers_raise_a_protocol_error(name: str) -> None:
    data = BAD[name]
    if name == "v1 bare LF":
        data += b"x" * V1_MAX_LENGTH  # the line never ends in CRLF
    with pytest.raises(ProxyHeaderError) as info:
        parse_proxy_header(data)
    assert isinstance(info.value, ProtocolError)
    # Byte by byte, the error comes as soon as the bytes prove it, never later
    # than the whole input.
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError):
        for i in range(len(data)):
            parser.feed(data[i : i + 1])


def test_not_a_header_is_refused_at_its_first_byte() -> None:
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderParser().feed(b"G")
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderParser().feed(b"PROXX")


def test_v1_line_longer_than_107_bytes_is_refused() -> None:
    line = b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n"
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError, match="107"):
        parser.feed(line)
    # At exactly 107 bytes (CRLF included) it is accepted.
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(line) == V1_MAX_LENGTH
    header = parse_proxy_header(line)
    assert header is not None and header.length == V1_MAX_LENGTH
    # One byte more is not.
    with pytest.raises(ProxyHeaderError, match="107"):
        parse_proxy_header(b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15) + b"\r\n")


def test_room_never_reaches_past_the_header() -> None:
    data = v2(tlvs=tlv(TLV.AUTHORITY, b"a" * 300))
    parser = ProxyHeaderParser()
    assert parser.feed(data[:16]) == 16
    assert parser.room() == len(data) - 16
    assert parser.feed(data[16:] + PAYLOAD) == len(data) - 16
    assert parser.room() == 0
