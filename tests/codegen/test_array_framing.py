"""`framing array`: a counted array of decimal-sized elements as one frame (a RESP
array of bulk strings, `*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n`)."""

from __future__ import annotations

import time

import pytest

from protogen.diagnostics import SpecError
from protogen.errors import FrameTooLarge, InvalidValue
from protogen.parser import parse_spec

SPEC = """
protocol resp
max_frame 64 KiB
frame Command {
    framing array "*" decimal "\\r\\n" max 1000 of "$" decimal "\\r\\n" bytes "\\r\\n"
    body { args: bytes[rest][rest] }
}
"""
WIRE = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"


@pytest.fixture
def codec(codec):
    return codec(parse_spec(SPEC, "resp.proto.dsl"))


def test_encodes_and_decodes_one_frame_per_array(codec) -> None:
    frame = codec.Command(args=[b"SET", b"k", b"a\r\nb"])
    assert frame.encode() == WIRE
    decoded, end = codec.CommandDecoder().decode(WIRE + b"*0\r\n")
    assert decoded == frame and end == len(WIRE)
    assert codec.CommandDecoder().decode(WIRE + b"*0\r\n", end) == (
        codec.Command(args=[]),
        len(WIRE) + 4,
    )


def test_the_frame_waits_at_every_cut_and_resumes(codec) -> None:
    for cut in range(len(WIRE)):
        decoder = codec.CommandDecoder()
        assert decoder.decode(b"xx" + WIRE[:cut], 2) == (None, 2), cut
        frame, end = decoder.decode(WIRE)  # compacted: the frame now starts at 0
        assert frame is not None and frame.args == [b"SET", b"k", b"a\r\nb"], cut
        assert end == len(WIRE)


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        (b"*x\r\n", "Command.args.count"),  # not digits
        (b"*-1\r\n", "Command.args.count"),  # negative
        (b"*01\r\n", "Command.args.count"),  # a leading zero
        (b"*1001\r\n", "Command.args.count"),  # over `max 1000`
        (b"*" + b"9" * 40, "Command.args.count"),  # digits without end
        (b"*2\r\n$1\r\nk\r\n*1\r\n", "Command.args[1].marker"),  # fewer than counted
        (b"*1\r\n$-5\r\n", "Command.args[0].length"),
        (b"*1\r\n$3\r\nabcXY", "Command.args[0].terminator"),
        (b"*2\r\n$3\r\nabcXY", "Command.args[0].terminator"),
    ],
)
def test_lying_or_broken_arrays_name_the_field(codec, wire: bytes, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        codec.CommandDecoder().decode(wire)
    assert caught.value.field == field
    reader = codec.CommandReader()  # the same a byte at a time
    with pytest.raises(InvalidValue):
        for byte in range(len(wire)):
            reader.feed(wire[byte : byte + 1])


def test_more_elements_than_counted_are_the_next_frame(codec) -> None:
    frame, end = codec.CommandDecoder().decode(b"*1\r\n$1\r\nk\r\n$1\r\nv\r\n")
    assert frame.args == [b"k"] and end == 11  # `$1...` is then no `*` frame


def test_max_frame_is_enforced_on_partial_input(codec) -> None:
    # A length beyond max_frame, before any of its bytes arrive.
    with pytest.raises(FrameTooLarge):
        codec.CommandDecoder().decode(b"*1\r\n$70000\r\n")
    # A count whose empty elements alone would overrun max_frame.
    with pytest.raises(FrameTooLarge):
        codec.CommandDecoder(max_count=100_000).decode(b"*20000\r\n")
    # Elements that each fit, arriving until the frame is over the limit.
    decoder = codec.CommandDecoder()
    element = b"$1000\r\n" + b"x" * 1000 + b"\r\n"
    wire = b"*100\r\n"
    with pytest.raises(FrameTooLarge):
        for _ in range(100):
            wire += element
            assert decoder.decode(wire)[0] is None
    assert len(wire) < 70 * 1024


def test_an_element_count_the_encoder_would_lie_about_is_refused(codec) -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        codec.Command(args=[b""] * 1001).encode()


def _one_byte_feed_seconds(codec, wire: bytes) -> tuple[float, int]:
    """Best of a few runs: the time to decode `wire` fed a byte at a time, and the
    bytes the decoder looked at."""
    best = float("inf")
    scanned = 0
    for _ in range(3):
        decoder = codec.CommandDecoder(max_frame=1 << 20, max_count=1 << 16)
        view = memoryview(wire)  # slices of it copy nothing
        began = time.perf_counter()
        for end in range(1, len(wire)):
            assert decoder.decode(view[:end])[0] is None
        frame, _ = decoder.decode(view)
        best = min(best, time.perf_counter() - began)
        assert frame is not None
        scanned = decoder.scanned_bytes
    return best, scanned


def test_a_large_command_fed_a_byte_at_a_time_decodes_in_linear_time(codec) -> None:
    """Each call resumes at the element where the last one stopped: a command four
    times as long costs about four times as much (a rescan from the frame's start
    would cost sixteen times), and the bytes looked at stay a constant factor of
    the input."""

    def command(elements: int) -> bytes:
        return b"*%d\r\n" % elements + b"".join(
            b"$6\r\nv%05d\r\n" % i for i in range(elements)
        )

    small, large = command(400), command(1600)
    small_seconds, small_scanned = _one_byte_feed_seconds(codec, small)
    large_seconds, large_scanned = _one_byte_feed_seconds(codec, large)
    assert large_scanned <= 16 * len(large)
    assert large_scanned / len(large) <= 1.1 * small_scanned / len(small)
    assert large_seconds < 8 * small_seconds, (small_seconds, large_seconds)


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        ('array "" decimal "\\r\\n" of "$" decimal "\\r\\n" bytes ""', "empty marker"),
        (
            'array "*" decimal "1" of "$" decimal "\\r\\n" bytes ""',
            "must not contain digits",
        ),
        (
            'array "*" decimal "\\r\\n" max 0 of "$" decimal ":" bytes ","',
            "must be positive",
        ),
    ],
)
def test_bad_array_framings(framing: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(f"protocol p\nframe F {{ framing {framing} }}", "p.dsl")


def test_the_body_is_one_array_of_byte_strings() -> None:
    with pytest.raises(SpecError, match="single `NAME: bytes"):
        parse_spec(
            'protocol p\nframe F { framing array decimal ":" of decimal ":" bytes ","\n'
            "    body { a: bytes[rest] } }",
            "p.dsl",
        )


def test_without_a_body_the_elements_are_items(build) -> None:
    codec = build(
        parse_spec(
            'protocol p\nframe F { framing array decimal ":" of decimal ":" bytes "," }',
            "p.dsl",
        )
    )
    assert codec.F(items=[b"ab", b""]).encode() == b"2:2:ab,0:,"
    assert codec.FDecoder().decode(b"2:2:ab,0:,")[0].items == [b"ab", b""]


def test_a_small_max_count_holds_for_short_arrays_too(build) -> None:
    codec = build(
        parse_spec(
            'protocol p\nframe F { framing array "*" decimal "\\r\\n" max 2 of "$" decimal "\\r\\n" bytes "\\r\\n" }',
            "p.dsl",
        )
    )
    assert codec.FDecoder().decode(b"*2\r\n$1\r\na\r\n$0\r\n\r\n")[0].items == [
        b"a",
        b"",
    ]
    with pytest.raises(InvalidValue, match="at most 2"):
        codec.FDecoder().decode(b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n")


@pytest.mark.parametrize(
    "wire",
    [
        b"*2\r\n$3\r\na\rb\r\n$0\r\n\r\n",  # a CR inside a value
        b"*1\r\n$2000\r\n" + b"x" * 2000 + b"\r\n",  # longer than one match looks
        b"*12\r\n" + b"$1\r\nx\r\n" * 12,  # a count of two digits
    ],
)
def test_arrays_off_the_one_match_path_decode_the_same(codec, wire: bytes) -> None:
    frame, end = codec.CommandDecoder().decode(wire + b"*0\r\n")
    assert end == len(wire) and frame.encode() == wire


def test_a_length_that_lies_within_one_match_is_caught(codec) -> None:
    # `$5` before 3 bytes and a CRLF: the lengths are checked after the match.
    with pytest.raises(InvalidValue, match=r"args\[0\]"):
        codec.CommandDecoder().decode(b"*2\r\n$5\r\nabc\r\n$1\r\nx\r\n")


def test_every_length_the_pattern_checks_decodes_and_lies_are_caught(codec) -> None:
    # Elements up to 99 bytes have their lengths checked by the pattern (a trie of
    # the digits); 100 and over by a comparison after the match.
    for length in [*range(0, 25), 89, 90, 98, 99, 100, 101, 999]:
        value = bytes(range(33, 33 + min(length, 90))) * (length // 90 + 1)
        value = value[:length]
        wire = codec.Command(args=[b"SET", value, b""]).encode()
        frame, end = codec.CommandDecoder().decode(wire + b"*0\r\n")
        assert end == len(wire) and frame.args == [b"SET", value, b""], length
        for lie in (length - 1, length + 1):
            if lie < 0:
                continue
            bad = b"*2\r\n$%d\r\n%s\r\n$1\r\nx\r\n" % (lie, value)
            with pytest.raises(InvalidValue, match=r"args\[0\]"):
                codec.CommandDecoder().decode(bad)


def test_a_length_with_a_leading_zero_is_refused_on_every_path(codec) -> None:
    for wire in (b"*1\r\n$03\r\nabc\r\n", b"*1\r\n$00\r\n\r\n"):
        with pytest.raises(InvalidValue, match=r"args\[0\]\.length"):
            codec.CommandDecoder().decode(wire)
