"""Delimiter scans resume where they stopped: byte-by-byte input costs linear work."""

from __future__ import annotations

import pytest

from codec_helpers import FUZZ_EXAMPLES
from codec_specs import HTTPISH, LINES, MEMCACHE_TEXT
from hypothesis import given, settings
from hypothesis import strategies as st


def _dribble(decoder, wire: bytes, compact: bool) -> list:
    """Feed `wire` one byte at a time, like a slow peer; returns the frames."""
    buffer = bytearray()
    start = 0
    frames = []
    for byte in wire:
        buffer.append(byte)
        while True:
            frame, end = decoder.decode(bytes(buffer), start)
            if frame is None:
                break
            frames.append(frame)
            start = end
        if compact and start:
            del buffer[:start]
            start = 0
    return frames


@pytest.mark.parametrize("compact", [False, True])
def test_line_dribbled_byte_by_byte_scans_linearly(codec, compact):
    module = codec(LINES)
    size = 60  # below max_frame (64)
    decoder = module.LineDecoder()
    frames = _dribble(decoder, b"a" * size + b"\r\n", compact)
    assert [f.line for f in frames] == [b"a" * size]
    longest_delimiter = 2
    # each call searches only the new byte plus (longest - 1) bytes of overlap
    assert decoder.scanned_bytes <= (size + 2) * longest_delimiter
    assert decoder.scanned_bytes >= size  # and it did look at every byte


def test_quadratic_rescans_would_be_caught(codec):
    """The bound above is meaningful: rescanning from the frame start costs ~n^2/2."""
    module = codec(LINES)
    decoder = module.LineDecoder()
    size = 60
    for length in range(1, size + 1):
        decoder.reset()  # forget progress: what a non-resuming scanner would do
        decoder.decode(b"a" * length)
    assert decoder.scanned_bytes > (size + 2) * 2 * 10


def test_composite_head_dribbled_byte_by_byte_scans_linearly(codec):
    module = codec(HTTPISH)
    head = b"POST /upload HTTP/1.1\r\nHost: example\r\nContent-Length: 11"
    wire = head + b"\r\n\r\nhello world"
    decoder = module.HttpRequestDecoder()
    frames = _dribble(decoder, wire, compact=True)
    assert [(f.head, f.body) for f in frames] == [(head, b"hello world")]
    assert decoder.scanned_bytes <= len(wire) * 4


def test_memcached_text_pipelined_commands(codec):
    module = codec(MEMCACHE_TEXT)
    wire = b"set a 0 0 3\r\nabc\r\nget a\r\nadd b 1 2 0\r\n\r\n"
    frames = _dribble(module.CommandDecoder(), wire, compact=False)
    assert [(f.head, f.body) for f in frames] == [
        (b"set a 0 0 3", b"abc"),
        (b"get a", b""),
        (b"add b 1 2 0", b""),
    ]


def _netty_split(wire: bytes, delimiters: list[bytes]) -> tuple[list[bytes], int]:
    """Reference: Netty's rule, the delimiter giving the shortest frame wins."""
    frames = []
    consumed = 0
    while True:
        best = None
        for delimiter in delimiters:
            index = wire.find(delimiter, consumed)
            if index >= 0 and (best is None or index < best[0]):
                best = (index, delimiter)
        if best is None:
            return frames, consumed
        frames.append(wire[consumed : best[0]])
        consumed = best[0] + len(best[1])


@pytest.mark.parametrize("delimiters", [[b"\r\n", b"\n"], [b"\n", b"\r\n"]])
def test_property_shortest_frame_wins(codec, delimiters):
    from codec_helpers import frame, rest, spec
    from protogen import models as ir

    protocol = spec(
        "mixed" + str(len(delimiters[0])),
        frame(
            "Line",
            ir.DelimitedFraming(delimiters=tuple(delimiters)),
            body=[rest("line")],
        ),
    )
    module = codec(protocol)
    pieces = st.sampled_from([b"a", b"b", b"\r", b"\n", b"\r\n", b"\n\r"])

    @settings(max_examples=min(FUZZ_EXAMPLES, 200), deadline=None)
    @given(wire=st.lists(pieces, max_size=30).map(b"".join))
    def check(wire):
        frames, end = module.LineDecoder().decode_all(wire)
        assert ([f.line for f in frames], end) == _netty_split(wire, delimiters)

    check()
