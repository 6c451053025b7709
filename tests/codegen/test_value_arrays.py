"""Plug-in types read from a value array (`extern N: str = "m:o" from U[until ...]`):
the generated loop for shapes other than DNS names, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from protogen.errors import MalformedFrame
from protogen.parser import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).parent / "specs" / "value_arrays.proto.dsl"


@pytest.fixture()
def names(codec, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "examples" / "dns"))  # the hook
    return codec(load_spec(SPEC))


def test_a_little_endian_head_with_the_tag_in_its_low_bits(names) -> None:
    frame = names.Names(names=[names.Entry("ab.cd", 1), names.Entry("x.cd", 2)])
    wire = frame.encode()
    # "ab": size 2, tag 1 -> 2 << 2 | 1 = 9, little-endian; the root: size 0, tag 1
    first = b"\x09\x00ab\x09\x00cd\x01\x00"
    # "x", then the pointer to "cd": tag 2, size 0 (the value's top bits), then
    # the value as a little-endian u16: 5, where the DNS hook, which counts
    # 1-byte heads, puts "cd" (2 + 3); decoding asks the same hook, so it agrees
    second = b"\x05\x00x\x02\x00\x05\x00"
    assert wire == len(first + second + b"\x01\x02").to_bytes(2, "big") + (
        first + b"\x01" + second + b"\x02"
    )
    decoded, end = names.NamesDecoder().decode(wire)
    assert end == len(wire) and decoded == frame


@pytest.mark.parametrize(
    "body, error",
    [
        (b"\x03\x00", r"Entry.name: Part\[0\].tag: 3 names no arm"),
        (b"\x09\x00a", r"Entry.name: Part\[0\]: 2-byte bytes overrun the frame"),
        (b"\x09", r"Entry.name: Part\[0\]: the element overruns the frame"),
        (b"\x02\x00\x00", r"Entry.name: Part\[0\]: its u16 overruns the frame"),
        (b"\x02\x00\x00\x00\x01", "Entry.name: compression pointer to offset 0 does not"),
    ],
)
def test_bad_elements_name_the_field_and_the_element(names, body: bytes, error: str) -> None:
    with pytest.raises(MalformedFrame, match=error):
        names.NamesDecoder().decode(len(body).to_bytes(2, "big") + body)


def test_the_encoder_checks_what_the_hook_gives(names, monkeypatch) -> None:
    for items, error in [
        ([], "needs its terminating element"),
        ([b"ab"], "must hold for the last element only"),
        ([b"", b""], "must hold for the last element only"),
        ([1 << 30], "does not fit"),
        ([b"a" * 16384, b""], "over 16383 bytes"),
        (["text"], "elements are bytes or int, not str"),
    ]:
        monkeypatch.setattr(names, "_NAME_COMPRESS", lambda v, o, s, items=items: items)
        with pytest.raises((ValueError, TypeError), match=error):
            names.Entry("x", 1).encode()
