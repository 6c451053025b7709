"""examples/http/handler.py's static routes: the table path answers every head
exactly as the general path (parse_head, then the route) does.

The handler is driven without sockets: a read's frames go to on_http_request
one by one, as the generated decode loop hands them over, with a connection
whose peek() is the read (what the loop's conn.peek() is before it discards).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """(the handler module, the generated codec module)."""
    saved = os.environ.get("PROTOGEN_CACHE_DIR")
    os.environ["PROTOGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("routes-cache"))
    try:
        loader = importlib.util.spec_from_file_location(
            "http_example_serve", EXAMPLES / "http" / "serve.py"
        )
        assert loader is not None and loader.loader is not None
        serve = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(serve)
        modules, handler = serve.load_example()
    finally:
        if saved is None:
            del os.environ["PROTOGEN_CACHE_DIR"]
        else:
            os.environ["PROTOGEN_CACHE_DIR"] = saved
    # One Date for every answer (the table's are built at once, _answer's per
    # request): the two paths' answers are then comparable byte for byte.
    handler.formatdate = lambda usegmt: "Wed, 02 Dec 2026 20:00:00 GMT"
    yield handler, modules["codec"]


class ReadConn:
    """What on_http_request needs of a connection: the read, unconsumed."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def peek(self) -> memoryview:
        return self.data


def serve_read(
    example: tuple[Any, Any], heads: list[bytes], table: bool
) -> tuple[list[bytes], bool]:
    """The answers to one read of bodiless heads and whether it closes; with
    `table` False every head takes the general path."""
    module, codec = example
    handler = module.HttpExampleHandler()
    conn = ReadConn(b"".join(head + b"\r\n\r\n" for head in heads))
    handler._checked = None  # a new read, as _traffic sets it
    for head in heads:
        frame = codec.HttpRequest(head, b"")
        if table:
            handler.on_http_request(conn, frame)
        elif not handler._closing:
            handler._request(conn, frame)
    return list(handler._out), bool(handler._closing)


LINES = [
    b"%s %s HTTP/1.%d" % (method, path, minor)
    for method in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"BREW")
    for path in (b"/plaintext", b"/echo", b"/plaintext?x", b"/missing", b"/")
    for minor in (0, 1)
] + [b"GET /plaintext HTTP/1.1\rX", b"GET /plaintext HTTP/1.1 "]
FIELDS = st.lists(
    st.sampled_from(
        [
            b"Host: 127.0.0.1:8080",
            b"host: [::1]",
            b"Host: a b",
            b"X-Request-Id: 0123456789abcdef",
            b"Connection: close",
            b"connection: keep-alive",
            b"Expect: 200-ok",
            b"Transfer-Encoding: gzip",
            b"Bad Name: x",
            b"X: \x00",
            b"Cost: 1",
        ]
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINES), FIELDS), min_size=1, max_size=5))
def test_the_table_answers_as_the_general_path(
    example: tuple[Any, Any], requests: list[tuple[bytes, list[bytes]]]
) -> None:
    heads = [line + b"".join(b"\r\n" + f for f in fields) for line, fields in requests]
    # Heads a decoder would cut elsewhere are no single frame: leave them out.
    heads = [head for head in heads if b"\r\n\r\n" not in head + b"\r\n"]
    assert serve_read(example, heads, True) == serve_read(example, heads, False)


def test_every_static_route_is_in_the_table(example: tuple[Any, Any]) -> None:
    module, _ = example
    handler = module.HttpExampleHandler()
    for method in module.STATIC_METHODS:
        for path in module.STATIC_PATHS:
            for minor in (0, 1):
                line = b"%s %s HTTP/1.%d" % (method, path, minor)
                assert line in handler._routes
                assert len(line) <= 64  # request.RUN_LINE: common_run covers it


@pytest.mark.parametrize(
    ("heads", "answered", "closing"),
    [
        # The table's answer keeps an HTTP/1.1 connection, closes an HTTP/1.0 one.
        ([b"GET /plaintext HTTP/1.1\r\nHost: a"] * 3, 3, False),
        ([b"GET /plaintext HTTP/1.0\r\nHost: a", b"GET /plaintext HTTP/1.1"], 1, True),
        # A Connection field is read: close after the second answer.
        (
            [
                b"GET /plaintext HTTP/1.1\r\nHost: a",
                b"GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close",
                b"GET /plaintext HTTP/1.1\r\nHost: a",
            ],
            2,
            True,
        ),
        ([b"HEAD /plaintext HTTP/1.0\r\nHost: a\r\nConnection: keep-alive"], 1, False),
        # An echo without a body, a 405: from the table as well.
        (
            [b"POST /echo HTTP/1.0\r\nHost: a", b"PUT /echo HTTP/1.1\r\nHost: a"],
            1,
            True,
        ),
        (
            [b"PUT /echo HTTP/1.1\r\nHost: a", b"GET /echo HTTP/1.1\r\nHost: a"],
            2,
            False,
        ),
    ],
)
def test_keep_alive(
    example: tuple[Any, Any], heads: list[bytes], answered: int, closing: bool
) -> None:
    out, closes = serve_read(example, heads, True)
    assert (len(out), closes) == (answered, closing)
    assert (out, closes) == serve_read(example, heads, False)
