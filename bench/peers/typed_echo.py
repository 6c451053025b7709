"""A user handler for the generated echo server: every frame is delivered as a typed
`Message`, answered with a new `Message` through `self.send`, one callback per
frame (`protogen-typed` peers; `uvloop-typed` is the same by hand)."""

from __future__ import annotations

from typing import Any

from echo_codec import Message
from echo_handler import EchoHandler


class TypedEcho(EchoHandler):
    def on_message(self, conn: Any, frame: Message) -> None:
        self.send(conn, Message(frame.payload))
