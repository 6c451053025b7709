"""PROXY protocol v1 and v2 headers (HAProxy's spec), sans I/O.

A load balancer in TCP mode (HAProxy `send-proxy` / `send-proxy-v2`, Envoy,
AWS NLB, ...) opens each connection with a header that names the client it
forwards. `ProxyHeaderParser` takes the connection's first bytes in chunks of
any size and says how many of each chunk belong to the header, so the caller
never reads past it: the bytes after the header are the protocol's own.

    parser = ProxyHeaderParser()
    used = parser.feed(chunk)        # bytes of `chunk` that were header bytes
    if parser.header is not None:    # complete; chunk[used:] is payload
        ...

Version 1 is one text line of at most 107 bytes (`PROXY TCP4 src dst sport
dport\\r\\n`); version 2 a 16-byte binary prefix (12-byte signature, version
and command, family and transport, length) followed by the addresses and
TLVs. Anything else, a line longer than 107 bytes, an unknown v2 version,
command, family or transport, or addresses that do not parse, raises
`ProxyHeaderError` at the first byte that proves it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any

from protogen.errors import ProtocolError

__all__ = [
    "TLV",
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderParser",
    "ProxySSL",
    "parse_proxy_header",
]

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the spec's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_PREFIX_LENGTH = 16

_V2_PREFIX = struct.Struct("!12sBBH")
_TLV_HEAD = struct.Struct("!BH")
_SSL_HEAD = struct.Struct("!BI")
_INET = struct.Struct("!4s4sHH")
_INET6 = struct.Struct("!16s16sHH")
_UNIX_LENGTH = 216  # two 108-byte paths


class TLV:
    """Type numbers of v2 TLVs (the spec's PP2_TYPE_* / PP2_SUBTYPE_SSL_*)."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    SSL_VERSION = 0x21
    SSL_CN = 0x22
    SSL_CIPHER = 0x23
    SSL_SIG_ALG = 0x24
    SSL_KEY_ALG = 0x25
    NETNS = 0x30


class ProxyHeaderError(ProtocolError):
    """The connection does not start with a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxySSL:
    """The v2 SSL TLV: what the proxy knows of the client's TLS session."""

    client: int  # PP2_CLIENT_SSL (1), _CERT_CONN (2), _CERT_SESS (4) bits
    verify: int  # 0: the client presented a certificate that verified
    version: str | None = None  # e.g. "TLSv1.3"
    cn: str | None = None  # the client certificate's common name
    cipher: str | None = None
    sig_alg: str | None = None
    key_alg: str | None = None

    @property
    def tls(self) -> bool:
        """The client connected over TLS."""
        return bool(self.client & 0x01)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. `source`/`destination` are socket addresses like
    `accept()` returns ((host, port) for IPv4, (host, port, 0, 0) for IPv6, a
    path for unix), or None when the header carries none (v1 UNKNOWN, v2 LOCAL
    or UNSPEC): the connection's own peer address applies then."""

    version: int  # 1 or 2
    command: str  # "PROXY", or "LOCAL" (v2: the proxy's own health check)
    family: str  # "TCP4", "TCP6", "UNIX" or "UNKNOWN" (v1 names, for v2 too)
    transport: str  # "STREAM", "DGRAM" or "UNSPEC"
    source: Any
    destination: Any
    tlvs: tuple[tuple[int, bytes], ...] = ()
    length: int = 0  # bytes the header took on the wire
    ssl: ProxySSL | None = None  # the SSL TLV, parsed

    def tlv(self, kind: int) -> bytes | None:
        """The first TLV of type `kind` (see `TLV`), or None."""
        for tlv_type, value in self.tlvs:
            if tlv_type == kind:
                return value
        return None

    @property
    def authority(self) -> str | None:
        """The host name the client asked for (TLS SNI or HTTP authority)."""
        value = self.tlv(TLV.AUTHORITY)
        return value.decode("utf-8", "replace") if value is not None else None

    @property
    def alpn(self) -> bytes | None:
        return self.tlv(TLV.ALPN)

    @property
    def unique_id(self) -> bytes | None:
        return self.tlv(TLV.UNIQUE_ID)

    @property
    def netns(self) -> str | None:
        value = self.tlv(TLV.NETNS)
        return value.decode("ascii", "replace") if value is not None else None


class ProxyHeaderParser:
    """Feed a connection's first bytes; `header` is set once the header is complete.

    `feed(data)` returns how many bytes of `data` belong to the header (all of
    them until it is complete); it never takes a byte after the header. A
    caller that cannot un-read bytes asks `room()`, the most bytes that may
    still belong to the header, and reads (or peeks) at most that many.
    """

    __slots__ = ("_buf", "_total", "header")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._total = 0  # v2: the whole header's length, once the prefix is in
        self.header: ProxyHeader | None = None

    def room(self) -> int:
        if self.header is not None:
            return 0
        if self._total:
            return self._total - len(self._buf)
        buf = self._buf
        if buf[:1] == b"\r":
            return V2_PREFIX_LENGTH - len(buf)
        return V1_MAX_LENGTH - len(buf)

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Take the header bytes of `data`; returns their count. Raises
        ProxyHeaderError as soon as the bytes cannot start a valid header."""
        view = memoryview(data).cast("B")
        used = 0
        while self.header is None and used < len(view):
            taken = self._step(view[used:])
            if not taken:
                break
            used += taken
        return used

    def _step(self, data: memoryview) -> int:
        buf = self._buf
        start = len(buf)
        buf += data[: max(self.room(), 0)]
        if buf[0] == 0x50:  # "P": version 1
            return self._feed_v1(start)
        if buf[0] == 0x0D:  # "\r": version 2
            return self._feed_v2(start)
        raise ProxyHeaderError(
            f"connection does not start with a PROXY protocol header (got {bytes(buf[:8])!r})"
        )

    def _feed_v1(self, start: int) -> int:
        buf = self._buf
        prefix = min(len(buf), len(V1_PREFIX))
        if buf[:prefix] != V1_PREFIX[:prefix]:
            raise ProxyHeaderError(
                f"connection does not start with a PROXY protocol header (got {bytes(buf[:8])!r})"
            )
        end = buf.find(b"\r\n", max(start - 1, 0))
        if end < 0:
            if len(buf) >= V1_MAX_LENGTH:
                raise ProxyHeaderError(
                    f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes"
                )
            return len(buf) - start
        length = end + 2
        del buf[length:]
        self.header = _parse_v1(bytes(buf[:end]), length)
        return length - start

    def _feed_v2(self, start: int) -> int:
        buf = self._buf
        prefix = min(len(buf), len(V2_SIGNATURE))
        if buf[:prefix] != V2_SIGNATURE[:prefix]:
            raise ProxyHeaderError(
                f"connection does not start with a PROXY protocol header (got {bytes(buf[:8])!r})"
            )
        if not self._total:
            if len(buf) < V2_PREFIX_LENGTH:
                return len(buf) - start
            del buf[V2_PREFIX_LENGTH:]  # room() allowed a v1 line's worth
            _, ver_cmd, fam, size = _V2_PREFIX.unpack_from(buf)
            _check_v2_prefix(ver_cmd, fam, size)
            self._total = V2_PREFIX_LENGTH + size
            if size:
                return len(buf) - start
        if len(buf) < self._total:
            return len(buf) - start
        self.header = _parse_v2(bytes(buf), self._total)
        return self._total - start


def parse_proxy_header(data: bytes | bytearray | memoryview) -> ProxyHeader | None:
    """The header at the start of `data`, or None if `data` holds only part of
    it (then `ProxyHeaderParser` to go on); `header.length` is its size."""
    parser = ProxyHeaderParser()
    parser.feed(data)
    return parser.header


# ----------------------------------------------------------------- version 1

_V1_FAMILIES = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}


def _parse_v1(line: bytes, length: int) -> ProxyHeader:
    # `line` is the header without its CRLF; splitting on one space is exact
    # (the spec allows no other separator), so no regex touches these bytes.
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        # The proxy could not tell (a unix client, say): the rest is ignored.
        return ProxyHeader(1, "PROXY", "UNKNOWN", "UNSPEC", None, None, (), length)
    if len(parts) != 6:
        raise ProxyHeaderError(f"malformed PROXY v1 header {line!r}")
    _, family, src, dst, sport, dport = parts
    af = _V1_FAMILIES.get(family)
    if af is None:
        raise ProxyHeaderError(f"PROXY v1: unknown protocol {family!r}")
    source = _v1_address(af, src, sport)
    destination = _v1_address(af, dst, dport)
    return ProxyHeader(
        1, "PROXY", family.decode(), "STREAM", source, destination, (), length
    )


def _v1_address(af: int, host: bytes, port: bytes) -> Any:
    try:
        text = host.decode("ascii")
        ip = ipaddress.ip_address(text)
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"PROXY v1: bad address {host!r}") from None
    if (ip.version == 4) != (af == socket.AF_INET):
        raise ProxyHeaderError(f"PROXY v1: address {text} is not of the family given")
    if not port.isdigit() or len(port) > 5 or (len(port) > 1 and port[0] == 0x30):
        raise ProxyHeaderError(f"PROXY v1: bad port {port!r}")
    number = int(port)
    if number > 65535:
        raise ProxyHeaderError(f"PROXY v1: bad port {port!r}")
    return (text, number) if af == socket.AF_INET else (text, number, 0, 0)


# ----------------------------------------------------------------- version 2

_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_FAMILIES = {0x0: "UNKNOWN", 0x1: "TCP4", 0x2: "TCP6", 0x3: "UNIX"}
_TRANSPORTS = {0x0: "UNSPEC", 0x1: "STREAM", 0x2: "DGRAM"}
_ADDRESS_LENGTH = {0x0: 0, 0x1: _INET.size, 0x2: _INET6.size, 0x3: _UNIX_LENGTH}


def _check_v2_prefix(ver_cmd: int, fam: int, size: int) -> None:
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2: unknown version {ver_cmd >> 4}")
    if ver_cmd & 0x0F not in _COMMANDS:
        raise ProxyHeaderError(f"PROXY v2: unknown command {ver_cmd & 0x0F:#x}")
    if fam >> 4 not in _FAMILIES:
        raise ProxyHeaderError(f"PROXY v2: unknown address family {fam >> 4:#x}")
    if fam & 0x0F not in _TRANSPORTS:
        raise ProxyHeaderError(f"PROXY v2: unknown transport {fam & 0x0F:#x}")
    if ver_cmd & 0x0F == 0x1 and size < _ADDRESS_LENGTH[fam >> 4]:
        raise ProxyHeaderError(
            f"PROXY v2: {size} bytes cannot hold a {_FAMILIES[fam >> 4]} address"
        )


def _parse_v2(data: bytes, length: int) -> ProxyHeader:
    _, ver_cmd, fam, _ = _V2_PREFIX.unpack_from(data)
    command = _COMMANDS[ver_cmd & 0x0F]
    family = fam >> 4
    transport = _TRANSPORTS[fam & 0x0F]
    source = destination = None
    offset = V2_PREFIX_LENGTH
    if command == "LOCAL":
        # The proxy's own connection (a health check): addresses, if any, and
        # TLVs are to be skipped.
        return ProxyHeader(
            2, command, _FAMILIES[family], transport, None, None, (), length
        )
    if family == 0x1:
        src, dst, sport, dport = _INET.unpack_from(data, offset)
        source = (socket.inet_ntop(socket.AF_INET, src), sport)
        destination = (socket.inet_ntop(socket.AF_INET, dst), dport)
    elif family == 0x2:
        src, dst, sport, dport = _INET6.unpack_from(data, offset)
        source = (socket.inet_ntop(socket.AF_INET6, src), sport, 0, 0)
        destination = (socket.inet_ntop(socket.AF_INET6, dst), dport, 0, 0)
    elif family == 0x3:
        source = _unix_path(data[offset : offset + 108])
        destination = _unix_path(data[offset + 108 : offset + _UNIX_LENGTH])
    offset += _ADDRESS_LENGTH[family]
    tlvs = _parse_tlvs(data, offset, length, "")
    ssl = next((_parse_ssl(v) for kind, v in tlvs if kind == TLV.SSL), None)
    return ProxyHeader(
        2,
        command,
        _FAMILIES[family],
        transport,
        source,
        destination,
        tlvs,
        length,
        ssl,
    )


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_tlvs(
    data: bytes, offset: int, end: int, where: str
) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    while offset < end:
        if end - offset < _TLV_HEAD.size:
            raise ProxyHeaderError(f"PROXY v2: truncated TLV{where}")
        kind, size = _TLV_HEAD.unpack_from(data, offset)
        offset += _TLV_HEAD.size
        if offset + size > end:
            raise ProxyHeaderError(
                f"PROXY v2: TLV {kind:#04x}{where} of {size} bytes overruns the header"
            )
        tlvs.append((kind, data[offset : offset + size]))
        offset += size
    return tuple(tlvs)


_SSL_FIELDS = {
    TLV.SSL_VERSION: "version",
    TLV.SSL_CN: "cn",
    TLV.SSL_CIPHER: "cipher",
    TLV.SSL_SIG_ALG: "sig_alg",
    TLV.SSL_KEY_ALG: "key_alg",
}


def _parse_ssl(value: bytes) -> ProxySSL:
    if len(value) < _SSL_HEAD.size:
        raise ProxyHeaderError("PROXY v2: truncated SSL TLV")
    client, verify = _SSL_HEAD.unpack_from(value)
    found: dict[str, str] = {}
    for kind, sub in _parse_tlvs(value, _SSL_HEAD.size, len(value), " in SSL TLV"):
        name = _SSL_FIELDS.get(kind)
        if name is not None and name not in found:
            found[name] = sub.decode("utf-8", "replace")
    return ProxySSL(client, verify, **found)
