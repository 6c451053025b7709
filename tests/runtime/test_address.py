"""Address URLs and listening sockets (protogen.runtime.address)."""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
from collections.abc import Iterator

import pytest

from protogen.runtime import address as address_mod
from protogen.runtime.address import Address, AddressError, bind_listener, parse_address


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only"
)


@pytest.fixture
def sock_dir(tmp_path_factory) -> Iterator[str]:
    # A short path: unix socket paths are limited to ~104-108 bytes.
    path = tmp_path_factory.mktemp("s")
    yield str(path)


# -------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "url, network, family, host, port, sockaddr",
    [
        (
            "tcp://127.0.0.1:9000",
            "tcp",
            socket.AF_INET,
            "127.0.0.1",
            9000,
            ("127.0.0.1", 9000),
        ),
        ("tcp4://127.0.0.1:0", "tcp", socket.AF_INET, "127.0.0.1", 0, ("127.0.0.1", 0)),
        (
            "tcp://[::1]:65535",
            "tcp",
            socket.AF_INET6,
            "::1",
            65535,
            ("::1", 65535, 0, 0),
        ),
        ("tcp6://[::1]:80", "tcp", socket.AF_INET6, "::1", 80, ("::1", 80, 0, 0)),
        ("udp://10.1.2.3:53", "udp", socket.AF_INET, "10.1.2.3", 53, ("10.1.2.3", 53)),
        ("udp4://127.0.0.1:1", "udp", socket.AF_INET, "127.0.0.1", 1, ("127.0.0.1", 1)),
        (
            "udp6://[fe80::1]:5",
            "udp",
            socket.AF_INET6,
            "fe80::1",
            5,
            ("fe80::1", 5, 0, 0),
        ),
        (
            "tcp://localhost:8080",
            "tcp",
            socket.AF_INET,
            "localhost",
            8080,
            ("localhost", 8080),
        ),
        ("TCP://127.0.0.1:1", "tcp", socket.AF_INET, "127.0.0.1", 1, ("127.0.0.1", 1)),
    ],
)
def test_parse_inet_schemes(url, network, family, host, port, sockaddr):
    addr = parse_address(url)
    assert addr == Address(url, network, family, host, port, None)
    assert addr.sockaddr == sockaddr
    assert str(addr) == url


def test_empty_host_means_every_interface_of_the_family():
    assert parse_address("tcp://:9000").sockaddr == ("0.0.0.0", 9000)
    assert parse_address("udp4://:53").sockaddr == ("0.0.0.0", 53)
    six = parse_address("tcp6://:9000")
    assert six.family == socket.AF_INET6
    assert six.sockaddr == ("::", 9000, 0, 0)


def test_socktype_follows_the_network():
    assert parse_address("tcp://127.0.0.1:1").socktype == socket.SOCK_STREAM
    assert parse_address("udp://127.0.0.1:1").socktype == socket.SOCK_DGRAM
    assert parse_address("unix:///tmp/x.sock").socktype == socket.SOCK_STREAM


def test_hostnames_are_resolved_for_their_family(monkeypatch):
    calls = []

    def fake_getaddrinfo(host, port, family=0, type=0, *args):
        calls.append((host, family))
        if host == "v6only.test":
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 0, 0, 0))
            ]
        if host == "dual.test":
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 0, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 0)),
            ]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(address_mod.socket, "getaddrinfo", fake_getaddrinfo)
    v6 = parse_address("tcp://v6only.test:1")
    assert v6.family == socket.AF_INET6 and v6.sockaddr == ("v6only.test", 1, 0, 0)
    assert parse_address("tcp://dual.test:1").family == socket.AF_INET  # IPv4 preferred
    assert parse_address("tcp6://dual.test:1").family == socket.AF_INET6
    assert calls[-1] == ("dual.test", socket.AF_INET6)
    with pytest.raises(AddressError) as info:
        parse_address("tcp://nowhere.test:1")
    assert "'tcp://nowhere.test:1'" in str(info.value)
    assert "cannot resolve host 'nowhere.test'" in str(info.value)


