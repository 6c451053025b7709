"""Building the echo example pure and compiled, and running its server as a user would."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
ECHO = REPO / "examples" / "echo.proto.dsl"
TIMEOUT = 30.0

# The server process reports where its codec and handler were loaded from,
# then runs as `python -m echo_server ...` would.
REPORTING_SERVER = (
    "import sys, runpy, echo_codec, echo_handler\n"
    "print('LOADED', echo_codec.__file__, echo_handler.__file__, flush=True)\n"
    "sys.argv[0] = 'echo_server'\n"
    "runpy.run_module('echo_server', run_name='__main__', alter_sys=True)\n"
)


def require_toolchain() -> None:
    """Skip where compiled mode cannot work, except in CI, which must test it."""
    from protogen.compile import CompileError, check_toolchain

    try:
        check_toolchain()
    except CompileError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"compiled mode unavailable: {error}")


def env_for(cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROTOGEN_")}
    env["PROTOGEN_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def protogen(
    *args: str | Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "protogen", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    command: Sequence[str | Path], cwd: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def connect_when_ready(
    port: int, process: subprocess.Popen[str], timeout: float = TIMEOUT
) -> socket.socket:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.communicate()[1]}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server never listened")


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return process.returncode, stdout, stderr


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
