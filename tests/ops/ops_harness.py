"""Subprocess servers and a real HAProxy for the operations tests.

Everything binds loopback ports picked free, every process is killed in
`finally` (context managers), and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[2]
ECHO_SPEC = ROOT / "examples" / "echo.proto.dsl"
START_TIMEOUT = 60.0  # the first start builds the spec into the cache
STOP_TIMEOUT = 20.0
HEADER = struct.Struct(">I")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Process:
    """A subprocess whose stderr lines are collected by a thread."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str] | None = None, **kw: Any
    ) -> None:
        self.argv = list(argv)
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            **kw,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        def found() -> str | None:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.argv[:3]} exited {self.process.returncode}:\n{self.text()}"
                )
            return None

        return str(wait_until(found, timeout, f"{needle!r} from {self.argv[:3]}"))

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self._reader.join(5)


def serve_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PROTOGEN_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def protogen_serve_argv(spec: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "protogen", "serve", str(spec), *args]


@contextlib.contextmanager
def protogen_serve(
    cache_dir: Path,
    *args: str,
    spec: Path = ECHO_SPEC,
    env: dict[str, str] | None = None,
) -> Iterator[Process]:
    """`protogen serve SPEC ARGS...`; yields once it says it is serving."""
    process = Process(protogen_serve_argv(spec, *args), env=env or serve_env(cache_dir))
    try:
        process.wait_line("serving")
        yield process
    finally:
        process.kill()


@contextlib.contextmanager
def haproxy(tmp_path: Path, config: str, frontend_port: int) -> Iterator[Process]:
    """A real HAProxy (`haproxy -db -f CONFIG`), up once the frontend accepts."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run(
        [binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    process = Process([binary, "-db", "-f", str(path)])
    try:
        wait_until(lambda: can_connect(frontend_port), 20, "haproxy's frontend")
        yield process
    finally:
        process.kill()


def haproxy_config(
    frontend_port: int,
    servers: Sequence[str],
    *,
    stats_socket: Path | None = None,
    extra_backend: str = "",
) -> str:
    stats = f"    stats socket {stats_socket} level admin\n" if stats_socket else ""
    lines = "\n".join(f"    {server}" for server in servers)
    return (
        "global\n"
        "    maxconn 2000\n"
        f"{stats}"
        "defaults\n"
        "    mode tcp\n"
        "    timeout connect 2s\n"
        "    timeout client 30s\n"
        "    timeout server 30s\n"
        "    retries 3\n"
        "    option redispatch\n"
        "frontend fe\n"
        f"    bind 127.0.0.1:{frontend_port}\n"
        "    default_backend be\n"
        "backend be\n"
        "    balance roundrobin\n"
        f"{extra_backend}"
        f"{lines}\n"
    )


def stop(process: Process, signum: int = signal.SIGTERM) -> int:
    process.signal(signum)
    return process.wait()
