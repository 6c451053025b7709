"""examples/http/request.py on its own: heads in, meanings or refusals out (no I/O).

The common-head pattern and the full path must agree on every head, so a
property test builds heads from good and bad pieces and compares the two.
Linear time is checked by comparing the cost of adversarial heads of two sizes
measured in the same run (no absolute timings).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parents[2] / "examples" / "http" / "request.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_example_request", HERE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


request = _load()
HeadError = request.HeadError
parse_head = request.parse_head


def outcome(parse: Callable[[bytes], object], head: bytes) -> object:
    try:
        return parse(head)
    except HeadError as error:
        return error.status


def test_the_common_head() -> None:
    assert parse_head(b"GET /plaintext HTTP/1.1\r\nHost: example.com:8080") == (
        b"GET",
        b"/plaintext",
        True,
        True,
        False,
        False,
    )
    assert parse_head(b"GET /a?b HTTP/1.0\r\nhOsT: [::1]:80\r\nX-Y: z") == (
        b"GET",
        b"/a?b",
        False,
        False,
        False,
        False,
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (b"\r\nConnection: close", (True, False, False, False)),
        (b"\r\nConnection: Keep-Alive, Upgrade", (True, True, False, False)),
        (
            b"\r\nConnection: keep-alive\r\nconnection: close",
            (True, False, False, False),
        ),
        (b"\r\nExpect: 100-Continue", (True, True, True, False)),
        (b"\r\nContent-Length: 5", (True, True, False, False)),
        (b"\r\nTransfer-Encoding: chunked", (True, True, False, True)),
        (b"\r\ntransfer-encoding: ,\tCHUNKED ", (True, True, False, True)),
        (
            b"\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue",
            (True, True, True, True),
        ),
    ],
)
def test_fields_the_server_acts_on(
    fields: bytes, expected: tuple[bool, bool, bool, bool]
) -> None:
    method, target, *flags = parse_head(b"POST /echo HTTP/1.1\r\nHost: h" + fields)
    assert (method, target, tuple(flags)) == (b"POST", b"/echo", expected)


def test_http_10_keep_alive_and_expectation() -> None:
    assert parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive")[3] is True
    assert parse_head(b"GET / HTTP/1.0")[3] is False
    # An HTTP/1.0 client's 100-continue is ignored (RFC 9110 section 10.1.1).
    assert parse_head(b"POST / HTTP/1.0\r\nExpect: 100-continue")[4] is False


@pytest.mark.parametrize(
    ("head", "status", "words"),
    [
        (b"GET / HTTP/1.1", 400, "needs a Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHOST: a", 400, "more than one Host"),
        (b"GET / HTTP/1.1\r\nHost: a@b", 400, "host[:port]"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \x00", 400, "0x00 in the value of X"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1bb", 400, "0x1b"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b", 400, "bare CR or LF"),
        (b"GET / HTTP/1.1\nHost: a", 400, "LF alone"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\tfolded", 400, "folding"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A : x", 400, "whitespace before"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nnocolon", 400, "without a colon"),
        (b"GET  / HTTP/1.1\r\nHost: a", 400, "request line"),
        (b"GET / HTTP/1.2\r\nHost: a", 400, "request line"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a", 414, "8 KiB"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok", 417, "100-continue"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue",
            417,
            "100-continue",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked",
            501,
            "gzip is not supported",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip",
            400,
            "must end with chunked",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked",
            400,
            "more than once",
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ", 400, "must end"),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked", 400, "HTTP/1.0"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 3",
            400,
            "both",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 3",
            400,
            "more than one Content-Length",
        ),
    ],
)
def test_refusals_say_why(head: bytes, status: int, words: str) -> None:
    with pytest.raises(HeadError) as refused:
        parse_head(head)
    assert refused.value.status == status
    assert words in refused.value.reason


# -- the two paths agree -----------------------------------------------------------------

NAMES = st.sampled_from(
    [
        b"Host",
        b"host",
        b"HOST",
        b"Connection",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Expect",
        b"X-Request-Id",
        b"Cost",
        b"Hostx",
        b"Accept",
        b"Bad Name",
        b"",
    ]
)
VALUES = st.sampled_from(
    [
        b"",
        b" example.com",
        b" 127.0.0.1:8080",
        b" [::1]:80 ",
        b" a b",
        b" close",
        b" keep-alive",
        b" 100-continue",
        b" 5",
        b" chunked",
        b" caf\xe9",
        b" \x00",
        b" a\rb",
        b" a\nb",
        b"\tx\t",
    ]
)
LINES = st.sampled_from(
    [b"GET /plaintext HTTP/1.1", b"POST /echo?x HTTP/1.0", b"GET / HTTP/1.2"]
)


@settings(max_examples=400, deadline=None)
@given(
    LINES,
    st.lists(st.tuples(NAMES, st.sampled_from([b":", b" :", b""]), VALUES), max_size=5),
)
def test_common_and_full_paths_agree(
    line: bytes, fields: list[tuple[bytes, bytes, bytes]]
) -> None:
    head = line + b"".join(b"\r\n" + n + c + v for n, c, v in fields)
    assert outcome(parse_head, head) == outcome(request._parse_any_head, head)


PLAINTEXT_LINE = b"GET /plaintext HTTP/1.1"


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([PLAINTEXT_LINE, PLAINTEXT_LINE + b"0", PLAINTEXT_LINE + b" "]),
    st.lists(st.tuples(NAMES, st.sampled_from([b":", b" :", b""]), VALUES), max_size=5),
)
def test_common_fields_accept_what_parse_head_accepts_as_common(
    line: bytes, fields: list[tuple[bytes, bytes, bytes]]
) -> None:
    """The handler's shortcut (the plaintext line, then common_fields) takes a
    head only when parse_head gives it the common meaning: HTTP/1.1, keep-alive."""
    head = line + b"".join(b"\r\n" + n + c + v for n, c, v in fields)
    taken = request.common_fields(head, len(PLAINTEXT_LINE)) is not None
    if taken and head.startswith(PLAINTEXT_LINE):
        assert outcome(parse_head, head) == (
            b"GET",
            b"/plaintext",
            True,
            True,
            False,
            False,
        )


@pytest.mark.parametrize(
    "fields",
    [
        b"\r\nHost: a\r\nHost: b",
        b"\r\nX: 1",
        b"\r\nHost: a\r\nConnection: close",
        b"\r\nHost: a\r\nContent-Length: 0",
        b"\r\nHost: a\r\nX-Request-Id: \x00",
        b"\r\nHost: a\r\nX-Request-Id: a\nb",
        b"\r\nHost : a",
        b"\r\nHost: a\r\n b",
        b"0\r\nHost: a",
    ],
)
def test_common_fields_refuse(fields: bytes) -> None:
    assert request.common_fields(PLAINTEXT_LINE + fields, len(PLAINTEXT_LINE)) is None


# -- a run of pipelined heads in one match ---------------------------------------------

RUN_LINES = st.sampled_from(
    [
        PLAINTEXT_LINE,
        b"HEAD /plaintext HTTP/1.0",
        b"POST /echo HTTP/1.1",
        b"GET /plaintext HTTP/1.1 ",
        b"GET /" + b"a" * 60 + b" HTTP/1.1",  # over RUN_LINE
        b"",
        b"GET / HTTP/1.1\nX: y",
    ]
)
RUN_FIELDS = st.lists(
    st.tuples(NAMES, st.sampled_from([b":", b" :", b""]), VALUES), max_size=4
)
HOST_FIRST = st.tuples(
    st.sampled_from([b"Host", b"host", b"Hostx", b""]),
    st.sampled_from([b":", b" :"]),
    VALUES,
)


def run_head(head: bytes) -> bool:
    """Whether common_run should take `head`: common_fields accepts it after its
    first line, with its Host field first."""
    line, crlf, _ = head.partition(b"\r\n")
    return (
        0 < len(line) <= request.RUN_LINE
        and b"\r" not in line
        and bool(crlf)
        and head[len(line) :].lower().startswith(b"\r\nhost:")
        and request.common_fields(head, len(line)) is not None
    )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(RUN_LINES, st.one_of(st.none(), HOST_FIRST), RUN_FIELDS), max_size=6
    ),
    st.sampled_from([b"", b"GET /plaintext HTTP/1.1\r\nHost: a", b"\r\n"]),
)
def test_common_run_ends_at_the_first_head_common_fields_refuses(
    parts: list[tuple[bytes, tuple[bytes, bytes, bytes] | None, list[Any]]],
    tail: bytes,
) -> None:
    """common_run covers exactly the leading heads, as a decoder cuts them at
    CRLFCRLF, that common_fields accepts with their Host first (an unfinished
    tail never), and each one's meaning is the common one."""
    heads = []
    for line, host, fields in parts:
        pieces = ([host] if host is not None else []) + fields
        heads.append(line + b"".join(b"\r\n" + n + c + v for n, c, v in pieces))
    data = b"".join(head + b"\r\n\r\n" for head in heads) + tail
    framed = data.split(b"\r\n\r\n")[:-1]  # the heads as the decoder cuts them
    expected = 0
    for head in framed:
        if not run_head(head):
            break
        expected += len(head) + 4
        line = head.partition(b"\r\n")[0]
        if outcome(request._parse_any_head, line + b"\r\nHost: a") != 400:
            # A valid request line: parse_head gives the head the common meaning.
            method, target, minor = line[:-9], line.split(b" ")[1], line[-1:]
            http11 = minor == b"1"
            assert outcome(parse_head, head) == (
                method.split(b" ")[0],
                target,
                http11,
                http11,
                False,
                False,
            )
    run = request.common_run(data)
    assert run is not None and run.end() == expected


