"""WorkerPool: capacity, expiry, overload, panics, volume, tune/release/reboot."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from protogen.runtime.pool import (
    PoolClosed,
    PoolOverload,
    WorkerPool,
    default_pool,
)


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Gate:
    """Tasks that park until the test opens the gate, counting concurrency."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.entered = 0

    def task(self) -> None:
        with self.lock:
            self.active += 1
            self.entered += 1
            self.peak = max(self.peak, self.active)
        try:
            assert self.opened.wait(10), "gate never opened"
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def pools():
    created: list[WorkerPool] = []

    def make(*args, **kwargs) -> WorkerPool:
        pool = WorkerPool(*args, **kwargs)
        created.append(pool)
        return pool

    yield make
    for pool in created:
        pool.release(timeout=5)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        WorkerPool(0)
    with pytest.raises(ValueError, match="expiry"):
        WorkerPool(1, expiry=0)
    pool = WorkerPool(1)
    with pytest.raises(ValueError, match="capacity"):
        pool.tune(0)
    pool.release()


def test_threads_are_created_lazily(pools):
    pool = pools(8)
    assert pool.running() == 0 and pool.free() == 8 and pool.cap() == 8
    done = threading.Event()
    pool.submit(done.set)
    assert done.wait(5)
    # One sequential task needs one worker; the idle worker is reused.
    for _ in range(20):
        event = threading.Event()
        pool.submit(event.set)
        assert event.wait(5)
        assert wait_until(lambda: pool.idle() == 1)
    assert pool.running() == 1


def test_capacity_is_respected_and_submit_blocks_when_full(pools):
    pool = pools(3)
    gate = Gate()
    for _ in range(3):
        pool.submit(gate.task)
    assert wait_until(lambda: gate.active == 3)
    assert pool.running() == 3 and pool.free() == 0

    submitted = threading.Event()

    def submit_fourth() -> None:
        pool.submit(gate.task)
        submitted.set()

    blocker = threading.Thread(target=submit_fourth, daemon=True)
    blocker.start()
    assert wait_until(lambda: pool.waiting() == 1)
    assert not submitted.is_set(), "submit() must block while every worker is busy"
    gate.opened.set()
    assert submitted.wait(5)
    blocker.join(5)
    assert wait_until(lambda: gate.entered == 4 and gate.active == 0)
    assert gate.peak == 3
    assert pool.running() <= 3


def test_nonblocking_pool_raises_overload(pools):
    pool = pools(2, nonblocking=True)
    gate = Gate()
    pool.submit(gate.task)
    pool.submit(gate.task)
    with pytest.raises(PoolOverload):
        pool.submit(gate.task)
    gate.opened.set()
    assert wait_until(lambda: pool.idle() == 2)
    pool.submit(gate.task)  # a free worker again: accepted


def test_max_blocking_limits_waiting_submitters(pools):
    pool = pools(1, max_blocking=1)
    gate = Gate()
    pool.submit(gate.task)
    waiter = threading.Thread(target=pool.submit, args=(gate.task,), daemon=True)
    waiter.start()
    assert wait_until(lambda: pool.waiting() == 1)
    with pytest.raises(PoolOverload, match="waiting"):
        pool.submit(gate.task)
    gate.opened.set()
    waiter.join(5)
    assert wait_until(lambda: gate.entered == 2)


def test_idle_workers_expire(pools):
    pool = pools(6, expiry=0.2)
    gate = Gate()
    for _ in range(6):
        pool.submit(gate.task)
    assert wait_until(lambda: pool.running() == 6)
    gate.opened.set()
    assert wait_until(lambda: pool.idle() == 6)
    assert wait_until(lambda: pool.running() == 0, timeout=5)
    # The pool still works after shrinking to nothing.
    event = threading.Event()
    pool.submit(event.set)
    assert event.wait(5)


