"""Pieces of `make attack` (bench/attack.py) against a tiny server of this test:
the CLOSE_WAIT and connection counts read from /proc, the data+FIN client, and
the goals and table of the report. The whole attack run is `make attack`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib.attacks import (  # noqa: E402
    AttackResult,
    BystanderReport,
    DataWithFin,
    Goals,
    Knobs,
    format_table,
)
from benchlib.sockets import Holdings, send_with_fin  # noqa: E402
from benchlib.targets import Stream, Target  # noqa: E402

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/net/tcp"), reason="reads Linux's /proc/net/tcp"
)


class LeakyServer:
    """Answers each line with `ok\\n` and never closes a connection, even after the
    client's FIN: what a server missing end of stream does."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.received: list[bytes] = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = b""
        try:
            while chunk := conn.recv(4096):
                data += chunk
                conn.sendall(b"ok\n" * chunk.count(b"\n"))
        except OSError:
            return
        self.received.append(data)  # end of stream seen: and yet not closed

    def close(self) -> None:
        self.running = False
        self.listener.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def leaky() -> Iterator[LeakyServer]:
    server = LeakyServer()
    try:
        yield server
    finally:
        server.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_close_wait_and_held_connections_are_counted(leaky: LeakyServer) -> None:
    assert Holdings.of(leaky.port, os.getpid()).connections == 0
    clients = [socket.create_connection(("127.0.0.1", leaky.port)) for _ in range(3)]
    assert wait_for(lambda: Holdings.of(leaky.port, None).connections == 3)
    fds_open = Holdings.of(leaky.port, os.getpid()).fds
    for client in clients:
        client.close()
    assert wait_for(lambda: Holdings.of(leaky.port, None).close_wait == 3)
    assert Holdings.of(leaky.port, None).connections == 3  # still held: leaked
    for conn in leaky.conns:
        conn.close()
    assert wait_for(lambda: Holdings.of(leaky.port, None).connections == 0)
    # This process held both ends: three clients, three served connections.
    # (Waited for: a file another test left to the garbage collector may
    # close meanwhile.)
    assert wait_for(lambda: Holdings.of(leaky.port, os.getpid()).fds == fds_open - 6)


def test_send_with_fin_delivers_the_data_then_end_of_stream(leaky: LeakyServer) -> None:
    with socket.create_connection(("127.0.0.1", leaky.port)) as client:
        send_with_fin(client, b"one\ntwo\n")
        assert Stream(client).exact(6) == b"ok\nok\n"
        assert wait_for(lambda: leaky.received == [b"one\ntwo\n"])


def test_the_data_fin_attack_leaves_what_it_finds(leaky: LeakyServer) -> None:
    def read_ok(stream: Stream) -> None:
        assert stream.until(b"\n") == b"ok\n"

    target = Target(
        "leaky",
        lambda port: [],
        request=b"ping\n",
        read_answer=read_ok,
        big_request=b"",
        big_answer=1,
        partial=b"",
        trickle=b"",
        oversize=None,
    )
    attack = DataWithFin(target, leaky.port, Knobs(fin=7))
    attack.open()
    attack.run(time.monotonic() + 10)
    attack.close()
    assert (attack.clients, attack.detail) == (7, "answered 7/7")
    assert wait_for(lambda: Holdings.of(leaky.port, None).close_wait == 7)


def result(**changes: object) -> AttackResult:
    fields: dict[str, object] = dict(
        server="echo",
        attack="slowloris",
        clients=500,
        held=500,
        rss_before=40 << 20,
        rss_peak=41 << 20,
        rss_after=41 << 20,
        bystander=BystanderReport(worst=0.004, requests=300),
        close_wait=0,
        fd_growth=0,
        alive=True,
        detail="dropped by the server 0/500",
    )
    fields.update(changes)
    return AttackResult(**fields)  # type: ignore[arg-type]


