"""Building the echo example pure and compiled, and running its server as a user would."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
# Starting a server and waiting for it is what tests/codegen's serve helpers do.
sys.path.insert(0, str(REPO / "tests" / "codegen"))
from serve_helpers import connect_when_ready, free_port, start  # noqa: E402, F401

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


def compiled_work(
    tmp_path_factory: pytest.TempPathFactory,
    with_shared_compiled: Callable[[Path], Path],
    name: str,
    caches: tuple[str, ...] = ("cache",),
) -> Path:
    """A module's work directory, its PROTOGEN_CACHE_DIRs (`caches`) sharing the
    session's compiled extensions; skips where compiled mode cannot work."""
    require_toolchain()
    work = tmp_path_factory.mktemp(name)
    for cache in caches:
        with_shared_compiled(work / cache)
    return work


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
