"""The HTTP/1.1 example's handler: routes on top of the generated `HttpHandler`.

The generated decode loop (from `http.proto.dsl`) cuts the byte stream into
`HttpRequest(head, body)` frames: composite framing, the head ended by an empty
line, the body sized by Content-Length, max_frame enforced before buffering.
`request.py` decides what a head means and whether it is acceptable, and reads
chunked bodies, which the spec does not frame; this module answers:

    GET  /plaintext  200 "Hello, World!" (TechEmpower style: Server, Date,
                     Content-Type, Content-Length); HEAD: the same head, no body
    POST /echo       200 with the request body (PUT too: `curl -T file`)
    GET  /ws         a WebSocket opening handshake: 101, then the connection is
                     the WebSocket example's echo server's (else 400 and close)
    anything else    404 (405 for a known path with another method)

WebSocket: `GET /ws` with a valid opening handshake (RFC 6455 section 4.2,
checked by the WebSocket example's `handshake_response`) is answered `101
Switching Protocols`, after the answers to the requests before it, and
`hand_over` gives the connection to the WebSocket example's `EchoServer` (its
own generated handler, its own spec) in its `Frames` phase: the bytes behind
the request, already buffered or not, are WebSocket frames. A WebSocket frame
sent before the upgrade is no request head: 400 and close, as any bad head.

A chunked request (`Transfer-Encoding: chunked`) reaches `on_http_request` as
its head alone: the decode loop is stopped there (Action.YIELD), and the body
is read by a `ChunkedBody` from the bytes behind the head, this read's and
later ones', before the decode loop goes on with the requests pipelined behind
it. max_frame bounds the encoded body and the head together, as it bounds a
Content-Length request (413 past it).

Keep-alive and pipelining: every request parsed from one read is answered in
request order, and all the answers go out in one write. `Connection: close`,
or HTTP/1.0 without `Connection: keep-alive`, closes after the answer; requests
pipelined behind it are ignored. A refused head gets its status (400, 414, 417,
431, 501) with the reason as a text body, an oversize body 413, then the
connection closes; other connections are unaffected.

A request whose body has not all arrived is looked at as soon as its head is
complete: a bad head is refused at once, and a client that sent
`Expect: 100-continue` gets `100 Continue` (or, for a request that will not be
accepted, the final answer). An unfinished head is watched too, so a client
ending lines with a bare LF is refused instead of waiting forever.

Every request is parsed: no answer depends on having seen the same bytes before.
Static routes: a request line in the table of the example's routes
(STATIC_METHODS x STATIC_PATHS, HTTP/1.0 and 1.1: GET and HEAD /plaintext,
POST and PUT /echo, the other methods' 405) with a common head (one valid
Host, none of Connection, Content-Length, Transfer-Encoding, Expect, every
field line well-formed: what parse_head accepts by its first pattern) is
answered from the table, whose answers _response itself built: the same bytes
as the general path's, rebuilt once a second with the Date. The field lines of
the read's pipelined heads are checked by one `request.common_run` match at
the read's first request (Host-first heads), a head outside that run by
`request.common_fields` alone; any other head takes parse_head.
"""

from __future__ import annotations

import sys
from email.utils import formatdate
from pathlib import Path
from types import ModuleType
from typing import Any

from http_codec import HttpRequest
from http_handler import HttpHandler, Phase
from request import (  # beside this file (serve.py puts it on sys.path)
    MAX_REQUEST_LINE,
    BodyError,
    ChunkedBody,
    HeadError,
    PendingRequest,
    RequestHead,
    common_fields,
    common_run,
    parse_head,
)

from protogen.errors import FrameTooLarge, ProtocolError
from protogen.runtime import Action

__all__ = [
    "HttpExampleHandler",
    "PLAINTEXT_BODY",
    "SERVER_NAME",
    "STATIC_METHODS",
    "STATIC_PATHS",
]

SERVER_NAME = b"protogen"
PLAINTEXT_BODY = b"Hello, World!"

REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The static routes: every request line whose answer, to a common head (see
# on_http_request), depends on nothing else. The example's paths without a
# query, by the methods of RFC 9110 and PATCH, in HTTP/1.0 and 1.1: GET and
# HEAD /plaintext, POST and PUT /echo (a common head has no body: the echo is
# empty), the 405 of every other method. (/ws needs its handshake's fields; a
# 404, a query or another method takes the general path, to the same answer.
# Each line is within request.RUN_LINE, so common_run covers it.)
STATIC_PATHS = (b"/plaintext", b"/echo")
STATIC_METHODS = (
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
)
WEBSOCKET = Path(__file__).resolve().parent.parent / "websocket"


def websocket_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """The WebSocket example's generated modules and its handler module."""
    if str(WEBSOCKET.parent) not in sys.path:
        sys.path.insert(0, str(WEBSOCKET.parent))
    from example_server import load_example

    return load_example(WEBSOCKET, "websocket.proto.dsl")


def _status(code: int, *headers: bytes, body: bytes = b"") -> bytes:
    """A full answer that never changes (no Date: error pages need none)."""
    lines = [b"HTTP/1.1 %d %s" % (code, REASONS[code]), b"Server: " + SERVER_NAME]
    lines += headers
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def refusal(error: HeadError) -> bytes:
    """The answer to a refused request: its status, the reason as text, close."""
    return _status(
        error.status,
        b"Connection: close",
        b"Content-Type: text/plain",
        body=error.reason.encode() + b"\n",
    )


# Answers by keep-alive: [close, keep].
NOT_FOUND = (
    _status(404, b"Connection: close"),
    _status(404),
)
NOT_ALLOWED = {
    path: (
        _status(405, allow, b"Connection: close"),
        _status(405, allow),
    )
    for path, allow in (
        (b"/plaintext", b"Allow: GET, HEAD"),
        (b"/echo", b"Allow: POST, PUT"),
    )
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
        # Connections whose first buffered request is unfinished (head or body).
        self._pending: dict[Any, PendingRequest] = {}
        # Connections reading a chunked body: its request's head, and the reader.
        self._chunked: dict[Any, tuple[RequestHead, ChunkedBody]] = {}
        # The bytes at the front of the current on_traffic call's frames that
        # common_run found to be common heads (None: not looked at yet).
        self._checked: int | None = None
        # What bounds a request (head + body), as the decoder does.
        self.request_limit = self.max_frame
        modules, self._websocket = websocket_example()
        self._websocket_frames = modules["handler"].Phase.Frames
        self._echo = self._websocket.EchoServer()
        # The loop lets a connection buffer one whole frame of its handler: after an
        # upgrade that is a WebSocket frame (4 MiB), not a request (64 KiB).
        self.max_frame = max(self.max_frame, self._echo.max_frame)
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
        # By keep-alive mode: close, HTTP/1.1 keep-alive, HTTP/1.0 keep-alive.
        heads = (
            head + b"Connection: close\r\n\r\n",
            head + b"\r\n",
            head + b"Connection: keep-alive\r\n\r\n",
        )
        self._plaintext_heads = heads  # answers to HEAD
        self._plaintext = tuple(h + PLAINTEXT_BODY for h in heads)  # to GET
        # The static routes' answers to a common head (whose keep-alive is its
        # version's), from the general path's own _response: (answer, keep_alive).
        self._routes = {
            b"%s %s HTTP/1.%d" % (method, path, minor): (
                self._response(method, path, minor == 1, minor == 1, b""),
                minor == 1,
            )
            for method in STATIC_METHODS
            for path in STATIC_PATHS
            for minor in (0, 1)
        }

    def _date_timer(self) -> None:
        self._refresh_date()
        self._loop.call_later(1.0, self._date_timer)

    def on_boot(self, engine: Any) -> Action:
        # Runs in the loop's process (each worker with --loops N): start the clock there.
        self._loop = engine.loop
        self._date_timer()
        return super().on_boot(engine)

    # -- the decode loop's wrapper: one write per read -----------------------------------

    def on_traffic(self, conn: Any) -> Action | None:
        out = self._out
        try:
            action = self._traffic(conn)
        except BaseException:  # a bug: the runtime closes this conn; keep others clean
            out.clear()
            self._closing = False
            raise
        if out:
            conn.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if self._closing:
            self._closing = False
            self._pending.pop(conn, None)
            self._chunked.pop(conn, None)
            return Action.CLOSE
        return action

    def _traffic(self, conn: Any) -> Action | None:
        """A chunked body under way first, then the decode loop, then the body of
        a chunked request it stopped at (at most two bodies per call: fairness)."""
        if conn in self._chunked and not self._read_chunked(conn):
            return None  # the body is unfinished (or refused)
        self._checked = None  # the frames of a new decode loop
        action = super().on_traffic(conn)
        if action is Action.YIELD and conn in self._chunked:
            # The loop stopped at a chunked head (and consumed it).
            # (A request refused anyway was answered at once: on_http_request.)
            expect_continue = self._chunked[conn][0][4]
            if expect_continue and not conn.inbound_buffered():
                self._out.append(CONTINUE)
            if not self._read_chunked(conn) or not conn.inbound_buffered():
                return None
            return Action.YIELD  # pipelined requests: on the loop's next pass
        if not self._closing and not action and conn.inbound_buffered():
            self._watch_unfinished(conn)
        return action

    def _read_chunked(self, conn: Any) -> bool:
        """Go on with `conn`'s chunked body: True once it is read and answered."""
        request, body = self._chunked[conn]
        try:
            end = body.feed(conn.peek())
        except BodyError as refused:
            del self._chunked[conn]
            self._fail(refusal(refused))
            return False
        if end is None:
            return False
        del self._chunked[conn]
        conn.discard(end)
        method, target, http11, keep_alive, _, _ = request
        self._respond(method, target, http11, keep_alive, bytes(body.body))
        return not self._closing

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        self._pending.pop(conn, None)
        self._chunked.pop(conn, None)
        return super().on_close(conn, err)

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        """Framing refused by the decoder: a head over max_frame (431, or 414 for
        its request line), a body over it (413), a bad Content-Length (400)."""
        if not self._closing:
            if isinstance(err, FrameTooLarge):
                self._out.append(self._too_large(conn))
            else:
                self._out.append(
                    refusal(HeadError(400, "invalid or conflicting Content-Length"))
                )
        self._closing = False
        self._pending.pop(conn, None)
        return Action.CLOSE

    def _too_large(self, conn: Any) -> bytes:
        limit = self.request_limit
        start = bytes(conn.peek()[: limit + 4])
        if b"\r\n\r\n" in start:
            return refusal(HeadError(413, f"the body is over {limit} bytes"))
        if b"\r\n" not in start[: MAX_REQUEST_LINE + 2]:
            return refusal(HeadError(414, "the request line is longer than 8 KiB"))
        return refusal(HeadError(431, f"the head is over {limit} bytes"))

    def _watch_unfinished(self, conn: Any) -> None:
        """The front request is unfinished: refuse a head already known bad, and
        answer `Expect: 100-continue` once the head is complete."""
        if self.phase(conn) is not Phase.Requests:
            return  # handed over: the bytes are WebSocket frames, not a request
        pending = self._pending.get(conn)
        if pending is None:
            pending = self._pending[conn] = PendingRequest()
        elif pending.head is not None:
            return  # judged when its head arrived; the body is coming
        error = pending.update(conn.peek())
        if error is not None:
            self._fail(refusal(error))
        elif pending.head is not None:
            try:
                request = parse_head(pending.head)
            except HeadError as refused:
                self._fail(refusal(refused))
                return
            method, target, http11, _, expect_continue, _ = request
            if not expect_continue:
                return
            if _takes_body(method, target):
                self._out.append(CONTINUE)
            else:
                # Refused or bodiless anyway: answer now, without the body
                # (RFC 9110 section 10.1.1), and close rather than read it.
                self._respond(method, target, http11, False, b"")

    # -- one request --------------------------------------------------------------------

    def on_http_request(self, conn: Any, frame: HttpRequest) -> Action | None:
        if self._closing:
            return None
        if self._pending:
            self._pending.pop(conn, None)
        head = frame.head
        # A common head of a static route is answered from the table: its field
        # lines are checked as parse_head's first check does (no Connection,
        # Content-Length, Transfer-Encoding or Expect field, one valid Host), by
        # one common_run match over the read's heads at its first frame (the
        # decode loop discards nothing before it returns: the frames start at
        # the front of conn.peek()), else by common_fields for this head alone.
        checked = self._checked
        if checked is None:
            run = common_run(conn.peek())  # (it always matches: none is a run)
            checked = 0 if run is None else run.end()
        checked -= len(head) + 4
        self._checked = checked
        # Up to the first CR (cheaper to find than CRLF): a route's line holds
        # none, and the fields must start there with a CRLF.
        line = head.partition(b"\r")[0]
        route = self._routes.get(line)
        if route is not None and (
            checked >= 0 or common_fields(head, len(line)) is not None
        ):
            answer, keep_alive = route
            self._out.append(answer)
            if not keep_alive:
                self._closing = True
            return None
        return self._request(conn, frame)

    def _request(self, conn: Any, frame: HttpRequest) -> Action | None:
        """on_http_request's general path: parse_head, then the route."""
        head = frame.head
        try:
            request = parse_head(head)
        except HeadError as refused:
            self._fail(refusal(refused))
            return None
        method, target, http11, keep_alive, expect_continue, chunked = request
        if not chunked and target != b"/ws":
            self._respond(method, target, http11, keep_alive, frame.body)
            return None
        if target == b"/ws":
            return self._upgrade(conn, frame, chunked)
        if expect_continue and not _takes_body(method, target):
            # As for a Content-Length body: answer without it, and close.
            self._respond(method, target, http11, False, b"")
            return Action.CLOSE
        # The head and its CRLFCRLF count against max_frame, as in the decoder.
        limit = self.request_limit - len(frame.head) - 4
        self._chunked[conn] = (request, ChunkedBody(limit))
        return Action.YIELD  # stop the decode loop: the body comes next

    def _upgrade(self, conn: Any, frame: HttpRequest, chunked: bool) -> Action | None:
        """`GET /ws`: the WebSocket opening handshake, then the hand-over."""
        websocket = self._websocket
        response = None
        if not chunked and not frame.body:
            response = websocket.handshake_response(bytes(frame.head))
        if response is None:
            self._fail(refusal(HeadError(400, "not a WebSocket opening handshake")))
            return None
        # The answers so far, then the 101, go out now: from here on the WebSocket
        # handler writes its own, before this on_traffic call returns.
        out = self._out
        out.append(response)
        conn.write(b"".join(out))
        out.clear()
        conn.context = websocket.Session()
        self._echo.switch(conn, self._websocket_frames)
        return self.hand_over(conn, self._echo)

    def _respond(
        self,
        method: bytes,
        target: bytes,
        http11: bool,
        keep_alive: bool,
        body: bytes,
    ) -> None:
        self._out.append(self._response(method, target, http11, keep_alive, body))
        if not keep_alive:
            self._closing = True

    def _response(
        self,
        method: bytes,
        target: bytes,
        http11: bool,
        keep_alive: bool,
        body: bytes,
    ) -> bytes:
        """The answer to an accepted request (not an upgrade), by its route."""
        path = target if target == b"/plaintext" else target.partition(b"?")[0]
        if path == b"/plaintext" and (method == b"GET" or method == b"HEAD"):
            mode = (1 if http11 else 2) if keep_alive else 0
            if method == b"GET":
                return self._plaintext[mode]
            return self._plaintext_heads[mode]
        if path == b"/echo" and (method == b"POST" or method == b"PUT"):
            return self._answer(body, http11, keep_alive)
        return NOT_ALLOWED.get(path, NOT_FOUND)[keep_alive]

    def _answer(self, body: bytes, http11: bool, keep_alive: bool) -> bytes:
        if not keep_alive:
            connection = b"Connection: close\r\n"
        elif not http11:
            connection = b"Connection: keep-alive\r\n"
        else:
            connection = b""
        return b"".join(
            (
                b"HTTP/1.1 200 OK\r\nServer: ",
                SERVER_NAME,
                b"\r\nDate: ",
                self.date,
                b"\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n"
                % len(body),
                connection,
                b"\r\n",
                body,
            )
        )

    def _fail(self, answer: bytes) -> None:
        """Answer an unusable request, then close (later pipelined requests are ignored)."""
        self._out.append(answer)
        self._closing = True


def _takes_body(method: bytes, target: bytes) -> bool:
    """Whether the request's body is used (worth a `100 Continue`)."""
    path = target.partition(b"?")[0]
    return path == b"/echo" and (method == b"POST" or method == b"PUT")
