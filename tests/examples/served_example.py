"""Run an example's `serve.py` in a subprocess on a free loopback port, always stopped.

Used by the example tests (HTTP, memcached): the server is the generated one, built
into a per-test-session cache directory, with a hard timeout on start and stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 60.0  # the first start builds the spec into the cache
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ExampleServer:
    """`python examples/<name>/serve.py --listen tcp://127.0.0.1:PORT [ARGS...]`."""

    def __init__(self, name: str, cache_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ, PROTOGEN_CACHE_DIR=str(cache_dir), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLES / name / "serve.py"),
                "--listen",
                self.url,
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.kill()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate(timeout=5)
                raise AssertionError(
                    f"server exited early ({self.process.returncode}): {err}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server never listened on {self.url}")

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> str:
        """SIGINT (graceful); SIGKILL if it lingers. Returns its stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            _, err = self.process.communicate(timeout=5)
        return err or ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.communicate(timeout=5)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def recv_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (raises on timeout)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
