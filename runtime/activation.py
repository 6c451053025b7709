"""Inherited listening sockets: `fd://N` and systemd socket activation.

    --listen fd://3          the listening socket on descriptor 3
    --listen fd://web        the one systemd named `web` (FileDescriptorName=)

systemd (and `systemd-socket-activate`) passes sockets from descriptor 3 on,
with `LISTEN_FDS` (how many), `LISTEN_PID` (for which process) and
`LISTEN_FDNAMES` (colon-separated names). A name is looked up there; a
number is taken as it is (a reload's re-exec passes its sockets that way,
see reload.py). The socket's family and type are read from the descriptor
itself, so `fd://` serves TCP, unix and UDP alike; it must already be bound
(and listening, for a stream socket): systemd did that.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from .address import Address, AddressError

__all__ = [
    "SD_LISTEN_FDS_START",
    "adopt_listener",
    "parse_fd_address",
    "systemd_fds",
    "systemd_urls",
]

SD_LISTEN_FDS_START = 3


def systemd_fds(environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """Descriptors systemd passed to this process, by name (`LISTEN_FDNAMES`;
    unnamed ones are called `unknown` by systemd, and here also by number)."""
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("LISTEN_FDS", "0"))
        pid = int(env.get("LISTEN_PID", "0") or 0)
    except ValueError:
        return {}
    if count <= 0 or (pid and pid != os.getpid()):
        return {}
    names = (
        env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    )
    found = {}
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        found[str(fd)] = fd
        if i < len(names) and names[i]:
            found.setdefault(names[i], fd)
    return found


def systemd_urls(environ: Mapping[str, str] | None = None) -> list[str]:
    """`fd://N` for every socket systemd passed (empty without activation)."""
    return [f"fd://{fd}" for fd in sorted(set(systemd_fds(environ).values()))]


def parse_fd_address(url: str, rest: str) -> Address:
    if not rest:
        raise AddressError(
            f"{url!r}: missing descriptor (expected fd://3 or fd://NAME)"
        )
    if rest.isdigit():
        fd = int(rest)
    else:
        fd = systemd_fds().get(rest, -1)
        if fd < 0:
            raise AddressError(
                f"{url!r}: no socket named {rest!r} was passed (LISTEN_FDNAMES)"
            )
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise AddressError(
            f"{url!r}: descriptor {fd} is not a socket ({exc})"
        ) from None
    try:
        family, kind = probe.family, probe.type
        name = probe.getsockname()
    finally:
        probe.close()
    if family == socket.AF_UNIX:
        return Address(url, "unix", family, None, None, None, fd=fd)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise AddressError(f"{url!r}: descriptor {fd} is not a TCP, UDP or unix socket")
    network = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    return Address(url, network, family, name[0], name[1], None, fd=fd)


def adopt_listener(address: Address) -> socket.socket:
    """The inherited socket of an fd:// address, non-blocking, checked."""
    assert address.fd is not None
    sock = socket.socket(fileno=address.fd)
    if address.network != "udp" and not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()  # not ours to close
        raise OSError(f"cannot serve {address.url}: the socket is not listening")
    sock.setblocking(False)
    return sock
