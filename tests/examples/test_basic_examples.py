"""The basic examples' handlers (examples/echo_service.py, lines_chat.py,
fixed_collector.py, netstring_kv.py, varint_counter.py), each served over real
loopback sockets and driven by its generated client.

Most tests run the handler in-process on a runtime Engine in a thread, so they can
also look at the handler's state (aggregates, counters). The last ones run the
documented command, `protogen serve examples/SPEC --handler examples.MODULE:CLASS`,
from the repository root.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from protogen.runtime import Engine, Options
from protogen.runtime.engine import BootError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SPECS = ["echo", "lines", "fixed", "netstring", "varint"]
PROTOCOLS = ["echo", "lines", "sensors", "netstring", "varint"]
HANDLER_MODULES = [
    "echo_service",
    "lines_chat",
    "fixed_collector",
    "netstring_kv",
    "varint_counter",
]
TIMEOUT = 5.0


def _forget_modules() -> None:
    """Drop generated and example modules that another test may have imported from
    another build, so these tests import the ones built here."""
    for protocol in PROTOCOLS:
        for kind in ("codec", "handler", "server", "client"):
            sys.modules.pop(f"{protocol}_{kind}", None)
    for name in HANDLER_MODULES:
        sys.modules.pop(f"examples.{name}", None)


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """gen.<module>: the generated modules and the example handler modules."""
    out = tmp_path_factory.mktemp("basic_examples")
    specs = [str(EXAMPLES / f"{name}.proto.dsl") for name in SPECS]
    result = subprocess.run(
        [sys.executable, "-m", "protogen", "build", *specs, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    added = [str(out), str(ROOT)]
    sys.path[:0] = added
    _forget_modules()
    try:
        modules = {
            f"{protocol}_{kind}": importlib.import_module(f"{protocol}_{kind}")
            for protocol in PROTOCOLS
            for kind in ("codec", "client")
        }
        for name in HANDLER_MODULES:
            modules[name] = importlib.import_module(f"examples.{name}")
        yield type("Generated", (), modules)
    finally:
        for path in added:
            sys.path.remove(path)
        _forget_modules()


@contextlib.contextmanager
def serving(handler: Any, *urls: str) -> Iterator[list[str]]:
    """Serve `handler` on a runtime Engine in a thread; yields the bound URLs."""
    engine = Engine(
        handler,
        urls or ["tcp://127.0.0.1:0"],
        Options(install_signal_handlers=False, drain_timeout=2.0),
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert engine.wait_started(TIMEOUT), "engine did not start"
    try:
        yield engine.urls
    finally:
        engine.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "engine did not stop"
        assert not failure, failure


def wait_for(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


# --- echo -------------------------------------------------------------------------


def test_echo_service_echoes_and_counts(gen: Any) -> None:
    Message = gen.echo_codec.Message
    service = gen.echo_service.EchoService()
    frames = [Message(payload=b"x" * n) for n in (0, 1, 100, 70_000)]
    with serving(service) as (url,):
        with (
            gen.echo_client.connect(url, timeout=TIMEOUT) as first,
            gen.echo_client.connect(url, timeout=TIMEOUT) as second,
        ):
            first.send_many(frames)
            assert first.recv_many(len(frames)) == frames
            assert second.request(Message(payload=b"hi")).payload == b"hi"
        wait_for(lambda: service.total.frames == len(frames) + 1)
    assert service.connections == 2
    assert service.total.payload_bytes == 70_101 + 2


# --- lines: the chat room ----------------------------------------------------------


class Chatter:
    """A chat client on the generated lines client: lines as text."""

    def __init__(self, client_module: ModuleType, codec: ModuleType, url: str) -> None:
        self.codec = codec
        self.client = client_module.connect(url, timeout=TIMEOUT)
        self.welcome = self.read()

    def say(self, text: str) -> None:
        self.client.send(self.codec.Line(line=text.encode()))

    def read(self) -> str:
        return bytes(self.client.recv().line).decode()

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def chat(gen: Any) -> Iterator[Any]:
    """chat.join() -> a connected Chatter (whose join the others have seen)."""
    room = gen.lines_chat.ChatRoom()
    with serving(room) as (url,):
        members: list[Chatter] = []

        def join() -> Chatter:
            chatter = Chatter(gen.lines_client, gen.lines_codec, url)
            for other in members:
                assert other.read().endswith(" joined")
            members.append(chatter)
            return chatter

        def line(text: str) -> Any:
            return gen.lines_codec.Line(line=text.encode())

        try:
            yield type(
                "Chat", (), {"join": staticmethod(join), "line": staticmethod(line)}
            )
        finally:
            for member in members:
                member.close()


def test_a_line_reaches_every_other_member_but_not_its_sender(chat: Any) -> None:
    alice, bob, carol = chat.join(), chat.join(), chat.join()
    assert alice.welcome.startswith("* welcome, guest1; 1 here")
    assert carol.welcome.startswith("* welcome, guest3; 3 here")
    alice.say("hello, room")
    assert bob.read() == "guest1: hello, room"
    assert carol.read() == "guest1: hello, room"
    # Had alice been sent her own line, it would come before this answer.
    alice.say("/who")
    assert alice.read() == "* here: guest1, guest2, guest3"
    carol.close()  # an orderly close: the room hears no reason
    assert alice.read() == "* guest3 left"
    assert bob.read() == "* guest3 left"


def test_nick_renames_and_refuses_taken_or_bad_nicks(chat: Any) -> None:
    alice, bob = chat.join(), chat.join()
    alice.say("/nick alice")
    assert alice.read() == "* guest1 is now alice"
    assert bob.read() == "* guest1 is now alice"
    bob.say("/nick alice")
    assert bob.read() == "! alice is taken"
    bob.say("/nick not valid!")
    assert bob.read().startswith("! a nick is 1-32")
    bob.say("/dance")
    assert bob.read().startswith("! unknown command /dance")
    alice.say("hi bob")
    assert bob.read() == "alice: hi bob"


def test_quit_says_bye_closes_and_tells_the_room(chat: Any) -> None:
    alice, bob = chat.join(), chat.join()
    bob.say("/nick bob")
    assert alice.read() == "* guest2 is now bob"
    assert bob.read() == "* guest2 is now bob"
    # A line pipelined behind /quit is never delivered.
    bob.client.send_many([chat.line("/quit"), chat.line("after quit")])
    assert bob.read() == "* bye"
    with pytest.raises(ConnectionError):
        bob.read()
    assert alice.read() == "* bob left (quit)"
    alice.say("/who")
    assert alice.read() == "* here: guest1"


def test_an_oversize_line_closes_only_its_sender(chat: Any) -> None:
    alice, bob, carol = chat.join(), chat.join(), chat.join()
    bob.client.send_bytes(b"x" * 9000)  # over 8 KiB, no end of line yet
    error = bob.read()
    assert error.startswith("! ") and "8192" in error
    with pytest.raises(ConnectionError):
        bob.read()
    assert alice.read() == "* guest2 left (FrameTooLarge)"
    assert carol.read() == "* guest2 left (FrameTooLarge)"
    carol.say("still here")
    assert alice.read() == "guest3: still here"
    # An 8 KiB line is within the limit, but relayed with the nick it would not be.
    alice.say("y" * 8192)
    assert alice.read().startswith("! message too long")
    alice.say("y" * (8192 - len("guest1: ")))
    assert carol.read() == "guest1: " + "y" * 8184


def test_a_udp_datagram_is_posted_to_the_room(gen: Any) -> None:
    room = gen.lines_chat.ChatRoom()
    with serving(room, "tcp://127.0.0.1:0", "udp://127.0.0.1:0") as (tcp, udp):
        member = Chatter(gen.lines_client, gen.lines_codec, tcp)
        try:
            with gen.lines_client.connect(udp, timeout=TIMEOUT) as poster:
                poster.send_bytes(b"first\r\nsecond\n")
                port = poster.sock.getsockname()[1]
                assert member.read() == f"127.0.0.1:{port}: first"
                assert member.read() == f"127.0.0.1:{port}: second"
        finally:
            member.close()


class CountingTransport:
    """A member's socket, counting the writes (chunks) the loop sends through it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.chunks = 0

    def recv_into(self, buffer: Any) -> int:
        return self.sock.recv_into(buffer)

    def send(self, data: Any) -> int:
        self.chunks += 1
        return self.sock.send(data)

    def sendmsg(self, chunks: Any) -> int:
        self.chunks += len(chunks)
        return self.sock.sendmsg(chunks)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc fds")
