"""Inherited listening sockets: `--listen fd://N`, and systemd socket
activation through `systemd-socket-activate` (the Debian systemd package)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ops_harness import (
    Process,
    free_port,
    frame,
    protogen_serve_argv,
    recv_exact,
    serve_env,
    stop,
)
from protogen.runtime.activation import systemd_fds, systemd_urls
from protogen.runtime.address import AddressError, parse_address


def echo_once(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(frame(b"activated"))
        assert recv_exact(sock, 13) == frame(b"activated")


def test_systemd_environment_is_read_for_this_process_only() -> None:
    env = {
        "LISTEN_FDS": "2",
        "LISTEN_PID": str(os.getpid()),
        "LISTEN_FDNAMES": "web:admin",
    }
    assert systemd_fds(env) == {"3": 3, "web": 3, "4": 4, "admin": 4}
    assert systemd_urls(env) == ["fd://3", "fd://4"]
    env["LISTEN_PID"] = str(os.getpid() + 1)  # meant for another process
    assert systemd_fds(env) == {}


def test_fd_address_reads_the_socket_kind() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        address = parse_address(f"fd://{listener.fileno()}")
        assert (address.network, address.port) == ("tcp", listener.getsockname()[1])
        with pytest.raises(AddressError, match="no socket named"):
            parse_address("fd://nosuchname")
    finally:
        listener.close()


def test_listen_fd_serves_an_inherited_socket(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    process = Process(
        protogen_serve_argv(
            Path(__file__).parents[2] / "examples" / "echo.proto.dsl",
            "--listen",
            f"fd://{fd}",
        ),
        env=serve_env(tmp_path / "cache"),
        pass_fds=(fd,),
    )
    listener.close()  # the server holds the only copy now
    try:
        process.wait_line("serving")
        echo_once(port)
        assert stop(process) == 0
    finally:
        process.kill()


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="needs systemd-socket-activate (Debian systemd package)",
)
def test_systemd_socket_activate_starts_the_server(tmp_path: Path) -> None:
    port = free_port()
    spec = Path(__file__).parents[2] / "examples" / "echo.proto.dsl"
    argv = [
        "systemd-socket-activate",
        "-l",
        f"127.0.0.1:{port}",
        "--fdname=echo",
        *protogen_serve_argv(spec, "--listen", "fd://echo"),
    ]
    process = Process(argv, env=serve_env(tmp_path / "cache"))
    try:
        process.wait_line("Listening on")
        # The first connection starts the server (socket activation), which
        # then answers on the socket systemd-socket-activate bound.
        echo_once(port)
        process.wait_line("serving")
        echo_once(port)
    finally:
        process.kill()
