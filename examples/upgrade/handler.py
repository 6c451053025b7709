"""The upgrade example: HTTP/1.1 requests, and WebSocket after an upgrade.

A connection starts in the spec's `Requests` phase. `GET /ws` with a valid
WebSocket opening handshake (RFC 6455 section 4.2) is answered `101 Switching
Protocols`, and `hand_over` gives the connection to the WebSocket example's
`EchoServer` (its own generated handler, its own spec) in its `Frames` phase:
the bytes after the request, already buffered or not, are WebSocket frames.
Any other request gets a small `200` (or `404`); a bad handshake, or bytes that
are no request (a WebSocket frame before the upgrade), `400` and close.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from upgrade_codec import Request
from upgrade_handler import UpgradeHandler

from protogen.errors import ProtocolError
from protogen.runtime import Action, Conn

__all__ = ["UpgradeExample"]

WEBSOCKET = Path(__file__).resolve().parent.parent / "websocket"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def websocket_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """The WebSocket example's generated modules and its handler module."""
    sys.path.insert(0, str(WEBSOCKET.parent))
    from example_server import load_example

    return load_example(WEBSOCKET, "websocket.proto.dsl")


class UpgradeExample(UpgradeHandler):
    """Plain HTTP answers; WebSocket echo after `GET /ws` upgrades."""

    def __init__(self) -> None:
        super().__init__()
        modules, websocket = websocket_example()
        self.websocket = websocket
        self.websocket_phase = modules["handler"].Phase
        self.echo = websocket.EchoServer()
        # The loop lets a connection buffer one whole frame of its handler: after an
        # upgrade that is a WebSocket frame (4 MiB), not a request head (64 KiB).
        self.max_frame = max(self.max_frame, self.echo.max_frame)

    def on_request(self, conn: Conn, frame: Request) -> Action | None:
        head = bytes(frame.head)
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            conn.write(self.websocket.BAD_REQUEST)
            return Action.CLOSE
        target = request_line[1]
        if target == b"/ws":
            response = self.websocket.handshake_response(head)
            if response is None:
                conn.write(self.websocket.BAD_REQUEST)
                return Action.CLOSE
            conn.write(response)
            conn.context = self.websocket.Session()
            self.echo.switch(conn, self.websocket_phase.Frames)
            return self.hand_over(conn, self.echo)
        if target != b"/":
            conn.write(NOT_FOUND)
            return None
        body = b"WebSocket echo at /ws\n"
        conn.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        return None

    def on_protocol_error(self, conn: Conn, err: ProtocolError) -> Action:
        conn.write(self.websocket.BAD_REQUEST)
        return Action.CLOSE
