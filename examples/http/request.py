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
- Transfer-Encoding is accepted as exactly `chunked` in an HTTP/1.1 request
  (its body is then read by `ChunkedBody`); chunked not last, or applied twice,
  or in an HTTP/1.0 request is 400 (the body's end could not be found reliably),
  another coding before chunked (`gzip, chunked`) is 501; an Expect other than
  `100-continue` is answered 417.

A chunked body (RFC 9112 section 7.1) is not framed by the spec: the generated
decoder hands over the head alone, and `ChunkedBody` reads the body from the
bytes after it, incrementally and without I/O. (The DSL has no chunked framing
yet; when it does, this reader should become a spec construct.)

Every check is one precompiled pattern over the whole head, whose quantifiers are
possessive and whose character classes do not overlap where they meet (so no
input makes it backtrack), or a `bytes` search: the cost is linear in the head's
size and no Python code runs per byte or per field line. Only a refused head is
looked at again, once, to say what is wrong with it.
"""

from __future__ import annotations

import re

__all__ = [
    "BodyError",
    "ChunkedBody",
    "HeadError",
    "MAX_CHUNK_LINE",
    "MAX_CHUNK_SIZE_DIGITS",
    "MAX_REQUEST_LINE",
    "MAX_TRAILERS",
    "PendingRequest",
    "RUN_HEADS",
    "RUN_LINE",
    "RequestHead",
    "common_fields",
    "common_run",
    "parse_head",
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
_COMMON_FIELDS = (
    _OTHER_FIELDS
    + rb"\r\n(?i:host):[ \t]*+"
    + _HOST_VALUE
    + rb"[ \t]*+(?![^\r])"
    + _OTHER_FIELDS
)
_COMMON_HEAD = re.compile(_REQUEST_LINE + _COMMON_FIELDS)
# The field lines of a common head, for a handler that has checked the request
# line itself (a literal one it answers): `common_fields(head, len(line))` is not
# None, for a head within MAX_REQUEST_LINE, exactly when parse_head would accept
# the head as a common one (the request line is not matched again: ~1/5 of the
# cost). The fields start with their CRLF.
common_fields = re.compile(_COMMON_FIELDS).fullmatch
# Pipelined heads in one match: `common_run(data).end()` is where the run of
# heads at the start of `data`, each followed by its CRLFCRLF, that
# common_fields accepts with their Host field first (as curl, browsers,
# http.client and wrk send it), ends; at most RUN_HEADS heads. A batch of
# requests then pays the fixed cost of a match call (~1,600 instructions) once,
# not once per head; a head with its Host field elsewhere merely ends the run
# (the caller checks it alone, with common_fields). Each head's first line is
# only cut out, not checked (it holds no CR, and at most RUN_LINE bytes: the
# first CRLF of a head is where its fields start): the caller checks it (a
# literal line it answers), as before common_fields. A head's bytes hold no
# CRLFCRLF (a field line is never empty), so the run's heads are the ones a
# decoder cutting at the first CRLFCRLF frames, and they have no body
# (Content-Length and Transfer-Encoding are notable names). RUN_HEADS bounds the
# bytes matched again when a decode loop stops early (its frame budget, 64 by
# default); call it once a complete head is known to be at the start (an
# unfinished one at the end is matched in vain, once per call).
RUN_HEADS = 64
RUN_LINE = 64
common_run = re.compile(
    rb"(?:[^\r]{1,%d}+" % RUN_LINE
    + rb"\r\n(?i:host):[ \t]*+"
    + _HOST_VALUE
    + rb"[ \t]*+"  # (then a CR: the next field line's, or the empty line's)
    + _OTHER_FIELDS
    + rb"\r\n\r\n){0,%d}+" % RUN_HEADS
).match
# For the other heads, lowercased. A field name sits right after a CRLF (values
# hold no CR), so searching for CRLF + name + ":" finds field names only.
_GOOD_HOST = re.compile(rb"\r\nhost:[ \t]*+" + _HOST_VALUE + rb"[ \t]*+(?![^\r])")
_CONNECTION = re.compile(rb"\r\nconnection:([^\r]*+)")
_EXPECT = re.compile(rb"\r\nexpect:[ \t]*+100-continue[ \t]*+(?![^\r])")
_TRANSFER_ENCODING = re.compile(rb"\r\ntransfer-encoding:([^\r]*+)")


class HeadError(Exception):
    """A head the server refuses: the status to answer and why, for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


# What the handler needs from an accepted head: (method, target, http11 (else
# HTTP/1.0), keep_alive (the client lets the connection stay open after the
# answer), expect_continue (the client waits for `100 Continue` before sending
# the body), chunked (a chunked body follows the head: read it with
# ChunkedBody)). A plain tuple: one is built per request.
RequestHead = tuple[bytes, bytes, bool, bool, bool, bool]


def parse_head(head: bytes) -> RequestHead:
    """The meaning of `head` (the bytes before the empty line), or HeadError."""
    common = _COMMON_HEAD.fullmatch(head)
    if common is not None and (
        len(head) <= MAX_REQUEST_LINE or common.end(3) <= MAX_REQUEST_LINE
    ):
        method, target, minor = common.groups()
        http11 = minor == b"1"
        return method, target, http11, http11, False, False
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
    chunked = b"\r\ntransfer-encoding:" in lowered
    if chunked:
        if b"\r\ncontent-length:" in lowered:
            raise HeadError(400, "both Content-Length and Transfer-Encoding")
        _check_transfer_coding(lowered, http11)
    elif lowered.count(b"\r\ncontent-length:") > 1:
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
    return method, target, http11, keep_alive, expect_continue, chunked


def _check_transfer_coding(lowered: bytes, http11: bool) -> None:
    """Refuse a Transfer-Encoding other than exactly `chunked` (RFC 9112 section
    6.1 and 6.3): the framings a server and a proxy in front of it could read
    differently are refused before any body byte is read."""
    if not http11:
        raise HeadError(400, "Transfer-Encoding in an HTTP/1.0 request")
    # All Transfer-Encoding fields as one list; empty elements are allowed
    # (RFC 9110 section 5.6.1).
    listed = b",".join(_TRANSFER_ENCODING.findall(lowered)).split(b",")
    codings = [coding.strip(b" \t") for coding in listed]
    codings = [coding for coding in codings if coding]
    if not codings or codings[-1] != b"chunked":
        raise HeadError(400, "Transfer-Encoding must end with chunked")
    if codings.count(b"chunked") > 1:
        raise HeadError(400, "chunked is applied more than once")
    if len(codings) > 1:
        raise HeadError(
            501, f"the transfer coding {_shown(codings[0])} is not supported"
        )


# What a request may start with: a method's first character, or the CR of an
# empty line before the request line (RFC 9112 section 2.2). A WebSocket frame
# (its first byte is FIN and the opcode) or a TLS record cannot.
_REQUEST_START = frozenset(
    b"!#$%&'*+.^_`|~-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r"
)


class PendingRequest:
    """The unfinished request at the front of a connection's input: its head still
    arriving, or its body.

    `update` looks only at bytes it has not seen (so a head trickling in costs
    linear time in total) and reports an error the unfinished head already shows:
    a first byte no request starts with (a WebSocket frame sent before the
    upgrade: 400), a bare CR or LF (a client ending lines with LF alone gets 400
    rather than a server waiting for a CRLF that never comes; RFC 9112 section
    2.2 allows either), or a request line over MAX_REQUEST_LINE (414). Once the empty line
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
        if not self._scanned and buffered and buffered[0] not in _REQUEST_START:
            return HeadError(
                400, f"not an HTTP request: it starts with byte {buffered[0]:#04x}"
            )
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


# -- chunked bodies (RFC 9112 section 7.1) ------------------------------------------

# Limits of a chunked body, besides its size (see ChunkedBody): a chunk-size of
# more hex digits than a 64-bit size needs, a chunk line (size and extensions)
# over 4 KiB, or a trailer section over 8 KiB is refused, as nginx and Node's
# llhttp bound them.
MAX_CHUNK_SIZE_DIGITS = 16
MAX_CHUNK_LINE = 4 * 1024
MAX_TRAILERS = 8 * 1024

# chunk-ext-val = token / quoted-string. In a quoted string a backslash starts a
# quoted-pair and is no qdtext: a run of qdtext, then (quoted-pair, run of
# qdtext) repeated, each step with one way to match.
_QDTEXT = rb"[\t !#-\[\]-~\x80-\xff]*+"
_QUOTED = rb'"' + _QDTEXT + rb"(?:\\[\t\x20-\x7e\x80-\xff]" + _QDTEXT + rb')*+"'
_CHUNK_EXT = (
    rb"[ \t]*+;[ \t]*+"
    + _TOKEN
    + rb"++(?:[ \t]*+=[ \t]*+(?:"
    + _TOKEN
    + rb"++|"
    + _QUOTED
    + rb"))?+"
)
# A whole chunk line: chunk-size [ chunk-ext ] CRLF. Digits, blanks, ";", "=",
# tokens and CR do not overlap where they meet: no backtracking.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]++)(?:" + _CHUNK_EXT + rb")*+\r\n")
_TRAILER_LINE = re.compile(_TOKEN + rb"++:" + _VALUE + rb"*+\r\n")
_LF = re.compile(rb"\n")
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class BodyError(HeadError):
    """A request body the server refuses (status and reason, like HeadError)."""


class ChunkedBody:
    """Reads one chunked body, incrementally and without I/O.

    `feed(buffered)` is given the bytes received so far from the body's first
    byte on (every call from the same start, perhaps with more bytes, perhaps
    with the next pipelined request behind the body). It resumes where the
    previous call stopped, so a body arriving in any number of reads costs time
    linear in its size: each chunk line and trailer line is searched once for its
    LF and matched once by a non-backtracking pattern, and chunk data is copied
    once, when the whole chunk is there. When the last chunk and the trailer
    section have arrived, `feed` returns the encoded body's length (the bytes to
    consume); `body` then holds the data, `trailers` the raw trailer section
    (field lines, each ended by CRLF; the server does not act on trailers).

    `limit` bounds the encoded body (sizes, extensions, data, trailers): a chunk
    size, or a line, that would take it past the limit is refused with 413 as
    soon as it is seen, before its data arrives. A malformed body is refused with
    400: a chunk-size that is not hex or has more than MAX_CHUNK_SIZE_DIGITS
    digits, a malformed chunk extension, chunk data not followed by CRLF, a line
    ended by LF alone, a chunk line over MAX_CHUNK_LINE; a trailer section over
    MAX_TRAILERS is 431. The encoded body stays in the caller's buffer until it
    is complete (the runtime's read timeout then covers the whole body, as for
    a Content-Length one), so `limit` also bounds the memory a body holds.

    `scanned_bytes` counts the bytes searched for line ends and matched as lines
    (as the generated decoders' `scanned_bytes` does): at most twice the body's
    size, however it was cut into reads.
    """

    __slots__ = (
        "body",
        "scanned_bytes",
        "trailers",
        "_data_size",
        "_end",
        "_limit",
        "_pos",
        "_scan",
        "_trailers_at",
    )

    def __init__(self, limit: int) -> None:
        self.body = bytearray()
        self.scanned_bytes = 0
        self.trailers: bytes | None = None  # None: the trailer section is not read yet
        self._limit = limit
        # Where decoding stands: the start of the next chunk line, or of the
        # data of a chunk of _data_size bytes (-1: at a line).
        self._pos = 0
        self._data_size = -1
        # Where the search for the current line's LF goes on; where the trailer
        # section starts (-1: before the last chunk); the body's end, once known.
        self._scan = 0
        self._trailers_at = -1
        self._end = -1

    def feed(self, buffered: bytes | bytearray | memoryview) -> int | None:
        """Go on reading; the encoded body's length once it is complete, else None.

        Raises BodyError for a body that is refused (see the class docstring).
        """
        if self._end >= 0:
            return self._end
        size = len(buffered)
        pos = self._pos
        while True:
            chunk = self._data_size
            if chunk >= 0:
                data_end = pos + chunk
                if size < data_end + 2:
                    break
                if buffered[data_end : data_end + 2] != b"\r\n":
                    raise BodyError(
                        400, f"chunk data is longer than its chunk-size ({chunk})"
                    )
                self.body += buffered[pos:data_end]
                pos = data_end + 2
                self._data_size = -1
                continue
            lf = self._line_end(buffered, pos, size)
            if lf < 0:
                break
            if self._trailers_at < 0:
                pos = self._chunk_line(buffered, pos, lf)
            elif lf == pos + 1 and buffered[pos] == 13:
                # The empty line: the trailer section, and the body, end here.
                self.trailers = bytes(buffered[self._trailers_at : pos])
                self._end = lf + 1
                return self._end
            elif _TRAILER_LINE.fullmatch(buffered, pos, lf + 1) is None:
                raise _line_error(bytes(buffered[pos : lf + 1]), "trailer field")
            else:
                self.scanned_bytes += lf + 1 - pos
                pos = lf + 1
        self._pos = pos
        return None

    def _line_end(
        self, buffered: bytes | bytearray | memoryview, pos: int, size: int
    ) -> int:
        """Where the LF ending the line at `pos` is, or -1 while it has not come."""
        if self._trailers_at < 0:
            cap = pos + MAX_CHUNK_LINE + 2
        else:
            cap = self._trailers_at + MAX_TRAILERS + 2
        stop = min(size, cap, self._limit)
        start = max(pos, self._scan)
        found = _LF.search(buffered, start, stop)
        if found is not None:
            self.scanned_bytes += found.end() - start
            return found.start()
        self.scanned_bytes += max(0, stop - start)
        self._scan = stop
        if stop == cap or stop == self._limit:
            # No LF within the limits: the line would end past them.
            if stop == self._limit:
                raise BodyError(413, f"the chunked body is over {self._limit} bytes")
            if self._trailers_at < 0:
                raise BodyError(
                    400, f"a chunk line is longer than {MAX_CHUNK_LINE} bytes"
                )
            raise BodyError(431, f"the trailer section is over {MAX_TRAILERS} bytes")
        return -1

    def _chunk_line(
        self, buffered: bytes | bytearray | memoryview, pos: int, lf: int
    ) -> int:
        """Read the chunk line at `pos` (its LF at `lf`); returns where it ends."""
        line = _CHUNK_LINE.fullmatch(buffered, pos, lf + 1)
        if line is None:
            raise _line_error(bytes(buffered[pos : lf + 1]), "chunk")
        self.scanned_bytes += lf + 1 - pos
        digits = line.end(1) - pos
        if digits > MAX_CHUNK_SIZE_DIGITS:
            raise BodyError(
                400, f"a chunk-size of more than {MAX_CHUNK_SIZE_DIGITS} hex digits"
            )
        chunk = int(bytes(buffered[pos : pos + digits]), 16)
        end = lf + 1
        if not chunk:
            self._trailers_at = end  # the last chunk: the trailer section follows
        elif end + chunk + 2 + 5 > self._limit:
            # This chunk, its CRLF and the shortest last chunk ("0\r\n\r\n").
            raise BodyError(413, f"the chunked body is over {self._limit} bytes")
        else:
            self._data_size = chunk
        return end


def _line_error(line: bytes, kind: str) -> BodyError:
    """Why a chunk line or trailer line (ended by LF) was refused."""
    if not line.endswith(b"\r\n"):
        return BodyError(400, "a line ends with LF alone: lines end with CRLF")
    if b"\r" in line[:-2]:
        return BodyError(400, "a CR not followed by LF")
    if kind == "trailer field":
        return BodyError(400, f"invalid trailer field: {_shown(line[:-2])}")
    digits = len(line) - len(line.lstrip(_HEX_DIGITS))
    if not digits or line[digits] not in b" \t;":
        return BodyError(400, f"invalid chunk-size: {_shown(line[:-2])}")
    return BodyError(400, f"invalid chunk extension: {_shown(line[:-2])}")


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
