"""Typed bodies and structures: the generated codec, fed bytes (h11 style).

Each test builds a small spec and checks what the decoder makes of given bytes
(values, or the ProtocolError and its message naming the field path) and what
the encoder writes (every length, count and flag computed).
"""

from __future__ import annotations

import struct

import pytest

from protogen.errors import ConstraintViolation, InvalidValue, MalformedFrame, ProtocolError
from protogen.parser import parse_spec


@pytest.fixture
def make(build):
    def _make(text: str):
        return build(parse_spec(text, "test.proto.dsl"))

    return _make


def frame_of(body: str, prelude: str = "", header: str = "n: u16") -> str:
    return f"""
protocol t
{prelude}
frame F {{
    framing length(n)
    header {{ {header} }}
    body {{ {body} }}
}}
"""


def wire(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


# --- scalars anywhere in the body ------------------------------------------------------


def test_typed_fields_after_a_variable_size_field(make) -> None:
    m = make(frame_of(
        "name: string[u8] a: u8 b: i16 le c: u24 d: u32 e: i64 f: f32 g: f64 le h: u40 le"
    ))
    body = (
        b"\x03abc" + b"\x07" + struct.pack("<h", -2) + (5).to_bytes(3, "big")
        + struct.pack(">Ii", 6, 0)[:4] + struct.pack(">q", -7) + struct.pack(">f", 1.5)
        + struct.pack("<d", -0.25) + (9).to_bytes(5, "little")
    )
    frame, end = m.FDecoder().decode(wire(body))
    assert end == len(body) + 2
    assert (frame.name, frame.a, frame.b, frame.c, frame.d, frame.e) == ("abc", 7, -2, 5, 6, -7)
    assert (frame.f, frame.g, frame.h) == (1.5, -0.25, 9)
    assert frame.encode() == wire(body)


def test_enum_const_allowed_and_bits_in_the_body(make) -> None:
    m = make(frame_of(
        "tag: string[u8] kind: K magic: u8 = 0x2A level: u8 in {1, 3} "
        "flags: u8 bits { hi: 4, lo: K 4 }",
        prelude="enum K : u8 { a = 1, b = 2 }",
    ))
    good = b"\x00" + b"\x02" + b"\x2a" + b"\x03" + b"\x51"
    frame, _ = m.FDecoder().decode(wire(good))
    assert (frame.kind, frame.level, frame.hi, frame.lo) == (m.K.b, 3, 5, m.K.a)
    assert frame == m.F(tag="", kind=m.K.b, level=3, hi=5, lo=m.K.a)
    assert frame.encode() == wire(good)
    for bad, path in [
        (b"\x00\x09\x2a\x03\x51", "F.kind"),
        (b"\x00\x02\x2b\x03\x51", "F.magic"),
        (b"\x00\x02\x2a\x02\x51", "F.level"),
        (b"\x00\x02\x2a\x03\x53", "F.lo"),
    ]:
        with pytest.raises(InvalidValue) as caught:
            m.FDecoder().decode(wire(bad))
        assert caught.value.field == path
    with pytest.raises(ValueError, match="F.level"):
        m.F(tag="", kind=m.K.a, level=2, hi=0, lo=m.K.a).encode()


def test_varints_in_the_body(make) -> None:
    m = make(frame_of("a: varint b: zigzag c: mqtt_varint"))
    frame, _ = m.FDecoder().decode(wire(b"\xac\x02" + b"\x03" + b"\xff\x7f"))
    assert (frame.a, frame.b, frame.c) == (300, -2, 16383)
    assert m.F(a=1 << 63, b=-(1 << 63), c=268_435_455).encode() == wire(
        b"\x80" * 9 + b"\x01" + b"\xff" * 9 + b"\x01" + b"\xff\xff\xff\x7f"
    )
    with pytest.raises(MalformedFrame, match="F.a: non-minimal varint"):
        m.FDecoder().decode(wire(b"\x80\x00\x00\x00"))
    with pytest.raises(MalformedFrame, match="F.c: varint overruns the frame"):
        m.FDecoder().decode(wire(b"\x00\x00\xff"))
    with pytest.raises(MalformedFrame, match="F.c: varint longer than 4 bytes"):
        m.FDecoder().decode(wire(b"\x00\x00\xff\xff\xff\xff\x7f"))


# --- byte strings and texts ---------------------------------------------------------


def test_sizes_from_earlier_fields_and_expressions(make) -> None:
    m = make(frame_of(
        "total: u8 pad: u8 payload: bytes[total - pad - 1] padding: bytes[pad] tail: bytes[rest]"
    ))
    body = b"\x08\x02" + b"hello" + b"xy" + b"!"
    frame, _ = m.FDecoder().decode(wire(body))
    assert (frame.payload, frame.padding, frame.tail) == (b"hello", b"xy", b"!")
    assert frame.encode() == wire(body)
    with pytest.raises(MalformedFrame, match="F.payload: negative size -2"):
        m.FDecoder().decode(wire(b"\x00\x01"))
    with pytest.raises(ValueError, match="F.payload: 3 bytes, but `total - pad - 1` is 5"):
        m.F(total=8, pad=2, payload=b"abc", padding=b"xy", tail=b"").encode()


def test_a_size_field_is_computed_from_its_value(make) -> None:
    m = make(frame_of("klen: u8 key: bytes[klen] vlen: u16 value: string[vlen * 2]"))
    frame = m.F(key=b"ab", value="wxyz")
    encoded = frame.encode()
    assert encoded == wire(b"\x02ab\x00\x02wxyz")
    decoded, _ = m.FDecoder().decode(encoded)
    assert (decoded.klen, decoded.vlen, decoded) == (2, 2, frame)
    with pytest.raises(ValueError, match="F.value"):
        m.F(key=b"", value="odd").encode()


def test_the_issue_example_message(make) -> None:
    """A string that runs past the frame names itself: no IndexError, no slicing."""
    m = make("""
protocol mqttish
frame Packet {
    framing length(n)
    header { n: u16 }
    body { packet: Publish }
}
struct Publish { topic: string[u16] payload: bytes[rest] }
""")
    with pytest.raises(MalformedFrame) as caught:
        m.PacketDecoder().decode(wire(b"\x01\x2cabc"))
    assert str(caught.value) == "Publish.topic: 300-byte string overruns the frame"


def test_prefixed_terminated_and_nullable(make) -> None:
    m = make(frame_of(
        'a: bytes[u8] b: string[u16 le] c: bytes[varint] d: string[until "\\0"] '
        'e: bytes[until "\\r\\n"] f: string[i16] or null g: bytes[i32] or null'
    ))
    body = (
        b"\x02hi" + b"\x02\x00ok" + b"\x01z" + b"name\x00" + b"line\r\n"
        + b"\xff\xff" + b"\x00\x00\x00\x01!"
    )
    frame, _ = m.FDecoder().decode(wire(body))
    assert (frame.a, frame.b, frame.c, frame.d, frame.e) == (b"hi", "ok", b"z", "name", b"line")
    assert (frame.f, frame.g) == (None, b"!")
    assert frame.encode() == wire(body)
    with pytest.raises(MalformedFrame, match="F.f: negative size -2"):
        m.FDecoder().decode(wire(body.replace(b"\xff\xff", b"\xff\xfe")))
    with pytest.raises(MalformedFrame, match=r"F.d: no b'\\x00' terminator"):
        m.FDecoder().decode(wire(b"\x00\x00\x00\x00" + b"abc"))
    with pytest.raises(ValueError, match="holds its terminator"):
        m.F(a=b"", b="", c=b"", d="a\0b", e=b"", f=None, g=None).encode()


def test_invalid_utf8_names_the_field(make) -> None:
    m = make(frame_of("s: string[rest]"))
    with pytest.raises(MalformedFrame, match="F.s: invalid UTF-8 at byte 1"):
        m.FDecoder().decode(wire(b"a\xff"))


# --- arrays --------------------------------------------------------------------------


def test_arrays_by_count_prefix_rest_and_terminator(make) -> None:
    m = make("""
protocol t
frame F {
    framing length(n)
    header { n: u16 count: u8 }
    body {
        points: Point[count]
        tags: string[u8][u8]
        words: u16[u8]
        labels: Label[until it.length == 0]
        rest: u8[rest]
    }
}
struct Point { x: i8 y: i8 }
struct Label { length: u8 where length < 64 text: bytes[length] }
""")
    frame = m.F(
        points=[m.Point(1, -1), m.Point(2, -2)],
        tags=["a", "bc"],
        words=[1, 0x0203],
        labels=[m.Label(text=b"www"), m.Label(text=b"")],
        rest=[9, 8],
    )
    encoded = frame.encode()
    body = (
        b"\x01\xff\x02\xfe" + b"\x02\x01a\x02bc" + b"\x02\x00\x01\x02\x03"
        + b"\x03www\x00" + b"\x09\x08"
    )
    assert encoded == struct.pack(">HB", len(body), 2) + body
    decoded, _ = m.FDecoder().decode(encoded)
    assert decoded == frame and decoded.count == 2
    with pytest.raises(ValueError, match="must hold for the last element only"):
        m.F(points=[], tags=[], words=[], labels=[m.Label(text=b"x")], rest=[]).encode()


def test_a_huge_count_is_refused_before_looping(make) -> None:
    m = make(frame_of("count: u32 items: Item[count]", prelude="struct Item { a: u8 b: u8 }"))
    with pytest.raises(MalformedFrame, match="F.items: 4294967295 elements overrun the frame"):
        m.FDecoder().decode(wire(b"\xff\xff\xff\xff\x00\x00"))


# --- conditions, unions, regions ---------------------------------------------------------


def test_presence_flags_are_computed(make) -> None:
    m = make("""
protocol t
frame F {
    framing length(n)
    header { n: u16 }
    body {
        flags: u8 bits { has_a: 1, has_b: 1, level: 6 }
        a: string[u8] if has_a
        b: u16 if has_b
        c: u16 if level > 3
    }
}
""")
    frame = m.F(level=4, a="x", b=None, c=7)
    encoded = frame.encode()
    assert encoded == wire(b"\x84" + b"\x01x" + b"\x00\x07")
    decoded, _ = m.FDecoder().decode(encoded)
    assert decoded == frame and (decoded.has_a, decoded.has_b) == (1, 0)
    with pytest.raises(ValueError, match="F.c: needed when `level > 3`"):
        m.F(level=5, a=None, b=None, c=None).encode()
    with pytest.raises(ValueError, match="F.c: must be None unless `level > 3`"):
        m.F(level=1, a=None, b=None, c=1).encode()


def test_union_arms_and_default(make) -> None:
    m = make("""
protocol t
enum Kind : u8 { num = 1, text = 2, pair = 3 }
frame F {
    framing length(n)
    header { n: u16 kind: u8 }
    body {
        value: switch kind {
            Kind.num => u32
            Kind.text, 7 => string[rest]
            Kind.pair => Pair
            default => bytes[rest]
        }
    }
}
struct Pair { a: u8 b: u8 }
""")
    decoder = m.FDecoder()
    assert decoder.decode(b"\x00\x04\x01\x00\x00\x01\x00")[0].value == 256
    assert decoder.decode(b"\x00\x02\x07hi")[0].value == "hi"
    assert decoder.decode(b"\x00\x02\x03\x05\x06")[0].value == m.Pair(5, 6)
    assert decoder.decode(b"\x00\x01\x09\xee")[0].value == b"\xee"
    assert m.F(kind=3, value=m.Pair(1, 2)).encode() == b"\x00\x02\x03\x01\x02"
    with pytest.raises(TypeError, match="F.value: `kind` is 3, which needs a Pair, not str"):
        m.F(kind=3, value="no").encode()
    with pytest.raises(MalformedFrame, match="F: 1 bytes after the last field"):
        decoder.decode(b"\x00\x03\x03\x05\x06\x07")


def test_union_without_default_refuses_other_values(make) -> None:
    m = make(frame_of("kind: u8 value: switch kind { 1 => u8, 2 => u16 }"))
    with pytest.raises(InvalidValue) as caught:
        m.FDecoder().decode(wire(b"\x05\x00"))
    assert caught.value.field == "F.value" and caught.value.value == 5


def test_regions_are_sized_by_their_encoding(make) -> None:
    m = make("""
protocol t
frame F {
    framing length(n)
    header { n: u16 }
    body {
        rtype: u8
        rdlength: u16
        rdata: bytes[rdlength] as switch rtype { 1 => bytes[4], 2 => Mx, default => bytes[rest] }
        options: bytes[u8] as Option[rest]
    }
}
struct Mx { preference: u16 exchange: string[u8] }
struct Option { code: u8 data: bytes[u8] }
""")
    frame = m.F(rtype=2, rdata=m.Mx(10, "mx"), options=[m.Option(1, b"ab")])
    encoded = frame.encode()
    assert encoded == wire(b"\x02\x00\x05\x00\x0a\x02mx" + b"\x04\x01\x02ab")
    decoded, _ = m.FDecoder().decode(encoded)
    assert decoded == frame and decoded.rdlength == 5
    with pytest.raises(MalformedFrame, match="F.rdata: a 6-byte region for 4 bytes"):
        m.FDecoder().decode(wire(b"\x01\x00\x06abcdef\x00"))
    with pytest.raises(MalformedFrame, match="F.rdata: 2 bytes left over in its region"):
        m.FDecoder().decode(wire(b"\x02\x00\x07\x00\x0a\x02mx!!\x00"))
    with pytest.raises(MalformedFrame, match="F.rdata: 9-byte region overruns the frame"):
        m.FDecoder().decode(wire(b"\x01\x00\x09abcd"))


def test_a_region_sized_by_a_header_field(make) -> None:
    """The header is packed after the body: it carries the region's size
    (memcached's extras_length), not a placeholder."""
    m = make("""
protocol t
frame F {
    framing length(n)
    header { n: u16 kind: u8 size: u8 }
    body {
        extras: bytes[size] as switch kind { 1 => Pair, default => bytes[rest] }
        value: bytes[rest]
    }
}
struct Pair { a: u32 b: u16 }
""")
    frame = m.F(kind=1, extras=m.Pair(7, 9), value=b"v")
    encoded = frame.encode()
    assert encoded == b"\x00\x07\x01\x06" + struct.pack(">IH", 7, 9) + b"v"
    decoded, _ = m.FDecoder().decode(encoded)
    assert decoded == frame and decoded.size == 6
    raw = m.F(kind=2, extras=b"abc", value=b"")
    assert raw.encode() == b"\x00\x03\x02\x03abc"


def test_a_region_sized_by_a_varint(make) -> None:
    m = make(frame_of("items: bytes[varint] as Item[rest] tail: u8", prelude="struct Item { a: bytes[u8] }"))
    frame = m.F(items=[m.Item(b"x" * 70), m.Item(b"y" * 70)], tail=9)
    encoded = frame.encode()
    assert encoded == wire(b"\x8e\x01" + (b"\x46" + b"x" * 70) + (b"\x46" + b"y" * 70) + b"\x09")
    assert m.FDecoder().decode(encoded)[0] == frame


def test_where_constraints_on_decode_and_encode(make) -> None:
    m = make("""
protocol t
frame F {
    framing length(n)
    header { n: u16 version: u8 where version >= 3 }
    body { low: u8 high: u8 where high > low }
    where version == 3 or low == 0
}
""")
    decoder = m.FDecoder()
    assert decoder.decode(b"\x00\x02\x03\x01\x02")[0].high == 2
    with pytest.raises(ConstraintViolation, match="F.high: 1 breaks `high > low`"):
        decoder.decode(b"\x00\x02\x03\x01\x01")
    with pytest.raises(ConstraintViolation, match="F.version: 2 breaks `version >= 3`"):
        decoder.decode(b"\x00\x02\x02\x00\x01")
    with pytest.raises(ConstraintViolation, match="F: `version == 3 or low == 0` does not hold"):
        decoder.decode(b"\x00\x02\x04\x01\x02")
    with pytest.raises(ValueError, match="F.high: 1 breaks `high > low`"):
        m.F(version=3, low=1, high=1).encode()
    with pytest.raises(ValueError, match="F: `version == 3 or low == 0` does not hold"):
        m.F(version=4, low=1, high=2).encode()


def test_a_conditional_field_constraint_is_checked_only_when_present(make) -> None:
    # MQTT PUBLISH: a packet identifier only with QoS > 0, and never 0.
    m = make(frame_of("qos: u8 packet_id: u16 if qos > 0 where packet_id > 0"))
    decoder = m.FDecoder()
    assert decoder.decode(wire(b"\x00"))[0].packet_id is None
    assert decoder.decode(wire(b"\x01\x00\x07"))[0].packet_id == 7
    with pytest.raises(ConstraintViolation, match="F.packet_id: 0 breaks `packet_id > 0`"):
        decoder.decode(wire(b"\x01\x00\x00"))
    with pytest.raises(ValueError, match="F.packet_id: 0 breaks `packet_id > 0`"):
        m.F(qos=1, packet_id=0).encode()
    assert m.F(qos=0, packet_id=None).encode() == wire(b"\x00")


# --- structures as values -----------------------------------------------------------------


def test_structures_encode_and_decode_on_their_own(make) -> None:
    m = make("""
protocol t
frame F { framing length(n) header { n: u16 } body { p: Point } }
struct Point { x: u8 label: string[rest] }
struct Scaled(scale: u8) { value: u16 extra: u8 if scale > 1 }
""")
    point = m.Point(x=1, label="é")
    assert point.encode() == b"\x01\xc3\xa9"
    assert m.Point.decode(b"\x01\xc3\xa9") == point
    assert repr(point) == "Point(x=1, label='é')"
    assert m.Scaled.decode(b"\x00\x05\x09", 2) == m.Scaled(5, 9)
    assert m.Scaled(5).encode(1) == b"\x00\x05"
    with pytest.raises(MalformedFrame, match="Scaled: 1 bytes after the last field"):
        m.Scaled.decode(b"\x00\x05\x09", 1)
    assert point != m.Point(x=2, label="é") and point.__hash__ is None


def test_garbage_raises_only_protocol_errors(make) -> None:
    """Every prefix and byte flip of valid frames: frames or ProtocolError, nothing else."""
    m = make("""
protocol t
frame F {
    framing length(n)
    header { n: u16 }
    body {
        count: u8
        items: Item[count]
        kind: u8
        value: switch kind { 1 => string[u8], default => bytes[u8][rest] }
    }
}
struct Item { flags: u8 bits { big: 1, _: 7 } small: u8 if not big large: u32 if big }
""")
    good = m.F(items=[m.Item(small=1), m.Item(large=9)], kind=1, value="ok").encode()
    for cut in range(len(good) + 1):
        for index in range(len(good)):
            mutated = bytearray(good[:cut])
            if index < cut:
                mutated[index] ^= 0xFF
            try:
                m.FDecoder().decode_all(bytes(mutated))
            except ProtocolError:
                pass
