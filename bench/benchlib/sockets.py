"""What a server holds, seen from /proc: its TCP sockets by state, its open files.

Linux only (the benchmark machine). Server-side sockets are told apart from the
clients' by their local port: the one the server listens on.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass

# /proc/net/tcp state codes (include/net/tcp_states.h).
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
    "0C": "NEW_SYN_RECV",
}


def server_socket_states(port: int) -> Counter[str]:
    """States of the sockets whose local port is `port` (the server's side of its
    connections, and its listener), over IPv4 and IPv6."""
    states: Counter[str] = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)  # the column titles
                for line in lines:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == port:
                        states[TCP_STATES.get(fields[3], fields[3])] += 1
        except OSError:
            continue
    return states


@dataclass(frozen=True)
class Holdings:
    """A server's connections and files at one moment."""

    # Connections the server process still has open: established, or closed by
    # the peer and not yet by the server (a socket the server closed lingers in
    # FIN_WAIT/LAST_ACK/TIME_WAIT, owned by the kernel, not the process).
    connections: int
    close_wait: int  # of which the peer closed and the server did not
    fds: int  # open file descriptors of the server process (-1: unknown)

    @classmethod
    def of(cls, port: int, pid: int | None) -> "Holdings":
        states = server_socket_states(port)
        return cls(
            states["ESTABLISHED"] + states["CLOSE_WAIT"],
            states["CLOSE_WAIT"],
            open_fds(pid),
        )


def open_fds(pid: int | None) -> int:
    if pid is None:
        return -1
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def send_with_fin(sock: socket.socket, data: bytes) -> None:
    """Send `data` and the FIN in one segment: TCP_CORK holds the data back until
    shutdown(), which then sends both (the FIN rides on the last data segment)."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is not None:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
