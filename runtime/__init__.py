"""protogen.runtime: the event-loop engine every generated server runs on.

Modelled on gnet v2: `run(handler, *urls, **options)`, an `EventHandler` with
on_boot/on_open/on_close/on_traffic/on_tick/on_shutdown, `Action`, `Conn` with
zero-copy peek/next/discard and batched writes, `Client` for outbound
connections. See docs/runtime.md.
"""

from . import compiled as _compiled

# Before the hot modules are imported: they load as C extensions when
# `protogen compile-runtime` built them for their current sources (docs/compiled.md).
_compiled.install()

from .address import Address, AddressError, parse_address
from .client import Client
from .conn import (
    BufferBudgetExceeded,
    Conn,
    ConnectionClosed,
    DatagramConn,
    IdleTimeout,
    OutboundOverflow,
    ReadTimeout,
)
from .engine import Engine, EngineStats, run
from .eventloop import EventLoop
from .handler import Action, EventHandler
from .options import Options
from .udp import UDPConn

__all__ = [
    "Action",
    "Address",
    "AddressError",
    "BufferBudgetExceeded",
    "Client",
    "Conn",
    "ConnectionClosed",
    "DatagramConn",
    "Engine",
    "EngineStats",
    "EventHandler",
    "EventLoop",
    "IdleTimeout",
    "Options",
    "OutboundOverflow",
    "ReadTimeout",
    "UDPConn",
    "parse_address",
    "run",
]