def test_lifo_reuse_lets_surplus_workers_expire_under_light_load(pools):
    pool = pools(4, expiry=0.3)
    gate = Gate()
    for _ in range(4):
        pool.submit(gate.task)
    gate.opened.set()
    assert wait_until(lambda: pool.idle() == 4)
    # A trickle of sequential tasks keeps reusing the hottest worker, so the
    # three others are never woken and expire.  (A FIFO hand-out would rotate
    # through all four, every 80 ms, and none would ever expire.)
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        event = threading.Event()
        pool.submit(event.set)
        assert event.wait(5)
        time.sleep(0.02)
    # Normally exactly 1; 2 if on a loaded machine a task arrived before the
    # hot worker was back on the stack.
    assert pool.running() <= 2


def test_exceptions_reach_the_panic_handler_and_do_not_kill_the_pool(pools):
    seen: list[BaseException] = []
    lock = threading.Lock()

    def on_panic(exc: BaseException) -> None:
        with lock:
            seen.append(exc)

    pool = pools(2, panic_handler=on_panic)

    def boom(n: int) -> None:
        raise ValueError(f"task {n} failed")

    for n in range(10):
        pool.submit(boom, n)
    assert wait_until(lambda: len(seen) == 10)
    assert sorted(str(e) for e in seen) == sorted(f"task {n} failed" for n in range(10))
    assert all(isinstance(e, ValueError) and e.__traceback__ for e in seen)
    event = threading.Event()
    pool.submit(event.set)
    assert event.wait(5)
    assert pool.running() <= 2


def test_default_panic_handler_logs(pools, caplog):
    pool = pools(1)
    caplog.set_level(logging.ERROR, logger="protogen.runtime.pool")

    def boom() -> None:
        raise KeyError("missing-thing")

    pool.submit(boom)
    assert wait_until(
        lambda: any("missing-thing" in r.getMessage() for r in caplog.records)
    )
    record = next(r for r in caplog.records if "missing-thing" in r.getMessage())
    assert record.exc_info is not None


