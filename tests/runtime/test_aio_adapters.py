"""The generated asyncio adapters (NAME_aio.py): an asyncio.Protocol server side
and an async client on the same sans-I/O codec, under asyncio and uvloop."""

from __future__ import annotations

import asyncio
import struct
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from aio_helpers import LOOPS, build_example, run
from protogen.errors import FrameTooLarge
from protogen.runtime.engine import Engine
from protogen.runtime.options import Options


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build_example("echo.proto.dsl", tmp_path_factory.mktemp("aio_echo"))


@pytest.fixture(scope="module")
def sensors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build_example("fixed.proto.dsl", tmp_path_factory.mktemp("aio_sensors"))


@pytest.fixture(params=LOOPS)
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], Any]:
    return request.param()  # type: ignore[no-any-return]


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def test_a_protocol_subclass_answers_the_async_client(
    echo: dict[str, ModuleType], loop_factory: Callable[[], Any]
) -> None:
    aio, Message = echo["aio"], echo["codec"].Message

    class Shout(aio.EchoProtocol):  # type: ignore[name-defined, misc]
        def on_message(self, frame: Any) -> None:
            self.send(Message(payload=bytes(frame.payload).upper()))

    async def main() -> list[bytes]:
        server = await aio.start_server(Shout, "tcp://127.0.0.1:0")
        async with server:
            url = f"tcp://127.0.0.1:{port_of(server)}"
            async with aio.connect(url) as client:
                first = await client.request(Message(payload=b"hello"))
                await client.send_many(
                    [Message(payload=b"x" * n) for n in (0, 1, 70_000)]
                )
                rest = [await client.recv() for _ in range(3)]
            return [first.payload] + [frame.payload for frame in rest]

    assert run(loop_factory, main()) == [b"HELLO", b"", b"X", b"X" * 70_000]


def test_coroutine_callbacks_answer_in_request_order(
    echo: dict[str, ModuleType], loop_factory: Callable[[], Any]
) -> None:
    """Each frame's coroutine sleeps less than the one before: were they run
    concurrently, the replies would come back reversed."""
    aio, Message = echo["aio"], echo["codec"].Message

    class Slow(aio.EchoProtocol):  # type: ignore[name-defined, misc]
        async def on_message(self, frame: Any) -> None:
            number = int(bytes(frame.payload))
            await asyncio.sleep((20 - number) * 0.002)
            self.send(Message(payload=bytes(frame.payload)))

    async def main() -> list[bytes]:
        server = await aio.start_server(Slow, "tcp://127.0.0.1:0")
        async with server:
            async with aio.connect(f"tcp://127.0.0.1:{port_of(server)}") as client:
                await client.send_many(
                    [Message(payload=str(n).encode()) for n in range(20)]
                )
                return [(await client.recv()).payload for _ in range(20)]

    assert run(loop_factory, main()) == [str(n).encode() for n in range(20)]


def test_reading_pauses_while_max_pending_frames_wait(
    echo: dict[str, ModuleType], loop_factory: Callable[[], Any]
) -> None:
    aio, Message = echo["aio"], echo["codec"].Message
    seen: list[Any] = []

    async def main() -> tuple[bool, list[bytes]]:
        gate = asyncio.Event()

        class Gated(aio.EchoProtocol):  # type: ignore[name-defined, misc]
            max_pending = 4

            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                seen.append(self)

            async def on_message(self, frame: Any) -> None:
                await gate.wait()
                self.send(Message(payload=bytes(frame.payload)))

        server = await aio.start_server(Gated, "tcp://127.0.0.1:0")
        async with server:
            async with aio.connect(f"tcp://127.0.0.1:{port_of(server)}") as client:
                for n in range(40):  # one write each: several reads server-side
                    await client.send(Message(payload=b"%d" % n))
                    await asyncio.sleep(0)
                for _ in range(200):
                    if seen and not seen[0].transport.is_reading():
                        break
                    await asyncio.sleep(0.01)
                paused = not seen[0].transport.is_reading()
                gate.set()
                replies = [(await client.recv()).payload for _ in range(40)]
        return paused, replies

    paused, replies = run(loop_factory, main())
    assert paused, "reading never paused with max_pending frames waiting"
    assert replies == [b"%d" % n for n in range(40)]


