"""The worker pool seen from an event loop: submitting never blocks the loop.

A saturated pool (every worker busy, the queue full) makes `submit` raise
PoolOverload on the loop thread, so other connections of the loop are still
served; off the loop `submit` waits for room as before.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Iterator

import pytest

from protogen.runtime.engine import Engine
from protogen.runtime.handler import Action, EventHandler
from protogen.runtime.options import Options
from protogen.runtime.pool import (
    PoolOverload,
    WorkerPool,
    event_loop_thread,
    in_event_loop_thread,
)

TIMEOUT = 10.0


class Offloading(EventHandler):
    """Lines: `work N` goes to the pool (answered `done N` once the gate opens,
    `busy N` when the pool refuses it); `ping` is answered at once."""

    def __init__(self, pool: WorkerPool, gate: threading.Event) -> None:
        self.pool = pool
        self.gate = gate

    def on_traffic(self, conn: Any) -> Action:
        data = bytes(conn.peek())
        end = data.rfind(b"\n")
        if end < 0:
            return Action.NONE
        conn.discard(end + 1)
        for line in data[:end].split(b"\n"):
            if line == b"ping":
                conn.write(b"pong\n")
                continue
            number = line.split()[1]
            try:
                self.pool.submit(self.work, conn, number)
            except PoolOverload:
                conn.write(b"busy " + number + b"\n")
        return Action.NONE

    def work(self, conn: Any, number: bytes) -> None:  # a pool thread
        assert self.gate.wait(TIMEOUT), "the test never opened the gate"
        conn.async_write(b"done " + number + b"\n")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave pool threads (or a blocked loop) waiting


def serve(handler: EventHandler) -> tuple[Engine, threading.Thread, tuple[str, int]]:
    engine = Engine(
        handler, ["tcp://127.0.0.1:0"], Options(install_signal_handlers=False)
    )
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    assert engine.wait_started(TIMEOUT)
    host, port = engine.bound_addresses[0][:2]
    return engine, thread, (host, port)


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data.split(b"\n")[:count]


def test_a_ping_is_answered_while_the_pool_is_saturated(
    gate: threading.Event,
) -> None:
    """Two workers busy (blocked on the gate): the loop refuses the other
    eight tasks and answers another connection's ping while the gate is still
    closed. (A loop that blocked in submit would answer nothing until the gate
    opened: the reads below would time out.)"""
    pool = WorkerPool(2)
    engine, thread, address = serve(Offloading(pool, gate))
    try:
        with (
            socket.create_connection(address, timeout=TIMEOUT) as worker,
            socket.create_connection(address, timeout=TIMEOUT) as pinger,
        ):
            worker.sendall(b"".join(b"work %d\n" % n for n in range(10)))
            busy = read_lines(worker, 8)
            assert sorted(busy) == sorted(b"busy %d" % n for n in range(2, 10))
            pinger.sendall(b"ping\n")
            assert read_lines(pinger, 1) == [b"pong"]
            assert not gate.is_set()  # answered while the pool was still full
            gate.set()
            done = read_lines(worker, 2)
            assert sorted(done) == [b"done 0", b"done 1"]
    finally:
        gate.set()
        engine.stop()
        thread.join(TIMEOUT)
        pool.release(timeout=TIMEOUT)
    assert not thread.is_alive()


def test_the_queue_takes_a_burst_before_refusing(gate: threading.Event) -> None:
    pool = WorkerPool(2, queue_size=2)
    engine, thread, address = serve(Offloading(pool, gate))
    try:
        with socket.create_connection(address, timeout=TIMEOUT) as worker:
            worker.sendall(b"".join(b"work %d\n" % n for n in range(10)))
            busy = read_lines(worker, 6)
            assert sorted(busy) == sorted(b"busy %d" % n for n in range(4, 10))
            assert pool.queued() == 2
            gate.set()
            done = read_lines(worker, 4)
            assert sorted(done) == sorted(b"done %d" % n for n in range(4))
    finally:
        gate.set()
        engine.stop()
        thread.join(TIMEOUT)
        pool.release(timeout=TIMEOUT)


def test_queued_tasks_run_in_submission_order(gate: threading.Event) -> None:
    pool = WorkerPool(1, queue_size=5)
    ran: list[int] = []
    pool.submit(gate.wait, TIMEOUT)  # occupies the only worker
    for n in range(5):
        pool.submit(ran.append, n)
    assert pool.queued() == 5
    gate.set()
    assert pool.release(timeout=TIMEOUT)  # release drains the queue first
    assert ran == [0, 1, 2, 3, 4]


def test_submit_off_the_loop_still_waits_for_room(gate: threading.Event) -> None:
    pool = WorkerPool(1, queue_size=1)
    pool.submit(gate.wait, TIMEOUT)
    pool.submit(lambda: None)  # queued
    submitted = threading.Event()

    def third() -> None:
        pool.submit(lambda: None)  # no room: blocks (this is not a loop thread)
        submitted.set()

    submitter = threading.Thread(target=third, daemon=True)
    submitter.start()
    assert not submitted.wait(0.2)  # it waits (a fast failure would set it)
    assert pool.waiting() == 1
    gate.set()
    assert submitted.wait(TIMEOUT)
    submitter.join(TIMEOUT)
    assert pool.release(timeout=TIMEOUT)


def test_an_event_loop_thread_gets_overload_instead_of_waiting(
    gate: threading.Event,
) -> None:
    pool = WorkerPool(1)
    pool.submit(gate.wait, TIMEOUT)
    assert not in_event_loop_thread()
    with event_loop_thread():
        assert in_event_loop_thread()
        with pytest.raises(PoolOverload, match="must not wait"):
            pool.submit(lambda: None)
    assert not in_event_loop_thread()
    gate.set()
    assert pool.release(timeout=TIMEOUT)


def test_queue_size_is_validated() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        WorkerPool(1, queue_size=-1)
