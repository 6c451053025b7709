"""RESP2 replies (the Redis protocol spec): what the server sends back.

A reply is bytes: a simple string `+OK`, an error `-ERR ...`, an integer `:1`,
a bulk string `$3\\r\\nfoo\\r\\n` (`$-1` is the null bulk string), an array
`*2\\r\\n...` of replies (`*-1` is the null array).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "NULL",
    "BULK_HEADERS",
    "NULL_ARRAY",
    "OK",
    "PONG",
    "SHORT_BULK",
    "array",
    "bulk",
    "error",
    "integer",
    "simple",
]

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NULL = b"$-1\r\n"
NULL_ARRAY = b"*-1\r\n"


def simple(text: bytes) -> bytes:
    return b"+" + text + b"\r\n"


def error(text: str) -> bytes:
    """`text` starts with its code: `ERR ...`, `WRONGTYPE ...`."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


# The headers of the short bulk strings, made once (Redis's shared.bulkhdr):
# two concatenations cost a fraction of formatting `$%d\r\n%s\r\n`.
BULK_HEADERS = tuple(b"$%d\r\n" % length for length in range(1024))
SHORT_BULK = len(BULK_HEADERS)


def bulk(value: bytes | None) -> bytes:
    if value is None:
        return NULL
    length = len(value)
    if length < SHORT_BULK:
        return BULK_HEADERS[length] + value + b"\r\n"
    return b"$%d\r\n%s\r\n" % (length, value)


def array(items: Iterable[bytes | None]) -> bytes:
    """An array of bulk strings (None: a null bulk string)."""
    parts = [bulk(item) for item in items]
    return b"*%d\r\n" % len(parts) + b"".join(parts)
