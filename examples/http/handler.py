"""The HTTP/1.1 example's handler: routes on top of the generated `HttpHandler`.

The generated decode loop (from `http.proto.dsl`) cuts the byte stream into
`HttpRequest(head, body)` frames: composite framing, the head ended by an empty
line, the body sized by Content-Length, max_frame enforced before buffering.
This module only interprets heads and answers:

    GET  /plaintext  200 "Hello, World!" (TechEmpower style: Server, Date,
                     Content-Type, Content-Length)
    POST /echo       200 with the request body
    anything else    404 (405 for a known path with another method)

Keep-alive and pipelining: every request parsed from one read is answered in
request order, and all the answers go out in one write. `Connection: close`,
or HTTP/1.0 without `Connection: keep-alive`, closes after the answer; requests
pipelined behind it are ignored. A malformed head gets `400 Bad Request` and an
oversize head or body `413 Content Too Large`, then the connection closes;
other connections are unaffected.

The plaintext answer is preformatted: its bytes are rebuilt once a second,
when the Date changes, never per request.
"""

from __future__ import annotations

import re
from email.utils import formatdate
from typing import Any

from http_codec import HttpRequest
from http_handler import HttpHandler

from protogen.errors import FrameTooLarge, ProtocolError
from protogen.runtime import Action

__all__ = ["HttpExampleHandler", "PLAINTEXT_BODY", "SERVER_NAME"]

SERVER_NAME = b"protogen"
PLAINTEXT_BODY = b"Hello, World!"

# A header section (the head after the request line) is well-formed when every
# line is `token ":" value` with no bare CR or LF (RFC 9110 token characters;
# whitespace before the colon and obsolete line folding are rejected, as RFC 9112
# asks of servers).
_FIELD_LINES = re.compile(
    rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*)*"
)
_METHOD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONNECTION = re.compile(rb"(?:^|\n)connection[ \t]*:([^\r\n]*)")
_TRANSFER_ENCODING = re.compile(rb"(?:^|\n)transfer-encoding[ \t]*:")
_HTTP_10, _HTTP_11 = b"HTTP/1.0", b"HTTP/1.1"
# How many distinct plaintext heads the fast path remembers (clients repeat theirs).
MAX_KNOWN_HEADS = 256


