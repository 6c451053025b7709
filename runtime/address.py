"""Listen/dial addresses as URLs, and creating listening sockets from them.

Accepted forms (gnet's protoAddr style)::

    tcp://127.0.0.1:9000   tcp://[::1]:9000   tcp://localhost:0   tcp://:9000
    tcp4://host:port       tcp6://[::]:port   udp://, udp4://, udp6:// likewise
    unix:///abs/path.sock  unix://relative.sock   unix://@abstract (Linux only)
    tls://host:port  tls4://  tls6://  unix+tls:///path  (TLS over tcp or unix)

Every parse failure raises AddressError whose message names the URL and says
what is wrong, e.g. ``'tcp://host': missing port (expected host:port)``.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import socket
import stat
import sys
from dataclasses import dataclass
from typing import Literal

Network = Literal["tcp", "udp", "unix"]

# scheme -> (network, forced family or None to derive it from the host)
_SCHEMES: dict[str, tuple[Network, int | None]] = {
    "tls": ("tcp", None),
    "tls4": ("tcp", socket.AF_INET),
    "tls6": ("tcp", socket.AF_INET6),
    "unix+tls": ("unix", None),
    "tcp": ("tcp", None),
    "tcp4": ("tcp", socket.AF_INET),
    "tcp6": ("tcp", socket.AF_INET6),
    "udp": ("udp", None),
    "udp4": ("udp", socket.AF_INET),
    "udp6": ("udp", socket.AF_INET6),
    "unix": ("unix", None),
}
# Schemes whose byte stream is TLS (see protogen.runtime.tls).
_TLS_SCHEMES = frozenset({"tls", "tls4", "tls6", "unix+tls"})

# sockaddr_un.sun_path holds 108 bytes on Linux, 104 on the BSDs/macOS,
# including the terminating NUL of a filesystem path.
_SUN_PATH_MAX = 108 if sys.platform.startswith("linux") else 104

_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


class AddressError(ValueError):
    """An address URL is malformed or cannot be used."""


@dataclass(frozen=True)
class Address:
    """A parsed address. `sockaddr` is what socket.bind()/connect() take."""

    url: str
    network: Network
    family: int
    host: str | None
    port: int | None
    path: str | None
    tls: bool = False  # TLS over the stream (tls://, unix+tls://)
    # fd://N: an inherited listening socket (systemd socket activation, a
    # reload's re-exec); bind_listener adopts it instead of binding.
    fd: int | None = None

    @property
    def sockaddr(self) -> tuple[str, int] | tuple[str, int, int, int] | str:
        if self.network == "unix":
            assert self.path is not None
            if self.path.startswith("@"):  # Linux abstract namespace
                return "\0" + self.path[1:]
            return self.path
        assert self.host is not None and self.port is not None
        if self.family == socket.AF_INET6:
            return (self.host, self.port, 0, 0)
        return (self.host, self.port)

    @property
    def socktype(self) -> int:
        return socket.SOCK_DGRAM if self.network == "udp" else socket.SOCK_STREAM

    @property
    def is_abstract(self) -> bool:
        """A Linux abstract-namespace unix socket (no file on disk)."""
        return self.network == "unix" and bool(self.path) and self.path[0] == "@"

    def __str__(self) -> str:
        return self.url


def _fail(url: str, problem: str) -> AddressError:
    return AddressError(f"{url!r}: {problem}")


def parse_address(url: str) -> Address:
    """Parse `url` into an Address; raises AddressError with a clear message."""
    if not isinstance(url, str):
        raise AddressError(
            f"address must be a string like 'tcp://host:port', got {url!r}"
        )
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _fail(
            url, "missing scheme (expected e.g. tcp://host:port or unix:///path)"
        )
    scheme_key = scheme.lower()
    if scheme_key not in _SCHEMES and scheme_key != "fd":
        raise _fail(
            url,
            f"unknown scheme {scheme!r} (expected one of {', '.join(_SCHEMES)}, fd)",
        )
    if scheme_key == "fd":
        from .activation import parse_fd_address

        return parse_fd_address(url, rest)
    network, forced_family = _SCHEMES[scheme_key]
    if network == "unix":
        address = _parse_unix(url, rest)
    else:
        address = _parse_inet(url, network, forced_family, rest)
    if scheme_key in _TLS_SCHEMES:
        return dataclasses.replace(address, tls=True)
    return address


def _parse_unix(url: str, path: str) -> Address:
    if not path:
        raise _fail(url, "missing socket path (expected unix:///path/to.sock)")
    if "\0" in path:
        raise _fail(url, "socket path contains a NUL byte")
    if path.startswith("@"):
        if not sys.platform.startswith("linux"):
            raise _fail(url, "abstract unix sockets (@name) exist on Linux only")
        limit = _SUN_PATH_MAX  # no terminating NUL, but a leading one
    else:
        limit = _SUN_PATH_MAX - 1
    size = len(os.fsencode(path))
    if size > limit:
        raise _fail(
            url, f"socket path is too long ({size} bytes, the limit is {limit})"
        )
    return Address(url, "unix", socket.AF_UNIX, None, None, path)


def _split_host_port(url: str, rest: str) -> tuple[str, str]:
    if "/" in rest or "?" in rest or "#" in rest:
        raise _fail(url, "unexpected path or query after host:port")
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _fail(url, "unterminated '[' in IPv6 address")
        host = rest[1:close]
        after = rest[close + 1 :]
        if not after:
            raise _fail(url, "missing port (expected [ipv6]:port)")
        if not after.startswith(":"):
            raise _fail(url, f"unexpected {after!r} after ']' (expected :port)")
        if not host:
            raise _fail(url, "empty IPv6 address in brackets")
        return host, after[1:]
    if rest.count(":") > 1:
        raise _fail(url, "IPv6 addresses must be in brackets, e.g. tcp://[::1]:9000")
    host, sep, port = rest.partition(":")
    if not sep:
        raise _fail(url, "missing port (expected host:port)")
    return host, port


def _parse_port(url: str, text: str) -> int:
    if not text:
        raise _fail(url, "missing port (expected host:port)")
    if not text.isascii() or not text.isdigit():
        raise _fail(url, f"port {text!r} is not a number")
    port = int(text)
    if port > 65535:
        raise _fail(url, f"port {port} is out of range 0..65535")
    return port


def _parse_inet(
    url: str, network: Network, forced_family: int | None, rest: str
) -> Address:
    host, port_text = _split_host_port(url, rest)
    port = _parse_port(url, port_text)
    bracketed = rest.startswith("[")

    if not host:  # tcp://:9000 -> every interface of the family
        family = forced_family or socket.AF_INET
        host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        return Address(url, network, family, host, port, None)

    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None

    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        if (
            family == socket.AF_INET6 and not bracketed
        ):  # pragma: no cover - guarded above
            raise _fail(url, "IPv6 addresses must be in brackets")
        if family == socket.AF_INET and bracketed:
            raise _fail(url, f"{host!r} is IPv4; only IPv6 addresses go in brackets")
        if forced_family is not None and forced_family != family:
            raise _fail(
                url,
                f"{host!r} is an {_FAMILY_NAMES[family]} address but the scheme "
                f"requires {_FAMILY_NAMES[forced_family]}",
            )
        return Address(url, network, family, host, port, None)

    if bracketed:
        raise _fail(url, f"{host!r} in brackets is not an IPv6 address")
    family = _resolve_family(url, host, forced_family)
    return Address(url, network, family, host, port, None)


def _resolve_family(url: str, host: str, forced_family: int | None) -> int:
    if forced_family is not None:
        wanted = forced_family
    elif host.lower() == "localhost":
        # Pin localhost to IPv4 so "localhost" means the same thing on every box.
        return socket.AF_INET
    else:
        wanted = socket.AF_UNSPEC
    try:
        infos = socket.getaddrinfo(host, None, wanted, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise _fail(url, f"cannot resolve host {host!r}: {exc}") from None
    families = [info[0] for info in infos]
    if socket.AF_INET in families and wanted != socket.AF_INET6:
        return socket.AF_INET
    if socket.AF_INET6 in families:
        return socket.AF_INET6
    raise _fail(url, f"host {host!r} has no {_FAMILY_NAMES.get(wanted, 'IP')} address")


# ------------------------------------------------------------------------ binding


def bind_listener(
    address: Address,
    *,
    backlog: int = 4096,
    reuse_addr: bool = True,
    reuse_port: bool = False,
    recv_buffer: int | None = None,
    send_buffer: int | None = None,
    unix_mode: int | None = None,
) -> socket.socket:
    """A non-blocking socket bound to `address`, listening unless it is UDP.

    Bind failures raise OSError with the original errno and the URL in the
    message. For unix sockets a stale socket file (one nobody accepts on) is
    removed first; a live socket or a non-socket file is never removed.
    """
    if address.fd is None:
        from .reload import inherited_fd

        fd = inherited_fd(address.url)  # passed by a reload's re-exec
        if fd is not None:
            address = dataclasses.replace(address, fd=fd)
    if address.fd is not None:
        from .activation import adopt_listener

        return adopt_listener(address)
    if address.network == "unix" and not address.is_abstract:
        _remove_stale_unix_socket(address)
    sock = socket.socket(address.family, address.socktype)
    try:
        if address.network != "unix":
            if reuse_addr:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                if not hasattr(socket, "SO_REUSEPORT"):
                    raise OSError(
                        errno.ENOPROTOOPT,
                        f"cannot listen on {address.url}: "
                        "SO_REUSEPORT is not supported on this platform",
                    )
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if recv_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        if send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        try:
            sock.bind(address.sockaddr)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot bind {address.url}: {exc.strerror or exc}"
            ) from exc
        if (
            address.network == "unix"
            and unix_mode is not None
            and not address.is_abstract
        ):
            os.chmod(address.path, unix_mode)  # type: ignore[arg-type]
        if address.network != "udp":
            sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_unix_socket(address: Address) -> None:
    path = address.path
    assert path is not None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(
            errno.EEXIST,
            f"cannot listen on {address.url}: {path!r} exists and is not a socket; "
            "refusing to remove it",
        )
    if _unix_socket_is_live(path):
        raise OSError(
            errno.EADDRINUSE,
            f"cannot listen on {address.url}: another process is accepting on {path!r}",
        )
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # someone else cleaned it up meanwhile


def _unix_socket_is_live(path: str) -> bool:
    """Whether something accepts on `path` (a non-blocking probe connect)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        code = probe.connect_ex(path)
    finally:
        probe.close()
    # EAGAIN: a live listener whose backlog is full. Anything else (ECONNREFUSED
    # above all) means the file is left over from a dead process.
    return code in (0, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS)
