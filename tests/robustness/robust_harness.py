"""Helpers for the robustness tests: build specs written in the tests, serve the
generated server in a subprocess (robust_server.py) that reports its connections'
fates, loopback clients with timeouts, and the server's RSS."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from protogen.generator import generate, write_outputs
from protogen.parser import parse_spec

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "robust_server.py"
TIMEOUT = 15.0


def build(spec_text: str, root: Path, with_tests: bool = False) -> tuple[Path, str]:
    """Generate the modules of `spec_text` into a fresh directory under `root`.

    Returns (directory, protocol name). Directories are keyed by the spec's hash so
    two specs with one protocol name never share one.
    """
    spec = parse_spec(spec_text, "robust.proto.dsl")
    digest = hashlib.sha256(spec_text.encode()).hexdigest()[:12]
    directory = root / f"{spec.name}-{digest}"
    if not directory.exists():
        write_outputs(generate(spec, with_tests=with_tests), directory)
    return directory, spec.name


def wait_for(predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(0.02)


class Served:
    """The generated server of one spec in a subprocess, with its event log."""

    def __init__(
        self,
        gen_dir: Path,
        protocol: str,
        work: Path,
        urls: list[str] | None = None,
        options: dict[str, Any] | None = None,
        behaviour: dict[str, Any] | None = None,
    ) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.events_path = work / "events.jsonl"
        self.log_path = work / "server.log"
        self.events_path.write_text("")
        options = {"install_signal_handlers": True, **(options or {})}
        config = {
            "gen_dir": str(gen_dir),
            "protocol": protocol,
            "urls": urls or ["tcp://127.0.0.1:0"],
            "options": options,
            "events": str(self.events_path),
            "log": str(self.log_path),
            "behaviour": behaviour or {},
        }
        config_path = work / "config.json"
        config_path.write_text(json.dumps(config))
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), str(config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: self.find("boot") or self.process.poll() is not None)
        booted = self.find("boot")
        if not booted:
            self.kill()
            raise AssertionError(f"server did not boot: {self.stderr()}")
        self.urls: list[str] = booted[0]["urls"]
        self.url = self.urls[0]

    # ------------------------------------------------------------ events
    def events(self) -> list[dict[str, Any]]:
        lines = self.events_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e["event"] == event and all(e.get(k) == v for k, v in match.items())
        ]

    def close_of(self, port: int, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The server's close event of the connection from client port `port`."""
        found = wait_for(lambda: self.find("close", peer=port), timeout)
        assert found, f"server never closed the connection from port {port}"
        return found[0]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def rss(self) -> int:
        """Resident set size of the server process, bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    # ------------------------------------------------------------ stopping
    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM (graceful); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"server ignored SIGTERM: {self.stderr()}")
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read() if self.process.stderr else ""


@contextlib.contextmanager
def serving(*args: Any, **kwargs: Any) -> Iterator[Served]:
    served = Served(*args, **kwargs)
    try:
        yield served
    finally:
        if served.alive():
            status = served.stop()
            assert status == 0, f"server exit status {status}: {served.stderr()}"
        if served.process.stderr:
            served.process.stderr.close()


def connect(
    url: str, timeout: float = TIMEOUT, rcvbuf: int | None = None
) -> socket.socket:
    scheme, rest = url.split("://", 1)
    if scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(rest)
        return sock
    host, _, port = rest.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host.strip("[]"), int(port)))
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def closed_by_server(sock: socket.socket, timeout: float = TIMEOUT) -> bool:
    """True once the server closed `sock` (EOF or reset), reading whatever comes."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@contextlib.contextmanager
def in_thread(handler: Any, *urls: str, **options: Any) -> Iterator[Any]:
    """Serve `handler` (an imported generated handler) on an Engine in a thread of
    this process, so a test can look at the handler's state; always stopped."""
    import threading

    from protogen.runtime import Engine, Options

    options.setdefault("install_signal_handlers", False)
    engine = Engine(handler, urls or ("tcp://127.0.0.1:0",), Options(**options))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            engine.run()
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert engine.wait_started(TIMEOUT), "engine did not start"
    try:
        yield engine
    finally:
        engine.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "engine did not stop"
    if errors:
        raise errors[0]


def tcp_states(port: int) -> list[str]:
    """TCP states (hex, as /proc/net/tcp prints them: 08 = CLOSE_WAIT) of the
    server-side sockets of `port`: every socket with that local port that is not
    the listener. Linux only (empty elsewhere)."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as file:
                lines = file.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] != "0A":  # 0A = LISTEN
                states.append(fields[3])
    return states
