"""Bad specs: every syntax and validation error, with its message and line:col."""

from __future__ import annotations

import pickle
import random
import textwrap

import pytest

from protogen.diagnostics import Diagnostic, SpecError
from protogen.models import Location
from protogen.parser import parse_spec


def errors(text: str) -> list[str]:
    """The diagnostics of a bad spec as "line:col: message", in source order."""
    with pytest.raises(SpecError) as caught:
        parse_spec(textwrap.dedent(text).lstrip("\n"), "bad.dsl")
    return [
        f"{d.location.line}:{d.location.column}: {d.message}"
        for d in caught.value.diagnostics
    ]


def frame_errors(body: str, prelude: str = "") -> list[str]:
    """Errors of a spec whose frame F (from line 3) holds `body`."""
    return errors(
        f"protocol p\n{prelude}frame F {{\n{textwrap.dedent(body).strip()}\n}}\n"
    )


# --- rendering ---------------------------------------------------------------------------


def test_rendering_names_the_place_shows_the_line_and_a_caret() -> None:
    text = (
        "protocol p\nframe F {\n    framing length(nosuch)\n    header { n: u16 }\n}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "specs/bad.proto.dsl")
    assert str(caught.value) == (
        "specs/bad.proto.dsl:3:20: error: unknown field 'nosuch'\n"
        "    framing length(nosuch)\n"
        "                   ^~~~~~"
    )


def test_caret_keeps_tabs_so_it_lines_up() -> None:
    diagnostic = Diagnostic(Location("f", 1, 3), "boom", "\t\tx = 1", 1)
    assert diagnostic.render() == "f:1:3: error: boom\n\t\tx = 1\n\t\t^"


def test_spec_errors_survive_pickling() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("protocol p\nframe F { framing fixed 0 }", "p.dsl")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.diagnostics == caught.value.diagnostics
    assert str(copy) == str(caught.value)


def test_several_semantic_errors_are_reported_together_in_order() -> None:
    assert (
        errors("""
        protocol p
        frame F {
            framing length(len)
            header { len: u40 kind: Nope }
            body { key: bytes[missing] }
            dispatch on len
        }
        server decodes G
        """)
        == [
            "3:20: width not allowed: length field 'len' is 5 bytes (u40); "
            "length fields are 1, 2, 3, 4 or 8 bytes",
            "4:29: unknown type 'Nope'",
            "5:23: unknown field 'missing'",
            "6:17: cannot dispatch on 'len': it is not an enum field (u40)",
            "8:16: unknown frame 'G'",
        ]
    )


def test_errors_in_literals_are_reported_with_semantic_ones() -> None:
    assert (
        errors(r"""
        protocol p
        frame F { framing delimited "\q" max_frame 0 }
        """)
        == [
            "2:30: bad escape '\\q' in string (use \\r \\n \\t \\0 \\\\ \\\" or \\xNN)",
            "2:44: max_frame must be positive, not 0",
        ]
    )


# --- syntax errors -------------------------------------------------------------------------


def test_unexpected_token_lists_what_was_expected() -> None:
    assert frame_errors("framing length(n\nheader { n: u16 }") == [
        "4:1: unexpected 'header'; expected ')'"
    ]


def test_unknown_framing_kind() -> None:
    assert frame_errors("framing lenght(n)") == [
        "3:9: unexpected name 'lenght'; expected one of: 'array', 'composite', 'decimal', "
        "'delimited', 'fixed', 'length', 'varint'"
    ]


def test_unexpected_statement_in_a_frame() -> None:
    assert frame_errors("framing length(n)\nprotocol q") == [
        "4:1: unexpected 'protocol'; expected one of: 'adjust', 'body', 'counts', "
        "'dispatch', 'framing', 'header', 'max_frame', 'stream_only', 'strip', 'trailer', 'where', '}'"
    ]


def test_expected_names_and_literals_read_as_words() -> None:
    assert frame_errors("framing length(n) adjust }") == [
        "3:26: unexpected '}'; expected an integer"
    ]
    assert errors("protocol 12") == ["1:10: unexpected integer 12; expected a name"]
    assert errors("protocol p handler_base nope") == [
        "1:25: unexpected name 'nope'; expected a string"
    ]


def test_unexpected_end_of_file() -> None:
    assert errors("protocol p\nframe F {\n  framing varint   # unfinished\n\n") == [
        "3:17: unexpected end of file; expected one of: a name, 'body', 'dispatch', "
        "'framing', 'header', 'max_frame', 'trailer', 'where', '}'"
    ]


def test_unexpected_character() -> None:
    assert errors("protocol p\nframe F { framing varint } @") == [
        "2:28: unexpected character '@'; expected one of: 'enum', 'extern', 'frame', "
        "'frame_base', 'handler_base', 'max_frame', 'phase', 'protocol', 'server', "
        "'start', 'struct', 'transport', 'union'"
    ]


def test_unterminated_string() -> None:
    assert frame_errors('framing delimited "\\r\\n\nbody { line: bytes[rest] }') == [
        "3:19: unterminated string (strings end on the same line)"
    ]


def test_bad_escape() -> None:
    assert frame_errors(r'framing delimited "ab\c"') == [
        r"3:22: bad escape '\c' in string (use \r \n \t \0 \\ \" or \xNN)"
    ]


def test_bad_hex_escape() -> None:
    assert frame_errors(r'framing delimited "\x4g"') == [
        r"3:20: bad escape '\x' in string (\xNN needs two hex digits)"
    ]


# --- names ------------------------------------------------------------------------------------


def test_missing_protocol_statement() -> None:
    assert errors("frame F { framing varint }") == [
        "1:1: missing `protocol NAME` statement"
    ]


def test_duplicate_top_level_statement() -> None:
    assert errors("protocol p\nprotocol q\nframe F { framing varint }") == [
        "2:1: duplicate `protocol` statement (first at 1:1)"
    ]


def test_duplicate_field_across_blocks() -> None:
    assert frame_errors("""
        framing length(n)
        header { n: u16 key: u8 }
        body { key: bytes[rest] }
        """) == ["5:8: duplicate field 'key' (first at 4:17)"]


def test_duplicate_field_in_a_header() -> None:
    assert frame_errors("framing fixed\nheader { a: u8 a: u16 }") == [
        "4:16: duplicate field 'a' (first at 4:10)"
    ]


def test_duplicate_frame() -> None:
    assert errors(
        "protocol p\nserver decodes A\nframe A { framing varint }\nframe A { framing varint }"
    ) == ["4:7: duplicate name 'A' (first at 3:7)"]


def test_duplicate_enum_and_enum_named_like_a_frame() -> None:
    assert (
        errors("""
        protocol p
        enum E : u8 { a = 1 }
        enum E : u8 { b = 2 }
        frame E { framing varint }
        """)
        == [
            "3:6: duplicate name 'E' (first at 2:6)",
            "4:7: duplicate name 'E' (first at 2:6)",
        ]
    )


def test_duplicate_enum_member() -> None:
    assert errors(
        "protocol p\nenum E : u8 { a = 1, a = 2 }\nframe F { framing varint }"
    ) == ["2:22: duplicate enum member 'a' (first at 2:15)"]


def test_duplicate_enum_value() -> None:
    assert errors(
        "protocol p\nenum E : u8 { a = 1, b = 0x01 }\nframe F { framing varint }"
    ) == ["2:26: duplicate enum value 1 (also 'a')"]


def test_enum_without_members() -> None:
    assert errors("protocol p\nenum E : u8 { }\nframe F { framing varint }") == [
        "2:6: enum 'E' has no members"
    ]


def test_python_keyword_as_field_name() -> None:
    assert frame_errors("framing fixed\nheader { from: u8 }") == [
        "4:10: field name 'from' is a Python keyword"
    ]


def test_dunder_field_name_is_rejected() -> None:
    assert frame_errors("framing fixed\nheader { __slots__: u8 }") == [
        "4:10: field name '__slots__' starts with '__', which Python reserves"
    ]


def test_field_named_like_a_frame_method_is_rejected() -> None:
    assert frame_errors("framing fixed\nheader { encode: u8 }") == [
        "4:10: field name 'encode' is reserved: generated frame classes "
        "have a method of that name"
    ]


def test_type_name_as_frame_name() -> None:
    assert errors("protocol p\nframe u8 { framing varint }") == [
        "2:7: frame name 'u8' is a type name"
    ]


# --- types and values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_name", "message"),
    [
        (
            "u9",
            "width not allowed: 'u9' (integers are u8, u16, u24, ... u64: 1 to 8 whole bytes)",
        ),
        (
            "i12",
            "width not allowed: 'i12' (integers are i8, i16, i24, ... i64: 1 to 8 whole bytes)",
        ),
        (
            "u72",
            "width not allowed: 'u72' (integers are u8, u16, u24, ... u64: 1 to 8 whole bytes)",
        ),
        (
            "u0",
            "width not allowed: 'u0' (integers are u8, u16, u24, ... u64: 1 to 8 whole bytes)",
        ),
        ("f16", "width not allowed: 'f16' (floats are f32 or f64)"),
    ],
)
def test_width_not_allowed(type_name: str, message: str) -> None:
    assert frame_errors(f"framing fixed\nheader {{ a: u8 b: {type_name} }}") == [
        f"4:19: {message}"
    ]


