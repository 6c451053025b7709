"""A user handler for the generated echo server: every frame is delivered as a typed
`Message` and sent back re-encoded, one callback per frame (`protogen-typed` peer)."""

from __future__ import annotations

from typing import Any

from echo_codec import Message
from echo_handler import EchoHandler


class TypedEcho(EchoHandler):
    def on_message(self, conn: Any, frame: Message) -> None:
        self.send(conn, frame)
