"""HTTP/1.1 request heads, parsed without I/O: bytes in, a `RequestHead` or a
`HeadError` out.

The generated decoder (`http.proto.dsl`) has already cut the head at the empty
line and framed the body by Content-Length; this module decides what the head
means and whether it is acceptable (RFC 9110, RFC 9112):

- the request line is `method SP request-target SP HTTP/1.0|1.1`;
- every field line is `name ":" value`, the name a token (no whitespace before
  the colon, no obsolete line folding), the value made of visible characters,
  spaces, tabs and obs-text: NUL, bare CR or LF, and other control characters
  are refused;
- an HTTP/1.1 request has exactly one Host field (HTTP/1.0: at most one), with a
  valid `host[:port]` value;
- Content-Length appears at most once, never together with Transfer-Encoding
  (the two framings could disagree: request smuggling, RFC 9112 section 6.3);
- Transfer-Encoding alone is answered 501 (chunked bodies are not framed by the
  spec); an Expect other than `100-continue` is answered 417.

Every check is one precompiled pattern over the whole head, whose quantifiers are
possessive and whose character classes do not overlap where they meet (so no
input makes it backtrack), or a `bytes` search: the cost is linear in the head's
size and no Python code runs per byte or per field line. Only a refused head is
looked at again, once, to say what is wrong with it.
"""

from __future__ import annotations

import re

__all__ = [
    "HeadError",
    "MAX_REQUEST_LINE",
    "RequestHead",
    "parse_head",
    "PendingRequest",
]

# Like nginx's default large_client_header_buffers: a longer request line is 414.
MAX_REQUEST_LINE = 8 * 1024

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
# field-value characters: HTAB, SP, VCHAR, obs-text (RFC 9110 section 5.5).
_VALUE = rb"[\t\x20-\x7e\x80-\xff]"

# The whole head in one match. A token never contains SP or ":", a target never
# SP, a value never CR: each possessive run stops exactly where the next part
# must start. RFC 9112 section 2.2 lets a server ignore an empty line before the
# request line.
_REQUEST_LINE = rb"(?:\r\n)?+(" + _TOKEN + rb"++) ([\x21-\x7e]++) HTTP/1\.([01])"
_HEAD = re.compile(_REQUEST_LINE + rb"(?:\r\n" + _TOKEN + rb"++:" + _VALUE + rb"*+)*+")
# The common head, accepted by this one match: well-formed, one Host field with a
# valid uri-host [":" port] value (RFC 3986: an IP literal, or a reg-name / IPv4
# address), and none of the fields that need a closer look. (The lookahead tests
# a name's first letter, then its rest without case: cheaper than five
# case-insensitive names, and the few odd names it also stops, like `Cost:`,
# merely take the full path.)
_NOTABLE_NAME = rb"[HhCcTtEe](?i:ost|onnection|ontent-length|ransfer-encoding|xpect):"
_OTHER_FIELDS = (
    rb"(?:\r\n(?!" + _NOTABLE_NAME + rb")" + _TOKEN + rb"++:" + _VALUE + rb"*+)*+"
)
_HOST_VALUE = rb"(?:\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9._~!$&'()*+,;=%-]*+)(?::[0-9]*+)?+"
_COMMON_HEAD = re.compile(
    _REQUEST_LINE
    + _OTHER_FIELDS
    + rb"\r\n(?i:host):[ \t]*+"
    + _HOST_VALUE
    + rb"[ \t]*+(?![^\r])"
    + _OTHER_FIELDS
)
# For the other heads, lowercased. A field name sits right after a CRLF (values
# hold no CR), so searching for CRLF + name + ":" finds field names only.
_GOOD_HOST = re.compile(rb"\r\nhost:[ \t]*+" + _HOST_VALUE + rb"[ \t]*+(?![^\r])")
_CONNECTION = re.compile(rb"\r\nconnection:([^\r]*+)")
_EXPECT = re.compile(rb"\r\nexpect:[ \t]*+100-continue[ \t]*+(?![^\r])")