def test_unknown_type_suggests_a_close_name() -> None:
    assert frame_errors(
        "framing fixed\nheader { a: uint32 b: Opcod }", "enum Opcode : u8 { x = 1 }\n"
    ) == [
        "5:13: unknown type 'uint32' (did you mean 'u32'?)",
        "5:23: unknown type 'Opcod' (did you mean 'Opcode'?)",
    ]


def test_bytes_without_size_or_with_a_field_size_in_the_header() -> None:
    assert frame_errors("framing fixed\nheader { a: bytes b: bytes[n] n: u8 }") == [
        "4:13: bytes needs a size: bytes[N]",
        "4:28: header fields have a fixed size; bytes[n] belongs in the body",
    ]


def test_unknown_size_unit() -> None:
    assert errors("protocol p\nmax_frame 16 MB\nframe F { framing varint }") == [
        "2:14: unknown size unit 'MB' (use B, KiB, MiB or GiB)"
    ]


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("a: u8 = 256", "value 256 out of range for field 'a' of u8 (0..255)"),
        ("a: u8 = -1", "value -1 out of range for field 'a' of u8 (0..255)"),
        ("a: i8 = -129", "value -129 out of range for field 'a' of i8 (-128..127)"),
        (
            "a: u24 = 0x1000000",
            "value 16777216 out of range for field 'a' of u24 (0..16777215)",
        ),
        (
            "a: u16 in {1, 65536}",
            "value 65536 out of range for field 'a' of u16 (0..65535)",
        ),
    ],
)
def test_constant_out_of_range(declaration: str, message: str) -> None:
    column = 10 + declaration.rindex(" ") + 1
    if "{" in declaration:
        column = 10 + declaration.index("65536")
    assert frame_errors(f"framing fixed\nheader {{ {declaration} }}") == [
        f"4:{column}: {message}"
    ]


