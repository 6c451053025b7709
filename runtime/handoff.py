"""The channel between the supervisor and one worker process.

Each worker is forked with one end of a unix socketpair (``SOCK_SEQPACKET``
where available - message boundaries and an EOF when the peer goes away -
else ``SOCK_STREAM``).  Parent to worker:

* accepted connections as file descriptors in ``SCM_RIGHTS`` ancillary data
  (``socket.send_fds``), up to :data:`FDS_PER_MESSAGE` per message, each
  message with the one-byte payload :data:`MSG_CONN`;
* :data:`MSG_QUIT`: stop gracefully (drain, ``on_close`` for every
  connection, ``on_shutdown``, exit 0).

Worker to parent:

* :data:`MSG_SHUTDOWN`: the handler asked the whole server to stop.

EOF on the worker's end means the parent is gone: the worker stops, so no
worker outlives its supervisor.
"""

from __future__ import annotations

import logging
import os
import socket

from .balancer import ConnectionCounters

__all__ = [
    "FDS_PER_MESSAGE",
    "MSG_CONN",
    "MSG_GRACE",
    "MSG_QUIT",
    "MSG_RELOAD",
    "MSG_SHUTDOWN",
    "WorkerLink",
    "new_channel",
    "send_fds",
]

FDS_PER_MESSAGE = 128  # below SCM_MAX_FD (253 on Linux)
MSG_CONN = b"c"
MSG_QUIT = b"Q"
MSG_RELOAD = b"R"  # retire: stop taking connections, finish the open ones
MSG_GRACE = b"G"  # the same on stop (stop_grace): then exit
MSG_SHUTDOWN = b"S"

_CHANNEL_TYPE = getattr(socket, "SOCK_SEQPACKET", socket.SOCK_STREAM)
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_CTRUNC = getattr(socket, "MSG_CTRUNC", 0)


def send_fds(channel: socket.socket, fds: list[int]) -> None:
    """Pass up to FDS_PER_MESSAGE descriptors in one message (non-blocking)."""
    socket.send_fds(channel, [MSG_CONN], fds)


def new_channel() -> tuple[socket.socket, socket.socket]:
    try:
        return socket.socketpair(socket.AF_UNIX, _CHANNEL_TYPE)
    except OSError:  # a platform without unix SOCK_SEQPACKET
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class WorkerLink:
    """What a worker process knows of its supervisor (used in the child)."""

    def __init__(
        self,
        index: int,
        workers: int,
        channel: socket.socket,
        counters: ConnectionCounters,
    ) -> None:
        self.index = index
        self.workers = workers
        self.channel = channel
        self.counters = counters
        self.parent_pid = os.getppid()
        # "reload" (MSG_RELOAD) or "stop" (MSG_GRACE) once one arrived.
        self.retire_requested: str | None = None

    def receive(self) -> tuple[list[int], bool, bool]:
        """Read one message: ``(fds, quit_requested, parent_gone)``.

        Call when the channel is readable; it is non-blocking.
        """
        try:
            data, fds, msg_flags, _ = socket.recv_fds(
                self.channel,
                1024,
                FDS_PER_MESSAGE,
                _RECV_FLAGS,
            )
        except (BlockingIOError, InterruptedError):
            return [], False, False
        except OSError:
            return [], True, True
        if msg_flags & _CTRUNC:
            logging.getLogger("protogen.runtime.multicore").error(
                "worker %d: connection fds truncated in transit", self.index
            )
        if not data and not fds:
            return [], True, True  # EOF: the supervisor is gone
        if MSG_RELOAD in data:
            self.retire_requested = "reload"
        elif MSG_GRACE in data:
            self.retire_requested = "stop"
        return fds, MSG_QUIT in data, False

    def request_shutdown(self) -> None:
        """Ask the supervisor to stop every worker (thread-safe, never blocks long)."""
        try:
            self.channel.send(MSG_SHUTDOWN)
        except OSError:
            pass  # parent gone or channel full: it is stopping anyway
