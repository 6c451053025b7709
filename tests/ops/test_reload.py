"""SIGHUP reloads without loss: new code on the same listening sockets, the
connections open at the time served to their end by the retiring process,
under a constant closed-loop load of short connections (0 errors, 0 lost
frames). Single-loop servers used to die of SIGHUP (exit 129, no
on_shutdown)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ops_harness import (
    ECHO_SPEC,
    Process,
    free_port,
    frame,
    protogen_serve_argv,
    recv_exact,
    serve_env,
    stop,
    wait_until,
)

HANDLER = """
import os

from echo_handler import EchoEchoHandler

VERSION = "{version}"


class Tracing(EchoEchoHandler):
    def on_boot(self, engine):
        # One write per line: several processes share this stderr.
        os.write(2, f"BOOT {{VERSION}} pid={{os.getpid()}}\\n".encode())

    def on_shutdown(self, engine):
        os.write(2, f"SHUTDOWN {{VERSION}} pid={{os.getpid()}}\\n".encode())
"""


class Load:
    """Closed-loop clients: connect, one frame, its echo, close; again."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.done = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True)
            for i in range(clients)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, client: int) -> None:
        n = 0
        while not self._stop.is_set():
            payload = frame(b"c%d-%d" % (client, n))
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=10
                ) as s:
                    s.sendall(payload)
                    if recv_exact(s, len(payload)) != payload:
                        self.errors.append(f"wrong echo for {payload!r}")
                self.done += 1
            except OSError as error:
                self.errors.append(f"{type(error).__name__}: {error}")
            n += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)


def boots(process: Process, version: str) -> set[int]:
    return {
        int(m.group(1))
        for line in process.lines
        if (m := re.match(rf"BOOT {version} pid=(\d+)", line))
    }


@pytest.mark.parametrize("loops", [1, 2])
def test_sighup_reloads_under_load_without_loss(tmp_path: Path, loops: int) -> None:
    (tmp_path / "tracing.py").write_text(HANDLER.format(version="v1"))
    port, metrics = free_port(), free_port()
    argv = protogen_serve_argv(
        ECHO_SPEC,
        "--handler",
        "tracing:Tracing",
        "--listen",
        f"tcp://127.0.0.1:{port}",
        "--loops",
        str(loops),
        "--metrics",
        f"tcp://127.0.0.1:{metrics}",
        "--reload-grace",
        "10",
    )
    server = Process(argv, env=serve_env(tmp_path / "cache"), cwd=tmp_path)
    try:
        server.wait_line("serving")
        wait_until(lambda: len(boots(server, "v1")) == loops, 20, "workers booted")
        old_pids = boots(server, "v1")
        # A long connection open across the reload: the old code serves it on.
        long = socket.create_connection(("127.0.0.1", port), timeout=10)
        long.sendall(frame(b"before"))
        assert recv_exact(long, 10) == frame(b"before")
        load = Load(port)
        try:
            wait_until(lambda: load.done > 50, 20, "load running")
            (tmp_path / "tracing.py").write_text(HANDLER.format(version="v2"))
            server.signal(signal.SIGHUP)
            wait_until(lambda: len(boots(server, "v2")) == loops, 30, "new code booted")
            before = load.done
            wait_until(lambda: load.done > before + 50, 20, "load after reload")
        finally:
            load.stop()
        assert load.errors == []
        # The metrics endpoint moved to the new process with the listeners.
        url = f"http://127.0.0.1:{metrics}"
        with urllib.request.urlopen(url + "/healthz", timeout=10) as reply:
            assert reply.status == 200

        def new_workers() -> bool:
            with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
                text = reply.read().decode()
            return text.count("protogen_connections_open{") == loops

        wait_until(new_workers, 10, "the new workers' metrics")
        new_pids = boots(server, "v2")
        assert not new_pids & old_pids or loops == 1
        long.sendall(frame(b"after"))
        assert recv_exact(long, 9) == frame(b"after")
        assert server.process.poll() is None  # SIGHUP did not kill it
        long.close()
        # The retiring process sees its last connection close, shuts down
        # (on_shutdown) and exits.
        wait_until(
            lambda: any(line.startswith("SHUTDOWN v1") for line in server.lines),
            20,
            "the old code's on_shutdown",
        )
        assert stop(server) == 0
        assert any(line.startswith("SHUTDOWN v2") for line in server.lines)
    finally:
        server.kill()
