"""The DSL parser: every example spec and every construct, asserting the IR exactly."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from protogen import parser as parser_module
from protogen.diagnostics import SpecError
from protogen.models import (
    DEFAULT_MAX_FRAME,
    BodyField,
    ByteOrder,
    BytesType,
    Checksum,
    CompositeFraming,
    DecimalFraming,
    DelimitedFraming,
    EnumDef,
    EnumMember,
    FixedFraming,
    FrameDef,
    HeaderField,
    LengthFraming,
    Location,
    ProtocolSpec,
    ScalarType,
    VarintFraming,
)
from protogen.parser import load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIG, LITTLE = ByteOrder.BIG, ByteOrder.LITTLE
U8, U16, U32 = ScalarType("uint", 1), ScalarType("uint", 2), ScalarType("uint", 4)


def parse(text: str) -> ProtocolSpec:
    return parse_spec(textwrap.dedent(text), "t.dsl")


def frame_of(body: str, prelude: str = "") -> FrameDef:
    """Parse one frame `F` whose statements are `body`."""
    spec = parse(f"protocol p\n{prelude}\nframe F {{\n{textwrap.dedent(body)}\n}}\n")
    return spec.frame("F")


def loc(file: str, line: int, column: int) -> Location:
    return Location(file, line, column)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_text(encoding="utf-8").encode("utf-8")).hexdigest()


# --- the example specs ----------------------------------------------------------------


def test_echo_example() -> None:
    path = EXAMPLES / "echo.proto.dsl"
    file = str(path)
    spec = load_spec(path)
    assert spec == ProtocolSpec(
        name="echo",
        source_file=file,
        source_sha256=sha256_of(path),
        frames=(
            FrameDef(
                name="Message",
                framing=LengthFraming(
                    field="length", offset=0, size=4, order=BIG, counts="body"
                ),
                location=loc(file, 7, 1),
                header=(
                    HeaderField(
                        "length", U32, 0, loc(file, 10, 9), computed_length=True
                    ),
                ),
                header_size=4,
                body=(BodyField("payload", loc(file, 13, 9), rest=True),),
                max_frame=16 << 20,
            ),
        ),
        transports=("tcp",),
        server_decodes="Message",
        server_encodes="Message",
    )


def test_lines_example() -> None:
    path = EXAMPLES / "lines.proto.dsl"
    file = str(path)
    spec = load_spec(path)
    assert spec == ProtocolSpec(
        name="lines",
        source_file=file,
        source_sha256=sha256_of(path),
        frames=(
            FrameDef(
                name="Line",
                framing=DelimitedFraming(delimiters=(b"\r\n", b"\n"), strip=True),
                location=loc(file, 7, 1),
                body=(BodyField("line", loc(file, 11, 9), rest=True),),
                max_frame=8192,
            ),
        ),
        transports=("tcp", "udp"),
        server_decodes="Line",
        server_encodes="Line",
    )


def test_fixed_example() -> None:
    path = EXAMPLES / "fixed.proto.dsl"
    file = str(path)
    spec = load_spec(path)
    kind = EnumDef(
        "Kind",
        U8,
        (
            EnumMember("temperature", 1, loc(file, 7, 5)),
            EnumMember("humidity", 2, loc(file, 8, 5)),
            EnumMember("pressure", 3, loc(file, 9, 5)),
        ),
        loc(file, 6, 1),
    )
    header = (
        HeaderField("magic", U16, 0, loc(file, 15, 9), const=0x5352),
        HeaderField("version", U8, 2, loc(file, 16, 9), allowed=(1, 2)),
        HeaderField("kind", U8, 3, loc(file, 17, 9), enum="Kind"),
        HeaderField("sensor_id", ScalarType("uint", 4, LITTLE), 4, loc(file, 18, 9)),
        HeaderField("delta", ScalarType("int", 4), 8, loc(file, 19, 9)),
        HeaderField("value", ScalarType("float", 4), 12, loc(file, 20, 9)),
    )
    assert spec == ProtocolSpec(
        name="sensors",
        source_file=file,
        source_sha256=sha256_of(path),
        frames=(
            FrameDef(
                name="Reading",
                framing=FixedFraming(size=16),
                location=loc(file, 12, 1),
                header=header,
                header_size=16,
                dispatch="kind",
            ),
        ),
        enums=(kind,),
        transports=("tcp", "udp"),
        server_decodes="Reading",
        server_encodes="Reading",
    )


def test_netstring_example() -> None:
    path = EXAMPLES / "netstring.proto.dsl"
    file = str(path)
    spec = load_spec(path)
    assert spec.name == "netstring"
    assert spec.source_sha256 == sha256_of(path)
    assert spec.frames == (
        FrameDef(
            name="Netstring",
            framing=DecimalFraming(separator=b":", terminator=b","),
            location=loc(file, 5, 1),
            body=(BodyField("data", loc(file, 9, 9), rest=True),),
            max_frame=64 * 1024,
        ),
    )
    assert (spec.server_decodes, spec.server_encodes) == ("Netstring", "Netstring")


def test_varint_example() -> None:
    path = EXAMPLES / "varint.proto.dsl"
    file = str(path)
    spec = load_spec(path)
    assert spec.name == "varint"
    assert spec.frames == (
        FrameDef(
            name="Message",
            framing=VarintFraming(style="leb128", offset=0),
            location=loc(file, 6, 1),
            body=(BodyField("message", loc(file, 10, 9), rest=True),),
            max_frame=4 << 20,
        ),
    )
    assert spec.frames[0].framing.max_bytes == 10


def test_load_spec_accepts_str_paths() -> None:
    path = EXAMPLES / "echo.proto.dsl"
    assert load_spec(str(path)) == load_spec(path)


# --- length framing ------------------------------------------------------------------------


def test_length_field_inside_a_header() -> None:
    frame = frame_of("""
        framing length(size) counts frame adjust -4 strip 2
        header little {
            magic: u16 = 0xCAFE
            size: u24
            flags: u8
        }
        """)
    assert frame.framing == LengthFraming(
        field="size",
        offset=2,
        size=3,
        order=LITTLE,
        adjustment=-4,
        counts="frame",
        strip=2,
    )
    size_field = frame.field("size")
    assert size_field is not None
    assert size_field.computed_length and not size_field.is_user_supplied
    assert [(f.name, f.offset, f.size) for f in frame.header] == [
        ("magic", 0, 2),
        ("size", 2, 3),
        ("flags", 5, 1),
    ]
    assert frame.header_size == 6
    # No body block: the body is the rest of the frame.
    assert frame.body == (BodyField("payload", frame.location, rest=True),)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_length_field_widths(width: int, signed: bool) -> None:
    letter = "i" if signed else "u"
    frame = frame_of(
        f"framing length(n) counts after_field adjust +3\n"
        f"header {{ tag: u8 n: {letter}{8 * width} le }}"
    )
    assert frame.framing == LengthFraming(
        field="n",
        offset=1,
        size=width,
        order=LITTLE,
        adjustment=3,
        counts="after_field",
    )


def test_length_options_in_any_order() -> None:
    frame = frame_of("framing length(n) strip 2 adjust 0x10 header { n: u16 }")
    assert frame.framing == LengthFraming(field="n", size=2, adjustment=16, strip=2)


# --- other framings -------------------------------------------------------------------------


def test_varint_mqtt_after_the_fixed_header() -> None:
    frame = frame_of("framing varint mqtt\nheader { type_and_flags: u8 }")
    assert frame.framing == VarintFraming(style="mqtt", offset=1)
    assert frame.framing.max_bytes == 4
    assert frame.header_size == 1


def test_varint_defaults_to_leb128() -> None:
    assert frame_of("framing varint").framing == VarintFraming(style="leb128")


def test_decimal_framing_defaults_and_custom_separators() -> None:
    assert frame_of("framing decimal").framing == DecimalFraming(b":", b",")
    custom = frame_of('framing decimal " " "\\n"').framing
    assert custom == DecimalFraming(separator=b" ", terminator=b"\n")


def test_delimited_framing_keep_and_escapes() -> None:
    frame = frame_of(
        r'framing delimited "\0", "\x00\xff", "\t\\\"", "é" keep'
        "\nbody { record: bytes[rest] }"
    )
    assert frame.framing == DelimitedFraming(
        delimiters=(b"\x00", b"\x00\xff", b'\t\\"', "é".encode()), strip=False
    )
    assert frame.body == (BodyField("record", frame.body[0].location, rest=True),)


def test_delimited_strip_is_the_default_and_can_be_said() -> None:
    assert frame_of('framing delimited "\\n"').framing.strip is True
    assert frame_of('framing delimited "\\n" strip').framing.strip is True


def test_fixed_framing_defaults_to_the_header_size() -> None:
    frame = frame_of("framing fixed\nheader { a: u32 b: bytes[3] c: f64 }")
    assert frame.framing == FixedFraming(size=15)
    assert frame.body == ()


def test_fixed_framing_with_a_rest_payload() -> None:
    frame = frame_of("framing fixed 1 KiB\nheader { kind: u8 }")
    assert frame.framing == FixedFraming(size=1024)
    assert frame.body == (BodyField("payload", frame.location, rest=True),)
    frame = frame_of("framing fixed 16\nheader { k: u8 }\nbody { pad: bytes[rest] }")
    assert frame.body[0].name == "pad" and frame.body[0].rest


def test_fixed_framing_without_fields_is_one_payload() -> None:
    frame = frame_of("framing fixed 32 B")
    assert frame.framing == FixedFraming(size=32)
    assert frame.body == (BodyField("payload", frame.location, rest=True),)


def test_composite_by_header_name() -> None:
    frame = frame_of(
        'framing composite head "\\r\\n\\r\\n" length_header "Content-Length"'
    )
    assert frame.framing == CompositeFraming(
        head_delimiter=b"\r\n\r\n", length_header="Content-Length"
    )


def test_composite_by_token_position_with_commands_and_trailer() -> None:
    frame = frame_of(
        'framing composite head "\\r\\n" length_token 4\n'
        '    when "set", "add", "replace" body_trailer "\\r\\n"'
    )
    assert frame.framing == CompositeFraming(
        head_delimiter=b"\r\n",
        length_header=None,
        length_token=4,
        token_commands=(b"set", b"add", b"replace"),
        body_trailer=b"\r\n",
    )


def test_composite_by_token_for_every_command() -> None:
    frame = frame_of('framing composite head "\\n" length_token 1')
    assert frame.framing == CompositeFraming(head_delimiter=b"\n", length_token=1)


# --- typed fields ---------------------------------------------------------------------------


def test_every_integer_width_and_float() -> None:
    names = [f"{s}{8 * n}" for s in "ui" for n in range(1, 9)] + ["f32", "f64"]
    fields = " ".join(f"f_{name}: {name}" for name in names)
    frame = frame_of(f"framing fixed\nheader {{ {fields} }}")
    offset = 0
    for field, name in zip(frame.header, names, strict=True):
        kind = {"u": "uint", "i": "int", "f": "float"}[name[0]]
        assert field.type == ScalarType(kind, int(name[1:]) // 8, BIG)  # type: ignore
        assert field.offset == offset
        offset += field.size
    assert frame.header_size == offset == 2 * 36 + 12


def test_byte_order_block_default_and_field_overrides() -> None:
    frame = frame_of(
        "framing fixed\nheader little { a: u16 b: u16 be c: u16 big d: u32 le }"
    )
    assert [f.type.order for f in frame.header] == [LITTLE, BIG, BIG, LITTLE]
    frame = frame_of("framing fixed\nheader { a: u16 b: i32 little }")
    assert [f.type.order for f in frame.header] == [BIG, LITTLE]


def test_constants_allowed_sets_and_bytes() -> None:
    frame = frame_of("""
        framing fixed
        header {
            magic: bytes[4] = "RIFF"
            version: u8 in {1, 2, 0x03,}
            neg: i16 = -2
            big: u64 = 0xFFFF_FFFF_FFFF_FFFF
            bits: u8 = 0b1010_0101
            octal: u16 = 0o755
            zeros: bytes[2] = "\\x00\\0"
            opaque: bytes[8]
        }
        """)
    by_name = {f.name: f for f in frame.header}
    assert by_name["magic"].type == BytesType(4)
    assert by_name["magic"].const == b"RIFF"
    assert by_name["version"].allowed == (1, 2, 3)
    assert by_name["version"].is_user_supplied
    assert by_name["neg"].const == -2
    assert by_name["big"].const == (1 << 64) - 1
    assert by_name["bits"].const == 0xA5
    assert by_name["octal"].const == 0o755
    assert by_name["zeros"].const == b"\x00\x00"
    assert not by_name["magic"].is_user_supplied
    assert by_name["opaque"].type == BytesType(8) and by_name["opaque"].const is None
    assert frame.header_size == 4 + 1 + 2 + 8 + 1 + 2 + 2 + 8


def test_checksums_in_header_and_trailer() -> None:
    frame = frame_of("""
        framing length(n)
        header { n: u16 hcrc: u16 = crc16_ccitt[0:2] }
        body { data: bytes[rest] }
        trailer little { a: u32 = adler32[4:-8] crc: u32 = crc32[:-4] }
        """)
    hcrc = frame.field("hcrc")
    assert hcrc is not None and hcrc.checksum == Checksum("crc16_ccitt", 0, 2)
    assert frame.trailer == (
        HeaderField(
            "a",
            ScalarType("uint", 4, LITTLE),
            0,
            frame.trailer[0].location,
            checksum=Checksum("adler32", 4, -8),
        ),
        HeaderField(
            "crc",
            ScalarType("uint", 4, LITTLE),
            4,
            frame.trailer[1].location,
            checksum=Checksum("crc32", 0, -4),
        ),
    )
    assert frame.trailer_size == 8
    assert frame.header_size == 4


def test_checksum_over_the_whole_fixed_frame_before_it() -> None:
    frame = frame_of("framing fixed\nheader { a: u32 b: u32 crc: u32 = crc32[0:8] }")
    crc = frame.field("crc")
    assert crc is not None and crc.checksum == Checksum("crc32", 0, 8)


def test_memcached_binary_request_and_response() -> None:
    spec = parse("""
        protocol memcache
        server decodes Request encodes Response
        enum Opcode : u8 { get = 0x00, set = 0x01, delete = 0x04 }

        frame Request {
            framing length(total_body)
            header {
                magic: u8 = 0x80
                opcode: Opcode
                key_length: u16
                extras_length: u8
                data_type: u8 = 0
                vbucket: u16
                total_body: u32
                opaque: u32
                cas: u64
            }
            body {
                extras: bytes[extras_length]
                key: bytes[key_length]
                value: bytes[rest]
            }
            dispatch on opcode
        }

        frame Response {
            framing length(total_body)
            header {
                magic: u8 = 0x81
                opcode: Opcode
                key_length: u16
                extras_length: u8
                data_type: u8
                status: u16
                total_body: u32
                opaque: u32
                cas: u64
            }
            body { extras: bytes[extras_length] key: bytes[key_length] value: bytes[rest] }
        }
        """)
    assert (spec.server_decodes, spec.server_encodes) == ("Request", "Response")
    assert spec.enum("Opcode").members == (
        EnumMember("get", 0, loc("t.dsl", 4, 20)),
        EnumMember("set", 1, loc("t.dsl", 4, 32)),
        EnumMember("delete", 4, loc("t.dsl", 4, 44)),
    )
    request = spec.frame("Request")
    assert request.header_size == 24
    assert request.framing == LengthFraming(field="total_body", offset=8, size=4)
    assert request.dispatch == "opcode"
    assert [(f.name, f.offset, f.size) for f in request.header] == [
        ("magic", 0, 1),
        ("opcode", 1, 1),
        ("key_length", 2, 2),
        ("extras_length", 4, 1),
        ("data_type", 5, 1),
        ("vbucket", 6, 2),
        ("total_body", 8, 4),
        ("opaque", 12, 4),
        ("cas", 16, 8),
    ]
    opcode = request.field("opcode")
    assert opcode is not None and opcode.enum == "Opcode" and opcode.type == U8
    key_length = request.field("key_length")
    assert key_length is not None and key_length.size_of == "key"
    extras_length = request.field("extras_length")
    assert extras_length is not None and extras_length.size_of == "extras"
    assert [(b.name, b.size_field, b.size, b.rest) for b in request.body] == [
        ("extras", "extras_length", None, False),
        ("key", "key_length", None, False),
        ("value", None, None, True),
    ]
    response = spec.frame("Response")
    magic = response.field("magic")
    assert magic is not None and magic.const == 0x81
    assert response.dispatch is None


def test_constant_size_body_fields() -> None:
    frame = frame_of(
        "framing length(n)\nheader { n: u8 }\nbody { id: bytes[16] rest: bytes[rest] }"
    )
    assert [(b.name, b.size, b.rest) for b in frame.body] == [
        ("id", 16, False),
        ("rest", None, True),
    ]


def test_empty_body_block_means_no_body() -> None:
    frame = frame_of("framing length(n)\nheader { n: u8 }\nbody {}")
    assert frame.body == ()


# --- enums ----------------------------------------------------------------------------------


def test_enum_with_explicit_byte_order_and_signed_base() -> None:
    spec = parse("""
        protocol p
        enum Code : i16 le {
            minus = -1
            zero = 0,
            plus = 1,
        }
        frame F { framing fixed header { a: Code b: Code be } dispatch on a }
        """)
    code = spec.enum("Code")
    assert code.base == ScalarType("int", 2, LITTLE)
    assert [(m.name, m.value) for m in code.members] == [
        ("minus", -1),
        ("zero", 0),
        ("plus", 1),
    ]
    a, b = spec.frame("F").header
    assert a.type == ScalarType("int", 2, LITTLE) and a.enum == "Code"
    assert b.type == ScalarType("int", 2, BIG) and b.enum == "Code"


def test_enum_takes_the_header_order_when_it_has_none() -> None:
    spec = parse(
        "protocol p\nenum E : u16 { a = 1 }\nframe F { framing fixed header little { e: E } }"
    )
    assert spec.frame("F").header[0].type == ScalarType("uint", 2, LITTLE)


# --- spec-level statements -----------------------------------------------------------------


def test_max_frame_default_spec_wide_and_per_frame() -> None:
    spec = parse("""
        protocol p
        server decodes A encodes B
        frame A { framing varint }
        frame B { framing varint }
        """)
    assert spec.frame("A").max_frame == DEFAULT_MAX_FRAME
    spec = parse("""
        protocol p
        max_frame 2 GiB
        server decodes A encodes B
        frame A { framing varint }
        frame B { framing varint max_frame 512 B }
        frame C { max_frame 3 MiB framing varint }
        """)
    assert spec.frame("A").max_frame == 2 << 30
    assert spec.frame("B").max_frame == 512
    assert spec.frame("C").max_frame == 3 << 20


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("", ("tcp",)),
        ("transport tcp", ("tcp",)),
        ("transport udp", ("udp",)),
        ("transport udp, tcp", ("tcp", "udp")),
        ("transport both", ("tcp", "udp")),
    ],
)
def test_transports(statement: str, expected: tuple[str, ...]) -> None:
    spec = parse(f"protocol p\n{statement}\nframe F {{ framing varint }}")
    assert spec.transports == expected


def test_base_classes() -> None:
    spec = parse("""
        protocol p
        handler_base "app.handlers:BaseHandler"
        frame_base "app.frames.base:Frame"
        frame F { framing varint }
        """)
    assert spec.handler_base == "app.handlers:BaseHandler"
    assert spec.frame_base == "app.frames.base:Frame"


def test_server_encodes_defaults_to_what_it_decodes() -> None:
    spec = parse(
        "protocol p\nserver decodes B\nframe A { framing varint }\nframe B { framing varint }"
    )
    assert (spec.server_decodes, spec.server_encodes) == ("B", "B")


def test_keywords_are_fine_as_field_names() -> None:
    frame = frame_of("""
        framing length(length)
        header { length: u32 body: u8 frame: u8 header: u8 framing: u8 }
        body { trailer: bytes[rest] }
        """)
    assert [f.name for f in frame.header] == [
        "length",
        "body",
        "frame",
        "header",
        "framing",
    ]
    assert frame.body[0].name == "trailer"


def test_comments_and_layout_do_not_matter() -> None:
    one_line = parse("protocol p frame F { framing length(n) header { n: u16 } }")
    spread = parse("""
        # a comment
        protocol   p   # trailing comment
        frame F
        {
            framing    length( n )   # "strings # are not comments" here
            header {
                n :
                    u16
            }
        }
        """)
    assert one_line.frames[0].framing == spread.frames[0].framing
    assert one_line.frames[0].header[0].type == spread.frames[0].header[0].type


def test_source_hash_is_of_the_text() -> None:
    text = "protocol p\nframe F { framing varint }\n"
    spec = parse_spec(text, "x.dsl")
    assert spec.source_sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert spec.source_file == "x.dsl"
    other = parse_spec(text + "# changed\n", "x.dsl")
    assert other.source_sha256 != spec.source_sha256


def test_lark_parser_is_built_once() -> None:
    parse("protocol p frame F { framing varint }")
    assert parser_module._lark() is parser_module._lark()
    assert parser_module._lark().options.parser == "lalr"


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.proto.dsl"
    with pytest.raises(SpecError) as caught:
        load_spec(missing)
    assert str(caught.value).startswith(f"{missing}:1:1: error: cannot read spec")


def test_non_utf8_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.proto.dsl"
    path.write_bytes(b"protocol p\n# caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}:2:6: error: spec is not valid UTF-8"