def test_constant_of_the_wrong_kind() -> None:
    assert frame_errors(
        'framing fixed\nheader { a: bytes[2] = 7 b: bytes[2] = "abc" c: u8 = "x" d: f32 = 1 }'
    ) == [
        "4:24: field 'a' is bytes[2]; its constant must be a string",
        "4:40: constant of 3 bytes for field 'b' of bytes[2]",
        "4:54: field 'c' is u8; its constant must be an integer",
        "4:67: float field 'd' cannot be a constant",
    ]


def test_enum_value_out_of_range() -> None:
    assert errors(
        "protocol p\nenum E : i8 { low = -129, high = 127 }\nframe F { framing varint }"
    ) == ["2:21: enum value -129 out of range for i8 (-128..127)"]


def test_enum_base_must_be_an_integer() -> None:
    assert errors(
        "protocol p\nenum E : f64 { a = 1 }\nframe F { framing fixed header { e: E } }"
    ) == ["2:10: enum base must be an integer type (u8...u64, i8...i64), not 'f64'"]


# --- length framing --------------------------------------------------------------------------------


def test_length_of_an_unknown_field_suggests() -> None:
    assert frame_errors("framing length(lenght)\nheader { length: u32 }") == [
        "3:16: unknown field 'lenght' (did you mean 'length'?)"
    ]


