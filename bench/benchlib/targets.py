"""The example servers `make attack` runs against, and the bytes of their protocols
an attacker and a bystander need: one request and how to read its answer, a
request with a large answer, a frame that never completes, a frame over
max_frame."""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass, field
from typing import Callable

from .paths import EXAMPLES


class AnswerError(RuntimeError):
    """The server closed the connection, or answered something unexpected."""


class Stream:
    """Blocking reads of exact sizes and delimited pieces from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise AnswerError("the server closed the connection")
        self.buffer += chunk

    def exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def until(self, delimiter: bytes, limit: int = 1 << 20) -> bytes:
        """Everything up to and including `delimiter`."""
        while (at := self.buffer.find(delimiter)) < 0:
            if len(self.buffer) > limit:
                raise AnswerError(f"no {delimiter!r} in {limit} bytes")
            self._fill()
        return self.exact(at + len(delimiter))


Reader = Callable[[Stream], None]


@dataclass
class Target:
    """One example server and its protocol, as the attack clients use it."""

    name: str
    command: Callable[[int], list[str]]  # port -> argv, run from the repository root
    request: bytes  # the bystander's request
    read_answer: Reader  # reads exactly the answer to `request`
    big_request: bytes  # a request whose answer is large
    big_answer: int  # about how large (bounds what a never-reading client asks)
    partial: bytes  # the start of a frame that a trickle never completes
    trickle: bytes  # one more byte of it (b"": the frame cannot grow)
    oversize: bytes | None  # the start of a frame over max_frame (None: cannot be)
    # Sent first on every connection (a session opening), and how to read its answer.
    hello: Callable[[int], bytes] = lambda index: b""
    read_hello: Reader | None = None
    # Sent once, on a connection of its own, before the attacks (data they use).
    setup: bytes = b""
    read_setup: Reader | None = None
    # Sent by each never-reading client after hello (e.g. a subscription).
    prelude: bytes = b""
    notes: list[str] = field(default_factory=list)


def _serve(spec: str, handler: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "protogen",
            "serve",
            f"examples/{spec}",
            "--handler",
            handler,
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ]

    return command


def _script(directory: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            str(EXAMPLES / directory / "serve.py"),
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ]

    return command


# -- echo: u32 length + payload ------------------------------------------------------

_U32 = struct.Struct(">I")


def _read_length_prefixed(stream: Stream) -> None:
    (size,) = _U32.unpack(stream.exact(4))
    stream.exact(size)


def _echo() -> Target:
    return Target(
        "echo",
        _serve("echo.proto.dsl", "examples.echo_service:EchoService"),
        request=_U32.pack(4) + b"ping",
        read_answer=_read_length_prefixed,
        big_request=_U32.pack(65536) + b"e" * 65536,
        big_answer=65540,
        partial=_U32.pack(1 << 20) + b"p",
        trickle=b"p",
        oversize=_U32.pack(16 * 1024 * 1024 + 1),
    )


# -- lines: a chat room ------------------------------------------------------------------


def _read_line(stream: Stream) -> None:
    stream.until(b"\n")


def _read_who(stream: Stream) -> None:
    """The /who answer; notices of others joining and leaving come in between."""
    while not stream.until(b"\n").startswith(b"* here:"):
        pass


def _lines() -> Target:
    return Target(
        "lines",
        _serve("lines.proto.dsl", "examples.lines_chat:ChatRoom"),
        request=b"/who\n",
        read_answer=_read_who,
        # A chat line is relayed to every other member: to the other
        # never-reading clients too.
        big_request=b"x" * 8000 + b"\n",
        big_answer=8000,
        partial=b"never ending line ",
        trickle=b"a",
        oversize=b"o" * (8 * 1024 + 16),
        read_hello=_read_line,
    )


# -- fixed: 16-byte sensor records -------------------------------------------------------


def _reading(version: int) -> bytes:
    return (
        struct.pack(">HBB", 0x5352, version, 1)
        + struct.pack("<I", 7)
        + struct.pack(">if", 0, 21.5)
    )


def _read_record(stream: Stream) -> None:
    stream.exact(16)


def _fixed() -> Target:
    query = _reading(2)
    return Target(
        "fixed",
        _serve("fixed.proto.dsl", "examples.fixed_collector:SensorCollector"),
        request=query,
        read_answer=_read_record,
        big_request=query * 64,
        big_answer=16 * 64,
        partial=query[:15],
        trickle=b"",
        oversize=None,
        notes=["fixed-size records: no frame can be oversize"],
    )


# -- netstring: a key-value store -------------------------------------------------------


def _netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def _read_netstring(stream: Stream) -> None:
    size = int(stream.until(b":")[:-1])
    if stream.exact(size + 1)[-1:] != b",":
        raise AnswerError("a netstring without its comma")


def _netstring_target() -> Target:
    return Target(
        "netstring",
        _serve("netstring.proto.dsl", "examples.netstring_kv:KeyValueStore"),
        request=_netstring(b"UPPER abc"),
        read_answer=_read_netstring,
        big_request=_netstring(b"GET big"),
        big_answer=60000,
        partial=b"60000:",
        trickle=b"a",
        oversize=b"99999999:",
        setup=_netstring(b"SET big " + b"b" * 60000),
        read_setup=_read_netstring,
    )


# -- varint: LEB128 length + a protobuf CounterRequest ------------------------------------


def _leb128(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_leb128_prefixed(stream: Stream) -> None:
    size = shift = 0
    while True:
        byte = stream.exact(1)[0]
        size |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    stream.exact(size)


def _varint() -> Target:
    counter = b"\x0a\x04hits\x10\x02"  # CounterRequest{name: "hits", delta: 1}
    request = _leb128(len(counter)) + counter
    return Target(
        "varint",
        _serve("varint.proto.dsl", "examples.varint_counter:CounterService"),
        request=request,
        read_answer=_read_leb128_prefixed,
        big_request=request * 64,
        big_answer=12 * 64,
        partial=_leb128(1 << 20) + b"\x0a",
        trickle=b"a",
        oversize=_leb128(4 * 1024 * 1024 + 1),
    )


# -- HTTP/1.1 ----------------------------------------------------------------------------


def _read_http(stream: Stream) -> None:
    head = stream.until(b"\r\n\r\n", limit=65536)
    if not head.startswith(b"HTTP/1.1 200 "):
        raise AnswerError(f"HTTP answer {head[:40]!r}")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    stream.exact(length)


def _http() -> Target:
    body = b"h" * 32768
    return Target(
        "http",
        _script("http"),
        request=b"GET /plaintext HTTP/1.1\r\nHost: bystander\r\n\r\n",
        read_answer=_read_http,
        big_request=b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
        big_answer=len(body) + 150,
        partial=b"GET /plaintext HTTP/1.1\r\nHost: slow\r\nX-Slow: ",
        trickle=b"a",
        oversize=b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n",
    )


# -- memcached, binary protocol ----------------------------------------------------------

_MC_HEADER = struct.Struct(">BBHBBHIIQ")
_MC_GET, _MC_SET = 0x00, 0x01


def _mc(opcode: int, key: bytes, value: bytes = b"", extras: bytes = b"") -> bytes:
    body = len(extras) + len(key) + len(value)
    return (
        _MC_HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, body, 0, 0)
        + extras
        + key
        + value
    )


def _read_mc(stream: Stream) -> None:
    header = _MC_HEADER.unpack(stream.exact(24))
    stream.exact(header[6])


def _read_mc_twice(stream: Stream) -> None:
    _read_mc(stream)
    _read_mc(stream)


def _memcached() -> Target:
    flags_exptime = struct.pack(">II", 0, 0)
    return Target(
        "memcached",
        _script("memcached"),
        request=_mc(_MC_GET, b"bystander"),
        read_answer=_read_mc,
        big_request=_mc(_MC_GET, b"big"),
        big_answer=1024 * 1024,
        partial=_MC_HEADER.pack(0x80, _MC_SET, 1, 8, 0, 0, 100000, 0, 0),
        trickle=b"a",
        oversize=_MC_HEADER.pack(0x80, _MC_SET, 1, 8, 0, 0, 0xFFFFFFF0, 0, 0),
        setup=_mc(_MC_SET, b"bystander", b"here", flags_exptime)
        + _mc(_MC_SET, b"big", b"B" * (1024 * 1024), flags_exptime),
        read_setup=_read_mc_twice,
        notes=["an oversize SET is answered E2BIG and skipped: the connection stays"],
    )


# -- MQTT 3.1.1 ---------------------------------------------------------------------------


def _mqtt_string(text: bytes) -> bytes:
    return struct.pack(">H", len(text)) + text


def _mqtt_packet(control: int, body: bytes) -> bytes:
    return bytes([control]) + _leb128(len(body)) + body


def _mqtt_connect(index: int) -> bytes:
    body = (
        _mqtt_string(b"MQTT")
        + b"\x04\x02\x00\x3c"  # level 4, clean session, keep alive 60 s
        + _mqtt_string(b"attack-%d" % index)
    )
    return _mqtt_packet(0x10, body)


def _read_connack(stream: Stream) -> None:
    if stream.exact(4)[:2] != b"\x20\x02":
        raise AnswerError("no CONNACK")


def _read_pingresp(stream: Stream) -> None:
    if stream.exact(2) != b"\xd0\x00":
        raise AnswerError("no PINGRESP")


def _mqtt() -> Target:
    payload = b"m" * 60000
    return Target(
        "mqtt",
        _script("mqtt"),
        request=b"\xc0\x00",  # PINGREQ
        read_answer=_read_pingresp,
        # Every never-reading client subscribes to attack/#: each publish is
        # delivered to all of them.
        big_request=_mqtt_packet(0x30, _mqtt_string(b"attack/t") + payload),
        big_answer=len(payload),
        partial=b"\x10" + _leb128(100000) + _mqtt_string(b"MQTT"),
        trickle=b"a",
        oversize=b"\x10" + _leb128(2 * 1024 * 1024),
        hello=_mqtt_connect,
        read_hello=_read_connack,
        prelude=_mqtt_packet(0x82, b"\x00\x01" + _mqtt_string(b"attack/#") + b"\x00"),
    )


# -- DNS over TCP ------------------------------------------------------------------------


def _dns_query(name: bytes, qtype: int) -> bytes:
    labels = b"".join(bytes([len(label)]) + label for label in name.split(b"."))
    message = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    message += labels + b"\x00" + struct.pack(">HH", qtype, 1)
    return struct.pack(">H", len(message)) + message


def _read_dns(stream: Stream) -> None:
    (size,) = struct.unpack(">H", stream.exact(2))
    stream.exact(size)


def _dns() -> Target:
    def command(port: int) -> list[str]:
        return [
            sys.executable,
            str(EXAMPLES / "dns" / "serve.py"),
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ]

    return Target(
        "dns",
        command,
        request=_dns_query(b"example.com", 1),
        read_answer=_read_dns,
        big_request=_dns_query(b"big.example.com", 16),
        big_answer=2100,
        partial=struct.pack(">H", 60000) + b"\x12\x34",
        trickle=b"a",
        oversize=None,
        notes=["a u16 length cannot pass max_frame (65537): only the burst"],
    )


def all_targets() -> list[Target]:
    return [
        _echo(),
        _lines(),
        _fixed(),
        _netstring_target(),
        _varint(),
        _http(),
        _memcached(),
        _mqtt(),
        _dns(),
    ]
