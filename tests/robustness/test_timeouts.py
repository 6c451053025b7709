"""idle_timeout and read_timeout (slowloris) on a generated server: the right
connections are closed, with the right error, at about the right time, and the
busy ones are left alone."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import robust_specs as specs
from robust_harness import connect, port_of, recv_exact, serving

IDLE = 1.2
READ = 0.6
SLACK = 1.0  # timers fire late on a loaded 2-core machine; never early
RUN_FOR = 3.0


def closed_at(sock: socket.socket, start: float, limit: float) -> float | None:
    """Seconds after `start` at which the server closed `sock` (None: still open)."""
    sock.settimeout(max(0.01, start + limit - time.monotonic()))
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        return None
    return time.monotonic() - start


def test_idle_and_read_timeouts_close_the_right_connections(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    frame = codec.Message(payload=b"tick").encode()
    with serving(
        directory,
        protocol,
        tmp_path / "work",
        options={"idle_timeout": IDLE, "read_timeout": READ},
    ) as served:
        idle = connect(served.url)
        slowloris = connect(served.url)
        busy = connect(served.url)
        patient = connect(served.url)  # half a frame, finished before READ
        start = time.monotonic()
        results: dict[str, float | None] = {}
        stop = threading.Event()

        def trickle() -> None:
            # A frame's header announces 100 bytes; one byte every 0.1 s: bytes keep
            # arriving (so the connection is not idle) but the frame never completes.
            try:
                slowloris.sendall(b"\x00\x00\x00\x64")
                while not stop.wait(0.1):
                    slowloris.send(b"x")
            except OSError:
                pass

        def keep_busy() -> None:
            while not stop.wait(0.2):
                busy.sendall(frame)
                assert recv_exact(busy, len(frame)) == frame

        def finish_late() -> None:
            patient.sendall(frame[:3])
            time.sleep(READ / 2)
            patient.sendall(frame[3:])
            assert recv_exact(patient, len(frame)) == frame
            while not stop.wait(0.3):  # then keep it alive with whole frames
                patient.sendall(frame)
                assert recv_exact(patient, len(frame)) == frame

        workers = [
            threading.Thread(target=fn, daemon=True)
            for fn in (trickle, keep_busy, finish_late)
        ]
        for worker in workers:
            worker.start()
        try:
            results["slowloris"] = closed_at(slowloris, start, RUN_FOR)
            results["idle"] = closed_at(idle, start, RUN_FOR)
            remaining = start + RUN_FOR - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        finally:
            stop.set()
            for worker in workers:
                worker.join(5)
        try:
            slow = results["slowloris"]
            assert slow is not None, "slowloris connection was never closed"
            assert READ * 0.9 <= slow <= READ + SLACK, slow
            assert served.close_of(port_of(slowloris))["err"] == "ReadTimeout"

            idled = results["idle"]
            assert idled is not None, "idle connection was never closed"
            assert IDLE * 0.9 <= idled <= IDLE + SLACK, idled
            assert served.close_of(port_of(idle))["err"] == "IdleTimeout"

            # Busy and patient connections were never touched.
            for sock in (busy, patient):
                assert not served.find("close", peer=port_of(sock))
                sock.sendall(frame)
                assert recv_exact(sock, len(frame)) == frame
        finally:
            for sock in (idle, slowloris, busy, patient):
                sock.close()
