"""Starting, probing, measuring and always stopping the servers under test."""

from __future__ import annotations

import atexit
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .pinning import SERVER_CPU, pinned

_live: set["Server"] = set()


class ServerError(RuntimeError):
    """A server did not start, or died."""


def free_port() -> int:
    """A port the kernel just considered free (bind to port 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raise_nofile_limit() -> None:
    """Children inherit the limit: servers holding 15 000 connections need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the runner dies, even by SIGKILL
    (Linux PR_SET_PDEATHSIG; it survives the exec of taskset and of the server)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(
            1, signal.SIGTERM
        )  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    for child in children.read().split():
                        found.append(int(child))
                        todo.append(int(child))
        except OSError:
            continue
    return found


class Server:
    """A server process in its own session, pinned to the server CPU.

    Context manager: waits until the port accepts connections; on exit (or at
    interpreter exit, or on SIGTERM to the runner) the whole process group is
    terminated, then killed."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        port: int,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        cpu: int | None = SERVER_CPU,
        start_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.cmd = pinned(cmd, cpu)
        self.port = port
        self.cwd = cwd
        self.env = env
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")

    def start(self) -> "Server":
        raise_nofile_limit()
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _live.add(self)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise ServerError(
                    f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerError(
            f"{self.name} did not listen on {self.port}: {self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        """Resident set size in bytes of the server and all its descendants."""
        if not self.alive():
            return 0
        assert self.proc is not None
        return sum(
            _rss_of(pid) for pid in [self.proc.pid, *_descendants(self.proc.pid)]
        )

    def log_tail(self, limit: int = 1500) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        _live.discard(self)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> "Server":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all() -> None:
    for server in list(_live):
        server.stop()


def _on_terminate(signum: int, frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Make sure no server outlives the runner: at exit and on SIGTERM/SIGHUP."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_terminate)
    signal.signal(signal.SIGHUP, _on_terminate)
