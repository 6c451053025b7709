"""Typed bodies and structures in the spec: the IR they build and their diagnostics."""

from __future__ import annotations

import textwrap

import pytest

from protogen import models as ir
from protogen.diagnostics import SpecError
from protogen.parser import parse_spec


def spec(text: str) -> ir.ProtocolSpec:
    return parse_spec(textwrap.dedent(text), "t.proto.dsl")


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec(text)
    return [f"{d.location.line}:{d.location.column}: {d.message}" for d in caught.value.diagnostics]


def body_errors(body: str, prelude: str = "") -> list[str]:
    """Errors of a frame whose body (line 5) is `body`."""
    return errors(
        f"protocol p\n{prelude or '#'}\nframe F {{\n    framing length(n) header {{ n: u16 }}\n"
        f"    body {{ {body} }}\n}}\n"
    )


# --- the IR ------------------------------------------------------------------------------


def test_types_extents_and_what_the_encoder_computes() -> None:
    parsed = spec("""
        protocol p
        enum K : u8 { a = 1, b = 2 }
        frame F {
            framing length(n)
            header { n: u16 count: u8 }
            body {
                flags: u8 bits { has_x: 1, level: 7 }
                x: string[u16] if has_x
                size: u8
                data: bytes[size * 2]
                items: Item[count]
                region_len: u16
                region: bytes[region_len] as Item[rest]
                kinds: K[u8]
                tail: bytes[until "\\r\\n"]
            }
        }
        struct Item { v: varint }
    """)
    frame = parsed.frame("F")
    header = {f.name: f for f in frame.header}
    body = {f.name: f for f in frame.body}
    assert header["n"].computed_length
    assert header["count"].derived == ir.Derived("count", ("items",))
    assert body["flags"].bits[0].derived == ir.Derived("presence", ("x",))
    assert body["flags"].bits[1].derived is None  # 7 bits say more than "present"
    assert body["size"].derived == ir.Derived("size", ("data",))
    assert body["region_len"].derived == ir.Derived("region", ("region",))
    assert body["x"].condition == ir.Ref(("has_x",))
    assert body["data"].type == ir.BlobType(
        False, ir.Extent("count", count=ir.Binary("*", ir.Ref(("size",)), ir.Const(2)))
    )
    assert body["kinds"].type == ir.ArrayType(
        ir.EnumType("K", ir.ScalarType("uint", 1)),
        ir.Extent("prefix", prefix=ir.ScalarType("uint", 1)),
    )
    assert body["tail"].type.extent == ir.Extent("terminator", terminator=b"\r\n")
    assert body["region"].region == ir.Extent("count", count=ir.Ref(("region_len",)))
    assert parsed.struct("Item").fields[0].type == ir.VarintType("varint")


def test_escape_coded_lengths_and_expression_framing() -> None:
    parsed = spec("""
        protocol ws
        frame Frame {
            framing length(payload_length + 4 * masked)
            header {
                b0: u8 bits { fin: 1, _: 3, opcode: 4 }
                b1: u8 bits { masked: 1, payload_length: 7 escape { 126: u16, 127: u64 } }
            }
            body { key: bytes[4] if masked  payload: bytes[rest] xor key }
        }
    """)
    frame = parsed.frame("Frame")
    bits = {b.name: b for b in frame.header[1].bits}
    assert bits["masked"].derived == ir.Derived("presence", ("key",))
    assert bits["payload_length"].derived == ir.Derived("length")
    assert [arm.code for arm in bits["payload_length"].escape] == [126, 127]
    assert frame.framing.field == "payload_length"
    assert frame.body[1].xor == ir.Ref(("key",))


def test_structures_with_parameters_and_unions() -> None:
    parsed = spec("""
        protocol p
        enum T : u8 { publish = 3, ping = 12 }
        frame P {
            framing varint mqtt
            header { c: u8 bits { type: T 4, qos: 4 } }
            body { packet: switch type { publish => Publish(qos), default => bytes[rest] } }
        }
        struct Publish(qos: u8) { topic: string[u16] id: u16 if qos > 0 }
    """)
    packet = parsed.frame("P").body[0]
    assert isinstance(packet.type, ir.UnionType)
    assert packet.type.arms == (ir.UnionArm((3,), ir.StructRef("Publish", (ir.Ref(("qos",)),))),)
    assert parsed.struct("Publish").params[0].name == "qos"


# --- diagnostics ---------------------------------------------------------------------------


def test_unknown_names_in_expressions() -> None:
    assert body_errors("a: u8 b: bytes[a + nosuch]") == [
        "5:31: unknown field 'nosuch' in the size of field 'b'"
    ]
    assert body_errors("a: u8 b: u8 if c") == ["5:27: unknown field 'c' in the condition of field 'b'"]
    assert body_errors("a: u8 where a < E.x", "enum E : u8 { y = 1 }") == [
        "5:30: enum 'E' has no member 'x'"
    ]