def test_goals() -> None:
    goals = Goals(max_latency=0.05, max_rss_growth=64 << 20)
    assert result().missed(goals) == []
    misses = result(
        bystander=BystanderReport(worst=0.2, errors=["ConnectionResetError: x"]),
        rss_peak=200 << 20,
        close_wait=3,
        fd_growth=3,
        alive=False,
    ).missed(goals)
    assert len(misses) == 6
    assert "bystander worst 200 ms >= 50 ms" in misses
    assert "3 sockets left in CLOSE_WAIT" in misses


def test_the_table() -> None:
    goals = Goals()
    table = format_table(
        "echo",
        [result(), result(attack="data+FIN", close_wait=200, fd_growth=200)],
        goals,
    )
    lines = table.splitlines()
    assert lines[0] == "== echo =="
    assert lines[1].split()[:2] == ["attack", "held"]
    row = lines[2].split()
    assert row == ["slowloris", "500/500", "40/41/41", "4.0", "ms", "0", "0", "0", "ok"]
    assert lines[3].split()[-1] == "MISS" and "200" in lines[3]
    assert "  data+FIN: MISSED: 200 sockets left in CLOSE_WAIT" in lines


SPINNER = """
import sys, time
from protogen.runtime import EventHandler, run

class Spinner(EventHandler):
    def on_traffic(self, conn):
        conn.discard()
        started = time.thread_time()
        while time.thread_time() - started < 0.02:  # 20 ms of CPU in one pass
            pass
        conn.write(b"done")

run(Spinner(), sys.argv[1])
"""


def test_pass_cpu_logs_the_cpu_time_of_a_heavy_loop_pass(tmp_path: Path) -> None:
    from benchlib.passcpu import worst_pass
    from benchlib.servers import free_port

    script = tmp_path / "spinner.py"
    script.write_text(SPINNER)
    log = tmp_path / "passes"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "benchlib" / "passcpu.py"), str(log)]
        + [str(script), f"tcp://127.0.0.1:{port}"]
    )
    try:
        started = time.time()
        deadline = time.monotonic() + 30
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        with client:
            client.sendall(b"go")
            assert Stream(client).exact(4) == b"done"
        assert wait_for(lambda: worst_pass(str(log), started, time.time())[0] > 0)
        cpu, events = worst_pass(str(log), started, time.time())
        assert 0.02 <= cpu < 1.0 and events >= 1, (cpu, events)
        assert worst_pass(str(log), 0, started - 1) == (0.0, 0)  # another window
    finally:
        server.terminate()
        server.wait(10)


def test_settling_waits_for_sockets_reset_by_their_clients(leaky: LeakyServer) -> None:
    # A client closing with unread data resets its connection: the server's
    # socket leaves ESTABLISHED at once (state CLOSE, not in the connection
    # count) but stays open until the server closes it. Counting descriptors
    # as soon as the connections were gone reported such sockets as leaked.
    import attack

    pid = os.getpid()
    before = Holdings.of(leaky.port, pid)
    clients = [socket.create_connection(("127.0.0.1", leaky.port)) for _ in range(5)]
    for client in clients:
        client.sendall(b"x\n")
    assert wait_for(lambda: len(leaky.conns) == 5)
    assert wait_for(lambda: all(Stream(c).exact(3) == b"ok\n" for c in clients))
    for conn in leaky.conns:
        conn.sendall(b"unread")  # the clients close with this unread: a reset
    time.sleep(0.1)
    for client in clients:
        client.close()
    assert wait_for(lambda: Holdings.of(leaky.port, None).connections == 0)
    # The leaky server closes its sockets only a moment later.
    closer = threading.Timer(0.5, lambda: [conn.close() for conn in leaky.conns])
    closer.start()
    try:
        after = attack.settle(leaky.port, pid, before)
    finally:
        closer.join()
    assert (after.connections, after.fds) == (before.connections, before.fds)
