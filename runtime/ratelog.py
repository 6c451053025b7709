"""Rate-limited log lines for what remote peers cause.

A server must say when it drops a client for breaking the protocol (else the
operator sees clients fail and a silent log), but one hostile client opening
thousands of bad connections must not flood the log or slow the loop down
with logging. `RateLimitedLog` writes the first `burst` lines of each
`period` seconds and counts the rest; the next line written after the period
says how many were left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog", "log_protocol_error"]

BURST = 10
PERIOD = 10.0


class RateLimitedLog:
    """At most `burst` records per `period` seconds on `logger` at `level`."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.INFO,
        *,
        burst: int = BURST,
        period: float = PERIOD,
        what: str = "lines",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.level = level
        self.burst = burst
        self.period = period
        self.what = what
        self._clock = clock
        self._window_start = -float("inf")
        self._written = 0
        self.suppressed = 0  # left out of the current window so far

    def log(self, message: str, *args: Any) -> bool:
        """Log `message % args` unless over the budget; True if it was written."""
        if not self.logger.isEnabledFor(self.level):
            return False
        now = self._clock()
        if now - self._window_start >= self.period:
            if self.suppressed:
                self.logger.log(
                    self.level,
                    "protogen: %d more %s not logged in the last %g s",
                    self.suppressed,
                    self.what,
                    self.period,
                )
            self._window_start = now
            self._written = 0
            self.suppressed = 0
        if self._written >= self.burst:
            self.suppressed += 1
            return False
        self._written += 1
        self.logger.log(self.level, message, *args)
        return True


_protocol_logs: dict[str, RateLimitedLog] = {}


def log_protocol_error(logger: logging.Logger, conn: Any, err: BaseException) -> None:
    """INFO `closed <peer>: <error>`, rate-limited per logger."""
    log = _protocol_logs.get(logger.name)
    if log is None or log.logger is not logger:
        log = _protocol_logs[logger.name] = RateLimitedLog(
            logger, what="protocol-error disconnects"
        )
    peer = getattr(conn, "remote_addr", None)
    log.log(
        "protogen: closed %s: %s: %s",
        _peer(peer) if peer is not None else repr(conn),
        type(err).__name__,
        err,
    )


def _peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr) or "unix peer"