def test_length_field_in_the_trailer_or_body() -> None:
    assert frame_errors("framing length(t)\nheader { n: u8 }\ntrailer { t: u16 }") == [
        "3:16: length field 't' must be in the header, not the trailer"
    ]
    assert frame_errors(
        "framing length(b)\nheader { n: u8 }\nbody { b: bytes[4] }"
    ) == ["3:16: length field 'b' must be in the header, not the body"]


def test_length_field_must_be_an_integer() -> None:
    assert frame_errors("framing length(n)\nheader { n: f32 }") == [
        "3:16: length field 'n' must be an integer, not f32"
    ]
    assert frame_errors("framing length(n)\nheader { n: bytes[4] }") == [
        "3:16: length field 'n' must be an integer, not bytes[4]"
    ]


@pytest.mark.parametrize("width", [5, 6, 7])
def test_length_field_width_not_allowed(width: int) -> None:
    assert frame_errors(f"framing length(n)\nheader {{ n: u{8 * width} }}") == [
        f"3:16: width not allowed: length field 'n' is {width} bytes (u{8 * width}); "
        "length fields are 1, 2, 3, 4 or 8 bytes"
    ]


def test_length_field_cannot_be_constant() -> None:
    assert frame_errors("framing length(n)\nheader { n: u16 = 4 }") == [
        "3:16: length field 'n' is computed on encode; it cannot also be a constant, "
        "an allowed set or a checksum"
    ]


def test_length_options() -> None:
    assert frame_errors("framing length(n) counts bytes\nheader { n: u16 }") == [
        "3:26: unknown length count 'bytes' (expected body, frame or after_field)"
    ]
    assert frame_errors("framing length(n) adjust 1 adjust 2\nheader { n: u16 }") == [
        "3:28: duplicate length option 'adjust'"
    ]
    assert frame_errors("framing length(n) strip 3\nheader { n: u16 }") == [
        "3:25: strip 3 is larger than the header (2 bytes)"
    ]
    assert frame_errors("framing length(n) strip -1\nheader { n: u16 }") == [
        "3:25: strip must not be negative, not -1"
    ]


# --- body fields -------------------------------------------------------------------------------------


def test_rest_must_be_last() -> None:
    assert frame_errors(
        "framing length(n)\nheader { n: u16 }\nbody { a: bytes[rest] b: bytes[4] }"
    ) == ["5:8: bytes[rest] field 'a' must be the last body field"]


def test_only_one_rest() -> None:
    assert frame_errors(
        "framing length(n)\nheader { n: u16 }\nbody { a: bytes[rest] b: bytes[rest] }"
    ) == [
        "5:8: bytes[rest] field 'a' must be the last body field",
        "5:26: only one body field can be bytes[rest]",
    ]


def test_body_field_sized_by_unknown_field() -> None:
    assert frame_errors(
        "framing length(n)\nheader { n: u16 }\nbody { a: bytes[nosuch] }"
    ) == ["5:17: unknown field 'nosuch'"]


def test_body_field_sized_by_a_non_integer() -> None:
    assert (
        frame_errors(
            """
        framing length(n)
        header { n: u16 f: f32 tag: bytes[2] e: E }
        body { a: bytes[f] b: bytes[tag] c: bytes[e] }
        """,
            "enum E : u8 { x = 1 }\n",
        )
        == [
            "6:17: body field 'a' is sized by 'f', which is not an integer (f32)",
            "6:29: body field 'b' is sized by 'tag', which is not an integer (bytes[2])",
            "6:43: body field 'c' is sized by 'e', which is not an integer (enum E)",
        ]
    )


def test_body_field_sized_by_the_length_field() -> None:
    assert frame_errors(
        "framing length(n)\nheader { n: u16 }\nbody { a: bytes[n] }"
    ) == ["5:8: body field 'a' is sized by the length field 'n'; use bytes[rest]"]


