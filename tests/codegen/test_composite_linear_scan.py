"""Composite heads are scanned in linear time, whatever the peer sends.

A backtracking pattern for the length header (`Content-Length` + spaces + a
non-digit) once took seconds per head and stalled every connection of the loop.
The guard compares two timings of one run: a head four times as long must cost
less than six times as much to reject (quadratic work costs sixteen times).
"""

from __future__ import annotations

import time

import pytest

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
        decoder.decode(b"GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n")