def test_a_failing_panic_handler_is_contained(pools, caplog):
    caplog.set_level(logging.ERROR, logger="protogen.runtime.pool")

    def bad_handler(exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    pool = pools(1, panic_handler=bad_handler)
    pool.submit(lambda: 1 / 0)
    assert wait_until(
        lambda: any("handler broke" in r.getMessage() for r in caplog.records)
    )
    event = threading.Event()
    pool.submit(event.set)
    assert event.wait(5)


def test_ten_thousand_tasks_all_complete(pools):
    pool = pools(16)
    results = [0] * 10_000
    done = threading.Semaphore(0)

    def task(i: int) -> None:
        results[i] = i * 2
        done.release()

    for i in range(10_000):
        pool.submit(task, i)
    for _ in range(10_000):
        assert done.acquire(timeout=10)
    assert results == [i * 2 for i in range(10_000)]
    assert pool.running() <= 16


def test_tune_grows_and_shrinks(pools):
    pool = pools(2)
    gate = Gate()
    pool.submit(gate.task)
    pool.submit(gate.task)
    assert wait_until(lambda: gate.active == 2)
    blocked = threading.Thread(target=pool.submit, args=(gate.task,), daemon=True)
    blocked.start()
    assert wait_until(lambda: pool.waiting() == 1)
    pool.tune(4)  # the blocked submitter gets a new worker at once
    assert wait_until(lambda: gate.active == 3)
    blocked.join(5)
    assert pool.cap() == 4
    pool.submit(gate.task)
    assert wait_until(lambda: gate.active == 4)

    pool.tune(1)
    gate.opened.set()
    assert wait_until(lambda: pool.running() == 1)
    assert pool.cap() == 1
    # Idle workers above the new capacity are dismissed too.
    pool.tune(3)
    gate2 = Gate()
    for _ in range(3):
        pool.submit(gate2.task)
    assert wait_until(lambda: gate2.active == 3)
    gate2.opened.set()
    assert wait_until(lambda: pool.idle() == 3)
    pool.tune(1)
    assert wait_until(lambda: pool.running() == 1)


def test_release_and_reboot(pools):
    pool = pools(2)
    gate = Gate()
    pool.submit(gate.task)
    pool.submit(gate.task)
    waiter_error: list[BaseException] = []

    def blocked_submit() -> None:
        try:
            pool.submit(gate.task)
        except BaseException as exc:
            waiter_error.append(exc)

    waiter = threading.Thread(target=blocked_submit, daemon=True)
    waiter.start()
    assert wait_until(lambda: pool.waiting() == 1)
    assert pool.release() is False  # two tasks still running
    waiter.join(5)
    assert len(waiter_error) == 1 and isinstance(waiter_error[0], PoolClosed)
    with pytest.raises(PoolClosed):
        pool.submit(gate.task)
    gate.opened.set()
    assert pool.release(timeout=5) is True
    assert pool.running() == 0 and pool.is_closed()

    pool.reboot()
    assert not pool.is_closed()
    event = threading.Event()
    pool.submit(event.set)
    assert event.wait(5)
    assert pool.running() == 1


def test_default_pool_is_shared():
    pool = default_pool()
    assert pool is default_pool()
    event = threading.Event()
    pool.submit(event.set)
    assert event.wait(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pools_start_empty_in_a_forked_child(pools):
    pool = pools(2)
    gate = Gate()
    pool.submit(gate.task)
    assert wait_until(lambda: gate.active == 1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's busy worker does not exist here
        status = 1
        try:
            event = threading.Event()
            ok = pool.running() == 0
            pool.submit(event.set)
            pool.submit(event.set)  # capacity 2 is free in the child
            ok = ok and event.wait(5)
            status = 0 if ok else 1
        finally:
            os.write(write_end, bytes([status]))
            os._exit(status)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"\x00"
    finally:
        os.close(read_end)
        gate.opened.set()
        os.waitpid(pid, 0)


def test_async_write_from_pool_tasks_reaches_the_right_connection_in_order(pools):
    """The documented pattern: a handler hands work to the pool, which answers
    with conn.async_write; each connection gets its own replies, in order."""
    import socket

    from protogen.runtime.engine import Engine
    from protogen.runtime.handler import Action, EventHandler
    from protogen.runtime.options import Options

    pool = pools(4, queue_size=8)  # 8 requests: 4 run, 4 wait in the queue
    replies_per_request = 200

    class Offloading(EventHandler):
        def on_traffic(self, conn):
            data = bytes(conn.peek())
            end = data.rfind(b"\n")
            if end < 0:
                return Action.NONE
            conn.discard(end + 1)
            for line in data[:end].split(b"\n"):
                tag = line.decode()
                pool.submit(
                    self.work, conn, tag
                )  # copy made above: buffer is the loop's
            return Action.NONE

        def work(self, conn, tag: str) -> None:  # a pool thread
            for i in range(replies_per_request):
                if i % 50 == 0:
                    time.sleep(0.001)  # let the other tasks interleave
                conn.async_write(f"{tag}:{i}\n".encode())

    engine = Engine(
        Offloading(), ["tcp://127.0.0.1:0"], Options(install_signal_handlers=False)
    )
    server = threading.Thread(target=engine.run, daemon=True)
    server.start()
    try:
        assert engine.wait_started(5)
        host, port = engine.bound_addresses[0][:2]
        clients = [socket.create_connection((host, port), timeout=10) for _ in range(8)]
        for n, client in enumerate(clients):
            client.sendall(f"conn{n}\n".encode())
        for n, client in enumerate(clients):
            expected = b"".join(
                f"conn{n}:{i}\n".encode() for i in range(replies_per_request)
            )
            received = b""
            while len(received) < len(expected):
                chunk = client.recv(65536)
                assert chunk, "connection closed early"
                received += chunk
            assert received == expected
            client.close()
    finally:
        engine.stop()
        server.join(10)
    assert not server.is_alive()