def test_body_field_types_are_checked() -> None:
    assert frame_errors(
        "framing length(n)\nheader { n: u16 }\nbody { a: u32 b: bytes c: bytes[0] }"
    ) == [
        '5:18: bytes needs a size: bytes[N], [FIELD], [u16] (a length prefix), [rest] '
        'or [until "\\0"]',
        "5:33: bytes size must be positive, not 0",
    ]


# --- other framings ---------------------------------------------------------------------------------


def test_fixed_size_smaller_than_the_header() -> None:
    assert frame_errors("framing fixed 4\nheader { a: u32 b: u16 }") == [
        "3:15: fixed size 4 is smaller than the header (6 bytes)"
    ]


def test_fixed_size_with_unclaimed_bytes() -> None:
    assert frame_errors("framing fixed 8\nheader { a: u32 }\nbody {}") == [
        "3:15: fixed size 8 leaves 4 bytes without a field; add a bytes[rest] body field"
    ]


def test_empty_delimiter() -> None:
    assert frame_errors('framing delimited "\\n", ""') == ["3:25: empty delimiter"]
    assert frame_errors('framing composite head "" length_header "Content-Length"') == [
        "3:24: empty delimiter"
    ]


def test_duplicate_delimiter() -> None:
    assert frame_errors('framing delimited "\\n", "\\x0a"') == [
        "3:25: duplicate delimiter b'\\n'"
    ]


def test_varint_style() -> None:
    assert frame_errors("framing varint zigzag") == [
        "3:16: unknown varint style 'zigzag' (expected leb128 or mqtt)"
    ]


def test_headerless_framings_have_no_header() -> None:
    assert frame_errors('framing delimited "\\n"\nheader { a: u8 }') == [
        "4:1: delimited framing has no header; typed fields need length, varint or "
        "fixed framing"
    ]


def test_headerless_framings_have_one_rest_body_field() -> None:
    assert frame_errors("framing decimal\nbody { a: bytes[4] }") == [
        "4:1: the body of a decimal-framed frame is a single bytes[rest] field"
    ]


# --- checksums ---------------------------------------------------------------------------------------


def test_checksum_range_includes_the_field_itself_in_the_header() -> None:
    assert frame_errors("framing fixed\nheader { a: u32 crc: u32 = crc32[0:] }") == [
        "4:28: checksum range [0:] includes the checksum field 'crc' itself"
    ]


def test_checksum_range_includes_the_field_itself_in_the_trailer() -> None:
    assert frame_errors(
        "framing length(n)\nheader { n: u16 }\ntrailer { crc: u32 = crc32[0:-2] }"
    ) == ["5:22: checksum range [0:-2] includes the checksum field 'crc' itself"]


def test_checksum_range_with_variable_length_reaching_the_header_field() -> None:
    # [0:-4] ends 4 bytes before the end: past the header field in longer frames.
    assert frame_errors(
        "framing length(n)\nheader { n: u16 crc: u32 = crc32[0:-4] }"
    ) == ["4:28: checksum range [0:-4] includes the checksum field 'crc' itself"]


def test_unknown_checksum_algorithm() -> None:
    assert frame_errors("framing fixed\nheader { a: u32 c: u32 = md5[0:4] }") == [
        "4:26: unknown checksum algorithm 'md5' (expected crc32, crc16_ccitt or adler32)"
    ]


def test_checksum_field_of_the_wrong_type() -> None:
    assert frame_errors(
        "framing fixed\nheader { a: u32 c: u16 = crc32[0:4] d: i16 = crc16_ccitt[0:4] }"
    ) == [
        "4:26: crc32 needs a u32 field; 'c' is u16",
        "4:46: crc16_ccitt needs a u16 field; 'd' is i16",
    ]


def test_checksum_range_beyond_a_fixed_frame() -> None:
    assert frame_errors("framing fixed\nheader { a: u32 c: u32 = crc32[0:12] }") == [
        "4:26: checksum range [0:12] ends beyond the 8-byte frame"
    ]


# --- dispatch, server, frame-level statements ------------------------------------------------------------


def test_dispatch_on_unknown_field() -> None:
    assert frame_errors("framing fixed\nheader { a: u8 }\ndispatch on nosuch") == [
        "5:13: unknown field 'nosuch'"
    ]


