"""`--metrics`: Prometheus counters that match the traffic a test sends, per
worker, and /healthz turning 503 while the server drains."""

from __future__ import annotations

import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops_harness import (
    free_port,
    frame,
    protogen_serve,
    recv_exact,
    stop,
    wait_until,
)

FRAMES = 1000


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    found = 0.0
    for (sample, got), value in samples.items():
        if sample == name and all(dict(got).get(k) == v for k, v in labels.items()):
            found += value
    return found


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/healthz", timeout=10
        ) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def send_known_traffic(port: int) -> tuple[int, list[socket.socket]]:
    """1 000 frames on 4 connections (3 closed, 1 left open); bytes each way."""
    sent = 0
    socks = []
    for c in range(4):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        wire = b"".join(frame(b"%d-%d" % (c, i)) for i in range(FRAMES // 4))
        sock.sendall(wire)
        assert recv_exact(sock, len(wire)) == wire
        sent += len(wire)
        socks.append(sock)
    for sock in socks[:3]:
        sock.close()
    return sent, socks[3:]


@pytest.mark.parametrize("loops", [1, 2])
def test_metrics_match_the_traffic(tmp_path: Path, loops: int) -> None:
    port, metrics = free_port(), free_port()
    with protogen_serve(
        tmp_path / "cache",
        "--listen",
        f"tcp://127.0.0.1:{port}",
        "--metrics",
        f"tcp://127.0.0.1:{metrics}",
        "--loops",
        str(loops),
    ):
        assert health(metrics) == 200
        sent, still_open = send_known_traffic(port)
        bad = socket.create_connection(("127.0.0.1", port), timeout=10)
        bad.sendall(b"\xff\xff\xff\xff")  # a frame beyond max_frame
        assert bad.recv(10) == b""
        bad.close()

        def settled() -> dict | None:
            samples = scrape(metrics)
            done = total(samples, "protogen_frames_decoded_total", frame="Message")
            errors = total(samples, "protogen_protocol_errors_total")
            probed = total(samples, "protogen_loop_lag_seconds_count")
            return samples if done == FRAMES and errors == 1 and probed else None

        samples = wait_until(settled, 10, "the counters to reach the traffic")
        assert total(samples, "protogen_connections_total") == 5
        assert total(samples, "protogen_connections_open") == 1
        assert total(samples, "protogen_bytes_received_total") == sent + 4
        assert total(samples, "protogen_bytes_sent_total") == sent
        assert (
            total(samples, "protogen_protocol_errors_total", kind="FrameTooLarge") == 1
        )
        assert total(samples, "protogen_outbound_queued_bytes") == 0
        assert total(samples, "protogen_loop_lag_seconds_count") > 0
        workers = {
            dict(labels)["worker"]
            for (name, labels) in samples
            if name == "protogen_connections_total"
        }
        assert len(workers) == loops
        for sock in still_open:
            sock.close()


def test_healthz_is_503_while_draining(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    with protogen_serve(
        tmp_path / "cache",
        "--listen",
        f"tcp://127.0.0.1:{port}",
        "--metrics",
        f"tcp://127.0.0.1:{metrics}",
        "--drain-timeout",
        "3",
    ) as server:
        assert health(metrics) == 200
        # A client that does not read its answers holds the drain open.
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        holder.settimeout(10)
        holder.connect(("127.0.0.1", port))
        holder.sendall(frame(b"x" * 4_000_000))
        wait_until(
            lambda: total(scrape(metrics), "protogen_outbound_queued_bytes") > 0,
            10,
            "answers queued",
        )
        server.signal(signal.SIGTERM)
        wait_until(lambda: health(metrics) == 503, 5, "/healthz turning 503")
        holder.close()
        assert server.wait() == 0


def test_idle_clients_do_not_lock_scrapes_out(tmp_path: Path) -> None:
    from protogen.runtime.metrics import MAX_SCRAPES

    port, metrics = free_port(), free_port()
    with protogen_serve(
        tmp_path / "cache",
        "--listen",
        f"tcp://127.0.0.1:{port}",
        "--metrics",
        f"tcp://127.0.0.1:{metrics}",
    ):
        idle = [
            socket.create_connection(("127.0.0.1", metrics), timeout=10)
            for _ in range(MAX_SCRAPES + 5)
        ]
        try:
            assert health(metrics) == 200
            assert total(scrape(metrics), "protogen_connections_open") == 0
        finally:
            for sock in idle:
                sock.close()
