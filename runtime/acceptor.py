"""Accepting stream connections on a listening socket (TCP or unix)."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from .conn import Conn

if TYPE_CHECKING:  # pragma: no cover
    from .address import Address
    from .eventloop import EventLoop

ACCEPT_BATCH = 64  # accepts per readiness event, so traffic is not starved
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Acceptor:
    """Turns readiness of a listening socket into `Conn`s on its loop."""

    stream = True

    def __init__(
        self, loop: "EventLoop", sock: socket.socket, address: "Address"
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.address = address
        self._tcp = address.network == "tcp"
        self._backoff = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_event(self, events: int) -> None:
        loop = self.loop
        accept = self.sock.accept
        conns = loop._conns
        limit = loop._max_conns
        tcp = self._tcp
        for _ in range(ACCEPT_BATCH):
            if limit and len(conns) >= limit:
                loop._pause_accepting()  # resumed when a connection closes
                return
            try:
                sock, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    # Out of descriptors: stop accepting briefly instead of spinning.
                    loop.logger.warning(
                        "protogen: accept on %s failed: %s", self.address.url, exc
                    )
                    loop._pause_accepting()
                    loop.call_later(0.1, loop._resume_accepting)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(False)
            if tcp:
                loop.configure_socket(sock)
            loop._open(Conn(loop, sock, addr))

    def close(self) -> None:
        self.sock.close()