def test_a_protocol_error_closes_only_its_connection(
    echo: dict[str, ModuleType], loop_factory: Callable[[], Any]
) -> None:
    aio, Message = echo["aio"], echo["codec"].Message
    errors: list[BaseException] = []

    class Echo(aio.EchoProtocol):  # type: ignore[name-defined, misc]
        def on_message(self, frame: Any) -> None:
            self.send(Message(payload=bytes(frame.payload)))

        def on_protocol_error(self, err: Any) -> None:
            errors.append(err)
            super().on_protocol_error(err)

    async def main() -> tuple[bytes, bytes]:
        server = await aio.start_server(Echo, "tcp://127.0.0.1:0")
        async with server:
            port = port_of(server)
            async with aio.connect(f"tcp://127.0.0.1:{port}") as good:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(struct.pack(">I", 0xFFFFFFFF))  # over max_frame
                closed = await reader.read(1)
                writer.close()
                reply = await good.request(Message(payload=b"still here"))
        return closed, reply.payload

    assert run(loop_factory, main()) == (b"", b"still here")
    assert len(errors) == 1 and isinstance(errors[0], FrameTooLarge)


def test_dispatch_calls_one_method_per_enum_member(
    sensors: dict[str, ModuleType], loop_factory: Callable[[], Any], tmp_path: Path
) -> None:
    """Over a unix socket; the default on_reading ignores what is not handled."""
    aio, codec = sensors["aio"], sensors["codec"]
    got: list[str] = []

    class Collector(aio.SensorsProtocol):  # type: ignore[name-defined, misc]
        def on_temperature(self, frame: Any) -> None:
            got.append("temperature")
            self.send(frame)

        def on_humidity(self, frame: Any) -> None:
            got.append("humidity")
            self.send(frame)

    def reading(kind: Any) -> Any:
        return codec.Reading(version=1, kind=kind, sensor_id=7, delta=0, value=1.5)

    async def main() -> list[Any]:
        url = f"unix://{tmp_path / 'sensors.sock'}"
        server = await aio.start_server(Collector, url)
        async with server:
            async with aio.connect(url) as client:
                await client.send(reading(codec.Kind.pressure))  # not handled
                first = await client.request(reading(codec.Kind.temperature))
                second = await client.request(reading(codec.Kind.humidity))
        return [first.kind, second.kind]

    kinds = run(loop_factory, main())
    assert kinds == [codec.Kind.temperature, codec.Kind.humidity]
    assert got == ["temperature", "humidity"]


def test_the_async_client_talks_to_a_protogen_runtime_server(
    echo: dict[str, ModuleType], loop_factory: Callable[[], Any]
) -> None:
    """One codec, both worlds: the generated echo handler on protogen's loop,
    the asyncio client on asyncio's."""
    aio, Message = echo["aio"], echo["codec"].Message
    engine = Engine(
        echo["handler"].EchoEchoHandler(),
        ["tcp://127.0.0.1:0"],
        Options(install_signal_handlers=False),
    )
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        assert engine.wait_started(10)
        url = engine.urls[0]

        async def main() -> list[bytes]:
            async with aio.connect(url) as client:
                await client.send_many([Message(payload=b"%d" % n) for n in range(50)])
                return [(await client.recv()).payload for _ in range(50)]

        assert run(loop_factory, main()) == [b"%d" % n for n in range(50)]
    finally:
        engine.stop()
        thread.join(10)


def test_udp_urls_are_refused_with_a_clear_error(echo: dict[str, ModuleType]) -> None:
    with pytest.raises(ValueError, match="streams"):
        run(asyncio.new_event_loop, echo["aio"].connect("udp://127.0.0.1:9")._open())


def test_a_half_closed_peer_gets_every_reply_then_the_close(
    echo: dict[str, ModuleType], loop_factory: Callable[[], Any]
) -> None:
    """Requests and FIN together, with a coroutine callback still running when
    the FIN arrives: every reply is written, then the connection closes."""
    aio, Message = echo["aio"], echo["codec"].Message

    class Slow(aio.EchoProtocol):  # type: ignore[name-defined, misc]
        async def on_message(self, frame: Any) -> None:
            await asyncio.sleep(0.01)
            self.send(Message(payload=bytes(frame.payload)))

    async def main() -> bytes:
        server = await aio.start_server(Slow, "tcp://127.0.0.1:0")
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(server)
            )
            writer.write(b"".join(Message(payload=b"%d" % n).encode() for n in range(5)))
            writer.write_eof()
            data = await reader.read()  # until the server closes
            writer.close()
            return data

    expected = b"".join(Message(payload=b"%d" % n).encode() for n in range(5))
    assert run(loop_factory, main()) == expected
