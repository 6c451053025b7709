"""Property tests: encode random frames, split the stream anywhere, decode the same frames.

Covers every framing kind with hand-built IR (codec_specs.ALL) and, when the
parser can load them, every example spec. PROTOGEN_FUZZ_EXAMPLES sets the
number of hypothesis examples (default 200).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec_helpers import (
    PROPERTY_SETTINGS,
    check_garbage_raises_only_protocol_errors,
    check_roundtrip_split_anywhere,
    encodable,
    frames_strategy,
)
from codec_specs import ALL
from protogen.errors import ProtocolError
from protogen.render import snake_case

SETTINGS = PROPERTY_SETTINGS
IDS = [f"{s.name}-{name}" for s, name in ALL]


def encoder(module, frame_name: str):
    return getattr(module, f"encode_{snake_case(frame_name)}")


@pytest.mark.parametrize(("protocol", "frame_name"), ALL, ids=IDS)
def test_property_roundtrip_split_anywhere(codec, protocol, frame_name):
    check_roundtrip_split_anywhere(codec(protocol), protocol, frame_name)


@pytest.mark.parametrize(("protocol", "frame_name"), ALL, ids=IDS)
def test_property_encode_into_matches_encode(codec, protocol, frame_name):
    module = codec(protocol)
    snake = snake_case(frame_name)
    encode = getattr(module, f"encode_{snake}")
    encode_into = getattr(module, f"encode_{snake}_into")
    frames = encodable(frames_strategy(protocol, frame_name, module), encode)

    @SETTINGS
    @given(frame=frames)
    def check(frame):
        out: list = []
        encode_into(frame, out)
        assert b"".join(out) == encode(frame) == frame.encode()

    check()


@pytest.mark.parametrize(("protocol", "frame_name"), ALL, ids=IDS)
def test_property_garbage_raises_only_protocol_errors(codec, protocol, frame_name):
    check_garbage_raises_only_protocol_errors(codec(protocol), frame_name)


@pytest.mark.parametrize(("protocol", "frame_name"), ALL, ids=IDS)
def test_property_mutated_frames_raise_only_protocol_errors(
    codec, protocol, frame_name
):
    """Valid frames with a few bytes flipped: decoded or rejected, never a crash."""
    module = codec(protocol)
    encode = encoder(module, frame_name)
    frames = encodable(frames_strategy(protocol, frame_name, module), encode)
    decoder_class = getattr(module, f"{frame_name}Decoder")

    @SETTINGS
    @given(
        frame=frames,
        flips=st.lists(
            st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
            min_size=1,
            max_size=3,
        ),
    )
    def check(frame, flips):
        wire = bytearray(encode(frame))
        for position, mask in flips:
            wire[position % len(wire)] ^= mask
        try:
            decoder_class().decode_all(bytes(wire))
        except ProtocolError:
            pass

    check()
