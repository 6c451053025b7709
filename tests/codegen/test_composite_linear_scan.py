"""Composite heads are scanned in linear time, whatever the peer sends.

A backtracking pattern for the length header (`Content-Length` + spaces + a
non-digit) once took seconds per head and stalled every connection of the loop.
The guard compares two timings of one run: a head four times as long must cost
less than six times as much to reject (quadratic work costs sixteen times).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protogen.errors import MalformedFrame
from protogen.parser import parse_spec

SPEC = """
protocol adversarial
max_frame 80 KiB
frame HttpRequest {
    framing composite head "\\r\\n\\r\\n" length_header "Content-Length"
}
"""


def _reject_seconds(decoder_class, head: bytes) -> float:
    """Best of a few runs: the time to reject `head` as malformed."""
    best = float("inf")
    for _ in range(5):
        decoder = decoder_class()
        began = time.perf_counter()
        with pytest.raises(MalformedFrame):
            decoder.decode(head)
        best = min(best, time.perf_counter() - began)
    return best


def _adversarial(size: int, line: bytes) -> bytes:
    """A head of about `size` bytes: the length header, padding, a non-digit."""
    return line + b" " * (size - len(line) - 5) + b"x\r\n\r\n"


@pytest.mark.parametrize(
    "line",
    [b"Content-Length: 1", b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length:1"],
    ids=["first-line", "later-line"],
)
def test_adversarial_heads_are_rejected_in_linear_time(build, line):
    module = build(parse_spec(SPEC))
    decoder_class = module.HttpRequestDecoder
    small = _reject_seconds(decoder_class, _adversarial(16 * 1024, line))
    large = _reject_seconds(decoder_class, _adversarial(64 * 1024, line))
    assert large < 6 * max(small, 1e-5), (small, large)


def test_many_length_lines_are_scanned_in_linear_time(build):
    """Thousands of repeated header lines: still one pass over the head."""
    module = build(parse_spec(SPEC))

    def head(size: int) -> bytes:
        lines = b"Content-Length: 1 \r\n" * (size // 20)
        return b"GET / HTTP/1.1\r\n" + lines + b"Content-Length: 2\r\n\r\n"

    small = _reject_seconds(module.HttpRequestDecoder, head(16 * 1024))
    large = _reject_seconds(module.HttpRequestDecoder, head(64 * 1024))
    assert large < 6 * max(small, 1e-5), (small, large)


def test_length_header_still_parsed_like_before(build):
    module = build(parse_spec(SPEC))
    decoder = module.HttpRequestDecoder()
    wire = b"POST / HTTP/1.1\r\nX-A: b\r\ncontent-LENGTH \t:  5 \t\r\n\r\nhello"
    frame, end = decoder.decode(wire)
    assert frame.body == b"hello" and end == len(wire)
    # Repeated headers must agree; a look-alike name is another header.
    agreeing = b"GET / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nhi"
    assert decoder.decode(agreeing)[0].body == b"hi"
    lookalike = b"GET / HTTP/1.1\r\nContent-Lengthy: 9\r\n\r\n"
    assert decoder.decode(lookalike)[0].body == b""
    with pytest.raises(MalformedFrame, match="conflicting"):
        decoder.decode(
            b"GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n"
        )


def _one_by_one(decoder, data: bytes) -> tuple[list, int]:
    frames, start = [], 0
    while True:
        frame, end = decoder.decode(data, start)
        if frame is None:
            return frames, start
        frames.append(frame)
        start = end


PIECES = [
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\ncontent-LENGTH: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 8\r\n\r\n\r\n\r\nGET ",
    b"GET / HTTP/1.1\r\nContent-Lengthy: 1\r\n\r\n",
    b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: " + b"y" * 1500 + b"\r\n\r\n",
    b"GET /partial HTTP/1.1\r\nHo",
]


_BUILT: dict[str, object] = {}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.sampled_from(PIECES), max_size=40),
    st.integers(0, 5),
    st.integers(0, 200),
)
def test_decode_all_frames_like_decode(build, pieces, max_frames, cut):
    """decode_all's split of bodiless heads (its window growing and shrinking)
    gives decode's frames and end, with and without a max_frames limit, whole
    or cut anywhere into two reads."""
    if "codec" not in _BUILT:  # one build for all examples
        _BUILT["codec"] = build(parse_spec(SPEC))
    module = _BUILT["codec"]
    data = b"".join(pieces)
    expected, expected_end = _one_by_one(module.HttpRequestDecoder(), data)
    assert module.HttpRequestDecoder().decode_all(data) == (expected, expected_end)
    if max_frames:
        frames, end = module.HttpRequestDecoder().decode_all(data, 0, max_frames)
        assert frames == expected[:max_frames]
        if len(expected) > max_frames:
            assert end == len(b"".join(f.head + b"\r\n\r\n" + f.body for f in frames))
    # Two reads: the first's partial frame is resumed by the second call.
    decoder = module.HttpRequestDecoder()
    cut = min(cut * 20, len(data))
    first, start = decoder.decode_all(memoryview(data)[:cut])
    second, end = decoder.decode_all(data, start)
    assert (first + second, end) == (expected, expected_end)