def test_parse_unix_paths(sock_dir):
    path = os.path.join(sock_dir, "srv.sock")
    addr = parse_address("unix://" + path)
    assert addr == Address("unix://" + path, "unix", socket.AF_UNIX, None, None, path)
    assert addr.sockaddr == path
    assert not addr.is_abstract
    rel = parse_address("unix://relative.sock")
    assert rel.path == "relative.sock"


@linux_only
def test_parse_abstract_unix_socket():
    addr = parse_address("unix://@protogen-test")
    assert addr.is_abstract
    assert addr.sockaddr == "\0protogen-test"


@pytest.mark.parametrize(
    "url, problem",
    [
        ("127.0.0.1:9000", "missing scheme"),
        ("", "missing scheme"),
        ("http://127.0.0.1:80", "unknown scheme 'http'"),
        ("tcp://host", "missing port"),
        ("tcp://127.0.0.1", "missing port"),
        ("tcp://127.0.0.1:", "missing port"),
        ("tcp://[::1]", "missing port"),
        ("tcp://127.0.0.1:http", "port 'http' is not a number"),
        ("tcp://127.0.0.1:-1", "port '-1' is not a number"),
        ("tcp://127.0.0.1:65536", "port 65536 is out of range 0..65535"),
        ("udp://127.0.0.1:99999", "out of range"),
        ("tcp://127.0.0.1:٣", "not a number"),  # non-ASCII digit
        ("tcp://::1:80", "IPv6 addresses must be in brackets"),
        ("tcp://[::1:80", "unterminated '['"),
        ("tcp://[::1]80", "after ']'"),
        ("tcp://[]:80", "empty IPv6 address"),
        ("tcp://[127.0.0.1]:80", "only IPv6 addresses go in brackets"),
        ("tcp://[not-an-ip]:80", "not an IPv6 address"),
        ("tcp4://[::1]:80", "IPv6 address but the scheme requires IPv4"),
        ("tcp6://127.0.0.1:80", "IPv4 address but the scheme requires IPv6"),
        ("udp6://127.0.0.1:80", "requires IPv6"),
        ("tcp://127.0.0.1:80/path", "unexpected path"),
        ("tcp://127.0.0.1:80?x=1", "unexpected path or query"),
        ("unix://", "missing socket path"),
        ("unix://" + "x" * 200, "socket path is too long"),
        ("unix://a\0b", "NUL byte"),
    ],
)
def test_parse_errors_name_the_url_and_the_problem(url, problem):
    with pytest.raises(AddressError) as info:
        parse_address(url)
    message = str(info.value)
    assert repr(url) in message
    assert problem in message
    assert isinstance(info.value, ValueError)


def test_non_string_address_is_rejected():
    with pytest.raises(AddressError, match="must be a string"):
        parse_address(9000)  # type: ignore[arg-type]


def test_address_is_frozen():
    addr = parse_address("tcp://127.0.0.1:1")
    with pytest.raises(AttributeError):
        addr.port = 2  # type: ignore[misc]


# -------------------------------------------------------------------------- binding


def test_bind_tcp_listener_is_non_blocking_and_accepts():
    listener = bind_listener(parse_address("tcp://127.0.0.1:0"), backlog=16)
    try:
        assert listener.getblocking() is False
        assert listener.type == socket.SOCK_STREAM
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        host, port = listener.getsockname()
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection((host, port), timeout=5) as client:
            listener.settimeout(5)
            conn, _ = listener.accept()
            with conn:
                client.sendall(b"hello")
                assert conn.recv(5) == b"hello"
    finally:
        listener.close()


@needs_ipv6
def test_bind_tcp6_listener():
    listener = bind_listener(parse_address("tcp://[::1]:0"))
    try:
        assert listener.family == socket.AF_INET6
        assert listener.getsockname()[0] == "::1"
    finally:
        listener.close()


