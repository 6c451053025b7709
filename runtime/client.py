"""Client: outbound connections on their own event loop (a background thread).

    client = Client(handler, tcp_no_delay=True)
    client.start()
    conn = client.dial("tcp://127.0.0.1:9000")   # returns at once
    ...                                            # on_open / on_close(conn, err)
    client.stop()

dial() never blocks on the network: the connect completes on the loop and its
outcome reaches the handler (on_open on success; on_close(conn, err) with the
OSError on failure, on_open is then never called).
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

from .address import parse_address
from .conn import Conn, DatagramConn
from .engine import Engine
from .handler import EventHandler
from .options import Options


class Client:
    def __init__(self, handler: EventHandler, **options: Any) -> None:
        options.setdefault("install_signal_handlers", False)
        self.options = Options.from_kwargs(**options)
        self.handler = handler
        self.engine = Engine(handler, (), self.options)
        self.loop = self.engine.loop
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ssl_context: ssl.SSLContext | None = None  # made on the first tls dial
        self._tls_scratch: memoryview | None = None  # ciphertext reads (loop thread)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "Client":
        """Start the loop thread (dial/enroll start it on first use too)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self.engine.run, name="protogen-client", daemon=True
                )
                self._thread.start()
        self.engine.wait_started(10.0)
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Close every connection gracefully and stop the loop thread."""
        if self._thread is None:
            return
        self.engine.stop()
        self._thread.join(timeout)

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ connections
    def dial(
        self,
        url: str,
        context: Any = None,
        *,
        server_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        session: ssl.SSLSession | None = None,
    ) -> Conn:
        """Connect to `url` (tcp/tcp4/tcp6/udp/udp4/udp6/unix, tls/tls4/tls6/
        unix+tls) without blocking.

        The returned conn is usable once on_open ran for it; `context` is set on
        it before any callback. Over TLS on_open runs once the handshake
        completed; the server's certificate is verified (against the tls_ca
        option, else the system's CAs) for `server_hostname` (default: the
        URL's host). `ssl_context` replaces the client's context for this dial;
        `session` (a previous conn's `conn.transport.session`) resumes it.
        """
        if self._thread is None:
            self.start()
        address = parse_address(url)
        transport = None
        if address.tls:
            transport = self._tls_client(address, server_hostname, ssl_context, session)
        sock = socket.socket(address.family, address.socktype)
        try:
            sock.setblocking(False)
            if address.network == "udp":
                sock.connect(address.sockaddr)  # no handshake: immediate
                return self.loop.enroll(
                    sock, address.sockaddr, context=context, conn_class=DatagramConn
                )
            err = sock.connect_ex(address.sockaddr)
        except BaseException:
            sock.close()
            raise
        return self.loop.dial(
            sock, address.sockaddr, err, context=context, transport=transport
        )

    def _tls_client(
        self,
        address: Any,
        server_hostname: str | None,
        ssl_context: ssl.SSLContext | None,
        session: ssl.SSLSession | None,
    ) -> Any:
        from .tls import RECV_SIZE, TLSClient, client_context

        if ssl_context is None:
            with self._lock:
                if self._ssl_context is None:
                    self._ssl_context = client_context(self.options)
                ssl_context = self._ssl_context
        if server_hostname is None:
            server_hostname = address.host
            if server_hostname is None and ssl_context.check_hostname:
                raise ValueError(
                    f"{address.url}: pass server_hostname= (the name the server's "
                    "certificate must carry)"
                )
        if self._tls_scratch is None:
            self._tls_scratch = memoryview(bytearray(RECV_SIZE))
        return TLSClient(
            ssl_context,
            server_hostname,
            self._tls_scratch,
            self.options.tls_handshake_timeout,
            session,
        )

    def enroll(self, sock: socket.socket, context: Any = None) -> Conn:
        """Adopt an already connected socket; on_open fires on the loop."""
        if self._thread is None:
            self.start()
        conn_class = DatagramConn if sock.type == socket.SOCK_DGRAM else Conn
        return self.loop.enroll(sock, context=context, conn_class=conn_class)

    def count_connections(self) -> int:
        return self.engine.count_connections()

    def stats(self) -> Any:
        return self.engine.stats()


__all__ = ["Client"]
