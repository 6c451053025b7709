"""protogen.runtime.aio.CoroutineRunner: a protogen handler awaits, and answers
each connection in request order even when coroutines finish out of order."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from aio_helpers import LOOPS, build_example
from protogen.runtime.aio import CoroutineRunner, RunnerClosed, RunnerOverload
from protogen.runtime.engine import Engine
from protogen.runtime.options import Options

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build_example("echo.proto.dsl", tmp_path_factory.mktemp("runner_echo"))


@pytest.fixture(params=LOOPS)
def runner(request: pytest.FixtureRequest) -> Iterator[CoroutineRunner]:
    with CoroutineRunner(
        max_in_flight_per_conn=8, loop_factory=request.param()
    ) as made:
        yield made


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    frames: list[bytes] = []
    while len(frames) < count:
        while len(data) >= 4 and len(data) >= 4 + struct.unpack_from(">I", data)[0]:
            size = struct.unpack_from(">I", data)[0]
            frames.append(data[4 : 4 + size])
            data = data[4 + size :]
        if len(frames) >= count:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return frames


class Serving:
    def __init__(self, handler: Any) -> None:
        self.engine = Engine(
            handler, ["tcp://127.0.0.1:0"], Options(install_signal_handlers=False)
        )
        self.thread = threading.Thread(target=self.engine.run, daemon=True)

    def __enter__(self) -> tuple[str, int]:
        self.thread.start()
        assert self.engine.wait_started(TIMEOUT)
        host, port = self.engine.bound_addresses[0][:2]
        return host, port

    def __exit__(self, *exc_info: object) -> None:
        self.engine.stop()
        self.thread.join(TIMEOUT)


def test_replies_keep_request_order_when_coroutines_finish_in_reverse(
    echo: dict[str, ModuleType], runner: CoroutineRunner
) -> None:
    Message = echo["codec"].Message
    count = 6
    release = [threading.Event() for _ in range(count)]
    finished: list[int] = []

    class Awaiting(echo["handler"].EchoHandler):  # type: ignore[name-defined, misc]
        def on_message(self, conn: Any, frame: Any) -> None:
            runner.spawn(conn, self.answer(int(bytes(frame.payload))))

        async def answer(self, number: int) -> Any:
            while not release[number].is_set():
                await asyncio.sleep(0.001)
            finished.append(number)
            return Message(payload=b"reply %d" % number)

    with Serving(Awaiting()) as address:
        with socket.create_connection(address, timeout=TIMEOUT) as sock:
            sock.sendall(b"".join(frame(b"%d" % n) for n in range(count)))
            wait_until(lambda: runner.in_flight() == count)
            for number in reversed(range(count)):
                release[number].set()
                wait_until(lambda: number in finished)
            replies = read_frames(sock, count)
    assert finished == list(reversed(range(count)))  # they did finish out of order
    assert replies == [b"reply %d" % n for n in range(count)]
    wait_until(lambda: runner.in_flight() == 0)


def test_spawn_beyond_the_limit_is_refused_at_once(
    echo: dict[str, ModuleType], runner: CoroutineRunner
) -> None:
    """8 in flight per connection: the 9th and 10th are answered `busy` by the
    handler while the first 8 still wait; another connection is not limited."""
    Message = echo["codec"].Message
    gate = threading.Event()

    class Limited(echo["handler"].EchoHandler):  # type: ignore[name-defined, misc]
        def on_message(self, conn: Any, frame: Any) -> None:
            try:
                runner.spawn(conn, self.answer(bytes(frame.payload)))
            except RunnerOverload:
                self.send(conn, Message(payload=b"busy"))

        async def answer(self, payload: bytes) -> Any:
            while not gate.is_set():
                await asyncio.sleep(0.001)
            return Message(payload=payload)

    try:
        with Serving(Limited()) as address:
            with (
                socket.create_connection(address, timeout=TIMEOUT) as first,
                socket.create_connection(address, timeout=TIMEOUT) as second,
            ):
                first.sendall(b"".join(frame(b"%d" % n) for n in range(10)))
                assert read_frames(first, 2) == [b"busy", b"busy"]
                assert runner.in_flight() == 8
                second.sendall(frame(b"other"))
                wait_until(lambda: runner.in_flight() == 9)
                gate.set()
                assert read_frames(second, 1) == [b"other"]
                assert read_frames(first, 8) == [b"%d" % n for n in range(8)]
    finally:
        gate.set()


def test_a_coroutine_that_raises_closes_only_its_connection(
    echo: dict[str, ModuleType], runner: CoroutineRunner, caplog: Any
) -> None:
    Message = echo["codec"].Message

    class Failing(echo["handler"].EchoHandler):  # type: ignore[name-defined, misc]
        def on_message(self, conn: Any, frame: Any) -> None:
            runner.spawn(conn, self.answer(bytes(frame.payload)))

        async def answer(self, payload: bytes) -> Any:
            if payload == b"boom":
                raise RuntimeError("the database is on fire")
            return Message(payload=payload)

    with Serving(Failing()) as address:
        with (
            socket.create_connection(address, timeout=TIMEOUT) as bad,
            socket.create_connection(address, timeout=TIMEOUT) as good,
        ):
            bad.sendall(frame(b"boom"))
            assert bad.recv(1) == b""  # closed
            good.sendall(frame(b"fine"))
            assert read_frames(good, 1) == [b"fine"]
    assert "the database is on fire" in caplog.text


def test_forget_cancels_a_closed_connections_coroutines(
    runner: CoroutineRunner,
) -> None:
    cancelled = threading.Event()
    started = threading.Semaphore(0)

    class FakeConn:
        def async_write(self, data: bytes) -> None:
            raise AssertionError("nothing may be written for a forgotten conn")

        def close(self) -> None:
            pass

    async def forever() -> None:
        started.release()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    conn = FakeConn()
    runner.spawn(conn, forever())
    runner.spawn(conn, forever())
    assert runner.in_flight(conn) == 2
    assert started.acquire(timeout=TIMEOUT) and started.acquire(timeout=TIMEOUT)
    runner.forget(conn)
    assert cancelled.wait(TIMEOUT)
    wait_until(lambda: runner.in_flight() == 0)
    # Forgotten before it started: the coroutine is closed, never run.
    runner.spawn(conn, forever())
    runner.forget(conn)
    wait_until(lambda: runner.in_flight() == 0)


def test_spawn_after_close_is_refused_and_closes_the_coroutine() -> None:
    runner = CoroutineRunner()
    runner.close()

    async def never() -> None:
        raise AssertionError("must not run")

    coro = never()
    with pytest.raises(RunnerClosed):
        runner.spawn(object(), coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning


def test_results_must_be_frames_bytes_or_none(runner: CoroutineRunner) -> None:
    written: list[bytes] = []
    closed = threading.Event()

    class FakeConn:
        def async_write(self, data: bytes) -> None:
            written.append(data)

        def close(self) -> None:
            closed.set()

    async def value(result: Any) -> Any:
        return result

    conn = FakeConn()
    for result in (b"raw", None, bytearray(b"array"), 42):
        runner.spawn(conn, value(result))
    assert closed.wait(TIMEOUT)  # 42 is not writable: logged, conn closed
    wait_until(lambda: runner.in_flight() == 0)
    assert written == [b"raw", b"array"]


def test_the_runner_starts_afresh_in_a_forked_child(tmp_path: Path) -> None:
    import os

    runner = CoroutineRunner()

    async def pid() -> bytes:
        return str(os.getpid()).encode()

    class Recorder:
        def __init__(self) -> None:
            self.got = threading.Event()
            self.data = b""

        def async_write(self, data: bytes) -> None:
            self.data = data
            self.got.set()

        def close(self) -> None:
            pass

    parent = Recorder()
    runner.spawn(parent, pid())
    assert parent.got.wait(TIMEOUT)
    child = os.fork()
    if child == 0:  # the parent's helper thread does not exist here
        code = 1
        try:
            recorder = Recorder()
            runner.spawn(recorder, pid())
            code = 0 if recorder.got.wait(TIMEOUT) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    runner.close()
    assert os.waitstatus_to_exitcode(status) == 0
