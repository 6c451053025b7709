"""The callbacks an application implements (gnet's EventHandler) and their verdicts."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from .conn import Conn
    from .engine import Engine


class Action(enum.IntEnum):
    """What the loop does after a callback returns.

    NONE keeps going, CLOSE closes the connection the callback was about (pending
    writes are flushed first), SHUTDOWN stops the whole engine gracefully.
    YIELD (from on_traffic) lets the loop serve other connections first and calls
    on_traffic again on the next pass with the bytes still buffered, without
    waiting for new ones: a handler that stops after a budget of frames returns it.
    """

    NONE = 0
    CLOSE = 1
    SHUTDOWN = 2
    YIELD = 3


class EventHandler:
    """Base class of every protogen server and client handler.

    Every method is a no-op by default; override what you need. All callbacks run
    on the event-loop thread that owns the connection, never concurrently for the
    same connection.
    """

    # The largest frame this handler accepts, if it has such a limit: the loop
    # lets each connection buffer at least this many unconsumed bytes, whatever
    # the max_buffered_per_conn option says (generated handlers set it).
    max_frame: int | None = None

    def on_boot(self, engine: "Engine") -> Action:
        """The engine is listening; `engine` offers stop(), stats() and addresses."""
        return Action.NONE

    def on_open(self, conn: "Conn") -> tuple[bytes | None, Action]:
        """A connection was accepted (or a dial succeeded).

        Returns bytes to send first (or None) and an Action.
        """
        return None, Action.NONE

    def on_close(self, conn: "Conn", err: BaseException | None) -> Action:
        """The connection is closed; `err` is None for an orderly close.

        `err` is an OSError for socket errors, a `protogen.errors.ProtocolError` the
        handler raised, the exception a callback raised, or a runtime timeout error.
        """
        return Action.NONE

    def on_traffic(self, conn: "Conn") -> Action | None:
        """Bytes arrived: read them with conn.peek/next/discard/read_into."""
        return Action.NONE

    def on_eof(self, conn: "Conn") -> Action:
        """The peer finished sending (it shut down its side, or closed).

        Runs after every byte it sent was handed to on_traffic. The default,
        Action.CLOSE, closes the connection once its answers are flushed. Return
        Action.NONE to keep it half-open: nothing more is read, writes still go
        out, and the handler closes it (conn.close()) when it is done.
        """
        return Action.CLOSE

    def on_tick(self) -> tuple[float, Action]:
        """Called when the `ticker` option is on; returns (seconds to next tick, Action)."""
        return 1.0, Action.NONE

    def on_shutdown(self, engine: "Engine") -> None:
        """The engine stopped: every connection is closed already."""

    def on_write_pause(self, conn: "Conn", paused: bool) -> None:
        """Backpressure: the connection crossed its write high (paused=True) or low
        (paused=False) water mark. While paused the connection is not read."""


def handler_overrides(handler: Any, name: str) -> bool:
    """True when `handler` defines its own `name` instead of the no-op default."""
    method = getattr(type(handler), name, None)
    return method is not None and method is not getattr(EventHandler, name, None)


__all__ = ["Action", "EventHandler", "handler_overrides"]
