"""`dispatch on FIELD allow_unknown`: a value naming no enum member is framed and
decoded as a plain int and reaches the handler's `on_unknown_FIELD`, instead of
raising InvalidValue (memcached answers UNKNOWN_COMMAND and goes on)."""

from __future__ import annotations

import struct
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from handler_helpers import FakeConn, build
from protogen.diagnostics import SpecError
from protogen.errors import InvalidValue
from protogen.parser import parse_spec

SPEC = """
protocol opened
enum Op : u8 { ping = 1, echo = 2 }
frame Packet {
    framing length(size)
    header { magic: u8 = 0x80  op: Op  size: u16 }
    body { payload: bytes[rest] }
    dispatch on op allow_unknown
}
"""
HEADER = struct.Struct(">BBH")


def wire(op: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(0x80, op, len(payload)) + payload


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    yield build(SPEC, tmp_path_factory.mktemp("opened"))


def test_the_ir_records_the_option() -> None:
    frame = parse_spec(SPEC, "t.proto.dsl").frame("Packet")
    assert (frame.dispatch, frame.dispatch_allows_unknown) == ("op", True)
    closed = parse_spec(SPEC.replace(" allow_unknown", ""), "t.proto.dsl").frame(
        "Packet"
    )
    assert (closed.dispatch, closed.dispatch_allows_unknown) == ("op", False)


def test_allow_unknown_needs_dispatch_syntax() -> None:
    with pytest.raises(SpecError):
        parse_spec(
            SPEC.replace("dispatch on op allow_unknown", "allow_unknown"), "t.proto.dsl"
        )


def test_decoder_keeps_unknown_values_as_ints_and_known_ones_as_members(
    opened: dict[str, ModuleType],
) -> None:
    codec = opened["codec"]
    frames, end = codec.PacketDecoder().decode_all(
        wire(2, b"hi") + wire(0x7F, b"??") + wire(1)
    )
    assert end == len(wire(2, b"hi") + wire(0x7F, b"??") + wire(1))
    assert [f.op for f in frames] == [codec.Op.echo, 0x7F, codec.Op.ping]
    assert type(frames[1].op) is int and frames[1].payload == b"??"
    # The encoder accepts the unknown value too: the frame round-trips.
    assert codec.Packet(op=0x7F, payload=b"??").encode() == wire(0x7F, b"??")
    with pytest.raises(InvalidValue):  # other checks are unchanged
        codec.PacketDecoder().decode(b"\x81" + wire(1)[1:])


def test_unknown_values_reach_on_unknown_and_the_stream_goes_on(
    opened: dict[str, ModuleType],
) -> None:
    seen: list[Any] = []

    class Handler(opened["handler"].OpenedHandler):  # type: ignore[name-defined,misc]
        def on_ping(self, conn: Any, frame: Any) -> None:
            seen.append("ping")

        def on_unknown_op(self, conn: Any, frame: Any) -> None:
            seen.append(("unknown", frame.op, bytes(frame.payload)))

    data = wire(1) + wire(0xEE, b"xyz") + wire(1) + wire(0x10)[:2]
    conn = FakeConn(data)
    Handler().on_traffic(conn)
    assert seen == ["ping", ("unknown", 0xEE, b"xyz"), "ping"]
    assert conn.discards == [len(data) - 2]


def test_without_the_option_an_unknown_value_is_still_invalid(tmp_path: Path) -> None:
    modules = build(textwrap.dedent(SPEC).replace(" allow_unknown", ""), tmp_path)
    with pytest.raises(InvalidValue):
        modules["codec"].PacketDecoder().decode(wire(0x7F))
