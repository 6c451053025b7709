"""Decoder code generation that costs fewer instructions, and stays as strict:
a run before a union read with the union's leading run, fixed-size byte
strings by a struct code, objects filled slot by slot, xor by translate lanes.
"""

from __future__ import annotations

import inspect
import os
import struct

import pytest
from protogen import wire as pwire
from protogen.errors import InvalidValue, MalformedFrame
from protogen.parser import parse_spec

SPEC = """
protocol t
frame F {
    framing length(n)
    header { n: u16 }
    body { records: Rec[rest] }
}
struct Rec {
    kind: u16
    value: switch kind {
        1 => Wide
        2 => Narrow
        default => Other(kind)
    }
}
struct Wide { a: u32  b: u32  data: bytes[u16] }
struct Narrow { c: u8  d: u8  e: u16  tag: bytes[5] }
struct Other(kind: u16) { f: u32  g: u32  rest: bytes[u8] }
"""
# Narrow reads 8 bytes first, fewer than the default arm's 9.
SHORT = SPEC.replace("tag: bytes[5]", "tag: bytes[4]")
MERGED = "= struct.Struct('>HIIB')"  # kind, then Other's f, g and the length of rest


@pytest.fixture
def codec(build):
    return build(parse_spec(SPEC, "test.proto.dsl"))


def frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def test_the_run_before_a_union_reads_the_default_arms_run_in_one_unpack(codec) -> None:
    assert MERGED in inspect.getsource(codec).replace('"', "'")
    wide = struct.pack(">HIIH", 1, 7, 8, 2) + b"xy"
    narrow = struct.pack(">HBBH", 2, 3, 4, 5) + b"abcde"
    other = struct.pack(">HIIB", 9, 10, 11, 1) + b"z"
    decoded, end = codec.FDecoder().decode(frame(wide + narrow + other))
    assert end == 2 + len(wide + narrow + other)
    w, n, o = (r.value for r in decoded.records)
    assert (w.a, w.b, w.data) == (7, 8, b"xy")
    assert (n.c, n.d, n.e, n.tag) == (3, 4, 5, b"abcde")
    assert (o.f, o.g, o.rest) == (10, 11, b"z")
    assert decoded.encode() == frame(wide + narrow + other)


def test_no_merge_when_an_arm_reads_fewer_bytes_first(build) -> None:
    # Merging Other's 9 bytes would refuse a Narrow record that ends the frame.
    codec = build(parse_spec(SHORT, "t.proto.dsl"))
    assert MERGED not in inspect.getsource(codec).replace('"', "'")
    narrow = struct.pack(">HBBH", 2, 3, 4, 5) + b"abcd"
    decoded, _ = codec.FDecoder().decode(frame(narrow))
    assert decoded.records[0].value.tag == b"abcd"


def test_a_truncated_record_names_the_run_and_the_union(codec) -> None:
    # every arm reads at least 9 bytes after kind: one check of 11 bytes
    with pytest.raises(MalformedFrame, match=r"Rec\.kind, Rec\.value: 11-byte fields overrun"):
        codec.FDecoder().decode(frame(struct.pack(">HH", 2, 1)))
    # the arms' own checks still run after the merged one
    with pytest.raises(MalformedFrame, match=r"Wide\.data: 3-byte"):
        codec.FDecoder().decode(frame(struct.pack(">HIIH", 1, 7, 8, 3) + b"xy"))
    with pytest.raises(MalformedFrame, match=r"Other\.rest: 2-byte"):
        codec.FDecoder().decode(frame(struct.pack(">HIIB", 9, 1, 1, 2) + b"z"))


def test_a_chosen_arms_checks_run_only_in_that_arm(build) -> None:
    spec = SPEC.replace("struct Other(kind: u16) { f: u32", "struct Other(kind: u16) { f: u32 = 5")
    codec = build(parse_spec(spec, "t.proto.dsl"))
    wide = struct.pack(">HIIH", 1, 7, 8, 2) + b"xy"  # its `a` sits where Other's f is
    assert codec.FDecoder().decode(frame(wide))[0].records[0].value.a == 7
    with pytest.raises(InvalidValue, match=r"Other\.f"):
        codec.FDecoder().decode(frame(struct.pack(">HIIB", 9, 6, 1, 0)))


def test_decoded_objects_equal_constructed_ones(codec) -> None:
    body = struct.pack(">HIIH", 1, 7, 8, 2) + b"xy"
    decoded, _ = codec.FDecoder().decode(frame(body))
    assert decoded == codec.F([codec.Rec(1, codec.Wide(7, 8, b"xy"))])
    assert repr(decoded.records[0].value) == repr(codec.Wide(7, 8, b"xy"))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 639, 640, 641, 1024, 1027, 4099])
def test_unmask_is_the_xor_with_the_key_repeated(size: int) -> None:
    key = os.urandom(4)
    data = os.urandom(size + 3)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data[3:]))
    for buffer in (data, bytearray(data), memoryview(data)):
        assert pwire.unmask(buffer, 3, 3 + size, key) == expected
        assert pwire.xor_mask(buffer[3:], key) == expected
    assert pwire.unmask(data, 3, 3 + size, b"\x01\x02\x03") == bytes(
        b ^ (1, 2, 3)[i % 3] for i, b in enumerate(data[3:])
    )
    assert pwire.unmask(data, 3, 3 + size, b"") == data[3:]


def test_dns_names_as_label_arrays(build) -> None:
    """DNS names as an array of a Label structure (pointers left unresolved);
    examples/dns reads them from a Label value array instead."""
    from pathlib import Path

    from protogen.parser import load_spec

    spec = Path(__file__).parent / "specs" / "dns_labels.proto.dsl"
    codec = build(load_spec(spec))
    body = b"\3www\7example\3com\0" + b"\3ftp\xc0\x02" + b"\xc0\x02"
    decoded, end = codec.NamesDecoder().decode(frame(body))
    assert end == 2 + len(body)
    names = [[(label.kind, label.length, label.part) for label in n.labels] for n in decoded.names]
    assert names == [
        [(0, 3, b"www"), (0, 7, b"example"), (0, 3, b"com"), (0, 0, b"")],
        [(0, 3, b"ftp"), (3, 0, 2)],
        [(3, 0, 2)],
    ]
    assert decoded.encode() == frame(body)
    with pytest.raises(MalformedFrame, match=r"Label\.part: 5-byte"):
        codec.NamesDecoder().decode(frame(b"\5ab"))