def test_common_run_stops_after_run_heads() -> None:
    head = PLAINTEXT_LINE + b"\r\nHost: a\r\n\r\n"
    run = request.common_run(head * (request.RUN_HEADS + 5))
    assert run is not None and run.end() == len(head) * request.RUN_HEADS


# -- unfinished heads -----------------------------------------------------------------


def feed(pieces: list[bytes]) -> tuple[object, object]:
    """Feed a growing buffer to a PendingRequest; (first error, head)."""
    pending = request.PendingRequest()
    buffered = b""
    for piece in pieces:
        buffered += piece
        error = pending.update(memoryview(buffered))
        if error is not None:
            return error.status, pending.head
    return None, pending.head


def test_a_head_trickling_in_byte_by_byte() -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
    error, seen = feed([head[i : i + 1] for i in range(len(head))] + [b"ab"])
    assert error is None
    assert seen == head[:-4]


@pytest.mark.parametrize("cut", [1, 2, 3, 5])
def test_bare_lf_is_refused_wherever_the_reads_cut(cut: int) -> None:
    wire = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\nZ"
    assert feed([wire[i : i + cut] for i in range(0, len(wire), cut)])[0] == 400


def test_a_cr_at_the_end_of_a_read_waits_for_its_lf() -> None:
    assert feed([b"GET / HTTP/1.1\r", b"\nHost: a\r", b"\n"]) == (None, None)
    assert feed([b"GET / HTTP/1.1\r", b"xHost"])[0] == 400


