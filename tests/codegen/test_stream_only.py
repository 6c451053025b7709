"""`framing length(F) stream_only`: the length prefix exists on streams only.

DNS puts a 2-byte length before each message over TCP and none over UDP; with
`stream_only` one frame describes both: `encode`/`decode` carry the prefix,
`encode_datagram`/`decode_datagram` the frame without it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from codec_helpers import import_codec
from protogen.diagnostics import SpecError
from protogen.errors import FrameTooLarge, MalformedFrame
from protogen.parser import parse_spec

SPEC = """
protocol bare
transport tcp, udp
max_frame 64

frame Msg {
    framing length(size) counts after_field stream_only
    header { size: u16  id: u16  flags: u8 }
    body { data: bytes[rest] }
}
"""


def parse(text: str):
    return parse_spec(textwrap.dedent(text).lstrip("\n"), "bare.proto.dsl")


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory):
    return import_codec(parse(SPEC), tmp_path_factory.mktemp("stream_only"))


def test_the_option_reaches_the_ir() -> None:
    framing = parse(SPEC).frame("Msg").framing
    assert framing.kind == "length" and framing.stream_only
    assert framing.counts == "after_field"
    plain = parse(SPEC.replace(" stream_only", "")).frame("Msg").framing
    assert not plain.stream_only


def test_datagram_form_is_the_stream_form_without_the_prefix(codec) -> None:
    frame = codec.Msg(id=0xBEEF, flags=7, data=b"hello")
    stream = frame.encode()
    assert stream == b"\x00\x08\xbe\xef\x07hello"
    assert frame.encode_datagram() == stream[2:]


def test_decode_datagram_round_trips_and_fills_the_length(codec) -> None:
    decoder = codec.MsgDecoder()
    frames, consumed = decoder.decode_datagram(b"\xbe\xef\x07hello")
    assert consumed == 8
    [frame] = frames
    assert (frame.id, frame.flags, frame.data, frame.size) == (0xBEEF, 7, b"hello", 8)
    assert frame.encode() == b"\x00\x08\xbe\xef\x07hello"
    # memoryview input (the runtime's inbound buffer) decodes the same
    assert decoder.decode_datagram(memoryview(b"\x00\x01\x02"))[0][0].data == b""


def test_stream_decoding_still_uses_the_prefix(codec) -> None:
    frames, end = codec.MsgDecoder().decode_all(
        b"\x00\x03\x00\x01\x02\x00\x04\x00\x02\x03Z"
    )
    assert end == 11
    assert [(f.id, f.flags, f.data) for f in frames] == [(1, 2, b""), (2, 3, b"Z")]


def test_a_datagram_shorter_than_the_header_is_malformed(codec) -> None:
    with pytest.raises(MalformedFrame):
        codec.MsgDecoder().decode_datagram(b"\x00\x01")
    with pytest.raises(MalformedFrame):
        codec.MsgDecoder().decode_datagram(b"")


def test_a_datagram_over_max_frame_is_too_large(codec) -> None:
    with pytest.raises(FrameTooLarge):
        codec.MsgDecoder().decode_datagram(b"\x00" * 63)  # 63 + the 2-byte prefix > 64
    assert codec.MsgDecoder().decode_datagram(b"\x00" * 62)[1] == 62


def test_generated_handler_and_client_use_the_bare_form_over_udp(
    tmp_path: Path,
) -> None:
    from protogen.generator import generate

    sources = {Path(name).name: text for name, text in generate(parse(SPEC)).items()}
    handler = sources["bare_handler.py"]
    client = sources["bare_client.py"]
    assert "decoder.decode_datagram(data)" in handler
    assert "frame.encode_datagram() if conn.datagram else encode_msg(frame)" in handler
    assert "frame.encode_datagram() if self.datagram else frame.encode()" in client
    # without udp in the transports, nothing changes
    tcp_only = generate(parse(SPEC.replace("transport tcp, udp", "transport tcp")))
    assert not any("decode_datagram(data)" in text for text in tcp_only.values())


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        (
            "framing length(size) stream_only\n    header { id: u16  size: u16 }",
            "stream_only needs the length field first in the header; 'size' is at offset 2",
        ),
        (
            "framing length(size) strip 2 stream_only\n    header { size: u16 }",
            "stream_only cannot be combined with strip",
        ),
    ],
)
def test_stream_only_errors(framing: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(f"protocol p\nframe F {{\n    {framing}\n}}\n")
    assert [d.message for d in caught.value.diagnostics] == [message]