class HeadError(Exception):
    """A head the server refuses: the status to answer and why, for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


# What the handler needs from an accepted head: (method, target, http11 (else
# HTTP/1.0), keep_alive (the client lets the connection stay open after the
# answer), expect_continue (the client waits for `100 Continue` before sending
# the body)). A plain tuple: one is built per request.
RequestHead = tuple[bytes, bytes, bool, bool, bool]


def parse_head(head: bytes) -> RequestHead:
    """The meaning of `head` (the bytes before the empty line), or HeadError."""
    common = _COMMON_HEAD.fullmatch(head)
    if common is not None and common.end(3) <= MAX_REQUEST_LINE:
        method, target, minor = common.groups()
        http11 = minor == b"1"
        return method, target, http11, http11, False
    return _parse_any_head(head)


def _parse_any_head(head: bytes) -> RequestHead:
    """parse_head for heads that are not the common kind (or are refused)."""
    match = _HEAD.fullmatch(head)
    if match is None:
        raise _diagnose(head)
    if match.end(3) > MAX_REQUEST_LINE:
        raise HeadError(414, "the request line is longer than 8 KiB")
    method, target, minor = match.group(1, 2, 3)
    http11 = minor == b"1"
    lowered = head.lower()
    hosts = lowered.count(b"\r\nhost:")
    if hosts > 1:
        raise HeadError(400, "more than one Host header")
    if hosts == 0 and http11:
        raise HeadError(400, "an HTTP/1.1 request needs a Host header")
    if hosts == 1 and _GOOD_HOST.search(lowered) is None:
        raise HeadError(400, "the Host header is not host[:port]")
    if b"\r\ntransfer-encoding:" in lowered:
        if b"\r\ncontent-length:" in lowered:
            raise HeadError(400, "both Content-Length and Transfer-Encoding")
        raise HeadError(501, "Transfer-Encoding (chunked bodies) is not supported")
    if lowered.count(b"\r\ncontent-length:") > 1:
        raise HeadError(400, "more than one Content-Length header")
    keep_alive = http11
    if b"\r\nconnection:" in lowered:
        # All Connection fields as one comma-separated list, blanks removed.
        tokens = b"," + b",".join(_CONNECTION.findall(lowered)) + b","
        tokens = tokens.replace(b" ", b"").replace(b"\t", b"")
        if b",close," in tokens:
            keep_alive = False
        elif b",keep-alive," in tokens:
            keep_alive = True
    expect_continue = False
    expects = lowered.count(b"\r\nexpect:")
    if expects:
        if expects > 1 or _EXPECT.search(lowered) is None:
            raise HeadError(417, "the only expectation supported is 100-continue")
        # RFC 9110 section 10.1.1: an HTTP/1.0 client's expectation is ignored.
        expect_continue = http11
    return method, target, http11, keep_alive, expect_continue


class PendingRequest:
    """The unfinished request at the front of a connection's input: its head still
    arriving, or its body.

    `update` looks only at bytes it has not seen (so a head trickling in costs
    linear time in total) and reports an error the unfinished head already shows:
    a bare CR or LF (a client ending lines with LF alone gets 400 rather than a
    server waiting for a CRLF that never comes; RFC 9112 section 2.2 allows
    either), or a request line over MAX_REQUEST_LINE (414). Once the empty line
    has arrived, `head` holds the head (the body is what is still missing).
    """

    __slots__ = ("head", "_scanned", "_line_done")

    def __init__(self) -> None:
        self.head: bytes | None = None
        self._scanned = 0
        self._line_done = False

    def update(self, buffered: bytes | bytearray | memoryview) -> HeadError | None:
        """Look at `buffered`: this request's bytes so far (and perhaps more)."""
        if self.head is not None:
            return None
        # Rescan 3 bytes: the empty line may straddle two reads. Never start on an
        # LF whose CR was seen before (it would look bare).
        begin = max(0, self._scanned - 3)
        if begin and buffered[begin - 1] == 13:
            begin -= 1
        new = bytes(buffered[begin:])
        end = new.find(b"\r\n\r\n")
        if end >= 0:
            self.head = bytes(buffered[: begin + end])
            return None
        self._scanned = len(buffered)
        stray = new.replace(b"\r\n", b"")
        if new.endswith(b"\r"):
            stray = stray[:-1]  # its LF may come with the next read
        if b"\n" in stray:
            return HeadError(400, "a line ends with LF alone: lines end with CRLF")
        if b"\r" in stray:
            return HeadError(400, "a CR not followed by LF")
        if not self._line_done:
            self._line_done = b"\r\n" in new
            if not self._line_done and len(buffered) > MAX_REQUEST_LINE:
                return HeadError(414, "the request line is longer than 8 KiB")
        return None


def _diagnose(head: bytes) -> HeadError:
    """Why `_HEAD` refused `head` (error path only: at most one field line is
    examined, by bytes methods)."""
    line_end = head.find(b"\r\n", 2 if head.startswith(b"\r\n") else 0)
    if line_end < 0:
        line_end = len(head)
    if line_end > MAX_REQUEST_LINE:
        return HeadError(414, "the request line is longer than 8 KiB")
    prefix = _HEAD.match(head)
    stop = 0 if prefix is None else prefix.end()
    if stop < line_end:
        if b"\n" in head[:line_end] or b"\r" in head[:line_end]:
            return HeadError(400, "a line ends with LF alone: lines end with CRLF")
        return HeadError(400, "malformed request line: expected METHOD TARGET HTTP/1.1")
    if head.startswith(b"\r\n", stop):
        # The field lines up to `stop` were good; the next one is bad as a whole.
        end = head.find(b"\r\n", stop + 2)
        line = head[stop + 2 : end if end >= 0 else len(head)]
        if line[:1] in (b" ", b"\t"):
            return HeadError(400, "obsolete line folding is not accepted")
        name, colon, _ = line.partition(b":")
        if not colon:
            return HeadError(400, f"a header line without a colon: {_shown(line)}")
        if name.rstrip(b" \t") != name:
            return HeadError(400, f"whitespace before the colon: {_shown(name)}")
        return HeadError(400, f"invalid header name: {_shown(name)}")
    # A field value stopped at `stop`, on a character values may not hold.
    name = head[head.rfind(b"\r\n", 0, stop) + 2 : stop].partition(b":")[0]
    if head[stop] in b"\r\n":
        return HeadError(400, f"a bare CR or LF in the value of {_shown(name)}")
    return HeadError(
        400,
        f"forbidden character 0x{head[stop]:02x} in the value of {_shown(name)}",
    )


def _shown(raw: bytes, limit: int = 40) -> str:
    """A short printable rendering of client bytes, for an error message."""
    text = raw[:limit].decode("ascii", "backslashreplace")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text + ("..." if len(raw) > limit else "")
