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
    """

    NONE = 0
    CLOSE = 1
    SHUTDOWN = 2


class EventHandler:
    """Base class of every protogen server and client handler.

    Every method is a no-op by default; override what you need. All callbacks run
    on the event-loop thread that owns the connection, never concurrently for the
    same connection.
    """

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

    # Optional fast path, used when a handler defines it (generated handlers do):
    #     def on_data(self, conn, data: memoryview) -> int | None
    # `data` is every byte buffered on `conn`, valid during the call (reused for a
    # later read of the same size: do not release() it); it returns
    # how many it consumed, or None (having written nothing) to have on_traffic
    # called instead. The loop calls it only when nothing is kept from an earlier
    # read; otherwise on_traffic runs, so both must do the same. It saves the
    # peek/next calls of a read event (~10 % of an echo's Python time).

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


def data_hook(handler: Any) -> Any:
    """`handler.on_data` when it is the handler's fast path, else None.

    It is not when on_traffic is overridden after it: on an instance, or in a
    subclass of the class that defined on_data (that on_traffic must be called).
    """
    on_data = getattr(handler, "on_data", None)
    if on_data is None or "on_traffic" in getattr(handler, "__dict__", ()):
        return None
    if "on_data" in getattr(handler, "__dict__", ()):
        return on_data
    mro = type(handler).__mro__
    data_owner = next(c for c in mro if "on_data" in vars(c))
    traffic_owner = next(c for c in mro if "on_traffic" in vars(c))
    return on_data if issubclass(data_owner, traffic_owner) else None


__all__ = ["Action", "EventHandler", "data_hook", "handler_overrides"]
