"""The PROXY protocol stage in front of a loop's stream connections.

With `proxy_protocol=True`, an accepted socket is not a connection yet: the
gate watches it until its PROXY header is complete, then hands it to the loop
(`EventLoop.open`) with `remote_addr` set to the client the header announces
and `conn.proxy` holding the header, so `on_open` already sees the real
client and the handler never sees a header byte. The socket is read with
MSG_PEEK and only the header's bytes are consumed (`ProxyHeaderParser` says
how many), so the bytes behind the header stay in the kernel and reach the
loop's one receive path like any others; a TLS transport installed on the
acceptor starts on them, as it must (the header precedes the handshake).

A peer outside `proxy_from`, a header that is not valid, or one that is not
complete within `proxy_header_timeout` closes the socket (logged at INFO,
rate-limited); other connections are not affected.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .conn import Conn
from .proxy import ProxyHeader, ProxyHeaderError, ProxyHeaderParser
from .ratelog import log_protocol_error

if TYPE_CHECKING:  # pragma: no cover
    from .eventloop import EventLoop
    from .options import Options

__all__ = ["ProxiedConn", "ProxyGate", "ProxyHeaderTimeout", "ProxySourceRefused"]

PEEK_SIZE = 536  # a v1 line or a v2 header with the usual TLVs in one peek


class ProxiedConn(Conn):
    """A connection that began with a PROXY header (`proxy`)."""

    __slots__ = ("proxy",)


class ProxyHeaderTimeout(ProxyHeaderError):
    """The PROXY header was not complete within proxy_header_timeout."""


class ProxySourceRefused(ProxyHeaderError):
    """A peer outside the proxy_from networks connected."""


class _Waiting:
    """An accepted socket whose header is still arriving."""

    __slots__ = ("parser", "remote_addr", "sock", "timer", "transport")

    def __init__(self, sock: socket.socket, remote_addr: Any, transport: Any) -> None:
        self.sock = sock
        self.remote_addr = remote_addr  # the proxy's address until the header says
        self.transport = transport
        self.parser = ProxyHeaderParser()
        self.timer: Any = None

    def __repr__(self) -> str:
        return f"<PROXY header from {self.remote_addr!r}>"


class ProxyGate:
    """Reads PROXY headers of accepted sockets on `loop`, then opens them there.

    `begin(sock, addr, transport=...)` has `EventLoop.open`'s signature, so an
    acceptor calls it instead (`Acceptor.open_conn`). Loop thread only.
    """

    def __init__(self, loop: EventLoop, options: Options) -> None:
        self.loop = loop
        self.timeout = options.proxy_header_timeout
        self.networks = [
            ipaddress.ip_network(network, strict=False)
            for network in options.proxy_from
        ]
        self._waiting: dict[int, _Waiting] = {}
        self.accepted = 0  # headers read: connections handed to the loop
        self.refused = 0  # sockets closed: bad or late header, refused source
        # Observers of refused sockets (metrics): watcher(exc).
        self.refusal_watchers: list[Callable[[BaseException], Any]] = []

    def pending(self) -> int:
        return len(self._waiting)

    def allowed(self, remote_addr: Any) -> bool:
        """May this peer send PROXY headers? Unix peers always may (the socket
        file's permissions decide who connects)."""
        if not self.networks or not isinstance(remote_addr, tuple):
            return True
        try:
            ip = ipaddress.ip_address(remote_addr[0].split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def begin(
        self,
        sock: socket.socket,
        remote_addr: Any,
        *,
        transport: Callable[[Conn], Any] | None = None,
    ) -> None:
        if not self.allowed(remote_addr):
            self._refuse_socket(
                sock, remote_addr, ProxySourceRefused("not in the proxy_from networks")
            )
            return
        waiting = _Waiting(sock, remote_addr, transport)
        fd = sock.fileno()
        self._waiting[fd] = waiting
        waiting.timer = self.loop.call_later(self.timeout, self._expire, waiting)
        self.loop.add_reader(fd, lambda _events: self._readable(waiting))
        self._readable(waiting)  # proxies send the header at once: often here

    def close(self) -> None:
        """Close every socket still waiting (the loop is shutting down)."""
        for waiting in list(self._waiting.values()):
            self._forget(waiting)
            waiting.sock.close()

    # ------------------------------------------------------------ internals
    def _readable(self, waiting: _Waiting) -> None:
        sock = waiting.sock
        parser = waiting.parser
        try:
            data = sock.recv(max(parser.room(), PEEK_SIZE), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop(waiting, exc)
            return
        if not data:
            self._drop(waiting, ProxyHeaderError("closed before its PROXY header"))
            return
        try:
            used = parser.feed(data)
        except ProxyHeaderError as exc:
            self._drop(waiting, exc)
            return
        try:
            sock.recv(used)  # exactly the header's bytes: they were peeked
        except OSError as exc:
            self._drop(waiting, exc)
            return
        header = parser.header
        if header is not None:
            self._forget(waiting)
            self._open(waiting, header)

    def _open(self, waiting: _Waiting, header: ProxyHeader) -> None:
        self.accepted += 1
        inner = waiting.transport

        def attach(conn: Conn) -> Any:
            conn.proxy = header  # before on_open, like remote_addr
            return inner(conn) if inner is not None else conn.sock

        remote = waiting.remote_addr
        if header.command == "PROXY" and header.source is not None:
            remote = header.source
        self.loop.open(waiting.sock, remote, conn_class=ProxiedConn, transport=attach)

    def _expire(self, waiting: _Waiting) -> None:
        waiting.timer = None
        if waiting.sock.fileno() in self._waiting:
            self._drop(
                waiting,
                ProxyHeaderTimeout(
                    f"no complete PROXY header within {self.timeout:g} s"
                ),
            )

    def _forget(self, waiting: _Waiting) -> None:
        fd = waiting.sock.fileno()
        if self._waiting.pop(fd, None) is not None:
            self.loop.remove_reader(fd)
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None

    def _drop(self, waiting: _Waiting, exc: BaseException) -> None:
        self._forget(waiting)
        self._refuse_socket(waiting.sock, waiting.remote_addr, exc)

    def _refuse_socket(
        self, sock: socket.socket, remote_addr: Any, exc: BaseException
    ) -> None:
        self.refused += 1
        log_protocol_error(self.loop.logger, _Peer(remote_addr), exc)
        for watcher in self.refusal_watchers:
            watcher(exc)
        sock.close()


class _Peer:
    __slots__ = ("remote_addr",)

    def __init__(self, remote_addr: Any) -> None:
        self.remote_addr = remote_addr