def _status(code: int, reason: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A full answer that never changes (no Date: error pages need none)."""
    lines = [b"HTTP/1.1 %d %s" % (code, reason), b"Server: " + SERVER_NAME]
    lines += headers
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


BAD_REQUEST = _status(400, b"Bad Request", b"Connection: close")
TOO_LARGE = _status(413, b"Content Too Large", b"Connection: close")
NOT_IMPLEMENTED = _status(501, b"Not Implemented", b"Connection: close")
# Answers by keep-alive: [close, keep].
NOT_FOUND = (
    _status(404, b"Not Found", b"Connection: close"),
    _status(404, b"Not Found"),
)
NOT_ALLOWED = {
    path: (
        _status(405, b"Method Not Allowed", allow, b"Connection: close"),
        _status(405, b"Method Not Allowed", allow),
    )
    for path, allow in ((b"/plaintext", b"Allow: GET"), (b"/echo", b"Allow: POST"))
}


class HttpExampleHandler(HttpHandler):
    """Answers /plaintext and /echo; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Answers to the requests of the current on_traffic call, written at once.
        self._out: list[bytes] = []
        # Set by a request that ends the connection: later pipelined ones are ignored.
        self._closing = False
        self._loop: Any = None
        # Heads (exact bytes) known to mean "GET /plaintext, keep-alive, no body":
        # the memo of on_traffic's fast path, bounded by MAX_KNOWN_HEADS.
        self._known_plaintext: set[bytes] = set()
        self._refresh_date()

    # -- the Date header, refreshed once a second ------------------------------------

    def _refresh_date(self) -> None:
        date = formatdate(usegmt=True).encode()
        self.date = date
        head = (
            b"HTTP/1.1 200 OK\r\nServer: "
            + SERVER_NAME
            + b"\r\nDate: "
            + date
            + b"\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            % len(PLAINTEXT_BODY)
        )
        self._plaintext = head + b"\r\n" + PLAINTEXT_BODY
        self._plaintext_close = head + b"Connection: close\r\n\r\n" + PLAINTEXT_BODY
        self._plaintext_keep = head + b"Connection: keep-alive\r\n\r\n" + PLAINTEXT_BODY

    def _date_timer(self) -> None:
        self._refresh_date()
        self._loop.call_later(1.0, self._date_timer)

    def on_boot(self, engine: Any) -> Action:
        # Runs in the loop's process (each worker with --loops N): start the clock there.
        self._loop = engine.loop
        self._date_timer()
        return super().on_boot(engine)

    # -- the decode loop's wrapper: one write per read -----------------------------------

    def on_traffic(self, conn: Any) -> Action:
        out = self._out
        known = self._known_plaintext
        if known:
            # Fast path for pipelined plaintext: answer the leading requests whose
            # head is byte-for-byte one already parsed into "plaintext, keep-alive"
            # (so no body, no Connection: close); the first other one, and all
            # after it, go through the generated decode loop below.
            raw = conn.peek().tobytes()
            heads = raw.split(b"\r\n\r\n")
            tail = heads.pop()  # after the last delimiter: not a complete head
            if heads and heads[0] in known:
                if heads.count(heads[0]) == len(heads):  # one request, repeated
                    count, pos = len(heads), len(raw) - len(tail)
                else:
                    count = pos = 0
                    for head in heads:
                        if head not in known:
                            break
                        count += 1
                        pos += len(head) + 4
                conn.discard(pos)
                # The generated loop's decoder may hold scan progress for a head
                # consumed here: let it start afresh.
                self.reset_decoder(conn)
                if pos == len(raw):
                    conn.write(self._plaintext * count)
                    return Action.NONE
                out.append(self._plaintext * count)
        try:
            action = super().on_traffic(conn)
        except BaseException:  # a bug: the runtime closes this conn; keep others clean
            out.clear()
            self._closing = False
            raise
        if out:
            conn.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self._closing:
            self._closing = False
            return Action.CLOSE
        return action

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        """A head or body over max_frame -> 413; a bad Content-Length -> 400. Then close."""
        if not self._closing:
            self._out.append(
                TOO_LARGE if isinstance(err, FrameTooLarge) else BAD_REQUEST
            )
        self._closing = False
        return Action.CLOSE

    # -- one request --------------------------------------------------------------------

    def on_http_request(self, conn: Any, frame: HttpRequest) -> None:
        if self._closing:
            return
        head = frame.head
        line_end = head.find(b"\r\n")
        if line_end < 0:
            request_line, fields = head, b""
        else:
            request_line, fields = head[:line_end], head[line_end + 2 :]
        parts = request_line.split(b" ")
        if (
            len(parts) != 3
            or (fields and _FIELD_LINES.fullmatch(fields) is None)
            or _METHOD.fullmatch(parts[0]) is None
            or not parts[1]
        ):
            self._fail(BAD_REQUEST)
            return
        method, target, version = parts
        keep_alive = version == _HTTP_11
        if not keep_alive and version != _HTTP_10:
            self._fail(BAD_REQUEST)
            return
        lowered = b""
        if fields:
            lowered = fields.lower()
            if b"connection" in lowered:
                match = _CONNECTION.search(lowered)
                if match is not None:
                    tokens = [t.strip() for t in match.group(1).split(b",")]
                    if b"close" in tokens:
                        keep_alive = False
                    elif b"keep-alive" in tokens:
                        keep_alive = True
            if b"transfer-encoding" in lowered and _TRANSFER_ENCODING.search(lowered):
                self._fail(NOT_IMPLEMENTED)  # chunked bodies are not framed by the spec
                return
        if target == b"/plaintext" and method == b"GET":
            if not keep_alive:
                self._out.append(self._plaintext_close)
                self._closing = True
            elif version == _HTTP_10:  # keep-alive only because the client asked
                self._out.append(self._plaintext_keep)
            else:
                self._out.append(self._plaintext)
                known = self._known_plaintext
                if len(known) < MAX_KNOWN_HEADS and b"content-length" not in lowered:
                    known.add(head)  # the fast path may answer this head from now on
            return
        self._route(method, target.partition(b"?")[0], version, keep_alive, frame.body)

    def _route(
        self, method: bytes, path: bytes, version: bytes, keep_alive: bool, body: bytes
    ) -> None:
        """Everything but the plaintext fast path."""
        if path == b"/echo" and method == b"POST":
            self._out.append(self._answer(b"200 OK", body, version, keep_alive))
        elif path == b"/plaintext" and method == b"GET":
            self._out.append(
                self._answer(
                    b"200 OK", PLAINTEXT_BODY, version, keep_alive, b"text/plain"
                )
            )
        else:
            self._out.append(NOT_ALLOWED.get(path, NOT_FOUND)[keep_alive])
        if not keep_alive:
            self._closing = True

    def _answer(
        self,
        status: bytes,
        body: bytes,
        version: bytes,
        keep_alive: bool,
        content_type: bytes = b"application/octet-stream",
    ) -> bytes:
        if not keep_alive:
            connection = b"Connection: close\r\n"
        elif version == _HTTP_10:
            connection = b"Connection: keep-alive\r\n"
        else:
            connection = b""
        return b"".join(
            (
                b"HTTP/1.1 ",
                status,
                b"\r\nServer: ",
                SERVER_NAME,
                b"\r\nDate: ",
                self.date,
                b"\r\nContent-Type: ",
                content_type,
                b"\r\nContent-Length: %d\r\n" % len(body),
                connection,
                b"\r\n",
                body,
            )
        )

    def _fail(self, answer: bytes) -> None:
        """Answer an unusable request, then close (later pipelined requests are ignored)."""
        self._out.append(answer)
        self._closing = True