def test_dispatch_on_a_non_enum_field() -> None:
    assert frame_errors("framing fixed\nheader { a: u8 }\ndispatch on a") == [
        "5:13: cannot dispatch on 'a': it is not an enum field (u8)"
    ]


def test_server_decodes_or_encodes_an_unknown_frame() -> None:
    assert (
        errors("""
        protocol p
        server decodes Requets encodes Nothing
        frame Request { framing varint }
        frame Response { framing varint }
        """)
        == [
            "2:16: unknown frame 'Requets' (did you mean 'Request'?)",
            "2:32: unknown frame 'Nothing'",
        ]
    )


def test_several_frames_need_a_server_statement() -> None:
    assert errors(
        "protocol p\nframe A { framing varint }\nframe B { framing varint }"
    ) == [
        "1:1: several frames: say which one the server decodes and which one it "
        "encodes (`server decodes REQUEST encodes RESPONSE`)"
    ]


def test_missing_framing() -> None:
    assert frame_errors("header { a: u8 }") == [
        "2:7: frame 'F' has no `framing` statement"
    ]


def test_duplicate_framing() -> None:
    assert frame_errors("framing varint\nframing fixed 4") == [
        "4:1: duplicate `framing` statement in frame 'F' (first at 3:1)"
    ]


def test_duplicate_block() -> None:
    assert frame_errors("framing fixed\nheader { a: u8 }\nheader { b: u8 }") == [
        "5:1: duplicate `header` block in frame 'F' (first at 4:1)"
    ]


def test_max_frame_zero() -> None:
    assert errors("protocol p\nmax_frame 0 KiB\nframe F { framing varint }") == [
        "2:11: max_frame must be positive, not 0"
    ]
    assert frame_errors("framing varint\nmax_frame 0") == [
        "4:11: max_frame must be positive, not 0"
    ]


def test_max_frame_smaller_than_a_fixed_frame() -> None:
    assert frame_errors("framing fixed 2 KiB\nmax_frame 1 KiB") == [
        "4:11: fixed size 2048 exceeds max_frame 1024"
    ]


def test_no_frames() -> None:
    assert errors("protocol p") == ["1:1: spec defines no frames"]


def test_unknown_transport() -> None:
    assert errors("protocol p\ntransport tcp, sctp\nframe F { framing varint }") == [
        "2:16: unknown transport 'sctp' (expected tcp, udp or both)"
    ]


def test_bad_base_class_path() -> None:
    assert errors('protocol p\nhandler_base "nocolon"\nframe F { framing varint }') == [
        '2:14: handler_base must look like "package.module:Class"'
    ]


# --- robustness -------------------------------------------------------------------------------------------

GOOD_SPEC = """\
protocol memcache
transport both
max_frame 1 MiB
server decodes Request encodes Request
enum Opcode : u8 { get = 0x00, set = 0x01 }
frame Request {
    framing length(total) counts body adjust -0 strip 0
    header big { magic: u8 = 0x80 op: Opcode klen: u16 total: u32 v: u8 in {1, 2} }
    body { key: bytes[klen] value: bytes[rest] }
    trailer little { crc: u32 = crc32[0:-4] }
    dispatch on op
}
frame Http { framing composite head "\\r\\n\\r\\n" length_header "Content-Length" }
"""


def test_good_spec_for_the_robustness_tests_parses() -> None:
    assert parse_spec(GOOD_SPEC, "good.dsl").frame("Request").dispatch == "op"


def test_every_truncation_gives_a_spec_error_not_a_lark_exception() -> None:
    for end in range(len(GOOD_SPEC)):
        try:
            parse_spec(GOOD_SPEC[:end], "cut.dsl")
        except SpecError as error:
            assert error.diagnostics and ": error: " in str(error)


def test_random_mutations_give_spec_errors_only() -> None:
    rng = random.Random(4)
    alphabet = '{}[]():,="\\#-+ \n\tazAZ09_xé'
    for _ in range(400):
        text = list(GOOD_SPEC)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(text))
            if rng.random() < 0.5:
                text[position] = rng.choice(alphabet)
            else:
                del text[position]
        try:
            parse_spec("".join(text), "mutant.dsl")
        except SpecError as error:
            assert error.diagnostics
