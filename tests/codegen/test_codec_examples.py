"""The example specs (examples/*.proto.dsl) through the real parser: property tests per frame."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec_helpers import (
    EXAMPLES,
    FUZZ_EXAMPLES,
    chunks,
    decode_stream_reader,
    decode_stream_views,
    encodable,
    frames_strategy,
    split_points,
)
from protogen.errors import ProtocolError
from protogen.format import is_formatted
from protogen.generator import generate
from protogen.render import snake_case

parser = pytest.importorskip("protogen.parser")

SPEC_PATHS = sorted(EXAMPLES.glob("*.proto.dsl"))
SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


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
    module = codec(protocol)
    encode = getattr(module, f"encode_{snake_case(frame_name)}")
    frames = st.lists(
        encodable(frames_strategy(protocol, frame_name, module), encode), max_size=6
    )

    @SETTINGS
    @given(data=st.data())
    def check(data):
        sent = data.draw(frames)
        stream = b"".join(encode(frame) for frame in sent)
        pieces = chunks(stream, data.draw(split_points(len(stream))))
        assert decode_stream_reader(module, frame_name, pieces) == sent
        assert decode_stream_views(module, frame_name, pieces) == sent

    check()


@pytest.mark.parametrize(("protocol", "frame_name"), CASES)
def test_property_example_garbage(codec, protocol, frame_name):
    module = codec(protocol)
    reader_class = getattr(module, f"{frame_name}Reader")

    @SETTINGS
    @given(
        garbage=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6)
    )
    def check(garbage, cuts):
        reader = reader_class()
        try:
            for piece in chunks(garbage, sorted(c for c in cuts if c <= len(garbage))):
                reader.feed(piece)
        except ProtocolError:
            pass

    check()


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
