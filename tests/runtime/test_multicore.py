"""Multi-process engine: balancing, reuseport, supervision, graceful stop.

Every server runs in a subprocess (this file run as a script, see the bottom)
with a hard timeout, in its own process group so a failing test can still
kill everything it started.  Each worker prints ``BOOT <pid>`` from on_boot
and ``SHUTDOWN <pid>`` from on_shutdown; a connection's ``pid`` request is
answered with the worker's pid.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

HERE = Path(__file__).resolve()
SERVER_TIMEOUT = 30.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (reads /proc, no psutil)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Server:
    """A multicore server subprocess and the lines it prints."""

    def __init__(self, *urls: str, loops: int = 2, **options: object) -> None:
        args = [sys.executable, str(HERE), "--loops", str(loops)]
        for name, value in options.items():
            args += ["--option", f"{name}={value!r}"]
        args += list(urls)
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # own process group: teardown can kill it all
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(
                target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()
        self.boots: list[int] = []

    def _pump(self, stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            if sink is self.stdout:
                self.lines.put(line.strip())

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 10.0) -> list[int]:
        found: list[int] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"server did not print {count}x {prefix!r}; stdout={self.stdout} "
                    f"stderr={''.join(self.stderr)[-2000:]}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.startswith(prefix + " "):
                found.append(int(line.split()[1]))
        return found

    def wait_booted(self, workers: int = 2) -> list[int]:
        self.boots = self.wait_for("BOOT", workers)
        return self.boots

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        else:  # the parent is gone; kill workers it may have left in its group
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*urls: str, **kwargs) -> Server:
        server = Server(*urls, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill_all()


def ask(sock: socket.socket, request: bytes = b"pid\n") -> int:
    sock.sendall(request)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return int(data)


def connect(
    port: int, source: str | None = None, timeout: float = 5.0
) -> socket.socket:
    return socket.create_connection(
        ("127.0.0.1", port),
        timeout=timeout,
        source_address=(source, 0) if source else None,
    )


def connect_retry(port: int, timeout: float = 5.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def close_all(socks) -> None:
    for sock in socks:
        sock.close()


# ------------------------------------------------------------------ acceptor mode


def test_round_robin_splits_200_connections_evenly(servers, tmp_path):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}", load_balancing="round_robin")
    boots = server.wait_booted()
    socks = [connect(port) for _ in range(200)]
    try:
        pids = Counter(ask(sock) for sock in socks)
        assert pids == {boots[0]: 100, boots[1]: 100}
        # count_connections() sums both workers (shared-memory counters).
        assert wait_until(lambda: ask(socks[0], b"count\n") == 200)
    finally:
        close_all(socks)
    probe = connect(port)
    assert wait_until(lambda: ask(probe, b"count\n") == 1)
    probe.close()
    assert server.stop() == 0


def test_unix_socket_in_acceptor_mode(servers, tmp_path):
    path = tmp_path / "mc.sock"
    server = servers(f"unix://{path}", load_balancing="round_robin")
    boots = server.wait_booted()
    socks = []
    for _ in range(10):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(path))
        socks.append(sock)
    try:
        assert Counter(ask(sock) for sock in socks) == {boots[0]: 5, boots[1]: 5}
    finally:
        close_all(socks)
    assert server.stop() == 0
    assert not path.exists(), "the unix socket file must be removed on shutdown"


def test_least_connections_prefers_the_worker_holding_fewer(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}", load_balancing="least_connections")
    boots = server.wait_booted()
    held = [connect(port) for _ in range(10)]
    try:
        owner = {sock: ask(sock) for sock in held}
        assert Counter(owner.values()) == {boots[0]: 5, boots[1]: 5}
        # Close four of worker A's connections: A holds 1, B holds 5.
        a, b = boots
        for sock in [s for s in held if owner[s] == a][:4]:
            sock.close()
            held.remove(sock)
        assert wait_until(lambda: ask(held[0], b"count\n") == 6)
        fresh = [connect(port) for _ in range(4)]
        held += fresh
        # Every new connection goes to A until it catches up with B.
        assert [ask(sock) for sock in fresh] == [a, a, a, a]
        more = [connect(port) for _ in range(4)]
        held += more
        assert Counter(ask(sock) for sock in more) == {a: 2, b: 2}
    finally:
        close_all(held)
    assert server.stop() == 0


def test_source_hash_keeps_each_client_address_on_one_worker(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}", load_balancing="source_addr_hash")
    server.wait_booted()
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    seen: dict[str, set[int]] = {}
    socks = []
    try:
        for round_ in range(8):
            for source in sources:
                sock = connect(port, source=source)
                socks.append(sock)
                seen.setdefault(source, set()).add(ask(sock))
        # Every connection from one address (each from a new port) hit one worker...
        assert all(len(pids) == 1 for pids in seen.values()), seen
        # ...and the addresses are not all mapped to the same worker.
        assert len(set().union(*seen.values())) == 2, seen
    finally:
        close_all(socks)
    assert server.stop() == 0


def test_max_connections_per_worker_pauses_accepting_in_acceptor_mode(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}", max_connections=2)
    boots = server.wait_booted()
    held = [connect(port) for _ in range(4)]
    try:
        assert Counter(ask(sock) for sock in held) == {boots[0]: 2, boots[1]: 2}
        waiting = connect(port)  # the kernel completes the handshake; nobody serves it
        held.append(waiting)
        waiting.sendall(b"pid\n")
        waiting.settimeout(0.5)
        with pytest.raises(socket.timeout):
            waiting.recv(16)
        closed = held.pop(0)
        owner = ask(closed)
        closed.close()
        waiting.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            chunk = waiting.recv(16)
            assert chunk
            data += chunk
        assert int(data) == owner  # the worker with room took it
    finally:
        close_all(held)
    assert server.stop() == 0


# ------------------------------------------------------------------ reuseport mode


def test_reuseport_serves_tcp_and_udp(servers):
    tcp_port = free_port()
    udp_port = free_port(socket.SOCK_DGRAM)
    server = servers(
        f"tcp://127.0.0.1:{tcp_port}",
        f"udp://127.0.0.1:{udp_port}",
        load_balancing="reuseport",
    )
    boots = set(server.wait_booted())
    socks = [connect_retry(tcp_port) for _ in range(40)]
    try:
        tcp_pids = Counter(ask(sock) for sock in socks)
    finally:
        close_all(socks)
    assert set(tcp_pids) <= boots and sum(tcp_pids.values()) == 40
    # The kernel hashes the 4-tuple; 40 source ports all on one worker is ~1e-12.
    assert set(tcp_pids) == boots, tcp_pids

    udp_pids: Counter = Counter()
    for _ in range(40):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.bind(("127.0.0.1", 0))
            for _attempt in range(5):  # UDP: retry a lost datagram
                client.sendto(b"pid\n", ("127.0.0.1", udp_port))
                try:
                    reply, _ = client.recvfrom(64)
                except socket.timeout:
                    continue
                udp_pids[int(reply)] += 1
                break
    assert sum(udp_pids.values()) == 40
    assert set(udp_pids) == boots, udp_pids
    assert server.stop() == 0


# ------------------------------------------------------------------ supervision


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}", load_balancing="round_robin")
    first, second = server.wait_booted()
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(first))  # dead (a zombie at most)
    # Until the replacement is up, the survivor answers everything.
    for _ in range(4):
        with connect(port) as sock:
            assert ask(sock) != first
    (replacement,) = server.wait_for("BOOT", 1)
    assert replacement not in (first, second)
    answered = Counter()
    for _ in range(10):
        with connect(port) as sock:
            answered[ask(sock)] += 1
    assert set(answered) == {second, replacement}
    assert wait_until(lambda: "killed by SIGKILL" in "".join(server.stderr), timeout=5)
    assert server.stop() == 0
    for pid in (second, replacement):
        assert not pid_alive(pid)


def test_graceful_stop_on_sigterm_leaves_no_process_behind(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}")
    boots = server.wait_booted()
    held = [connect(port) for _ in range(6)]
    for sock in held:
        ask(sock)
    assert server.stop(signal.SIGTERM) == 0
    shutdowns = server.wait_for("SHUTDOWN", 2)
    assert sorted(shutdowns) == sorted(boots)
    # Every held connection was closed by its worker (EOF, not a hang).
    for sock in held:
        sock.settimeout(5)
        assert sock.recv(16) == b""
        sock.close()
    assert not any(pid_alive(pid) for pid in boots)
    with pytest.raises(OSError):
        connect(port, timeout=1).close()


def test_sigint_also_stops_everything(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}")
    boots = server.wait_booted()
    assert server.stop(signal.SIGINT) == 0
    assert not any(pid_alive(pid) for pid in boots)


def test_engine_stop_in_a_worker_stops_the_whole_server(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}")
    boots = server.wait_booted()
    with connect(port) as sock:
        sock.sendall(b"stop\n")
        assert server.proc.wait(15) == 0
    assert sorted(server.wait_for("SHUTDOWN", 2)) == sorted(boots)
    assert not any(pid_alive(pid) for pid in boots)


def test_workers_exit_when_the_parent_is_killed(servers):
    port = free_port()
    server = servers(f"tcp://127.0.0.1:{port}")
    boots = server.wait_booted()
    server.proc.kill()  # SIGKILL: no chance to clean up
    server.proc.wait(5)
    # Each worker reads EOF on its channel and stops by itself.
    assert wait_until(lambda: not any(pid_alive(pid) for pid in boots), timeout=10)


def test_multicore_server_in_a_thread_counts_and_stops():
    """The parent API: count_connections() across workers, stop() from another thread."""
    from protogen.runtime.handler import Action, EventHandler
    from protogen.runtime.multicore import MulticoreServer
    from protogen.runtime.options import Options

    class Echo(EventHandler):
        def on_traffic(self, conn):
            conn.write(conn.next())
            return Action.NONE

    port = free_port()
    server = MulticoreServer(
        Echo(),
        [f"tcp://127.0.0.1:{port}"],
        Options(loops=2, install_signal_handlers=False, drain_timeout=1.0),
    )
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        assert server.wait_started(5)
        assert server.bound_addresses == [f"tcp://127.0.0.1:{port}"]
        socks = [connect(port) for _ in range(5)]
        for sock in socks:
            sock.sendall(b"hi")
            assert sock.recv(2) == b"hi"
        assert wait_until(lambda: server.count_connections() == 5)
        pids = server.worker_pids()
        assert len(pids) == 2
        close_all(socks)
        assert wait_until(lambda: server.count_connections() == 0)
    finally:
        server.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert not any(pid_alive(pid) for pid in pids)
    assert server.count_connections() == 0


# ------------------------------------------------------------------ supervisor unit tests


def make_supervisor(worker_main, **kwargs):
    from protogen.runtime.balancer import ConnectionCounters
    from protogen.runtime.supervisor import Supervisor

    counters = ConnectionCounters(kwargs.pop("workers", 1))
    supervisor = Supervisor(
        workers=counters.workers,
        worker_main=worker_main,
        counters=counters,
        install_signal_handlers=False,
        **kwargs,
    )
    return supervisor, counters


def run_with_deadline(supervisor, timeout: float = 15.0) -> None:
    runner = threading.Thread(target=supervisor.run, daemon=True)
    runner.start()
    runner.join(timeout)
    if runner.is_alive():
        supervisor.stop()
        runner.join(10)
        raise AssertionError("supervisor did not finish")


def test_supervisor_gives_up_on_a_crash_loop(caplog):
    supervisor, counters = make_supervisor(
        lambda link: 7, backoff_initial=0.01, backoff_max=0.02, max_quick_failures=3
    )
    run_with_deadline(supervisor)
    assert supervisor.gave_up
    assert supervisor.restarts == 3
    assert supervisor.worker_pids() == []
    assert "exit status 7" in caplog.text and "giving up" in caplog.text
    counters.close()


def test_supervisor_stops_when_a_worker_exits_cleanly():
    supervisor, counters = make_supervisor(lambda link: 0, workers=2)
    run_with_deadline(supervisor)
    assert not supervisor.gave_up and supervisor.restarts == 0
    counters.close()


def test_supervisor_passes_accepted_sockets_to_workers_and_quits_them():
    """Raw fd passing, without the event loop: each worker answers its index."""
    from protogen.runtime.balancer import RoundRobin

    def worker_main(link) -> int:
        link.channel.setblocking(True)
        while True:
            fds, quit_requested, parent_gone = link.receive()
            for fd in fds:
                with socket.socket(fileno=fd) as conn:
                    conn.setblocking(True)
                    conn.sendall(b"%d\n" % link.index)
            if quit_requested or parent_gone:
                return 0 if quit_requested else 9

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    supervisor, counters = make_supervisor(
        worker_main, workers=2, listeners=[listener], balancer=RoundRobin(2)
    )
    runner = threading.Thread(target=supervisor.run, daemon=True)
    runner.start()
    try:
        assert supervisor.wait_started(5)
        answers = []
        for _ in range(6):
            with connect(port) as sock:
                answers.append(sock.recv(8))
        assert answers == [b"0\n", b"1\n"] * 3
        pids = supervisor.worker_pids()
        assert len(pids) == 2
    finally:
        supervisor.stop()
        runner.join(10)
    assert not runner.is_alive()
    assert not any(pid_alive(pid) for pid in pids)
    assert supervisor.restarts == 0 and not supervisor.gave_up
    listener.close()
    counters.close()


def test_worker_count_follows_loops_and_multicore():
    from protogen.runtime.multicore import accept_mode, worker_count
    from protogen.runtime.options import Options

    assert worker_count(Options(loops=3)) == 3
    assert worker_count(Options(multicore=True)) == (os.cpu_count() or 1)
    assert worker_count(Options(loops=4, multicore=True)) == 4
    assert (
        accept_mode(Options(load_balancing="least_connections")) == "least-connections"
    )
    assert accept_mode(Options(reuse_port=True)) == "reuseport"
    assert accept_mode(Options(load_balancing="reuseport")) == "reuseport"


# ------------------------------------------------------------------ the server script


def _serve(argv: list[str]) -> None:
    import argparse
    import ast
    import logging

    from protogen.runtime.engine import run
    from protogen.runtime.handler import Action, EventHandler

    parser = argparse.ArgumentParser()
    parser.add_argument("--loops", type=int, default=2)
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args(argv)
    options = {}
    for item in args.option:
        name, _, value = item.partition("=")
        options[name] = ast.literal_eval(value)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    class PidHandler(EventHandler):
        """Line protocol: pid | count | stop."""

        engine = None

        def on_boot(self, engine):
            self.engine = engine
            os.write(1, b"BOOT %d\n" % os.getpid())  # one write: lines never interleave
            return Action.NONE

        def on_shutdown(self, engine):
            os.write(1, b"SHUTDOWN %d\n" % os.getpid())

        def on_traffic(self, conn):
            data = bytes(conn.peek())
            end = data.rfind(b"\n")
            if end < 0 and not getattr(conn, "datagram", False):
                return Action.NONE
            conn.discard(len(data) if end < 0 else end + 1)
            for line in data[: end if end >= 0 else len(data)].split(b"\n"):
                command = line.strip()
                if command == b"pid":
                    conn.write(b"%d\n" % os.getpid())
                elif command == b"count":
                    conn.write(b"%d\n" % self.engine.count_connections())
                elif command == b"stop":
                    self.engine.stop()
            return Action.NONE

    run(PidHandler(), *args.urls, loops=args.loops, drain_timeout=2.0, **options)


if __name__ == "__main__":
    signal.alarm(int(SERVER_TIMEOUT))  # hard limit: a stuck server dies by itself
    _serve(sys.argv[1:])