def test_a_crowd_joining_and_leaving_at_once_costs_each_member_one_write(
    gen: Any,
) -> None:
    # Slowloris on a chat room: 40 clients arrive in one loop pass, then drop
    # in one pass. Announced one by one that is 40 writes per member per pass
    # (500 clients: 250 000 writes, the room stalled for a tenth of a second);
    # announced together, one.
    crowd = 40
    transports: list[CountingTransport] = []

    def wrap(conn: Any) -> CountingTransport:
        transports.append(CountingTransport(conn.sock))
        return transports[-1]

    room = gen.lines_chat.ChatRoom()
    engine = Engine(room, ["tcp://127.0.0.1:0"], Options(install_signal_handlers=False))
    engine.listen()
    engine.listeners[0].transport = wrap
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    assert engine.wait_started(TIMEOUT)
    gate = threading.Event()

    def hold_the_loop() -> None:
        """Blocks the loop until the test has acted: what it did meanwhile is
        seen by the loop's next pass, all at once."""
        engine.loop.call_soon_threadsafe(gate.wait, TIMEOUT)
        time.sleep(0.1)  # (the loop is parked in gate.wait: nothing races it)

    (url,) = engine.urls
    bystander = Chatter(gen.lines_client, gen.lines_codec, url)
    clients: list[socket.socket] = []
    try:
        fds_before = open_fds()
        hold_the_loop()
        port = int(url.rsplit(":", 1)[1])
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(crowd)]
        transports[0].chunks = 0
        gate.set()
        joined = [bystander.read() for _ in range(crowd)]
        assert joined == [f"* guest{n} joined" for n in range(2, crowd + 2)]
        assert transports[0].chunks == 1, transports[0].chunks
        bystander.say("/who")
        assert bystander.read().startswith("* here: guest1, guest2, ")
        gate.clear()
        hold_the_loop()
        transports[0].chunks = 0
        for client in clients:
            client.close()
        gate.set()
        left = [bystander.read() for _ in range(crowd)]
        # (a reset, as the crowd never read: "left (connection lost)")
        assert sorted(line.partition(" (")[0] for line in left) == sorted(
            f"* guest{n} left" for n in range(2, crowd + 2)
        ), left
        assert transports[0].chunks == 1, transports[0].chunks
        # Nothing of the crowd is left behind.
        wait_for(lambda: engine.count_connections() == 1)
        wait_for(lambda: open_fds() == fds_before)
    finally:
        gate.set()
        bystander.close()
        for client in clients:
            client.close()
        engine.stop()
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_a_member_that_never_reads_is_dropped_before_the_room_piles_up_for_it(
    chat: Any, gen: Any
) -> None:
    # Without a limit the lines of a busy room queue for such a member up to
    # the runtime's write_buffer_cap (64 MiB), for each of them.
    talker, listener = chat.join(), chat.join()
    deaf = socket.create_connection(listener.client.sock.getpeername())
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        assert talker.read() == "* guest3 joined"
        assert listener.read() == "* guest3 joined"
        line = "x" * 8000
        # The kernel's send buffer takes the first few MiB: 16 MiB in all is far
        # below the cap and far above the room's limit.
        notices: list[str] = []
        for _ in range(16 * 2**20 // (64 * len(line))):
            talker.client.send_many([chat.line(line)] * 64)
            relayed = 0
            while relayed < 64:
                heard = listener.read()
                if heard == f"guest1: {line}":
                    relayed += 1
                else:
                    notices.append(heard)
            if notices:
                break
        else:
            notices.append(listener.read())  # it leaves once its close drained
        assert notices == ["* guest3 left (too slow)"], notices
        while (heard := talker.read()) != "* guest3 left (too slow)":
            assert heard.startswith("* "), heard
    finally:
        deaf.close()


def test_the_room_refuses_several_event_loops(gen: Any) -> None:
    class ClusterEngine:  # what a multi-process worker's on_boot receives
        workers = 2

    with pytest.raises(BootError, match="single event loop"):
        gen.lines_chat.ChatRoom().on_boot(ClusterEngine())


# --- fixed: the sensor collector -------------------------------------------------------


def f32(value: float) -> float:
    """`value` as the wire's f32 holds it."""
    return struct.unpack(">f", struct.pack(">f", value))[0]


def test_collector_acks_reports_with_aggregates(gen: Any) -> None:
    codec = gen.sensors_codec
    Reading, Kind = codec.Reading, codec.Kind
    collector = gen.fixed_collector.SensorCollector()

    def report(sensor: int, kind: Any, value: float, age: int = 0) -> Any:
        return Reading(version=1, kind=kind, sensor_id=sensor, delta=age, value=value)

    reports = [
        report(7, Kind.temperature, 20.5),
        report(7, Kind.temperature, 22.5),
        report(9, Kind.humidity, 40.0),
        report(7, Kind.temperature, 24.25, age=30),
        report(7, Kind.humidity, 55.0),
    ]
    with serving(collector) as (url,):
        with gen.sensors_client.connect(url, timeout=TIMEOUT) as client:
            client.send_many(reports)
            acks = client.recv_many(len(reports))
            assert [(a.version, a.sensor_id, a.kind, a.delta) for a in acks] == [
                (2, 7, Kind.temperature, 1),
                (2, 7, Kind.temperature, 2),
                (2, 9, Kind.humidity, 1),
                (2, 7, Kind.temperature, 3),
                (2, 7, Kind.humidity, 1),
            ]
            assert [a.value for a in acks] == [
                f32(20.5),
                f32(21.5),
                f32(40.0),
                f32((20.5 + 22.5 + 24.25) / 3),
                f32(55.0),
            ]
            # Invalid reports: out of range, not a number, stale, from the future.
            for bad in (
                report(7, Kind.temperature, 500.0),
                report(7, Kind.temperature, math.nan),
                report(7, Kind.temperature, 21.0, age=4000),
                report(7, Kind.temperature, 21.0, age=-5),
                report(3, Kind.pressure, 10.0),
            ):
                ack = client.request(bad)
                assert ack.delta == gen.fixed_collector.REJECTED
            # A query (version 2) reads the aggregate without adding to it.
            query = Reading(
                version=2, kind=Kind.temperature, sensor_id=7, delta=0, value=0.0
            )
            answer = client.request(query)
            assert (answer.delta, answer.value) == (3, f32((20.5 + 22.5 + 24.25) / 3))
            unknown = client.request(
                Reading(version=2, kind=Kind.pressure, sensor_id=3, delta=0, value=0.0)
            )
            assert (unknown.delta, unknown.value) == (0, 0.0)
    temperature = collector.aggregates[(7, Kind.temperature)]
    assert temperature.count == 3
    assert (temperature.minimum, temperature.maximum) == (20.5, 24.25)
    assert collector.rejected == 5
    assert (3, Kind.pressure) not in collector.aggregates


def test_collector_over_udp_and_bad_magic_closes_only_its_connection(gen: Any) -> None:
    codec = gen.sensors_codec
    reading = codec.Reading(
        version=1, kind=codec.Kind.pressure, sensor_id=1, delta=0, value=1013.0
    )
    collector = gen.fixed_collector.SensorCollector()
    with serving(collector, "tcp://127.0.0.1:0", "udp://127.0.0.1:0") as (tcp, udp):
        with gen.sensors_client.connect(udp, timeout=TIMEOUT) as datagrams:
            assert datagrams.request(reading).delta == 1
        with (
            gen.sensors_client.connect(tcp, timeout=TIMEOUT) as good,
            gen.sensors_client.connect(tcp, timeout=TIMEOUT) as bad,
        ):
            bad.send_bytes(b"XX" + reading.encode()[2:])
            with pytest.raises(ConnectionError):
                bad.recv()
            assert good.request(reading).delta == 2


# --- netstring: the key-value store ------------------------------------------------------


def test_key_value_store_commands(gen: Any) -> None:
    Netstring = gen.netstring_codec.Netstring
    store = gen.netstring_kv.KeyValueStore()

    def ask(client: Any, command: bytes) -> bytes:
        return bytes(client.request(Netstring(data=command)).data)

    binary = b"a value, with commas\r\nand spaces\x00 and 12:netstrings,"
    with serving(store) as (url,):
        with (
            gen.netstring_client.connect(url, timeout=TIMEOUT) as writer,
            gen.netstring_client.connect(url, timeout=TIMEOUT) as reader,
        ):
            assert ask(writer, b"SET greeting " + binary) == b"+OK"
            assert ask(writer, b"set count 1") == b"+OK"
            assert ask(reader, b"GET greeting") == b"+" + binary
            assert ask(reader, b"KEYS") == b"+count greeting"
            assert ask(reader, b"DEL count") == b"+1"
            assert ask(reader, b"DEL count") == b"+0"
            assert ask(writer, b"GET count") == b"-not found"
            assert ask(writer, b"UPPER make me loud") == b"+MAKE ME LOUD"
            assert ask(writer, b"SET lonely") == b"-usage: SET key value"
            assert ask(writer, b"GET " + b"k" * 251).startswith(b"-a key is 1-250")
            assert ask(writer, b"FLY away") == b"-unknown command FLY"
            # Pipelined: one answer per request, in order.
            writer.send_many(
                [Netstring(data=b"SET p%d %d" % (i, i)) for i in range(50)]
            )
            assert {bytes(f.data) for f in writer.recv_many(50)} == {b"+OK"}
    assert store.store[b"greeting"] == binary
    assert len(store.store) == 51


# --- varint: the counter service --------------------------------------------------------


def test_protobuf_encoding_matches_the_wire_format(gen: Any) -> None:
    counter = gen.varint_counter
    # field 1 (string, tag 0x0a) "a"; field 2 (varint, tag 0x10) zigzag(1) = 2
    assert counter.encode_request("a", 1) == b"\x0a\x01a\x10\x02"
    # zigzag(-1) = 1; zigzag(-64) = 127; zigzag(64) = 128 = varint 80 01
    assert counter.encode_request("a", -1) == b"\x0a\x01a\x10\x01"
    assert counter.encode_request("", 64) == b"\x0a\x00\x10\x80\x01"
    assert counter.decode_request(b"\x10\x7f\x0a\x01b") == counter.CounterRequest(
        "b", -64
    )
    # An unknown fixed64 field (number 4, wire type 1) is skipped.
    assert counter.decode_request(
        b"\x0a\x01c" + b"\x21" + bytes(8)
    ) == counter.CounterRequest("c", 0)


def test_counter_service_counts_across_connections(gen: Any) -> None:
    Message = gen.varint_codec.Message
    counter = gen.varint_counter
    service = counter.CounterService()

    def call(client: Any, payload: bytes) -> Any:
        return counter.decode_reply(
            bytes(client.request(Message(message=payload)).message)
        )

    with serving(service) as (url,):
        with (
            gen.varint_client.connect(url, timeout=TIMEOUT) as one,
            gen.varint_client.connect(url, timeout=TIMEOUT) as two,
        ):
            one.send_many([Message(message=counter.encode_request("hits", 1))] * 200)
            values = [
                counter.decode_reply(bytes(m.message)).value for m in one.recv_many(200)
            ]
            assert values == list(range(1, 201))
            assert call(two, counter.encode_request("hits", -50)).value == 150
            assert call(two, counter.encode_request("hits")).value == 150  # a read
            assert (
                call(one, counter.encode_request("big", 2**63 - 1)).value == 2**63 - 1
            )
            overflow = call(one, counter.encode_request("big", 1))
            assert (overflow.value, overflow.error) == (2**63 - 1, "int64 overflow")
            # A frame that is no CounterRequest gets an error; the connection lives on.
            assert call(two, b"\x0a\x05ab").error.startswith("bad request: truncated")
            assert call(two, b"").error == "bad request: name is required"
            assert call(two, counter.encode_request("hits", 1)).value == 151
    assert service.counters == {"hits": 151, "big": 2**63 - 1}


# --- the documented command: protogen serve ... --handler examples.MODULE:CLASS -------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _echo_roundtrip(gen: Any, url: str) -> None:
    with gen.echo_client.connect(url, timeout=TIMEOUT) as client:
        reply = client.request(gen.echo_codec.Message(payload=b"served"))
        assert reply.payload == b"served"


def _lines_roundtrip(gen: Any, url: str) -> None:
    with gen.lines_client.connect(url, timeout=TIMEOUT) as client:
        # The readiness probe was guest1: it may leave before or after we join.
        assert bytes(client.recv().line).startswith(b"* welcome, guest2")
        client.send(gen.lines_codec.Line(line=b"/who"))
        while (line := bytes(client.recv().line)).startswith(b"* guest1 left"):
            pass
        assert line in (b"* here: guest2", b"* here: guest1, guest2")


def _fixed_roundtrip(gen: Any, url: str) -> None:
    codec = gen.sensors_codec
    reading = codec.Reading(
        version=1, kind=codec.Kind.humidity, sensor_id=5, delta=0, value=50.0
    )
    with gen.sensors_client.connect(url, timeout=TIMEOUT) as client:
        assert client.request(reading).delta == 1


def _netstring_roundtrip(gen: Any, url: str) -> None:
    Netstring = gen.netstring_codec.Netstring
    with gen.netstring_client.connect(url, timeout=TIMEOUT) as client:
        assert client.request(Netstring(data=b"UPPER abc")).data == b"+ABC"


def _varint_roundtrip(gen: Any, url: str) -> None:
    counter = gen.varint_counter
    message = gen.varint_codec.Message(message=counter.encode_request("n", 3))
    with gen.varint_client.connect(url, timeout=TIMEOUT) as client:
        assert counter.decode_reply(bytes(client.request(message).message)).value == 3


DOCUMENTED = {
    "echo": ("examples.echo_service:EchoService", _echo_roundtrip),
    "lines": ("examples.lines_chat:ChatRoom", _lines_roundtrip),
    "fixed": ("examples.fixed_collector:SensorCollector", _fixed_roundtrip),
    "netstring": ("examples.netstring_kv:KeyValueStore", _netstring_roundtrip),
    "varint": ("examples.varint_counter:CounterService", _varint_roundtrip),
}


@pytest.mark.parametrize("spec", SPECS)
def test_protogen_serve_runs_the_example_handler_from_the_repo_root(
    spec: str, gen: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    handler, roundtrip = DOCUMENTED[spec]
    url = f"tcp://127.0.0.1:{free_port()}"
    env = dict(
        os.environ,
        PROTOGEN_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "serve-cache"),
    )
    command = ["protogen", "serve", f"examples/{spec}.proto.dsl", "--handler", handler]
    process = subprocess.Popen(
        [sys.executable, "-m", *command, "--listen", url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # the first start builds into the cache
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                host, port = url.removeprefix("tcp://").split(":")
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "never listened"
                time.sleep(0.05)
        roundtrip(gen, url)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert f"with {handler.split(':')[1]}" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
