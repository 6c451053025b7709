"""A counter service on protobuf-style length-delimited messages (`varint.proto.dsl`).

    protogen serve examples/varint.proto.dsl --handler examples.varint_counter:CounterService

The spec frames the stream as protobuf's `writeDelimitedTo` does: a LEB128
varint length, then that many bytes. Inside each frame is a protobuf message,
encoded by hand here (no protobuf dependency) with the wire format of:

    message CounterRequest {      // client -> server
      string name  = 1;
      sint64 delta = 2;           // 0 reads the counter
    }
    message CounterReply {        // server -> client
      string name  = 1;
      sint64 value = 2;           // the counter after the change
      string error = 3;           // set when the request was refused
    }

Counters start at 0 and live as long as the server (per worker with `--loops N`).
A frame that is not a valid CounterRequest gets a reply with `error` set and the
connection stays open; a malformed varint or a frame over the spec's 4 MiB
`max_frame` closes that connection only. Unknown fields are skipped, as
protobuf parsers do. Use `encode_request` / `decode_reply` with the generated
client:

    with varint_client.connect("tcp://127.0.0.1:7000") as client:
        reply = client.request(Message(message=encode_request("hits", 1)))
        print(decode_reply(reply.message))    # CounterReply(name='hits', value=1, error='')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from varint_codec import Message
from varint_handler import VarintHandler

__all__ = [
    "CounterReply",
    "CounterRequest",
    "CounterService",
    "WireError",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
]

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
VARINT, I64, LEN, I32 = 0, 1, 2, 5  # protobuf wire types


class WireError(ValueError):
    """Bytes that are not the expected protobuf message."""


@dataclass(frozen=True)
class CounterRequest:
    name: str
    delta: int = 0


@dataclass(frozen=True)
class CounterReply:
    name: str
    value: int = 0
    error: str = ""


class CounterService(VarintHandler):
    """Adds each request's delta to the named counter and replies with its value."""

    def __init__(self) -> None:
        super().__init__()
        self.counters: dict[str, int] = {}

    def on_message(self, conn: Any, frame: Message) -> None:
        try:
            request = decode_request(bytes(frame.message))
        except WireError as error:
            reply = CounterReply(name="", error=f"bad request: {error}")
        else:
            reply = self.apply(request)
        self.send(conn, Message(message=encode_reply(reply)))

    def apply(self, request: CounterRequest) -> CounterReply:
        value = self.counters.get(request.name, 0) + request.delta
        if not INT64_MIN <= value <= INT64_MAX:
            return CounterReply(
                request.name, self.counters.get(request.name, 0), "int64 overflow"
            )
        self.counters[request.name] = value
        return CounterReply(request.name, value)


# -- the protobuf wire format (just what these two messages need) -----------------


def encode_request(name: str, delta: int = 0) -> bytes:
    return _string(1, name) + _sint64(2, delta)


def encode_reply(reply: CounterReply) -> bytes:
    return (
        _string(1, reply.name)
        + _sint64(2, reply.value)
        + (_string(3, reply.error) if reply.error else b"")
    )


def decode_request(data: bytes | memoryview) -> CounterRequest:
    fields = _fields(data)
    name = _text(fields.get(1, b""))
    if not name:
        raise WireError("name is required")
    return CounterRequest(name, _unzigzag(fields.get(2, 0)))


def decode_reply(data: bytes | memoryview) -> CounterReply:
    fields = _fields(data)
    return CounterReply(
        _text(fields.get(1, b"")),
        _unzigzag(fields.get(2, 0)),
        _text(fields.get(3, b"")),
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(number: int, text: str) -> bytes:
    data = text.encode()
    return _varint(number << 3 | LEN) + _varint(len(data)) + data


def _sint64(number: int, value: int) -> bytes:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{value} does not fit in sint64")
    zigzag = (value << 1) ^ (value >> 63)  # small magnitudes, short varints
    return _varint(number << 3 | VARINT) + _varint(zigzag & 0xFFFFFFFFFFFFFFFF)


def _unzigzag(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise WireError("expected a varint")
    value &= 0xFFFFFFFFFFFFFFFF  # a 10-byte varint may carry more than 64 bits
    return (value >> 1) ^ -(value & 1)


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise WireError("expected a string")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise WireError("string is not UTF-8") from None


def _fields(data: bytes | memoryview) -> dict[int, int | bytes]:
    """field number -> last value (protobuf: the last occurrence wins)."""
    return dict(_scan(bytes(data)))  # bytes: fields are sliced out as bytes


def _scan(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire_type == LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise WireError("truncated field")
            yield number, data[pos : pos + size]
            pos += size
        elif wire_type in (I64, I32):  # unknown fixed-width field: skip it
            pos += 8 if wire_type == I64 else 4
            if pos > len(data):
                raise WireError("truncated field")
        else:
            raise WireError(f"unsupported wire type {wire_type}")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(pos, min(pos + 10, len(data))):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise WireError("truncated or overlong varint")
