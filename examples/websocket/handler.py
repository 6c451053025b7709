"""The WebSocket example: an echo server on raw RFC 6455 frames.

`websocket.proto.dsl` describes the frames completely: FIN, the reserved bits,
the opcode, the mask bit, the 7-bit length with its 16- and 64-bit escapes
(shortest form only), the masking key and the masked payload, control frames
unfragmented and at most 125 bytes. The generated codec decodes a
`ClientFrame` (payload unmasked, all checked) and encodes a `ServerFrame`
(every length form chosen from the payload); the generated handler calls one
method per opcode. This subclass adds what lies beyond one frame:

- the opening handshake (section 4.2), the spec's `Opening` phase: a GET with
  `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a key, answered
  `101 Switching Protocols` with its `Sec-WebSocket-Accept`, then a switch to
  the `Frames` phase (else `400` and close: a frame sent before the upgrade is
  no request head);
- messages: text and binary frames, fragmented with continuation frames, are
  reassembled (at most MAX_MESSAGE bytes, else close 1009) and echoed as one
  frame; a text message must be UTF-8 (else close 1007);
- ping -> pong with the same payload; pong ignored;
- the closing handshake: the close frame's status code and reason
  (`ClosePayload` in the spec) are checked and echoed (1002 for a bad code,
  1007 for a reason that is not UTF-8), then the connection closes;
- a frame that breaks the protocol (unmasked, reserved bits, bad opcode,
  non-minimal length, fragmented control frame...) is answered with close 1002
  (1009 when it is larger than the limit) and the connection closes.
"""

from __future__ import annotations

import base64
import hashlib

from websocket_codec import ClientFrame, ClosePayload, Handshake, Opcode, ServerFrame
from websocket_handler import Phase, WebsocketHandler

from protogen.errors import FrameTooLarge, ProtocolError
from protogen.runtime import Action, Conn

__all__ = ["EchoServer", "Session", "accept_key", "handshake_response"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
MAX_MESSAGE = 16 * 1024 * 1024
# Status codes (section 7.4.1).
NORMAL, PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1000, 1002, 1007, 1009

BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def handshake_response(head: bytes) -> bytes | None:
    """The 101 answer to an opening handshake request head, or None if invalid."""
    lines = head.split(b"\r\n")
    request = lines[0].split(b" ")
    if len(request) != 3 or request[0] != b"GET" or request[2] != b"HTTP/1.1":
        return None
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        fields[name.strip().lower()] = value.strip()
    connection = {
        token.strip().lower() for token in fields.get(b"connection", b"").split(b",")
    }
    key = fields.get(b"sec-websocket-key", b"")
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        valid_key = False
    if (
        fields.get(b"upgrade", b"").lower() != b"websocket"
        or b"upgrade" not in connection
        or fields.get(b"sec-websocket-version") != b"13"
        or not valid_key
    ):
        return None
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n"
    )


def close_frame(code: int | None, reason: str = "") -> ServerFrame:
    payload = b"" if code is None else ClosePayload(code, reason).encode()
    return ServerFrame(fin=1, opcode=Opcode.close, payload=payload)


class Session:
    """One upgraded connection: the message being reassembled."""

    __slots__ = ("opcode", "parts", "size")

    def __init__(self) -> None:
        self.opcode: Opcode | None = None  # text or binary while fragments arrive
        self.parts: list[bytes] = []
        self.size = 0


class EchoServer(WebsocketHandler):
    """Echoes every text and binary message; answers pings and the close handshake."""

    # The opening handshake --------------------------------------------------------

    def on_handshake(self, conn: Conn, frame: Handshake) -> Action | None:
        response = handshake_response(bytes(frame.head))
        if response is None:
            conn.write(BAD_REQUEST)
            return Action.CLOSE
        conn.write(response)
        conn.context = Session()
        self.switch(conn, Phase.Frames)  # the bytes after the head are frames
        return None

    # Messages ------------------------------------------------------------------------

    def on_text(self, conn: Conn, frame: ClientFrame) -> Action | None:
        return self._start(conn, frame)

    def on_binary(self, conn: Conn, frame: ClientFrame) -> Action | None:
        return self._start(conn, frame)

    def on_continuation(self, conn: Conn, frame: ClientFrame) -> Action | None:
        session: Session = conn.context
        if session.opcode is None:
            return self._fail(conn, PROTOCOL_ERROR, "continuation without a message")
        return self._add(conn, session, frame)

    def _start(self, conn: Conn, frame: ClientFrame) -> Action | None:
        session: Session = conn.context
        if session.opcode is not None:
            return self._fail(
                conn, PROTOCOL_ERROR, "new message inside a fragmented one"
            )
        session.opcode = frame.opcode
        return self._add(conn, session, frame)

    def _add(self, conn: Conn, session: Session, frame: ClientFrame) -> Action | None:
        session.size += len(frame.payload)
        if session.size > MAX_MESSAGE:
            return self._fail(conn, TOO_BIG, "message too big")
        session.parts.append(frame.payload)
        if not frame.fin:
            return None
        opcode = session.opcode
        message = (
            b"".join(session.parts) if len(session.parts) > 1 else session.parts[0]
        )
        session.opcode, session.parts, session.size = None, [], 0
        assert opcode is not None
        if opcode == Opcode.text:
            try:
                message.decode("utf-8")
            except UnicodeDecodeError:
                return self._fail(conn, INVALID_DATA, "text message is not UTF-8")
        self.send(conn, ServerFrame(fin=1, opcode=opcode, payload=message))
        return None

    # Control frames ------------------------------------------------------------------

    def on_ping(self, conn: Conn, frame: ClientFrame) -> Action | None:
        self.send(conn, ServerFrame(fin=1, opcode=Opcode.pong, payload=frame.payload))
        return None

    def on_pong(self, conn: Conn, frame: ClientFrame) -> Action | None:
        return None  # we send no pings: an unsolicited pong is allowed and ignored

    def on_opcode_close(self, conn: Conn, frame: ClientFrame) -> Action | None:
        if not frame.payload:
            self.send(conn, close_frame(None))
            return Action.CLOSE
        if len(frame.payload) == 1:
            return self._fail(conn, PROTOCOL_ERROR, "1-byte close payload")
        try:
            status = ClosePayload.decode(frame.payload)
        except ProtocolError as err:
            bad_text = "UTF-8" in str(err)
            return self._fail(
                conn, INVALID_DATA if bad_text else PROTOCOL_ERROR, str(err)
            )
        self.send(conn, close_frame(status.code, status.reason))
        return Action.CLOSE

    def on_client_frame(self, conn: Conn, frame: ClientFrame) -> Action | None:
        return self._fail(conn, PROTOCOL_ERROR, "unknown opcode")

    def on_protocol_error(self, conn: Conn, err: ProtocolError) -> Action:
        if self.phase(conn) is Phase.Opening:  # a request head over 8 KiB
            conn.write(BAD_REQUEST)
            return Action.CLOSE
        code = TOO_BIG if isinstance(err, FrameTooLarge) else PROTOCOL_ERROR
        return self._fail(conn, code, str(err))

    def _fail(self, conn: Conn, code: int, reason: str) -> Action:
        """Close with a status code (the reason is cut to fit a control frame)."""
        self.send(
            conn, close_frame(code, reason.encode()[:100].decode("utf-8", "ignore"))
        )
        return Action.CLOSE
