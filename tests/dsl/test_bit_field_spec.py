"""Bit fields in the DSL: `control: u8 bits { type: PacketType 4  flags: 4 }`.

The IR they parse to (shifts MSB first, padding, enums, constants, allowed
sets, dispatch) and every error kind with its message and line:col.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from protogen.diagnostics import SpecError
from protogen import models as ir
from protogen.models import BitField, ByteOrder, HeaderField, Location, ScalarType
from protogen.parser import load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRELUDE = "enum Kind : u8 { ping = 1, data = 3, close = 15 }\n"


def frame_of(body: str, prelude: str = PRELUDE):
    text = f"protocol p\n{prelude}frame F {{\n{textwrap.dedent(body).strip()}\n}}\n"
    return parse_spec(text, "t.dsl").frame("F")


def errors(body: str, prelude: str = PRELUDE) -> list[str]:
    """Errors of a spec whose frame F starts on line 3 (after the one-line prelude)."""
    text = f"protocol p\n{prelude}frame F {{\n{textwrap.dedent(body).strip()}\n}}\n"
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "bad.dsl")
    return [
        f"{d.location.line}:{d.location.column}: {d.message}"
        for d in caught.value.diagnostics
    ]


def at(line: int, column: int) -> Location:
    return Location("t.dsl", line, column)


# --- IR ----------------------------------------------------------------------------------


def test_bits_are_declared_most_significant_first() -> None:
    frame = frame_of("""
        framing varint mqtt
        header {
            control: u8 bits {
                kind: Kind 4
                flags: 4
            }
        }
        dispatch on kind
        """)
    assert frame.header == (
        HeaderField(
            name="control",
            type=ScalarType("uint", 1),
            offset=0,
            location=at(6, 5),
            bits=(
                BitField("kind", 4, 4, at(7, 9), enum="Kind"),
                BitField("flags", 4, 0, at(8, 9)),
            ),
        ),
    )
    assert frame.header_size == 1
    assert frame.dispatch == "kind"
    assert frame.dispatch_field() == frame.header[0].bits[0]
    assert frame.bit_field("flags") == frame.header[0].bits[1]
    assert frame.field("flags") is None  # a bit field is not a header field
    assert not frame.header[0].is_user_supplied  # the carrier is computed


def test_padding_constants_allowed_sets_and_wide_carriers() -> None:
    frame = frame_of("""
        framing fixed
        header little {
            word: u24 bits { version: 3 = 5, _: 5, channel: 12 in {1, 4095}, _: 4 }
            wide: u64 be bits { top: 1, middle: 62, bottom: 1 }
        }
        """)
    word, wide = frame.header
    assert word.type == ScalarType("uint", 3, ByteOrder.LITTLE)
    assert word.bits == (
        BitField("version", 3, 21, at(6, 22), const=5),
        BitField("channel", 12, 4, at(6, 44), allowed=(1, 4095)),
    )
    assert [b.mask for b in word.bits] == [7, 4095]
    assert not word.bits[0].is_user_supplied and word.bits[1].is_user_supplied
    assert wide.offset == 3 and wide.type.order is ByteOrder.BIG
    assert [(b.name, b.bits, b.shift) for b in wide.bits] == [
        ("top", 1, 63),
        ("middle", 62, 1),
        ("bottom", 1, 0),
    ]
    assert frame.framing.size == 11


def test_bits_in_a_trailer_and_allow_unknown_dispatch() -> None:
    frame = frame_of("""
        framing varint
        header { tag: u16 bits { kind: Kind 8, seq: 8 } }
        trailer { tail: u8 bits { last: 1, _: 7 } }
        dispatch on kind allow_unknown
        """)
    assert frame.trailer[0].bits == (BitField("last", 1, 7, at(6, 27)),)
    assert frame.dispatch_allows_unknown
    assert frame.dispatch_field().enum == "Kind"


def test_the_mqtt_example_splits_its_fixed_header_with_bits() -> None:
    spec = load_spec(EXAMPLES / "mqtt" / "mqtt.proto.dsl")
    packet = spec.frame("Packet")
    (control,) = packet.header
    assert [(b.name, b.bits, b.shift, b.enum) for b in control.bits] == [
        ("type", 4, 4, "PacketType"),
        ("dup", 1, 3, None),
        ("qos", 2, 1, None),
        ("retain", 1, 0, None),
    ]
    assert packet.dispatch == "type"
    members = {m.name: m.value for m in spec.enum("PacketType").members}
    assert members["connect"] == 1 and members["disconnect"] == 14
    assert len(members) == 14


def test_a_field_named_bits_still_parses_where_a_field_may_start() -> None:
    frame = frame_of("framing fixed\nheader { bits: u8 }", prelude="")
    assert frame.header[0].name == "bits" and frame.header[0].bits == ()


# --- errors ------------------------------------------------------------------------------


def test_widths_must_add_up_to_the_carrier() -> None:
    assert errors("framing fixed\nheader { c: u16 bits { a: 4 b: 4 } }") == [
        "5:17: bit widths of 'c' add up to 8, but u16 has 16 bits (pad with `_: N`)"
    ]


def test_widths_over_the_carrier_are_reported_too() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: 4 b: 5 } }") == [
        "5:16: bit widths of 'c' add up to 9, but u8 has 8 bits (pad with `_: N`)"
    ]


def test_zero_width() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: 0 b: 8 } }") == [
        "5:26: bit field 'a' has width 0; a bit field is 1 bit wide or more"
    ]


def test_negative_width() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: -1 b: 9 } }") == [
        "5:26: bit field 'a' has width -1; a bit field is 1 bit wide or more"
    ]


def test_empty_bits_block() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { } }") == [
        "5:16: bit-field carrier 'c' has no bits"
    ]


def test_duplicate_names_across_bits_and_fields() -> None:
    assert (
        errors("""
        framing fixed
        header {
            a: u8
            c: u8 bits { a: 4 b: 4 }
            b: u16
        }
        """)
        == [
            "7:18: duplicate field 'a' (first at 6:5)",
            "8:5: duplicate field 'b' (first at 7:23)",
        ]
    )


def test_duplicate_names_inside_one_bits_block() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: 4 a: 4 } }") == [
        "5:28: duplicate field 'a' (first at 5:23)"
    ]


def test_enum_values_too_wide_for_their_bits() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { k: Kind 3 f: 5 } }") == [
        "5:26: enum 'Kind' does not fit in 3 bits: close = 15 (bit field 'k' holds 0..7)"
    ]


@pytest.mark.parametrize("carrier", ["i8", "f32", "bytes[1]"])
def test_bits_need_an_unsigned_integer_carrier(carrier: str) -> None:
    body = f"framing fixed\nheader {{\n c: {carrier} bits {{ a: 8 }} }}"
    # Only the carrier is reported, not the widths of its (ignored) bits.
    assert errors(body, prelude="") == [
        f"5:5: bits need an unsigned integer carrier (u8...u64); 'c' is {carrier}"
    ]


def test_an_enum_carrier_is_not_an_integer_carrier() -> None:
    assert errors("framing fixed\nheader { c: Kind bits { a: 8 } }") == [
        "5:13: bits need an unsigned integer carrier (u8...u64); 'c' is enum Kind"
    ]


def test_a_carrier_has_no_value_of_its_own() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: 8 } = 3 }") == [
        "5:32: bit-field carrier 'c' cannot have a value; give values to its bits"
    ]


def test_bit_values_out_of_range_and_repeated() -> None:
    assert errors(
        "framing fixed\nheader { c: u8 bits { a: 4 = 16, b: 4 in {1, 1, 20} } }"
    ) == [
        "5:30: value 16 out of range for bit field 'a' of 4 bits (0..15)",
        "5:46: value 1 listed twice",
        "5:49: value 20 out of range for bit field 'b' of 4 bits (0..15)",
    ]


def test_an_enum_bit_constant_must_be_a_member() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { k: Kind 4 = 2, f: 4 } }") == [
        "5:35: value 2 of bit field 'k' is not a value of enum 'Kind'"
    ]


def test_a_bit_constant_is_an_integer() -> None:
    assert errors('framing fixed\nheader { c: u8 bits { a: 4 = "x", b: 4 } }') == [
        "5:30: bit field 'a' is an integer; its constant must be one"
    ]


def test_a_bit_field_cannot_be_a_checksum() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: 4 = crc32[0:] b: 4 } }") == [
        "5:30: unexpected name 'crc32'; expected one of: a string, an integer"
    ]


def test_padding_has_no_type_or_value() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { _: Kind 4 = 1, a: 4 } }") == [
        "5:23: padding `_` has no type or value"
    ]


def test_a_bit_type_is_an_enum_not_a_builtin() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: u8 8 } }") == [
        "5:26: bit field 'a' is an unsigned integer of 8 bits: write 'a: 8', or name an enum"
    ]


def test_unknown_bit_enum_suggests_a_close_one() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a: Kin 8 } }") == [
        "5:26: unknown enum 'Kin' (did you mean 'Kind'?)"
    ]


def test_bit_names_follow_field_name_rules() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { class: 4, encode: 4 } }") == [
        "5:23: field name 'class' is a Python keyword",
        "5:33: field name 'encode' is reserved: generated frame classes have a method "
        "of that name",
    ]


def test_dispatch_on_a_bit_field_needs_an_enum() -> None:
    assert errors(
        "framing fixed\nheader { c: u8 bits { a: 4 b: 4 } }\ndispatch on b"
    ) == ["6:13: cannot dispatch on 'b': it is not an enum field (4-bit integer)"]


def test_bits_can_be_length_and_size_fields() -> None:
    """A bit field may carry the frame length or a body field's size; both computed."""
    spec = parse_spec(
        textwrap.dedent("""
        protocol p
        frame F {
            framing length(n)
            header { c: u16 bits { n: 8 k: 8 } }
            body { key: bytes[k] value: bytes[rest] }
        }
        """)
    )
    bits = {bit.name: bit for bit in spec.frames[0].header[0].bits}
    assert bits["n"].derived == ir.Derived("length")
    assert bits["k"].derived == ir.Derived("size", ("key",))
    assert not bits["n"].is_user_supplied and not bits["k"].is_user_supplied


def test_a_carrier_cannot_be_a_length_or_size_field() -> None:
    assert (
        errors("""
        framing length(c)
        header { c: u8 bits { a: 8 } d: u8 bits { b: 8 } }
        body { key: bytes[d] value: bytes[rest] }
        """)
        == [
            "4:16: length field 'c' cannot carry bit fields",
            "6:19: body field 'key' is sized by 'd', which carries bit fields",
        ]
    )


def test_bits_in_the_body_need_an_integer_carrier() -> None:
    assert errors("framing varint\nbody { b: bytes[rest] bits { a: 8 } }") == [
        "5:11: bits need an unsigned integer carrier (u8...u64); 'b' is a byte string"
    ]


def test_bits_block_syntax_error_is_a_diagnostic() -> None:
    assert errors("framing fixed\nheader { c: u8 bits { a 8 } }") == [
        "5:25: unexpected integer 8; expected ':'"
    ]