def test_expressions_need_integers_that_are_present() -> None:
    assert body_errors("a: bytes[2] b: u8 if a") == [
        "5:33: the condition of field 'b' needs an integer; 'a' is a byte string (use len())"
    ]
    assert body_errors("f: u8 a: u8 if f > 1 b: u8 if a") == [
        "5:42: the condition of field 'b' uses 'a', which may be absent (None); only "
        "fields that are always present can be used"
    ]
    assert body_errors("a: string[rest] where len(b) > 0") == [
        "5:38: unknown field 'b' in the constraint of field 'a'"
    ]


def test_structure_references() -> None:
    assert errors("""
        protocol p
        frame F { framing varint body { x: Pair(1) y: Nope } }
        struct Pair { a: u8 }
    """) == [
        "3:36: structure 'Pair' takes 0 argument(s) (none), field 'x' gives 1",
        "3:47: unknown type 'Nope'",
    ]


def test_recursive_structures_are_refused() -> None:
    assert errors("""
        protocol p
        frame F { framing varint body { x: Node } }
        struct Node { kids: Node[u8] }
    """) == [
        "4:1: structure 'Node' contains itself; recursive structures are not supported "
        "(a nesting depth is not bounded by anything but the frame)"
    ]


def test_empty_array_elements_are_refused() -> None:
    assert errors("""
        protocol p
        frame F { framing varint body { xs: Empty[rest] } }
        struct Empty {}
    """) == [
        "3:33: the elements of array 'F.xs' can take 0 bytes; an array needs elements "
        "of at least 1 byte (else a count could loop without reading)"
    ]


def test_union_labels() -> None:
    assert body_errors(
        "k: u8 v: switch k { 1 => u8, 1 => u16, x => u8, default => u8, default => u16 }"
    ) == [
        "5:41: switch value 1 already has an arm (at 5:32)",
        "5:51: switch label 'x' names no value: the switch is not on an enum field "
        "(write a number or ENUM.MEMBER)",
        "5:75: duplicate `default` arm",
    ]


def test_escape_codes() -> None:
    assert body_errors("a: u8 escape {200: u16}") == [
        "5:18: escape codes are the top values of the field: 255"
    ]
    assert body_errors("a: u8 escape {254: u32, 255: u16}") == [
        "5:18: the integer after escape code 255 (u16) must hold more than the forms "
        "before it (up to 4294967295)"
    ]
    assert errors("""
        protocol p
        frame F { framing length(n) header { n: u8 escape {255: u16} m: u8 } }
    """) == [
        "3:38: escape-coded field 'n' must end the header: the wider integer follows it"
    ]


def test_nullable_needs_a_signed_length() -> None:
    assert body_errors("a: bytes[u16] or null") == [
        "5:26: `or null` means a length of -1; the length of 'a' is unsigned (use i8...i64)"
    ]
    assert body_errors("a: u8 or null") == [
        "5:18: `or null` needs a length: 'a' must be a byte string, string or array with "
        "a length (`bytes[i32] or null`)"
    ]


def test_xor_and_regions() -> None:
    assert body_errors("k: u8 p: bytes[rest] xor k") == [
        "5:37: the xor key 'k' must be a byte string, not an integer"
    ]
    assert body_errors("m: u8 p: string[m] as u16") == [
        "5:21: `as` decodes a type within a byte region: write 'p: bytes[SIZE] as TYPE'"
    ]


def test_rest_must_end_a_structure() -> None:
    assert errors("""
        protocol p
        frame F { framing varint body { s: S } }
        struct S { a: string[rest] b: u8 }
    """) == ["4:12: field 'a' takes the rest of 'S'; it must be the last field"]


def test_length_expressions() -> None:
    assert errors("""
        protocol p
        frame F { framing length(a + b) header { a: u8 b: u8 } }
    """) == [
        "3:26: the frame length needs exactly one header field the encoder computes "
        "from the body; this expression has 'a', 'b' (constants and fields computed "
        "from the body, like presence flags, do not count)"
    ]
    assert errors("""
        protocol p
        frame F { framing length(a * a) header { a: u8 } }
    """) == [
        "3:26: the frame length must be solvable for 'a': use + and - of other fields, "
        "and * by a constant"
    ]


def test_extern_declarations() -> None:
    assert errors('protocol p\nextern N: str = "no colon"\nframe F { framing varint }') == [
        '2:17: a plug-in type names its implementation as "package.module:object"'
    ]


