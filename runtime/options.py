"""Engine and client options: one dataclass, documented defaults, strict validation.

Unknown option names are a TypeError naming them; bad values are a ValueError
naming the option. Nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, fields
from typing import Any

KIB = 1024
MIB = 1024 * KIB

# "reuseport": every worker binds its own SO_REUSEPORT listener (multicore.py).
LOAD_BALANCING = ("round_robin", "least_connections", "source_addr_hash", "reuseport")


@dataclass
class Options:
    # Inbound: a connection's unconsumed bytes may grow up to this; beyond it the
    # connection is closed with FrameTooLarge (and so is a peek() asking for more).
    read_buffer_cap: int = 64 * MIB
    # Outbound: queued-but-unsent bytes beyond this close the connection with
    # OutboundOverflow (a peer that never reads cannot exhaust memory).
    write_buffer_cap: int = 64 * MIB
    # Backpressure: above the high mark reading stops until the queue drains
    # below the low mark (see EventHandler.on_write_pause / Conn.is_write_paused).
    write_high_water: int = 256 * KIB
    write_low_water: int = 64 * KIB
    tcp_no_delay: bool = True
    # Keep-alive: idle seconds before probes (None = off), probe interval, count.
    tcp_keepalive: float | None = None
    tcp_keepalive_interval: float | None = None
    tcp_keepalive_count: int | None = None
    socket_recv_buffer: int | None = None
    socket_send_buffer: int | None = None
    reuse_addr: bool = True
    reuse_port: bool = False
    backlog: int = 4096
    # Connections edge-triggered (EPOLLET / EV_CLEAR): None picks it wherever the
    # poller supports it (epoll, kqueue; selectors is level-triggered only).
    # Listeners and wakers are always level-triggered.
    edge_triggered: bool | None = None
    # Poller backend: "auto", "epoll", "kqueue" or "selectors".
    poller: str = "auto"
    ticker: bool = False
    logger: logging.Logger | None = None
    # Multi-core (delegated to protogen.runtime.multicore when loops > 1 or multicore).
    loops: int = 1
    multicore: bool = False
    load_balancing: str = "round_robin"
    # Robustness.
    max_connections: int = 0  # 0 = unlimited; at the limit accepting pauses
    idle_timeout: float | None = None  # no bytes in or out for this long -> close
    read_timeout: float | None = None  # a partial frame not consumed for this long
    drain_timeout: float = 5.0  # graceful close/shutdown: max seconds to flush
    fatal_handler_errors: bool = False  # True: a callback exception stops the engine
    unix_mode: int | None = None  # chmod for unix socket files
    # Engine internals.
    install_signal_handlers: bool = True  # only honoured in the main thread

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Options":
        known = {f.name for f in fields(cls)}
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
            if not hasattr(new, name):
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
            "read_buffer_cap",
            "write_buffer_cap",
            "write_high_water",
            "backlog",
            "loops",
        ):
            positive_int(name)
        positive_int("write_low_water", 0)
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
        if self.unix_mode is not None and (
            not isinstance(self.unix_mode, int) or not 0 <= self.unix_mode <= 0o7777
        ):
            raise ValueError(
                f"option unix_mode must be a file mode like 0o600, got {self.unix_mode!r}"
            )

    def get_logger(self) -> logging.Logger:
        return self.logger or logging.getLogger("protogen.runtime")


__all__ = ["Options", "LOAD_BALANCING"]
