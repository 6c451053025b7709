"""Per-connection access log (the access_log option).

One INFO line on logger `protogen.access` when a connection closes: remote
address (the client a PROXY header announced, if any), duration, bytes in and
out, and why it closed. The structured fields are on the record too
(`extra`), so `--log-format json` writes them as JSON keys.

Bytes are counted by a transport wrapping the connection's own (installed by
a loop watcher before `on_open`), so the loop's hot path pays nothing when
the log is off, and one Python call per recv/send when it is on.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .ratelog import _peer

if TYPE_CHECKING:  # pragma: no cover
    from .conn import Conn
    from .eventloop import EventLoop

__all__ = ["AccessLog", "CountingTransport"]

LOGGER = "protogen.access"


class CountingTransport:
    """Passes every call to `inner`, counting the bytes each way."""

    __slots__ = ("inner", "received", "sent", "started")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.received = 0
        self.sent = 0
        self.started = time.monotonic()

    def recv_into(self, buffer: Any) -> int:
        n: int = self.inner.recv_into(buffer)
        self.received += n
        return n

    def send(self, data: Any) -> int:
        n: int = self.inner.send(data)
        self.sent += n
        return n

    def sendmsg(self, chunks: Any) -> int:
        n: int = self.inner.sendmsg(chunks)
        self.sent += n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # what a TLS layer offers beyond that


class AccessLog:
    """Watches `loop`'s connections and logs each one's close."""

    def __init__(self, loop: EventLoop, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(LOGGER)
        loop.watch(opened=self.opened, closed=self.closed)

    def opened(self, conn: Conn) -> None:
        if not conn.datagram:
            conn.transport = CountingTransport(conn.transport)

    def closed(self, conn: Conn, err: BaseException | None) -> None:
        counter = conn.transport
        if type(counter) is not CountingTransport or not self.logger.isEnabledFor(
            logging.INFO
        ):
            return
        duration = time.monotonic() - counter.started
        reason = "closed" if err is None else f"{type(err).__name__}: {err}"
        peer = conn.remote_addr
        remote = _peer(peer) if peer is not None else "unknown"
        self.logger.info(
            "%s %.3fs in=%d out=%d %s",
            remote,
            duration,
            counter.received,
            counter.sent,
            reason,
            extra={
                "remote": remote,
                "duration": round(duration, 6),
                "bytes_in": counter.received,
                "bytes_out": counter.sent,
                "reason": reason,
                "proxied": conn.proxy is not None,
            },
        )
