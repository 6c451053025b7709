"""Accepting stream connections on a listening socket (TCP or unix)."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any, Callable

from .conn import Conn

if TYPE_CHECKING:  # pragma: no cover
    from .address import Address
    from .eventloop import EventLoop

ACCEPT_BATCH = 64  # accepts per readiness event, so traffic is not starved
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Distinct peer host strings an acceptor shares between its connections. accept()
# returns a new host string per connection: 10 000 idle connections from one
# proxy or client would hold 10 000 equal copies (58 bytes each for an IPv4
# address, a tenth of an idle connection's memory). Bounded: a flood of distinct
# addresses only refills the table.
SHARED_HOSTS = 4096


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
        # transport(conn) -> the object the loop reads/writes through (TLS, PROXY
        # protocol...); None: the socket itself.
        self.transport: Callable[[Conn], Any] | None = None
        # open_conn(sock, addr, transport=...): the loop's open, or a stage
        # before it (the PROXY protocol gate).
        self.open_conn: Callable[..., Any] = loop.open
        self._hosts: dict[str, str] = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def on_event(self, events: int) -> None:
        loop = self.loop
        accept = self.sock.accept
        open_conn = self.open_conn
        tcp = self._tcp
        wrap = self.transport
        hosts = self._hosts
        for _ in range(ACCEPT_BATCH):
            if loop.at_capacity():
                loop.pause_accepting()  # resumed when a connection closes
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
                    loop.pause_accepting(retry_after=0.1)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(False)
            if tcp:
                loop.configure_socket(sock)
                host = addr[0]
                shared = hosts.get(host)
                if shared is None:
                    if len(hosts) >= SHARED_HOSTS:
                        hosts.clear()
                    hosts[host] = host
                else:
                    addr = (shared, *addr[1:])
            open_conn(sock, addr, transport=wrap)

    def close(self) -> None:
        self.sock.close()
