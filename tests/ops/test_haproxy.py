"""Behind a real HAProxy in TCP mode: send-proxy (v1) and send-proxy-v2 reach
the server, which sees the client's real address (access log), and health
checks take a stopped instance out of rotation."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ops_harness import (
    free_port,
    frame,
    haproxy,
    haproxy_config,
    protogen_serve,
    recv_exact,
    stop,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not Path("/usr/sbin/haproxy").exists(), reason="needs haproxy (Debian package)"
)


def access_entries(lines: list[str]) -> list[dict[str, object]]:
    entries = []
    for line in lines:
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "protogen.access":
                entries.append(entry)
    return entries


def test_two_instances_behind_haproxy_see_the_real_client(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a_port, b_port, fe_port = free_port(), free_port(), free_port()
    common = ("--proxy-protocol", "--access-log", "--log-format", "json")
    with (
        protogen_serve(cache, "--listen", f"tcp://127.0.0.1:{a_port}", *common) as a,
        protogen_serve(
            cache,
            "--listen",
            f"tcp://127.0.0.1:{b_port}",
            *common,
            "--proxy-from",
            "127.0.0.0/8",
        ) as b,
    ):
        config = haproxy_config(
            fe_port,
            [
                f"server a 127.0.0.1:{a_port} send-proxy-v2 check inter 200ms",
                f"server b 127.0.0.1:{b_port} send-proxy check inter 200ms",
            ],
        )
        with haproxy(tmp_path, config, fe_port):
            clients = []
            for i in range(4):  # round robin: two on each instance
                sock = socket.create_connection(("127.0.0.1", fe_port), timeout=10)
                clients.append(sock)
                payload = frame(b"hello %d" % i)
                sock.sendall(payload)
                assert recv_exact(sock, len(payload)) == payload
            ports = {f"127.0.0.1:{s.getsockname()[1]}" for s in clients}
            for sock in clients:
                sock.close()

            def logged() -> set[str]:
                seen = access_entries(a.lines) + access_entries(b.lines)
                return {str(e["remote"]) for e in seen if e["proxied"]}

            wait_until(lambda: ports <= logged(), 10, "access log lines")
            # Both instances served, each with its own header version.
            for process in (a, b):
                remotes = {str(e["remote"]) for e in access_entries(process.lines)}
                assert remotes & ports, process.text()
            # The line counts the client's bytes (not the header) both ways.
            for entry in access_entries(a.lines) + access_entries(b.lines):
                if entry["remote"] in ports:
                    assert entry["bytes_in"] == entry["bytes_out"] == 11
                    assert entry["reason"] == "closed"


def test_haproxy_check_marks_a_stopped_instance_down(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a_port, b_port, fe_port = free_port(), free_port(), free_port()
    stats = tmp_path / "haproxy.sock"
    with (
        protogen_serve(
            cache, "--listen", f"tcp://127.0.0.1:{a_port}", "--proxy-protocol"
        ) as a,
        protogen_serve(
            cache, "--listen", f"tcp://127.0.0.1:{b_port}", "--proxy-protocol"
        ),
    ):
        config = haproxy_config(
            fe_port,
            [
                f"server a 127.0.0.1:{a_port} send-proxy-v2 check inter 100ms fall 2 rise 1",
                f"server b 127.0.0.1:{b_port} send-proxy-v2 check inter 100ms fall 2 rise 1",
            ],
            stats_socket=stats,
        )
        with haproxy(tmp_path, config, fe_port):
            assert stop(a, signal.SIGTERM) == 0

            def a_down() -> bool:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(5)
                    s.connect(str(stats))
                    s.sendall(b"show servers state be\n")
                    text = b""
                    while chunk := s.recv(65536):
                        text += chunk
                for line in text.decode().splitlines():
                    fields = line.split()
                    if len(fields) > 5 and fields[3] == "a":
                        return fields[5] == "0"  # srv_op_state 0: stopped/down
                return False

            wait_until(a_down, 10, "haproxy marking the stopped instance down")
            # Every new connection now lands on b and is answered.
            for i in range(20):
                with socket.create_connection(("127.0.0.1", fe_port), timeout=10) as s:
                    payload = frame(b"after %d" % i)
                    s.sendall(payload)
                    assert recv_exact(s, len(payload)) == payload


class Clients:
    """Through HAProxy: closed-loop short connections (one request each) and
    long connections sending a request every few milliseconds."""

    def __init__(self, port: int, short: int = 3, long: int = 4) -> None:
        self.port = port
        self.short_done = 0
        self.long_done = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.long_socks = [
            socket.create_connection(("127.0.0.1", port), timeout=10)
            for _ in range(long)
        ]
        self.threads = [
            threading.Thread(target=self._short, args=(i,), daemon=True)
            for i in range(short)
        ] + [
            threading.Thread(target=self._long, args=(sock,), daemon=True)
            for sock in self.long_socks
        ]
        for thread in self.threads:
            thread.start()

    def _short(self, i: int) -> None:
        n = 0
        while not self.stopping.is_set():
            payload = frame(b"s%d-%d" % (i, n))
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=10
                ) as s:
                    s.sendall(payload)
                    if recv_exact(s, len(payload)) != payload:
                        self.errors.append("wrong echo")
                self.short_done += 1
            except OSError as error:
                self.errors.append(f"short: {type(error).__name__}: {error}")
            n += 1

    def _long(self, sock: socket.socket) -> None:
        n = 0
        while not self.stopping.is_set():
            payload = frame(b"long-%d" % n)
            try:
                sock.sendall(payload)
                if recv_exact(sock, len(payload)) != payload:
                    self.errors.append("wrong echo")
            except OSError as error:
                self.errors.append(f"long: {type(error).__name__}: {error}")
                return
            self.long_done += 1
            n += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(20)
        for sock in self.long_socks:
            sock.close()


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except urllib.error.URLError:
        return 0  # not listening


@pytest.mark.parametrize("loops", [1, 2])
def test_sigterm_behind_haproxy_loses_nothing(tmp_path: Path, loops: int) -> None:
    """kill -TERM of one instance under load: /healthz turns 503, HAProxy's
    check takes it out, its open connections are served until they close."""
    cache = tmp_path / "cache"
    ports = {name: (free_port(), free_port()) for name in "ab"}
    fe_port = free_port()
    servers = []
    checks = []
    for name, (port, metrics) in ports.items():
        servers.append(
            protogen_serve(
                cache,
                "--listen",
                f"tcp://127.0.0.1:{port}",
                "--metrics",
                f"tcp://127.0.0.1:{metrics}",
                "--proxy-protocol",
                "--stop-grace",
                "20",
                "--loops",
                str(loops),
            )
        )
        checks.append(
            f"server {name} 127.0.0.1:{port} send-proxy-v2 check port {metrics}"
            " inter 100ms fall 1 rise 1"
        )
    with servers[0] as a, servers[1]:
        config = haproxy_config(
            fe_port, checks, extra_backend="    option httpchk GET /healthz\n"
        )
        with haproxy(tmp_path, config, fe_port):
            clients = Clients(fe_port)
            try:
                wait_until(lambda: clients.short_done > 40, 20, "load running")
                long_before = clients.long_done
                a.signal(signal.SIGTERM)
                a_metrics = ports["a"][1]
                wait_until(lambda: health(a_metrics) in (503, 0), 5, "a unready")
                assert health(a_metrics) == 503, a.text()
                done = clients.short_done
                wait_until(lambda: clients.short_done > done + 100, 30, "more load")
                # The long connections on a are still answered (not cut).
                wait_until(
                    lambda: clients.long_done > long_before + 100, 20, "long requests"
                )
                assert a.process.poll() is None  # still serving its connections
            finally:
                clients.stop()
            assert clients.errors == []
            # Its connections closed, a exits within its grace, status 0.
            assert a.wait(20) == 0


def test_http_example_behind_haproxy_sees_the_client(tmp_path: Path) -> None:
    """The HTTP example behind send-proxy-v2: curl through HAProxy gets its
    answers, and the server's access log names curl's own address."""
    import subprocess
    import sys

    from ops_harness import ROOT, Process, serve_env

    port, fe_port = free_port(), free_port()
    server = Process(
        [
            sys.executable,
            str(ROOT / "examples" / "http" / "serve.py"),
            "--listen",
            f"tcp://127.0.0.1:{port}",
            "--proxy-protocol",
            "--access-log",
            "--log-format",
            "json",
        ],
        env=serve_env(tmp_path / "cache"),
    )
    try:
        server.wait_line("serving")
        config = haproxy_config(
            fe_port, [f"server h 127.0.0.1:{port} send-proxy-v2 check inter 200ms"]
        )
        with haproxy(tmp_path, config, fe_port):
            local = free_port()
            result = subprocess.run(
                [
                    "curl",
                    "-fsS",
                    "--local-port",
                    str(local),
                    f"http://127.0.0.1:{fe_port}/plaintext",
                    f"http://127.0.0.1:{fe_port}/plaintext",
                ],
                capture_output=True,
                timeout=30,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout == b"Hello, World!" * 2

            def logged() -> list[dict[str, object]]:
                return [
                    e
                    for e in access_entries(server.lines)
                    if e["remote"] == f"127.0.0.1:{local}"
                ]

            (entry,) = wait_until(logged, 10, "curl's access line")
            assert entry["proxied"] is True and entry["bytes_out"] > 26
    finally:
        server.kill()