LABEL = """
union Label : u8 bits { kind: 2, length: 6 } switch kind {
    0 => bytes[length]
    3 => u8
}
"""
NAME_FRAME = "frame F { framing length(n) header { n: u16 } body { name: Name } }"


def test_value_unions_and_the_plug_in_types_read_from_them() -> None:
    parsed = spec(
        'protocol p\nextern Name: str = "m:o" from Label[until it.kind == 3 or it.length == 0]'
        + LABEL
        + NAME_FRAME
    )
    [label] = parsed.unions
    assert (label.tag, label.tag_shift, label.tag_bits) == ("kind", 6, 2)
    assert (label.other, label.other_shift, label.other_bits) == ("length", 0, 6)
    assert label.arms == (ir.ValueArm(0), ir.ValueArm(3, ir.ScalarType("uint", 1)))
    [name] = parsed.externs
    assert name.wire is not None and name.wire.union == "Label"
    assert name.wire.until == ir.Binary(
        "or",
        ir.Binary("==", ir.Ref(("it", "kind")), ir.Const(3)),
        ir.Binary("==", ir.Ref(("it", "length")), ir.Const(0)),
    )


@pytest.mark.parametrize(
    "union, message",
    [
        ("union L : i8 bits { a: 2, b: 6 } switch a { 0 => u8 }",
         "3:11: union 'L': the head is an unsigned integer (u8...u64) carrying two bit fields"),
        ("union L : u8 bits { a: 2, b: 3, c: 3 } switch a { 0 => u8 }",
         "3:14: union 'L': the head has exactly two plain bit fields, the tag and the other "
         "bits (`bits { kind: 2, length: 6 }`)"),
        ("union L : u8 bits { a: 2, b: 5 } switch a { 0 => u8 }",
         "3:14: union 'L': bit widths 2 + 5 must add up to the head's 8 bits"),
        ("union L : u8 bits { a: 2, b: 6 } switch c { 0 => u8 }",
         "3:41: union 'L' switches on one of its head's bits (a, b), not 'c'"),
        ("union L : u8 bits { a: 2, b: 6 } switch a { 4 => u8 }",
         "3:45: tag 4 does not fit the 2-bit 'a'"),
        ("union L : u8 bits { a: 2, b: 6 } switch a { 0, 1 => u8 }",
         "3:45: union 'L': each arm has one integer tag (the encoder writes it)"),
        ("union L : u8 bits { a: 2, b: 6 } switch a { 0 => bytes[4] }",
         "3:50: union 'L': an arm is `bytes[b]` (the bytes the other bits size) or an "
         "unsigned integer (`u8`: the other bits, then it, as one int)"),
        ("union L : u8 bits { a: 2, b: 6 } switch a { 0 => u8 1 => u16 }",
         "3:1: union 'L' has at most one bytes arm and one integer arm: the encoder tells "
         "them apart by the value's type"),
    ],
)
def test_value_union_errors(union: str, message: str) -> None:
    assert errors(f"protocol p\n#\n{union}\nframe F {{ framing varint }}") == [message]


def test_value_arrays_only_back_plug_in_types() -> None:
    assert errors(
        "protocol p\n" + LABEL + "frame F { framing length(n) header { n: u16 }\n"
        "body { labels: Label[until it.length == 0] } }"
    ) == [
        "8:16: value union 'Label' is the wire form of a plug-in type: "
        '`extern NAME: TYPE = "module:object" from Label[until EXPR]`'
    ]
    assert errors(
        'protocol p\nextern Name: str = "m:o" from Label[rest]' + LABEL + NAME_FRAME
    ) == [
        "2:31: a value array ends at an element: write 'Label[until EXPR]' over `it` "
        "(`it.TAG`, `it.OTHER` are its head's bits)"
    ]
    assert errors(
        'protocol p\nextern Name: str = "m:o" from Label[until it.size == 0]'
        + LABEL + NAME_FRAME
    ) == ["2:46: union 'Label' has no field 'size'"]
    assert errors(
        'protocol p\nextern Name: str = "m:o" from Mx[until it.size == 0]\n' + NAME_FRAME
    ) == [
        "2:31: plug-in type 'Name' is read from an array of a value union "
        "(`from Label[until ...]`); 'Mx' is not a union"
    ]


def test_keywords_are_words_only_where_they_fit() -> None:
    """`where`, `xor`, `size`... stay usable as field names at the start of a field."""
    parsed = spec("""
        protocol p
        frame F {
            framing length(size)
            header { size: u16 }
            body { where_: u8 size2: u8 = 1 rest2: bytes[rest] }
        }
    """)
    assert [f.name for f in parsed.frame("F").body] == ["where_", "size2", "rest2"]
