"""The echo service on the benchmark protocol (`echo.proto.dsl`).

    protogen serve examples/echo.proto.dsl --handler examples.echo_service:EchoService

Every `Message` (a 4-byte big-endian length, then the payload) is sent straight
back. Unlike the generated `EchoEchoHandler` that `protogen serve` uses without
`--handler`, this one also counts what it serves: frames and payload bytes per
connection (in `conn.context`) and in total, printed when the server stops.

The payload is a zero-copy view of the connection's input buffer. Writing it
back during the callback is safe: the runtime sends (or copies) queued data
before that buffer is reused. Keeping it for later needs `bytes(frame.payload)`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from echo_codec import Message
from echo_handler import EchoHandler

from protogen.runtime import Action

__all__ = ["EchoService", "Traffic"]


@dataclass
class Traffic:
    frames: int = 0
    payload_bytes: int = 0


class EchoService(EchoHandler):
    """Echoes every frame and keeps per-connection and total counters."""

    def __init__(self) -> None:
        super().__init__()
        self.total = Traffic()
        self.connections = 0

    def on_open(self, conn: Any) -> tuple[bytes | None, Action]:
        conn.context = Traffic()
        self.connections += 1
        return None, Action.NONE

    def on_message(self, conn: Any, frame: Message) -> None:
        traffic: Traffic = conn.context
        traffic.frames += 1
        traffic.payload_bytes += len(frame.payload)
        self.send(conn, frame)

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        traffic = conn.context
        if isinstance(traffic, Traffic):  # None if the close came before on_open
            self.total.frames += traffic.frames
            self.total.payload_bytes += traffic.payload_bytes
        return super().on_close(conn, err)

    def on_shutdown(self, engine: Any) -> None:
        print(
            f"echo: {self.connections} connections, {self.total.frames} frames,"
            f" {self.total.payload_bytes} payload bytes",
            file=sys.stderr,
        )
