"""Generated code for bit fields: exact wire bytes, range and value checks on
encode and decode, split-anywhere round trips, dispatch on a bit field, black."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec_helpers import (
    chunks,
    decode_stream_reader,
    decode_stream_views,
    encodable,
    frames_strategy,
    split_points,
)
from handler_helpers import FakeConn, build
from protogen.errors import InvalidValue, ProtocolError
from protogen.format import is_formatted
from protogen.generator import generate
from protogen.parser import parse_spec
from protogen.runtime import Action

SPEC = """
protocol bitwise
enum Kind : u8 { ping = 1, data = 3, close = 15 }
frame Packet {
    framing varint mqtt
    header {
        control: u8 bits {
            kind: Kind 4        # high nibble
            flags: 4
        }
        word: u24 le bits { version: 3 = 5, _: 5, channel: 12, prio: 4 in {0, 7} }
    }
    body { rest: bytes[rest] }
    trailer { tail: u16 bits { seq: 15, last: 1 } }
    dispatch on kind
}
"""

OPEN_SPEC = SPEC.replace("protocol bitwise", "protocol loose").replace(
    "dispatch on kind", "dispatch on kind allow_unknown"
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _modules(text: str, root: Any) -> Iterator[dict[str, ModuleType]]:
    yield build(text, root)
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def bitwise(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ModuleType]]:
    yield from _modules(SPEC, tmp_path_factory.mktemp("bitwise"))


@pytest.fixture(scope="module")
def loose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    yield from _modules(OPEN_SPEC, tmp_path_factory.mktemp("loose"))


def packet(codec: ModuleType, **fields: Any) -> Any:
    values = dict(kind=codec.Kind.data, flags=2, channel=0xABC, prio=7, rest=b"hi")
    values.update(seq=0x1234, last=1)
    values.update(fields)
    return codec.Packet(**values)


# The wire image of packet(): kind 3 | flags 2; version 5, padding, channel 0xABC,
# prio 7 little-endian; remaining length 2 + 2 (trailer); b"hi"; seq << 1 | last.
WIRE = (
    bytes([0x32])
    + (5 << 21 | 0xABC << 4 | 7).to_bytes(3, "little")
    + bytes([4])
    + b"hi"
    + (0x1234 << 1 | 1).to_bytes(2, "big")
)


def test_bits_are_joined_msb_first_and_split_back(bitwise) -> None:
    codec = bitwise["codec"]
    frame = packet(codec)
    assert frame.encode() == WIRE
    decoded, end = codec.PacketDecoder().decode(WIRE)
    assert end == len(WIRE)
    assert decoded == frame
    assert decoded.kind is codec.Kind.data and decoded.flags == 2
    assert (decoded.channel, decoded.prio, decoded.version) == (0xABC, 7, 5)
    assert (decoded.seq, decoded.last) == (0x1234, 1)
    # The carriers are computed: set by the decoder, ignored by equality.
    assert decoded.control == 0x32 and frame.control is None
    assert decoded.word == 5 << 21 | 0xABC << 4 | 7
    assert "control=50" in repr(decoded) and "kind=<Kind.data: 3>" in repr(decoded)


def test_padding_is_zero_on_encode_and_ignored_on_decode(bitwise) -> None:
    codec = bitwise["codec"]
    wire = bytearray(WIRE)
    wire[3] |= 0x1F  # the five padding bits below `version` (byte 2 of u24 le)
    decoded, _ = codec.PacketDecoder().decode(bytes(wire))
    assert decoded == packet(codec)
    assert decoded.encode() == WIRE


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("flags", 16, "Packet.flags: 16 does not fit in 4 bits"),
        ("flags", -1, "Packet.flags: -1 does not fit in 4 bits"),
        ("channel", 4096, "Packet.channel: 4096 does not fit in 12 bits"),
        ("seq", 1 << 15, "Packet.seq: 32768 does not fit in 15 bits"),
        ("prio", 3, "Packet.prio: 3 is not one of 0, 7"),
        ("kind", 2, "Packet.kind: 2 is not a value of Kind"),
        ("flags", 1.5, "cannot encode"),
    ],
)
def test_encode_rejects_values_that_do_not_fit(bitwise, field, value, message) -> None:
    codec = bitwise["codec"]
    with pytest.raises(ValueError, match=message):
        packet(codec, **{field: value}).encode()
    with pytest.raises(ValueError):
        codec.encode_packet_into(packet(codec, **{field: value}), [])


@pytest.mark.parametrize(
    ("offset", "new_byte", "field", "value"),
    [
        (0, 0x02, "kind", 0),  # reserved type 0 is no Kind member
        (0, 0xE2, "kind", 14),
        (3, (WIRE[3] & 0x1F) | 4 << 5, "version", 4),  # the constant is 5
        (1, (WIRE[1] & 0xF0) | 3, "prio", 3),  # allowed: 0 or 7
    ],
)
def test_decode_checks_enum_constant_and_allowed_bits(
    bitwise, offset, new_byte, field, value
) -> None:
    wire = bytearray(WIRE)
    wire[offset] = new_byte
    with pytest.raises(InvalidValue) as caught:
        bitwise["codec"].PacketDecoder().decode(bytes(wire))
    assert (caught.value.field, caught.value.value) == (f"Packet.{field}", value)


def test_split_stream_round_trip_with_bit_fields(bitwise) -> None:
    codec = bitwise["codec"]
    protocol = parse_spec(SPEC, "test.proto.dsl")
    frames = st.lists(
        encodable(frames_strategy(protocol, "Packet", codec), codec.encode_packet),
        max_size=6,
    )

    @SETTINGS
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        sent = data.draw(frames)
        stream = b"".join(frame.encode() for frame in sent)
        pieces = chunks(stream, data.draw(split_points(len(stream))))
        assert decode_stream_reader(codec, "Packet", pieces) == sent
        assert decode_stream_views(codec, "Packet", pieces) == sent

    check()


# --- dispatch on a bit field --------------------------------------------------------------


def recording_handler(base: type) -> Any:
    class Recorder(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, int]] = []

        def on_ping(self, conn: Any, frame: Any) -> None:
            self.calls.append(("ping", frame.flags))

        def on_data(self, conn: Any, frame: Any) -> None:
            self.calls.append(("data", frame.flags))

        def on_packet(self, conn: Any, frame: Any) -> None:
            self.calls.append(("fallback", int(frame.kind)))

    return Recorder()


def test_dispatch_on_a_bit_field_calls_one_method_per_member(bitwise) -> None:
    codec = bitwise["codec"]
    handler = recording_handler(bitwise["handler"].BitwiseHandler)
    wire = b"".join(
        packet(codec, kind=kind, flags=flags).encode()
        for kind, flags in [
            (codec.Kind.data, 1),
            (codec.Kind.ping, 0),
            (codec.Kind.close, 9),
            (codec.Kind.data, 15),
        ]
    )
    conn = FakeConn(wire)
    assert not handler.on_traffic(conn)  # None or Action.NONE: keep going
    assert handler.calls == [("data", 1), ("ping", 0), ("fallback", 15), ("data", 15)]
    assert conn.inbound == b""


def test_a_member_named_like_a_callback_gets_a_prefixed_method(bitwise) -> None:
    # `close` would shadow on_close: the generated method is on_kind_close.
    handler_class = bitwise["handler"].BitwiseHandler
    assert hasattr(handler_class, "on_kind_close")
    assert handler_class.on_close is not handler_class.on_kind_close


def test_a_value_naming_no_member_is_a_protocol_error(bitwise) -> None:
    handler = recording_handler(bitwise["handler"].BitwiseHandler)
    wire = packet(bitwise["codec"]).encode()
    conn = FakeConn(wire + bytes([0x72]) + WIRE[1:])  # kind 7: no member
    with pytest.raises(ProtocolError):
        handler.on_traffic(conn)
    assert handler.calls == [("data", 2)]


def test_allow_unknown_routes_unknown_bit_values_to_their_method(loose) -> None:
    handler = recording_handler(loose["handler"].LooseHandler)
    unknown: list[int] = []
    handler.on_unknown_kind = lambda conn, frame: unknown.append(frame.kind)
    conn = FakeConn(bytes([0x72]) + WIRE[1:] + WIRE)
    assert not handler.on_traffic(conn)  # None or Action.NONE: keep going
    assert unknown == [7] and handler.calls == [("data", 2)]
    assert loose["codec"].Packet(7, 0, 0, 0, b"", 0, 0).encode()[0] == 0x70


# --- output ------------------------------------------------------------------------------


def test_generated_modules_are_black_clean_and_deterministic() -> None:
    protocol = parse_spec(SPEC, "test.proto.dsl")
    first = generate(protocol, with_tests=True)
    assert first == generate(protocol, with_tests=True)
    assert set(first) == {
        "bitwise_codec.py",
        "bitwise_handler.py",
        "bitwise_server.py",
        "bitwise_client.py",
        "bitwise_aio.py",
        "test_bitwise_properties.py",
    }
    for name, source in first.items():
        assert is_formatted(source), name
    codec = first["bitwise_codec.py"]
    # Specialized: literal shifts and masks, no loop over a field list.
    assert "kind << 4 | flags" in codec
    assert "flags = control & 0xF" in codec
    assert "channel << 4 | prio | 0xA00000" in codec


def test_unused_bit_outputs_do_not_change_other_specs() -> None:
    protocol = parse_spec("protocol plain\nframe F { framing fixed\nheader { a: u8 } }")
    assert "TypeError" not in generate(protocol)["plain_codec.py"]
