"""`framing decimal SEP TERM marker "M"`: a marker before the decimal length
(RESP's bulk strings, `$3\\r\\nfoo\\r\\n`)."""

from __future__ import annotations

import pytest

from protogen.diagnostics import SpecError
from protogen.errors import MalformedFrame
from protogen.parser import parse_spec

SPEC = """
protocol bulk
frame Bulk {
    framing decimal "\\r\\n" "\\r\\n" marker "$"
    body { value: bytes[rest] }
}
"""


@pytest.fixture
def codec(build):
    return build(parse_spec(SPEC, "bulk.proto.dsl"))


def test_encodes_and_decodes_with_the_marker(codec) -> None:
    assert codec.Bulk(value=b"foo").encode() == b"$3\r\nfoo\r\n"
    frame, end = codec.BulkDecoder().decode(b"$3\r\nfoo\r\n$0\r\n\r\n")
    assert bytes(frame.value) == b"foo" and end == 9
    frame, end = codec.BulkDecoder().decode(b"$3\r\nfoo\r\n$0\r\n\r\n", 9)
    assert bytes(frame.value) == b"" and end == 15


@pytest.mark.parametrize("cut", range(9))
def test_every_prefix_waits_and_keeps_its_start(codec, cut: int) -> None:
    data = b"xx" + b"$3\r\nfoo\r\n"[:cut]
    assert codec.BulkDecoder().decode(data, 2) == (None, 2)


def test_another_first_byte_is_refused(codec) -> None:
    with pytest.raises(MalformedFrame, match=r"Bulk: expected b'\$', got b'\*'"):
        codec.BulkDecoder().decode(b"*3\r\n")


@pytest.mark.parametrize(
    ("marker", "message"), [('""', "empty marker"), ('"$1"', "must not contain digits")]
)
def test_bad_markers(marker: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(
            f'protocol p\nframe F {{ framing decimal ":" "," marker {marker} }}',
            "p.dsl",
        )
