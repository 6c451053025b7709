"""Typed protocol errors raised by generated codecs and seen by handlers.

Codecs raise these while decoding bytes from the network; the runtime closes the
offending connection and passes the error to `on_close(conn, err)`.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer sent bytes that do not follow the protocol."""


class FrameTooLarge(ProtocolError):
    """A frame announced or grew beyond the codec's max frame size."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ChecksumMismatch(ProtocolError):
    """A checksum field does not match the bytes it covers."""

    def __init__(self, field: str, expected: int, actual: int) -> None:
        super().__init__(
            f"checksum {field}: frame carries 0x{actual:x}, bytes give 0x{expected:x}"
        )
        self.field = field
        self.expected = expected
        self.actual = actual


class InvalidValue(ProtocolError):
    """A field holds a value its spec does not allow (magic, enum, allowed set)."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(
            f"field {field}: {value!r} is not allowed (expected {allowed})"
        )
        self.field = field
        self.value = value


class MalformedFrame(ProtocolError):
    """Bytes that cannot be framed or parsed: a bad varint or length, a field that
    overruns the frame, invalid UTF-8, bytes left over after the last field."""


_NO_VALUE = object()


class ConstraintViolation(InvalidValue):
    """A `where` constraint of the spec does not hold.

    `field` is the path of the constrained field (`Label.length`) or the frame's
    name for a frame constraint; `constraint` is the spec's expression.
    """

    def __init__(self, field: str, constraint: str, value: object = _NO_VALUE) -> None:
        ProtocolError.__init__(
            self,
            (
                f"{field}: `{constraint}` does not hold"
                if value is _NO_VALUE
                else f"{field}: {value!r} breaks `{constraint}`"
            ),
        )
        self.field = field
        self.value = None if value is _NO_VALUE else value
        self.constraint = constraint


class TLSHandshakeError(ConnectionError):
    """A TLS handshake failed (bad or garbage ClientHello, no common version or
    cipher, a certificate refused, no client certificate where one is required)
    or did not finish within tls_handshake_timeout. Only that connection closes.

    An OSError (a ConnectionError), as the socket errors the runtime passes to
    `on_close(conn, err)` are.
    """


__all__ = [
    "TLSHandshakeError",
    "ProtocolError",
    "FrameTooLarge",
    "ChecksumMismatch",
    "InvalidValue",
    "MalformedFrame",
    "ConstraintViolation",
]
