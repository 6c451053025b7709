"""The example specs (examples/*.proto.dsl) through the real parser: property tests per frame."""

from __future__ import annotations

import pytest

from codec_helpers import (
    EXAMPLES,
    check_garbage_raises_only_protocol_errors,
    check_roundtrip_split_anywhere,
)
from protogen.format import is_formatted
from protogen.generator import generate
from protogen.render import snake_case

parser = pytest.importorskip("protogen.parser")

SPEC_PATHS = sorted(EXAMPLES.glob("*.proto.dsl"))


def _cases():
    cases = []
    for path in SPEC_PATHS:
        protocol = parser.load_spec(path)
        for frame_def in protocol.frames:
            cases.append(
                pytest.param(
                    protocol, frame_def.name, id=f"{path.stem}-{frame_def.name}"
                )
            )
    return cases


CASES = _cases()


def test_examples_exist():
    names = {p.name for p in SPEC_PATHS}
    assert {
        "echo.proto.dsl",
        "lines.proto.dsl",
        "fixed.proto.dsl",
        "netstring.proto.dsl",
    } <= names


@pytest.mark.parametrize("path", SPEC_PATHS, ids=[p.stem for p in SPEC_PATHS])
def test_example_builds_are_black_clean_and_byte_identical(path):
    first = generate(parser.load_spec(path))
    second = generate(parser.load_spec(path))
    assert first == second
    for name, source in first.items():
        assert is_formatted(source), name


@pytest.mark.parametrize(("protocol", "frame_name"), CASES)
def test_property_example_roundtrip(codec, protocol, frame_name):
    check_roundtrip_split_anywhere(codec(protocol), protocol, frame_name)


@pytest.mark.parametrize(("protocol", "frame_name"), CASES)
def test_property_example_garbage(codec, protocol, frame_name):
    check_garbage_raises_only_protocol_errors(codec(protocol), frame_name)


def test_echo_example_wire_format(codec):
    protocol = parser.load_spec(EXAMPLES / "echo.proto.dsl")
    module = codec(protocol)
    frame_name = protocol.frames[0].name
    frame_class = getattr(module, frame_name)
    body_name = protocol.frames[0].body[0].name
    wire = getattr(module, f"encode_{snake_case(frame_name)}")(
        frame_class(**{body_name: b"hi"})
    )
    assert wire == b"\x00\x00\x00\x02hi"
