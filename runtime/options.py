"""Engine and client options: one dataclass, documented defaults, strict validation.

Unknown option names are a TypeError naming them; bad values are a ValueError
naming the option. Nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import resource
import ssl
import warnings
from dataclasses import InitVar, dataclass, field, fields
from typing import Any

KIB = 1024
MIB = 1024 * KIB

# "reuseport": every worker binds its own SO_REUSEPORT listener (multicore.py).
LOAD_BALANCING = ("round_robin", "least_connections", "source_addr_hash", "reuseport")


@dataclass
class Options:
    # Inbound: bytes of unfinished frames a connection may hold (its handler's
    # max_frame raises it); beyond it the connection closes with FrameTooLarge (and
    # so does a peek() asking for more). The loop-wide budget bounds their sum.
    max_buffered_per_conn: int = field(
        default=1 * MIB,
        metadata={
            "help": "max bytes of unfinished frames per connection (at least the handler's max_frame); beyond it the connection closes with FrameTooLarge",
            "cli": True,
        },
    )
    max_buffered_total: int = field(
        default=256 * MIB,
        metadata={
            "help": "per event loop: max bytes all connections' unfinished frames may hold; a connection needing more closes with BufferBudgetExceeded",
            "cli": True,
        },
    )
    # Outbound: queued-but-unsent bytes beyond this close the connection with
    # OutboundOverflow (a peer that never reads cannot exhaust memory).
    write_buffer_cap: int = field(
        default=64 * MIB,
        metadata={
            "help": "max queued outbound bytes per connection; beyond it the connection closes with OutboundOverflow",
            "cli": True,
        },
    )
    # Backpressure: above the high mark reading stops until the queue drains
    # below the low mark (see EventHandler.on_write_pause / Conn.is_write_paused).
    write_high_water: int = field(
        default=256 * KIB,
        metadata={
            "help": "queued outbound bytes above which reading the connection pauses (backpressure)",
            "cli": True,
        },
    )
    write_low_water: int = field(
        default=64 * KIB,
        metadata={
            "help": "queued outbound bytes at or below which reading resumes",
            "cli": True,
        },
    )
    tcp_no_delay: bool = field(
        default=True,
        metadata={"help": "TCP_NODELAY on TCP connections", "cli": True},
    )
    # Keep-alive: idle seconds before probes (None = off), probe interval, count.
    tcp_keepalive: float | None = field(
        default=None,
        metadata={
            "help": "TCP keep-alive: idle seconds before the first probe (none = off)",
            "cli": True,
        },
    )
    tcp_keepalive_interval: float | None = field(
        default=None,
        metadata={
            "help": "TCP keep-alive: seconds between probes (none = OS default)",
            "cli": True,
        },
    )
    tcp_keepalive_count: int | None = field(
        default=None,
        metadata={
            "help": "TCP keep-alive: unanswered probes before the connection drops (none = OS default)",
            "cli": True,
        },
    )
    socket_recv_buffer: int | None = field(
        default=None,
        metadata={
            "help": "SO_RCVBUF of listeners, inherited by accepted sockets (none = OS default)",
            "cli": True,
        },
    )
    socket_send_buffer: int | None = field(
        default=None,
        metadata={
            "help": "SO_SNDBUF of listeners, inherited by accepted sockets (none = OS default)",
            "cli": True,
        },
    )
    reuse_addr: bool = field(
        default=True,
        metadata={"help": "SO_REUSEADDR on listeners", "cli": True},
    )
    reuse_port: bool = field(
        default=False,
        metadata={"help": "SO_REUSEPORT on listeners", "cli": True},
    )
    backlog: int = field(
        default=4096,
        metadata={
            "help": "listen backlog (pending connections the kernel queues)",
            "cli": True,
        },
    )
    # Connections edge-triggered (EPOLLET / EV_CLEAR): None picks it wherever the
    # poller supports it (epoll, kqueue; selectors is level-triggered only).
    # Listeners and wakers are always level-triggered.
    edge_triggered: bool | None = field(
        default=None,
        metadata={
            "help": "edge-triggered polling of connections (auto: wherever the poller can)",
            "cli": True,
        },
    )
    # Poller backend: "auto", "epoll", "kqueue" or "selectors".
    poller: str = field(
        default="auto",
        metadata={
            "help": "poller backend",
            "cli": True,
            "choices": ("auto", "epoll", "kqueue", "selectors"),
        },
    )
    ticker: bool = field(
        default=False,
        metadata={
            "help": "call the handler's on_tick periodically (its return value sets the next delay)",
            "cli": True,
        },
    )
    logger: logging.Logger | None = field(
        default=None,
        metadata={"help": "where the runtime logs", "cli": False},
    )
    # Multi-core (delegated to protogen.runtime.multicore when loops > 1 or multicore).
    loops: int = field(
        default=1,
        metadata={
            "help": "event loops; more than 1 runs that many worker processes",
            "cli": True,
        },
    )
    multicore: bool = field(
        default=False,
        metadata={"help": "one event loop (worker process) per CPU core", "cli": True},
    )
    load_balancing: str = field(
        default="round_robin",
        metadata={
            "help": "how connections are spread over the event loops",
            "cli": True,
            "choices": LOAD_BALANCING,
            "flags": ("--lb",),
            "metavar": "POLICY",
            "aliases": {"source_hash": "source_addr_hash"},
        },
    )
    # Robustness.
    max_connections: int | None = field(
        default=None,
        metadata={
            "help": "connections per event loop; at the limit accepting pauses (none = the open-file limit less a reserve, 0 = unlimited)",
            "cli": True,
        },
    )
    idle_timeout: float | None = field(
        default=300.0,
        metadata={
            "help": "close a connection after this many seconds without bytes in or out (none = never)",
            "cli": True,
        },
    )
    read_timeout: float | None = field(
        default=30.0,
        metadata={
            "help": "close a connection whose unfinished frame sits unconsumed this many seconds (none = never)",
            "cli": True,
        },
    )
    max_frames_per_callback: int = field(
        default=64,
        metadata={
            "help": "frames a generated handler decodes per callback before the loop serves other connections",
            "cli": True,
        },
    )
    drain_timeout: float = field(
        default=5.0,
        metadata={
            "help": "graceful close and shutdown: max seconds to flush queued output",
            "cli": True,
        },
    )
    fatal_handler_errors: bool = field(
        default=False,
        metadata={
            "help": "a handler callback raising stops the server, not only its connection",
            "cli": True,
        },
    )
    unix_mode: int | None = field(
        default=None,
        metadata={
            "help": "file mode of unix socket files, octal like 600 (none = umask)",
            "cli": True,
            "unit": "mode",
        },
    )
    # Engine internals.
    install_signal_handlers: bool = field(
        default=True,
        metadata={
            "help": "SIGINT/SIGTERM stop the engine gracefully (main thread only)",
            "cli": False,
        },
    )

    # -- TLS -- (tls://, tls4://, tls6://, unix+tls:// listeners and dials; see docs/tls.md)
    tls_cert: str | None = field(
        default=None,
        metadata={
            "help": "TLS: certificate chain file (PEM) of tls:// listeners; of a client, its client certificate",
            "cli": True,
            "metavar": "FILE",
        },
    )
    tls_key: str | None = field(
        default=None,
        metadata={
            "help": "TLS: private key file (PEM) of --tls-cert (none = in the certificate file)",
            "cli": True,
            "metavar": "FILE",
        },
    )
    tls_ca: str | None = field(
        default=None,
        metadata={
            "help": "TLS: CA file (PEM); a listener then requires client certificates signed by it (mTLS); a client verifies servers with it",
            "cli": True,
            "metavar": "FILE",
        },
    )
    tls_ciphers: str | None = field(
        default=None,
        metadata={
            "help": "TLS: OpenSSL cipher list for TLS 1.2 (none = OpenSSL's defaults; TLS 1.3 suites are always on)",
            "cli": True,
            "metavar": "LIST",
        },
    )
    tls_alpn: str | list[str] | None = field(
        default=None,
        metadata={
            "help": "TLS: ALPN protocols offered, comma-separated in preference order, e.g. h2,http/1.1 (a list in Python)",
            "cli": True,
            "metavar": "LIST",
        },
    )
    tls_handshake_timeout: float | None = field(
        default=10.0,
        metadata={
            "help": "TLS: close a connection whose handshake has not finished after this many seconds (none = never)",
            "cli": True,
        },
    )
    tls_session_tickets: bool = field(
        default=True,
        metadata={
            "help": "TLS: issue session tickets (resumption without a full handshake)",
            "cli": True,
        },
    )
    # A ready context instead of the files above (listeners: PROTOCOL_TLS_SERVER).
    ssl_context: ssl.SSLContext | None = field(
        default=None,
        metadata={"help": "TLS: a ready ssl.SSLContext", "cli": False},
    )
    # SNI: {name: (cert, key)} or a callable name -> SSLContext | None (None: the
    # default certificate). "*.example.com" matches one label.
    tls_sni: Any = field(
        default=None,
        metadata={"help": "TLS: certificate per SNI server name", "cli": False},
    )
    # -- operations: PROXY protocol, metrics, reload, access log --
    proxy_protocol: bool = field(
        default=False,
        metadata={
            "help": "every stream connection starts with a PROXY protocol header (v1 or v2, detected) naming the real client; a connection without a valid one is closed",
            "cli": True,
        },
    )
    proxy_from: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "with --proxy-protocol: networks (CIDR) allowed to send PROXY headers, repeatable; other peers are closed (none: any peer)",
            "cli": True,
            "metavar": "CIDR",
        },
    )
    proxy_header_timeout: float = field(
        default=5.0,
        metadata={
            "help": "with --proxy-protocol: seconds a connection has to send its PROXY header",
            "cli": True,
        },
    )
    metrics: str | None = field(
        default=None,
        metadata={
            "help": "serve Prometheus /metrics and /healthz on this address, e.g. tcp://127.0.0.1:9100 (none = off)",
            "cli": True,
            "metavar": "URL",
        },
    )
    reload_grace: float = field(
        default=30.0,
        metadata={
            "help": "on SIGHUP (reload): seconds old workers keep serving their open connections before they drain",
            "cli": True,
        },
    )
    stop_grace: float = field(
        default=0.0,
        metadata={
            "help": "on SIGTERM/SIGINT: seconds to keep serving open connections (not accepting, /healthz 503) before draining; 0 = drain at once",
            "cli": True,
        },
    )
    access_log: bool = field(
        default=False,
        metadata={
            "help": "log each connection's close at INFO: remote address (the real one behind PROXY), duration, bytes, reason",
            "cli": True,
        },
    )

    # The former name of max_buffered_per_conn, still accepted (with a warning).
    read_buffer_cap: InitVar[int | None] = None

    def __post_init__(self, read_buffer_cap: int | None) -> None:
        if read_buffer_cap is not None:
            warnings.warn(
                "option read_buffer_cap is now max_buffered_per_conn",
                DeprecationWarning,
                stacklevel=3,
            )
            self.max_buffered_per_conn = read_buffer_cap

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Options":
        known = {f.name for f in fields(cls)} | {"read_buffer_cap"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"unknown runtime option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        options = cls(**kwargs)
        options.validate()
        return options

    def replace(self, **changes: Any) -> "Options":
        new = dataclasses.replace(self)
        for name, value in changes.items():
            if name == "read_buffer_cap":
                Options.__post_init__(new, value)
                continue
            if name not in _FIELD_NAMES:
                raise TypeError(f"unknown runtime option: {name}")
            setattr(new, name, value)
        new.validate()
        return new

    def validate(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(
                    f"option {name} must be an int >= {minimum}, got {value!r}"
                )

        def optional_positive(name: str) -> None:
            value = getattr(self, name)
            if value is None:
                return
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value <= 0
            ):
                raise ValueError(
                    f"option {name} must be a positive number or None, got {value!r}"
                )

        def boolean(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"option {name} must be a bool, got {getattr(self, name)!r}"
                )

        for name in (
            "max_buffered_per_conn",
            "max_buffered_total",
            "max_frames_per_callback",
            "write_buffer_cap",
            "write_high_water",
            "backlog",
            "loops",
        ):
            positive_int(name)
        positive_int("write_low_water", 0)
        if self.max_connections is not None:
            positive_int("max_connections", 0)
        for name in (
            "tcp_keepalive",
            "tcp_keepalive_interval",
            "socket_recv_buffer",
            "socket_send_buffer",
            "idle_timeout",
            "read_timeout",
        ):
            optional_positive(name)
        if self.tcp_keepalive_count is not None:
            positive_int("tcp_keepalive_count")
        if self.edge_triggered is not None:
            boolean("edge_triggered")
        for name in (
            "tcp_no_delay",
            "reuse_addr",
            "reuse_port",
            "ticker",
            "multicore",
            "fatal_handler_errors",
            "install_signal_handlers",
        ):
            boolean(name)
        if self.write_low_water > self.write_high_water:
            raise ValueError(
                f"option write_low_water ({self.write_low_water}) must not exceed "
                f"write_high_water ({self.write_high_water})"
            )
        if (
            isinstance(self.drain_timeout, bool)
            or not isinstance(self.drain_timeout, (int, float))
            or self.drain_timeout < 0
        ):
            raise ValueError(
                f"option drain_timeout must be a number >= 0, got {self.drain_timeout!r}"
            )
        if self.load_balancing not in LOAD_BALANCING:
            raise ValueError(
                f"option load_balancing must be one of {', '.join(LOAD_BALANCING)}, "
                f"got {self.load_balancing!r}"
            )
        if self.poller not in ("auto", "epoll", "kqueue", "selectors"):
            raise ValueError(
                f"option poller must be auto, epoll, kqueue or selectors, got {self.poller!r}"
            )
        if self.logger is not None and not isinstance(self.logger, logging.Logger):
            raise ValueError(
                f"option logger must be a logging.Logger, got {self.logger!r}"
            )
        self._validate_tls()
        if self.unix_mode is not None and (
            not isinstance(self.unix_mode, int) or not 0 <= self.unix_mode <= 0o7777
        ):
            raise ValueError(
                f"option unix_mode must be a file mode like 0o600, got {self.unix_mode!r}"
            )
        _validate_operations(self)

    def _validate_tls(self) -> None:
        for name in ("tls_cert", "tls_key", "tls_ca", "tls_ciphers"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ValueError(f"option {name} must be a path or None, got {value!r}")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("option tls_key needs tls_cert (the certificate it signs)")
        if self.tls_alpn is not None:
            alpn = self.tls_alpn
            names = alpn.split(",") if isinstance(alpn, str) else alpn
            if not isinstance(names, (list, tuple)) or not all(
                isinstance(n, str) and 0 < len(n.strip()) < 256 for n in names
            ):
                raise ValueError(
                    f"option tls_alpn must be protocol names like h2,http/1.1, got {alpn!r}"
                )
        timeout = self.tls_handshake_timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or timeout <= 0
        ):
            raise ValueError(
                f"option tls_handshake_timeout must be a positive number or None, got {timeout!r}"
            )
        if not isinstance(self.tls_session_tickets, bool):
            raise ValueError(
                f"option tls_session_tickets must be a bool, got {self.tls_session_tickets!r}"
            )
        if self.ssl_context is not None and not isinstance(
            self.ssl_context, ssl.SSLContext
        ):
            raise ValueError(
                f"option ssl_context must be an ssl.SSLContext, got {self.ssl_context!r}"
            )
        sni = self.tls_sni
        if sni is not None and not callable(sni) and not isinstance(sni, dict):
            raise ValueError(
                "option tls_sni must map server names to (cert, key) files or be a "
                f"callable name -> SSLContext | None, got {sni!r}"
            )

    def alpn_protocols(self) -> list[str]:
        """tls_alpn as a list (the command line gives it comma-separated)."""
        alpn = self.tls_alpn
        if alpn is None:
            return []
        names = alpn.split(",") if isinstance(alpn, str) else alpn
        return [name.strip() for name in names]

    def connection_limit(self) -> int:
        """Connections one event loop accepts (0 = unlimited).

        With max_connections None: the soft open-file limit less a reserve for
        listeners, logs and outgoing connections (1/16 of it, at least 16), so an
        accept never fails for want of a descriptor.
        """
        if self.max_connections is not None:
            return self.max_connections
        try:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):  # pragma: no cover
            return 1024
        if soft == resource.RLIM_INFINITY or soft <= 0:
            return 0
        return max(1, soft - max(16, soft // 16))

    def get_logger(self) -> logging.Logger:
        return self.logger or logging.getLogger("protogen.runtime")


def _validate_operations(options: Options) -> None:
    """The operations block: PROXY protocol networks, metrics address, timeouts."""
    for name in ("proxy_protocol", "access_log"):
        if not isinstance(getattr(options, name), bool):
            raise ValueError(
                f"option {name} must be a bool, got {getattr(options, name)!r}"
            )
    networks = options.proxy_from
    if isinstance(networks, str):
        networks = options.proxy_from = tuple(
            n.strip() for n in networks.split(",") if n.strip()
        )
    if not isinstance(networks, (tuple, list)):
        raise ValueError(
            f"option proxy_from must be a list of networks, got {networks!r}"
        )
    options.proxy_from = tuple(networks)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError):
            raise ValueError(
                f"option proxy_from: {network!r} is not a network like 10.0.0.0/8"
            ) from None
    grace = options.stop_grace
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError(f"option stop_grace must be a number >= 0, got {grace!r}")
    for name in ("proxy_header_timeout", "reload_grace"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"option {name} must be a positive number, got {value!r}")
    if options.metrics is not None:
        from .address import AddressError, parse_address

        try:
            address = parse_address(options.metrics)
        except AddressError as error:
            raise ValueError(f"option metrics: {error}") from None
        if address.network == "udp":
            raise ValueError(
                f"option metrics must be a stream address (tcp:// or unix://), got {options.metrics!r}"
            )


_FIELD_NAMES = frozenset(f.name for f in fields(Options))

__all__ = ["Options", "LOAD_BALANCING"]
