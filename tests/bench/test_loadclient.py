"""The native load client verifies what it measures: it accepts a correct echo and
reports corruption, loss, reordering and dead servers as errors (non-zero exit)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib.client import ensure_loadclient  # noqa: E402
from benchlib.report import check_targets, summarize  # noqa: E402
from benchlib.wrk import parse_wrk  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")

LENGTH = struct.Struct(">I")
# Takes (index of the frame on the server, payload) and returns the bytes to send back.
Reply = Callable[[int, bytes], bytes]


def echo_frame(index: int, payload: bytes) -> bytes:
    return LENGTH.pack(len(payload)) + payload


@pytest.fixture(scope="module")
def loadclient(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_loadclient(out_dir=tmp_path_factory.mktemp("bin"))


class ThreadedServer:
    """A tiny asyncio server on its own thread and loop, bound to a free port."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        unix_path: str | None = None,
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.factory = protocol_factory
        self.unix_path = unix_path
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10), "test server did not start"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        if self.unix_path:
            listening = self.loop.create_unix_server(self.factory, self.unix_path)
        else:
            listening = self.loop.create_server(
                self.factory, "127.0.0.1", 0, backlog=1024
            )
        server = self.loop.run_until_complete(listening)
        if not self.unix_path:
            self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def framed_server(reply: Reply, unix_path: str | None = None) -> ThreadedServer:
    """Length-prefixed server answering each frame with `reply(index, payload)`."""
    counter = iter(range(1 << 62))

    class Framed(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = bytearray()

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            out = []
            while len(self.buffer) >= 4:
                (size,) = LENGTH.unpack_from(self.buffer)
                if len(self.buffer) < 4 + size:
                    break
                out.append(reply(next(counter), bytes(self.buffer[4 : 4 + size])))
                del self.buffer[: 4 + size]
            self.transport.write(b"".join(out))

    return ThreadedServer(Framed, unix_path)


def line_server(ending: bytes) -> ThreadedServer:
    class Lines(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            *lines, self.buffer = (self.buffer + data).split(b"\n")
            self.transport.write(b"".join(line + ending for line in lines))

    return ThreadedServer(Lines)


@pytest.fixture
def serve() -> Iterator[Callable[[ThreadedServer], ThreadedServer]]:
    servers: list[ThreadedServer] = []
    yield lambda server: servers.append(server) or server
    for server in servers:
        server.close()


def run_client(
    binary: Path, port: int, *args: str, timeout: float = 30
) -> tuple[int, dict]:
    cmd = [
        str(binary),
        "--port",
        str(port),
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_correct_echo_passes_with_every_frame_accounted(loadclient, serve) -> None:
    server = serve(framed_server(echo_frame))
    code, report = run_client(loadclient, server.port, "--conns", "8", "--depth", "4")
    assert code == 0, report
    assert report["errors"] == 0 and report["lost"] == 0 and report["mismatches"] == 0
    assert report["requests"] > 0 and report["rps"] > 0
    assert report["sent"] == report["received"] > report["requests"] - 1
    assert 0 < report["p50_us"] <= report["p99_us"] <= report["max_us"] + 1


def test_unix_socket_target(loadclient, serve, tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    serve(framed_server(echo_frame, unix_path=path))
    proc = subprocess.run(
        [
            str(loadclient),
            "--unix",
            path,
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--depth",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
    assert report["requests"] > 0 and report["lost"] == 0


def test_random_sizes_and_reconnect_churn_pass(loadclient, serve) -> None:
    server = serve(framed_server(echo_frame))
    code, report = run_client(
        loadclient, server.port,
        "--conns", "4", "--depth", "3", "--min-size", "1", "--max-size", "5000", "--churn", "20",
    )  # fmt: skip
    assert code == 0, report
    assert report["reconnects"] > 0
    assert report["lost"] == 0 and report["sent"] == report["received"]


def test_a_flipped_byte_is_reported(loadclient, serve) -> None:
    def flip_one(index: int, payload: bytes) -> bytes:
        if index == 50:
            payload = payload[:-1] + bytes([payload[-1] ^ 0x01])
        return echo_frame(index, payload)

    server = serve(framed_server(flip_one))
    code, report = run_client(loadclient, server.port, "--conns", "2", "--depth", "2")
    assert code == 1
    assert report["mismatches"] == 1
    assert "payload mismatch" in report["first_error"]
    assert report["errors"] >= 1


def test_a_dropped_frame_is_reported(loadclient, serve) -> None:
    def drop_one(index: int, payload: bytes) -> bytes:
        return b"" if index == 30 else echo_frame(index, payload)

    server = serve(framed_server(drop_one))
    code, report = run_client(
        loadclient, server.port, "--conns", "1", "--depth", "1", "--drain", "0.5"
    )
    assert code == 1
    assert (
        report["lost"] == 1
    )  # depth 1: the client waits for it forever, then gives up
    assert report["sent"] == report["received"] + 1


def test_reordered_frames_are_reported(loadclient, serve) -> None:
    held: list[bytes] = []

    def swap_two(index: int, payload: bytes) -> bytes:
        # One connection, depth 4: frames 10 and 11 arrive in one read; answer 11 first.
        if index == 10:
            held.append(echo_frame(index, payload))
            return b""
        if index == 11:
            return echo_frame(index, payload) + held.pop()
        return echo_frame(index, payload)

    server = serve(framed_server(swap_two))
    code, report = run_client(
        loadclient, server.port, "--conns", "1", "--depth", "4", "--drain", "0.5"
    )
    assert code == 1
    assert report["mismatches"] == 1


def test_a_wrong_length_is_reported(loadclient, serve) -> None:
    def pad_one(index: int, payload: bytes) -> bytes:
        return echo_frame(index, payload + b"x" if index == 5 else payload)

    server = serve(framed_server(pad_one))
    code, report = run_client(loadclient, server.port, "--conns", "1", "--drain", "0.5")
    assert code == 1
    assert "unexpected frame length 65" in report["first_error"]


def test_no_server_is_a_connect_error(loadclient, serve) -> None:
    server = serve(framed_server(echo_frame))
    port = server.port
    server.close()  # nothing listens there now
    code, report = run_client(loadclient, port, "--conns", "2")
    assert code == 1
    assert report["connect_errors"] == 2 and report["requests"] == 0


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_line_mode_accepts_both_line_ends(loadclient, serve, ending: bytes) -> None:
    server = serve(line_server(ending))
    code, report = run_client(
        loadclient, server.port, "--proto", "lines", "--conns", "4", "--depth", "4",
        "--min-size", "1", "--max-size", "3000",
    )  # fmt: skip
    assert code == 0, report
    assert report["lost"] == 0 and report["sent"] == report["received"] > 0


def test_line_mode_reports_a_changed_line(loadclient, serve) -> None:
    class Upper(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data.upper())  # alters the letters, keeps the framing

    server = serve(ThreadedServer(Upper))
    code, report = run_client(
        loadclient, server.port, "--proto", "lines", "--conns", "1"
    )
    assert code == 1 and report["mismatches"] == 1


def test_hold_mode_holds_answers_and_rechecks(loadclient, serve) -> None:
    server = serve(framed_server(echo_frame))
    cmd = [
        str(loadclient),
        "--port",
        str(server.port),
        "--mode",
        "hold",
        "--conns",
        "300",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline()
        assert ready.startswith("READY "), ready
        assert json.loads(ready[6:])["held"] == 300
        proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, report
    assert report["held"] == 300
    assert report["sent"] == report["received"] == 600  # one echo each, then one more


def test_bad_usage_exits_2(loadclient) -> None:
    proc = subprocess.run(
        [str(loadclient), "--conns", "0", "--port", "1"],
        capture_output=True,
        timeout=10,
    )
    assert proc.returncode == 2


def test_wrk_output_is_parsed_with_errors_and_units() -> None:
    output = """  Latency Distribution
     50%  850.00us
     99%    1.50ms
  1000 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 999.50
"""
    result = parse_wrk(output)
    assert result["rps"] == 999.5
    assert result["p50_us"] == 850.0 and result["p99_us"] == 1500.0
    assert result["errors"] == 7


def test_summary_takes_medians_and_ratios_to_uvloop() -> None:
    runs = [
        {"scenario": "s", "family": "throughput", "peer": peer, "ok": True, "rps": rps}
        for peer, rps in [
            ("uvloop", 100),
            ("uvloop", 300),
            ("uvloop", 200),
            ("p", 260),
            ("p", 240),
        ]
    ]
    runs.append(
        {
            "scenario": "s",
            "family": "throughput",
            "peer": "p",
            "ok": False,
            "rps": 1,
            "errors": 1,
        }
    )
    rows = {row["peer"]: row for row in summarize(runs)}
    assert rows["uvloop"]["rps"] == 200 and rows["uvloop"]["ratio"] == 1.0
    assert (
        rows["p"]["rps"] == 250 and rows["p"]["ratio"] == 1.25
    )  # the failed run is excluded
    assert rows["p"]["errors"] == 1


def test_paired_ratio_compares_peers_within_each_round_and_gates_targets() -> None:
    # Medians of each peer alone say 1.05x; round by round protogen lost twice.
    rounds = [(100, 99), (120, 126), (90, 87)]  # (uvloop, protogen) per round
    runs = [
        {
            "scenario": "echo-d1-64B-c50",
            "family": "throughput",
            "peer": peer,
            "ok": True,
            "round": index,
            "rps": rps,
            "p99_us": 10.0,
        }
        for index, pair in enumerate(rounds)
        for peer, rps in zip(("uvloop", "protogen"), pair)
    ]
    rows = {row["peer"]: row for row in summarize(runs)}
    assert rows["protogen"]["ratio"] == 99 / 100
    assert rows["protogen"]["paired_ratio"] == 0.99  # median of .99, 1.05, .9667
    (check,) = check_targets(list(rows.values()))
    assert not check["passed"] and check["detail"].startswith("0.99x")
    rounds_won = [(100, 101), (120, 126), (90, 91)]
    for run, (base, ours) in zip(runs[1::2], rounds_won):
        run["rps"] = ours
    (check,) = check_targets(summarize(runs))
    assert check["passed"]


def test_runner_smoke_writes_results_and_stops_its_servers(tmp_path: Path) -> None:
    """`bench/run.py` end to end with the stdlib-only asyncio peer."""
    cmd = [
        sys.executable, str(BENCH / "run.py"), "--quick", "--peers", "asyncio",
        "--idle-peers", "asyncio", "--scenarios", "echo-d16-64B-c50,idle,concurrent",
        "--idle-conns", "200", "--max-conns", "300", "--duration", "0.5",
        "--output", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "echo-d16-64B-c50" in proc.stdout and "asyncio" in proc.stdout
    (result,) = tmp_path.glob("*.json")
    document = json.loads(result.read_text())
    families = {row["scenario"]: row for row in document["summary"]}
    assert families["echo-d16-64B-c50"]["rps"] > 0
    assert families["idle-rss-c200"]["held"] == 200
    assert families["concurrent-c300"]["held"] == 300
    for run in document["runs"]:
        assert run["ok"] and run["client"]["lost"] == 0
        with pytest.raises(OSError):  # the runner stopped every server it started
            socket.create_connection(("127.0.0.1", run["port"]), timeout=1).close()