@pytest.mark.parametrize(
    "start",
    [b"\x81\x89\x01\x02\x03\x04", b"\x02", b"\x16\x03\x01\x02\x00", b" GET /"],
    ids=["websocket-frame", "websocket-continuation", "tls-hello", "space"],
)
def test_bytes_no_request_starts_with_are_refused_at_once(start: bytes) -> None:
    assert feed([start[:1]]) == (400, None)
    assert feed([start]) == (400, None)


@pytest.mark.parametrize("start", [b"G", b"\r", b"\r\nGET / HT", b"M-SEARCH *"])
def test_what_a_request_may_start_with_is_not_refused(start: bytes) -> None:
    assert feed([start[i : i + 1] for i in range(len(start))]) == (None, None)


def test_an_endless_request_line_is_414() -> None:
    assert feed([b"GET /" + b"a" * 4000] * 3)[0] == 414
    assert feed([b"GET / HTTP/1.1\r\nX: " + b"a" * 20000])[0] is None


# -- linear time (no backtracking) ------------------------------------------------------


def _cost(head: bytes, parse: Callable[[bytes], object]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        outcome(parse, head)
        best = min(best, time.perf_counter() - start)
    return best


ADVERSARIAL = {
    "many-short-lines": lambda n: b"GET / HTTP/1.1"
    + b"\r\na:" * (n // 4)
    + b"\r\n\x00",
    "long-value-then-nul": lambda n: b"GET / HTTP/1.1\r\nHost: a\r\nX: "
    + b"v" * n
    + b"\x00",
    "host-spaces": lambda n: b"GET / HTTP/1.1\r\nHost: a" + b" " * n + b"b",
    "expect-spaces": lambda n: b"GET / HTTP/1.1\r\nHost: a\r\nExpect: "
    + b" " * n
    + b"x",
    "connection-lines": lambda n: b"GET / HTTP/1.1\r\nHost: a"
    + b"\r\nConnection: a" * (n // 15),
    "notable-names": lambda n: b"GET / HTTP/1.1\r\nHost: a" + b"\r\nCost: x" * (n // 9),
    "long-target": lambda n: b"GET /" + b"t" * n + b" HTTP/1.1x",
}


def run_of_one(head: bytes) -> object:
    """common_run over the head as a pipelined one (the Host field first)."""
    line, _, fields = head.partition(b"\r\n")
    return request.common_run(line + b"\r\nHost: a\r\n" + fields + b"\r\n\r\n")


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_heads_cost_linear_time(name: str) -> None:
    """Linear: 4x; quadratic: 16x. The best of three ratios, so that a noisy
    neighbour on the machine does not fail a linear parser."""
    small, large = (ADVERSARIAL[name](size) for size in (16 * 1024, 64 * 1024))
    for parse in (parse_head, request._parse_any_head, run_of_one):
        ratio = min(
            _cost(large, parse) / max(_cost(small, parse), 1e-7) for _ in range(3)
        )
        assert ratio < 6, f"{name}: 4x the size cost {ratio:.1f}x the time"


def test_unfinished_heads_cost_linear_time() -> None:
    def trickle(size: int) -> float:
        pending = request.PendingRequest()
        buffered = bytearray(b"GET / HTTP/1.1\r\nX: ")
        spent = 0.0
        # Only update() is timed: growing the bytearray has costs of its own
        # (reallocations) that are not the parser's.
        for _ in range(size // 64):
            buffered += b"v" * 64
            start = time.perf_counter()
            pending.update(memoryview(buffered))
            spent += time.perf_counter() - start
        return spent

    ratio = min(
        min(trickle(64 * 1024) for _ in range(3))
        / min(trickle(16 * 1024) for _ in range(3))
        for _ in range(2)
    )
    assert ratio < 6, f"4x the bytes cost {ratio:.1f}x the time"


# -- chunked bodies ----------------------------------------------------------------------

ChunkedBody = request.ChunkedBody
BodyError = request.BodyError
LIMIT = 64 * 1024


def feed_body(wire: bytes, cuts: list[int], limit: int = LIMIT) -> tuple[object, ...]:
    """Feed a growing buffer, cut at `cuts`, to a ChunkedBody: (end, body,
    trailers), or (status, reason) for a refusal. The buffer goes on past the
    body (pipelined bytes) and is a memoryview, as the server's is."""
    reader = ChunkedBody(limit)
    end = None
    try:
        for cut in sorted(cuts) + [len(wire)]:
            end = reader.feed(memoryview(wire[:cut]))
            if end is not None:
                break
    except BodyError as refused:
        return refused.status, refused.reason
    return end, bytes(reader.body), reader.trailers


TOKENS = st.text("abcXYZ019!#$%&'*+-.^_`|~", min_size=1, max_size=5).map(str.encode)
QUOTED = st.lists(
    st.sampled_from([b"a", b" ", b"\t", b";", b"=", b'\\"', b"\\\\", b"\xe9"]),
    max_size=4,
).map(lambda parts: b'"' + b"".join(parts) + b'"')
EXTENSIONS = st.lists(
    st.tuples(
        st.sampled_from([b"", b" ", b"\t "]),
        TOKENS,
        st.one_of(
            st.just(b""),
            st.tuples(st.sampled_from([b"=", b" = "]), st.one_of(TOKENS, QUOTED)).map(
                b"".join
            ),
        ),
    ).map(lambda ext: ext[0] + b";" + ext[1] + ext[2]),
    max_size=2,
).map(b"".join)
CHUNKS = st.lists(
    st.tuples(st.binary(min_size=1, max_size=300), EXTENSIONS, st.booleans()),
    max_size=8,
)
TRAILERS = st.lists(
    st.tuples(TOKENS, st.sampled_from([b"", b" v", b"\tcaf\xe9 x"])),
    max_size=3,
).map(lambda fields: b"".join(n + b":" + v + b"\r\n" for n, v in fields))


def encode(
    chunks: list[tuple[bytes, bytes, bool]], last_ext: bytes, trailers: bytes
) -> bytes:
    wire = b""
    for data, ext, upper in chunks:
        size = b"%X" % len(data) if upper else b"%x" % len(data)
        wire += size + ext + b"\r\n" + data + b"\r\n"
    return wire + b"0" + last_ext + b"\r\n" + trailers + b"\r\n"


@settings(max_examples=300, deadline=None)
@given(CHUNKS, EXTENSIONS, TRAILERS, st.data())
def test_any_chunked_body_cut_anywhere(
    chunks: list[tuple[bytes, bytes, bool]],
    last_ext: bytes,
    trailers: bytes,
    data: st.DataObject,
) -> None:
    encoded = encode(chunks, last_ext, trailers)
    wire = encoded + b"GET / HTTP/1.1\r\n"  # the next request, pipelined
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    assert feed_body(wire, cuts) == (
        len(encoded),
        b"".join(chunk for chunk, _, _ in chunks),
        trailers,
    )


@settings(max_examples=100, deadline=None)
@given(CHUNKS, TRAILERS, st.data())
def test_no_byte_is_scanned_twice_whatever_the_reads(
    chunks: list[tuple[bytes, bytes, bool]], trailers: bytes, data: st.DataObject
) -> None:
    """Linear work, counted: each line byte is searched once for the line's end
    and matched once; no read makes the reader look back."""
    wire = encode(chunks, b"", trailers)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=40)))
    reader = ChunkedBody(LIMIT)
    for cut in [*cuts, len(wire)]:
        if reader.feed(memoryview(wire)[:cut]) is not None:
            break
    data_bytes = sum(len(chunk) for chunk, _, _ in chunks)
    assert reader.scanned_bytes <= 2 * (len(wire) - data_bytes)


@pytest.mark.parametrize(
    "name", ["one-byte-chunks", "longest-extensions", "many-trailers"]
)
def test_a_body_fed_a_byte_at_a_time_is_scanned_once(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(request, "MAX_TRAILERS", 1 << 20)
    wire = CHUNKED_ADVERSARIAL[name](16 * 1024)
    reader = ChunkedBody(len(wire))
    for cut in range(1, len(wire) + 1):
        if reader.feed(memoryview(wire)[:cut]) is not None:
            break
    assert reader.scanned_bytes <= 2 * len(wire)


def test_a_body_byte_by_byte() -> None:
    wire = encode([(b"hello", b';a="b;c"', False), (b"\r\n" * 9, b"", True)], b"", b"")
    assert feed_body(wire, list(range(len(wire)))) == (
        len(wire),
        b"hello" + b"\r\n" * 9,
        b"",
    )


BAD_BODIES = [
    (b"zz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk-size"),
    (b"\r\n", 400, "invalid chunk-size"),
    (b"+5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk-size"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk-size"),
    (b"5 \r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"),
    (b"5;\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"),
    (b"5;a=\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"),
    (b'5;a="b\r\nhello\r\n0\r\n\r\n', 400, "invalid chunk extension"),
    (b"5;a=b c\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"),
    (b"5;a\x00\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk extension"),
    (b"0" * 17 + b"5\r\nhello\r\n0\r\n\r\n", 400, "16 hex digits"),
    (b"5\r\nhello world\r\n0\r\n\r\n", 400, "longer than its chunk-size (5)"),
    (b"5\r\nhellox0\r\n\r\n", 400, "longer than its chunk-size"),
    (b"5\nhello\r\n0\r\n\r\n", 400, "LF alone"),
    (b"5\r\nhello\r\n0\n\n", 400, "LF alone"),
    (b"5\r\nhello\r\n0\r\n\r\r\n", 400, "CR not followed by LF"),
    (b"5\r\nhello\r\n0\r\nno colon\r\n\r\n", 400, "invalid trailer field"),
    (b"5\r\nhello\r\n0\r\nX : y\r\n\r\n", 400, "invalid trailer field"),
    (b"5\r\nhello\r\n0\r\nX: \x7f\r\n\r\n", 400, "invalid trailer field"),
    (b"5;" + b"e" * 5000 + b"\r\n", 400, "chunk line is longer than 4096"),
    (b"0\r\n" + b"X-A: b\r\n" * 1200 + b"\r\n", 431, "trailer section"),
    (b"fffa\r\n", 413, "over 65536"),
    (b"1" * 16 + b"\r\n", 413, "over 65536"),
    (b"8000\r\n" + b"x" * 0x8000 + b"\r\n8000\r\n", 413, "over 65536"),
]


@pytest.mark.parametrize(("wire", "status", "words"), BAD_BODIES)
@pytest.mark.parametrize("cut", [0, 1, 3])
def test_malformed_bodies_are_refused_wherever_the_reads_cut(
    wire: bytes, status: int, words: str, cut: int
) -> None:
    cuts = list(range(0, len(wire), cut)) if cut else []
    refused = feed_body(wire, cuts)
    assert refused[0] == status and words in str(refused[1]), refused


def test_the_limit_bounds_the_encoded_body() -> None:
    wire = encode([(b"x" * 100, b"", False)], b"", b"")
    assert feed_body(wire, [], limit=len(wire))[0] == len(wire)
    assert feed_body(wire, [], limit=len(wire) - 1)[0] == 413
    # Extensions and trailers count too: the line passing the limit is refused
    # before its end arrives.
    assert feed_body(b"5;" + b"e" * 200, [], limit=100)[0] == 413
    assert feed_body(b"0\r\n" + b"X: y\r\n" * 50, [], limit=100)[0] == 413


def test_an_unfinished_body_waits() -> None:
    for wire in (b"", b"5", b"5;a", b"5\r\nhel", b"5\r\nhello\r", b"0\r\nX: y\r\n"):
        reader = ChunkedBody(LIMIT)
        assert reader.feed(wire) is None
        assert reader.trailers is None


def _body_cost(wire: bytes, step: int) -> float:
    """The best of 3 times of reading `wire` (fed `step` bytes more each call)
    3 times: long enough a sample that a busy machine's noise averages out."""
    views = [memoryview(wire)[:cut] for cut in range(step, len(wire) + step, step)]
    spent = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(3):
            reader = ChunkedBody(len(wire) + 16)
            for view in views:
                if reader.feed(view) is not None:
                    break
        spent = min(spent, time.perf_counter() - start)
    return spent


def _chunks(unit: bytes) -> Callable[[int], bytes]:
    """A body of `unit` (whole chunks) repeated to about n bytes."""
    return lambda n: unit * (n // len(unit)) + b"0\r\n\r\n"


CHUNKED_ADVERSARIAL = {
    "one-byte-chunks": _chunks(b"1\r\nx\r\n"),
    # Chunk lines as long as MAX_CHUNK_LINE allows.
    "longest-extensions": _chunks(b"1;" + b"e" * 4090 + b"\r\nx\r\n"),
    "longest-quoted-extensions": _chunks(b'1;e="' + b'\\"' * 2044 + b'"\r\nx\r\n'),
    # With MAX_TRAILERS lifted, so that the trailer section grows with n.
    "many-trailers": lambda n: b"0\r\n" + b"X: y\r\n" * (n // 6) + b"\r\n",
}


@pytest.mark.parametrize("name", list(CHUNKED_ADVERSARIAL))
@pytest.mark.parametrize("step", [64, 1 << 20])
def test_chunked_bodies_cost_linear_time(
    name: str, step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8x the bytes, fed whole or 64 bytes at a time, must cost under 20x the
    time (quadratic: 64x; the margin is for caches: a 32 KiB body fits the
    CPU's first-level cache and costs less per byte, and for a busy machine).
    The work itself is counted exactly by the scanned-bytes tests above."""
    monkeypatch.setattr(request, "MAX_TRAILERS", 1 << 20)
    small, large = (CHUNKED_ADVERSARIAL[name](size) for size in (32 * 1024, 256 * 1024))
    for wire in (small, large):
        assert ChunkedBody(len(wire) + 16).feed(wire) == len(wire)
    ratio = min(
        _body_cost(large, step) / max(_body_cost(small, step), 1e-7) for _ in range(3)
    )
    assert ratio < 20, f"{name}: 8x the size cost {ratio:.1f}x the time"