def test_bind_udp_is_bound_not_listening():
    sock = bind_listener(parse_address("udp://127.0.0.1:0"))
    try:
        assert sock.type == socket.SOCK_DGRAM
        assert sock.getblocking() is False
        port = sock.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"dgram", ("127.0.0.1", port))
            sock.settimeout(5)
            data, _ = sock.recvfrom(64)
        assert data == b"dgram"
    finally:
        sock.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT")
def test_reuse_port_lets_two_listeners_share_a_port():
    first = bind_listener(parse_address("tcp://127.0.0.1:0"), reuse_port=True)
    try:
        port = first.getsockname()[1]
        second = bind_listener(
            parse_address(f"tcp://127.0.0.1:{port}"), reuse_port=True
        )
        second.close()
    finally:
        first.close()


def test_port_in_use_error_keeps_errno_and_names_the_url():
    first = bind_listener(parse_address("tcp://127.0.0.1:0"))
    try:
        url = f"tcp://127.0.0.1:{first.getsockname()[1]}"
        with pytest.raises(OSError) as info:
            bind_listener(parse_address(url))
        assert info.value.errno == errno.EADDRINUSE
        assert url in str(info.value)
    finally:
        first.close()


def test_socket_buffer_sizes_are_applied():
    listener = bind_listener(
        parse_address("tcp://127.0.0.1:0"), recv_buffer=65536, send_buffer=65536
    )
    try:
        # Linux doubles the requested value; other kernels keep it. Both >= it.
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 65536
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 65536
    finally:
        listener.close()


def test_bind_unix_listener_with_mode(sock_dir):
    path = os.path.join(sock_dir, "a.sock")
    listener = bind_listener(parse_address("unix://" + path), unix_mode=0o600)
    try:
        assert listener.getblocking() is False
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)
    finally:
        listener.close()


def test_stale_unix_socket_file_is_removed(sock_dir):
    path = os.path.join(sock_dir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)  # bound, never listening, then closed: a leftover file
    dead.close()
    assert os.path.exists(path)
    listener = bind_listener(parse_address("unix://" + path))
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(path)  # the new listener owns the path now
    finally:
        listener.close()


def test_live_unix_socket_is_not_stolen(sock_dir):
    path = os.path.join(sock_dir, "live.sock")
    first = bind_listener(parse_address("unix://" + path))
    try:
        with pytest.raises(OSError) as info:
            bind_listener(parse_address("unix://" + path))
        assert info.value.errno == errno.EADDRINUSE
        assert path in str(info.value)
        with socket.socket(socket.AF_UNIX) as client:  # still served by `first`
            client.settimeout(5)
            client.connect(path)
    finally:
        first.close()


def test_refuses_to_remove_a_regular_file(sock_dir):
    path = os.path.join(sock_dir, "precious.txt")
    with open(path, "w") as handle:
        handle.write("keep me")
    with pytest.raises(FileExistsError) as info:
        bind_listener(parse_address("unix://" + path))
    assert "not a socket" in str(info.value)
    assert "unix://" + path in str(info.value)
    with open(path) as handle:
        assert handle.read() == "keep me"


def test_refuses_to_remove_a_directory(sock_dir):
    path = os.path.join(sock_dir, "dir")
    os.mkdir(path)
    with pytest.raises(FileExistsError):
        bind_listener(parse_address("unix://" + path))
    assert os.path.isdir(path)


@linux_only
def test_bind_abstract_unix_socket():
    name = f"protogen-test-{os.getpid()}"
    listener = bind_listener(parse_address(f"unix://@{name}"))
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect("\0" + name)
    finally:
        listener.close()


def test_failed_bind_closes_the_socket(monkeypatch):
    created: list[socket.socket] = []
    real_socket = socket.socket

    def tracking_socket(*args, **kwargs):
        sock = real_socket(*args, **kwargs)
        created.append(sock)
        return sock

    holder = bind_listener(parse_address("tcp://127.0.0.1:0"), reuse_addr=False)
    try:
        monkeypatch.setattr(address_mod.socket, "socket", tracking_socket)
        url = f"tcp://127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(OSError):
            bind_listener(parse_address(url), reuse_addr=False)
    finally:
        holder.close()
    assert created and all(s.fileno() == -1 for s in created)
