"""The MQTT broker example (examples/mqtt/), driven by mosquitto_sub and mosquitto_pub
(mosquitto-clients), plus raw sockets for what they cannot send (malformed packets)
and unit tests of its topic trie."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from served_example import EXAMPLES, ExampleServer, recv_until_closed

sys.path.insert(0, str(EXAMPLES / "mqtt"))
from topics import TopicTrie, matches, valid_filter  # noqa: E402

CLIENT_TIMEOUT = 15.0
# mosquitto_sub block-buffers a piped stdout: line buffering lets us see "Subscribed".
LINE_BUFFERED = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
    reason="mosquitto_sub/mosquitto_pub (mosquitto-clients) not installed",
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[ExampleServer]:
    served = ExampleServer("mqtt", cache_dir)
    try:
        yield served
    finally:
        assert served.alive(), "the broker died during the tests"
        served.stop()


# -- the real clients ------------------------------------------------------------------


class Subscriber:
    """`mosquitto_sub -C count -W wait`, started and waited for until subscribed."""

    def __init__(
        self,
        server: ExampleServer,
        *filters: str,
        count: int,
        wait: int = 5,
        options: tuple[str, ...] = (),
        output: str = "MSG %r %t %p",
    ) -> None:
        args = [
            *LINE_BUFFERED,
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-d",
        ]
        for topic_filter in filters:
            args += ["-t", topic_filter]
        args += [*options, "-C", str(count), "-W", str(wait), "-F", output]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        if not LINE_BUFFERED:  # its output arrives at exit only: give it time instead
            time.sleep(1.0)
            return
        # -d prints "Subscribed (mid: 1): ..." once the SUBACK arrived; -W bounds the wait.
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Subscribed"):
                break
        else:
            self.finish()
            raise AssertionError(f"mosquitto_sub never subscribed: {self.lines}")

    def finish(self) -> tuple[list[str], int]:
        """(the "retain topic payload" lines it printed, its exit status)."""
        # Read through the same buffered stdout the readiness loop used (it may
        # hold lines already); the watchdog bounds the wait if -W ever fails.
        watchdog = threading.Timer(CLIENT_TIMEOUT, self.process.kill)
        watchdog.start()
        try:
            assert self.process.stdout is not None
            out = self.process.stdout.read()
            self.process.wait()
        finally:
            watchdog.cancel()
            self.process.stdout.close()
        self.lines += out.splitlines()
        messages = [line[4:] for line in self.lines if line.startswith("MSG ")]
        return messages, self.process.returncode


def publish(server: ExampleServer, topic: str, message: str, *options: str) -> str:
    """Run mosquitto_pub; its output (with -d, the packets it saw)."""
    done = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-t",
            topic,
            "-m",
            message,
            *options,
        ],
        check=True,
        timeout=CLIENT_TIMEOUT,
        capture_output=True,
        text=True,
    )
    return done.stdout + done.stderr


@needs_mosquitto
def test_publish_reaches_matching_subscribers_only(server: ExampleServer) -> None:
    exact = Subscriber(server, "home/kitchen/temp", count=1)
    single = Subscriber(server, "home/+/temp", count=2)
    multi = Subscriber(server, "home/#", count=3)
    other = Subscriber(server, "garden/+/temp", count=1, wait=3)
    publish(server, "home/kitchen/temp", "21.5")
    publish(
        server, "home/hall/temp", "19.0", "-q", "1"
    )  # QoS 1: PUBACK, delivered as QoS 0
    publish(server, "home/hall/light", "on", "-q", "2")  # QoS 2: PUBREC/PUBREL/PUBCOMP
    assert exact.finish() == (["0 home/kitchen/temp 21.5"], 0)
    assert single.finish() == (["0 home/kitchen/temp 21.5", "0 home/hall/temp 19.0"], 0)
    assert multi.finish() == (
        ["0 home/kitchen/temp 21.5", "0 home/hall/temp 19.0", "0 home/hall/light on"],
        0,
    )
    messages, status = other.finish()
    assert messages == []
    assert status != 0  # -W expired: nothing arrived


@needs_mosquitto
def test_retained_message_reaches_a_late_subscriber_and_empty_clears_it(
    server: ExampleServer,
) -> None:
    publish(server, "status/door", "open", "-r")
    publish(server, "status/door", "closed", "-r")  # replaces the first
    late = Subscriber(server, "status/#", count=1)
    assert late.finish() == (["1 status/door closed"], 0)

    publish(server, "status/door", "", "-r")  # an empty retained payload clears it
    later = Subscriber(server, "status/#", count=1, wait=2)
    assert later.finish()[0] == []


@needs_mosquitto
def test_live_delivery_after_retained_has_the_retain_flag_off(
    server: ExampleServer,
) -> None:
    publish(server, "lamp/1", "red", "-r")
    sub = Subscriber(server, "lamp/+", count=2)
    publish(server, "lamp/1", "green", "-r")
    assert sub.finish() == (["1 lamp/1 red", "0 lamp/1 green"], 0)


# -- raw sockets: the packets the real clients never send ------------------------------

CONNECT_311 = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
CONNACK_OK = bytes([0x20, 2, 0, 0])


def connected(server: ExampleServer) -> socket.socket:
    sock = server.connect()
    sock.sendall(CONNECT_311)
    assert recv_exactly(sock, 4) == CONNACK_OK
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def mqtt_str(text: str) -> bytes:
    return struct.pack(">H", len(text)) + text.encode()


def subscribe(sock: socket.socket, topic_filter: str, packet_id: int = 1) -> bytes:
    body = struct.pack(">H", packet_id) + mqtt_str(topic_filter) + b"\x00"
    sock.sendall(bytes([0x82, len(body)]) + body)
    return recv_exactly(sock, 5)


def test_ping_subscribe_unsubscribe_over_a_raw_socket(server: ExampleServer) -> None:
    with connected(server) as sub, connected(server) as pub:
        sub.sendall(b"\xc0\x00")  # PINGREQ
        assert recv_exactly(sub, 2) == b"\xd0\x00"
        assert subscribe(sub, "raw/+", 7) == b"\x90\x03\x00\x07\x00"
        body = mqtt_str("raw/x") + b"payload"
        pub.sendall(bytes([0x30, len(body)]) + body)
        assert recv_exactly(sub, 2 + len(body)) == bytes([0x30, len(body)]) + body
        # UNSUBSCRIBE -> UNSUBACK, and nothing more arrives
        unsub = b"\x00\x09" + mqtt_str("raw/+")
        sub.sendall(bytes([0xA2, len(unsub)]) + unsub)
        assert recv_exactly(sub, 4) == b"\xb0\x02\x00\x09"
        pub.sendall(bytes([0x30, len(body)]) + body)
        sub.sendall(b"\xc0\x00")  # the PINGRESP proves the publish was handled first
        assert recv_exactly(sub, 2) == b"\xd0\x00"
        # an invalid filter is refused (0x80), the connection goes on
        assert subscribe(sub, "bad/#/filter", 3) == b"\x90\x03\x00\x03\x80"


@needs_mosquitto
def test_unsubscribe_stops_delivery_to_mosquitto_sub(server: ExampleServer) -> None:
    # mosquitto_sub cannot unsubscribe mid-run; a raw client's unsubscribe must not
    # affect a mosquitto_sub with the same filter.
    with connected(server) as raw:
        subscribe(raw, "shared/t")
        sub = Subscriber(server, "shared/t", count=1)
        unsub = b"\x00\x02" + mqtt_str("shared/t")
        raw.sendall(bytes([0xA2, len(unsub)]) + unsub)
        assert recv_exactly(raw, 4) == b"\xb0\x02\x00\x02"
        publish(server, "shared/t", "only-for-sub")
        assert sub.finish() == (["0 shared/t only-for-sub"], 0)
        raw.sendall(b"\xc0\x00")
        assert recv_exactly(raw, 2) == b"\xd0\x00"  # not the PUBLISH


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(b"\x30\xff\xff\xff\xff\x01", id="over-long remaining length"),
        pytest.param(b"\x82\x05\x00\x01\x00\x01a", id="SUBSCRIBE before CONNECT"),
        pytest.param(b"\xc0\x00", id="PINGREQ before CONNECT"),
        pytest.param(b"\xf0\x00", id="reserved packet type 15"),
        pytest.param(
            bytes([0x1F, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0]),
            id="CONNECT with flags",
        ),
        pytest.param(bytes([0x10, 4, 0, 9]) + b"MQ", id="truncated protocol name"),
    ],
)
def test_a_malformed_first_packet_closes_that_connection_only(
    server: ExampleServer, packet: bytes
) -> None:
    with connected(server) as bystander, server.connect() as bad:
        bad.sendall(packet)
        assert recv_until_closed(bad) == b""
        bystander.sendall(b"\xc0\x00")
        assert recv_exactly(bystander, 2) == b"\xd0\x00"
    assert server.alive()


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(b"\x30\x80\x80\x80\x80\x01", id="5-byte remaining length"),
        pytest.param(b"\x80\x03\x00\x01\x00", id="SUBSCRIBE with flags 0"),
        pytest.param(b"\x36\x03\x00\x01a", id="PUBLISH with QoS 3"),
        pytest.param(b"\x30\x03\x00\x05a", id="topic runs past the packet"),
        pytest.param(b"\x20\x02\x00\x00", id="CONNACK from a client"),
        pytest.param(b"\x00\x00", id="reserved packet type 0"),
        pytest.param(CONNECT_311, id="second CONNECT"),
    ],
)
def test_a_malformed_packet_after_connect_closes_that_connection_only(
    server: ExampleServer, packet: bytes
) -> None:
    with connected(server) as bystander, connected(server) as bad:
        subscribe(bystander, "still/here")
        bad.sendall(packet)
        assert recv_until_closed(bad) == b""
        body = mqtt_str("still/here") + b"ok"
        with connected(server) as pub:
            pub.sendall(bytes([0x30, len(body)]) + body)
            assert (
                recv_exactly(bystander, 2 + len(body))
                == bytes([0x30, len(body)]) + body
            )


def test_connect_with_a_wrong_protocol_level_gets_return_code_1(
    server: ExampleServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([3, 0x02, 0, 60, 0, 0]))
        assert recv_until_closed(sock) == b"\x20\x02\x00\x01"


def test_empty_client_id_without_clean_session_gets_return_code_2(
    server: ExampleServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x00, 0, 60, 0, 0]))
        assert recv_until_closed(sock) == b"\x20\x02\x00\x02"


def test_will_is_published_on_abrupt_close_but_not_after_disconnect(
    server: ExampleServer,
) -> None:
    def connect_with_will(topic: str) -> socket.socket:
        body = (
            mqtt_str("MQTT")
            + bytes([4, 0x06, 0, 60])
            + mqtt_str("")
            + mqtt_str(topic)
            + mqtt_str("gone")
        )
        sock = server.connect()
        sock.sendall(bytes([0x10, len(body)]) + body)
        assert recv_exactly(sock, 4) == CONNACK_OK
        return sock

    with connected(server) as watcher:
        subscribe(watcher, "wills/#")
        polite = connect_with_will("wills/polite")
        polite.sendall(b"\xe0\x00")  # DISCONNECT: the will is dropped
        assert recv_until_closed(polite) == b""
        polite.close()
        connect_with_will("wills/abrupt").close()
        body = mqtt_str("wills/abrupt") + b"gone"
        assert recv_exactly(watcher, 2 + len(body)) == bytes([0x30, len(body)]) + body


def test_a_closed_subscriber_is_forgotten(server: ExampleServer) -> None:
    with connected(server) as sub:
        subscribe(sub, "gone/t")
    time.sleep(0.2)  # let the broker see the close
    with connected(server) as pub, connected(server) as probe:
        body = mqtt_str("gone/t") + b"x"
        pub.sendall(bytes([0x30, len(body)]) + body)
        pub.sendall(b"\xc0\x00")
        assert recv_exactly(pub, 2) == b"\xd0\x00"
        probe.sendall(b"\xc0\x00")
        assert recv_exactly(probe, 2) == b"\xd0\x00"
    assert server.alive()


# -- QoS 1 end to end -------------------------------------------------------------------


@needs_mosquitto
def test_qos1_publish_is_acknowledged_and_delivered_as_qos1_with_packet_ids(
    server: ExampleServer,
) -> None:
    qos1 = Subscriber(
        server, "qos/#", count=3, options=("-q", "1"), output="MSG %q %m %t %p"
    )
    qos0 = Subscriber(server, "qos/#", count=3, output="MSG %q %t %p")
    first = publish(server, "qos/a", "one", "-q", "1", "-d")
    assert "received PUBACK (Mid: 1" in first
    publish(server, "qos/b", "two", "-q", "1")
    publish(server, "qos/c", "three")  # QoS 0 stays QoS 0
    messages, status = qos1.finish()
    assert (messages, status) == (
        ["1 1 qos/a one", "1 2 qos/b two", "0 0 qos/c three"],
        0,
    )
    # mosquitto_sub acknowledged each QoS 1 delivery (its -d log).
    assert sum("sending PUBACK" in line for line in qos1.lines) == 2
    assert qos0.finish() == (["0 qos/a one", "0 qos/b two", "0 qos/c three"], 0)


def test_qos1_delivery_over_a_raw_socket_uses_fresh_packet_ids(
    server: ExampleServer,
) -> None:
    with connected(server) as sub, connected(server) as pub:
        body = struct.pack(">H", 1) + mqtt_str("raw1/t") + b"\x01"  # QoS 1
        sub.sendall(bytes([0x82, len(body)]) + body)
        assert recv_exactly(sub, 5) == b"\x90\x03\x00\x01\x01"  # granted QoS 1
        for packet_id in (7, 8):
            body = mqtt_str("raw1/t") + struct.pack(">H", packet_id) + b"hi"
            pub.sendall(bytes([0x32, len(body)]) + body)
            assert recv_exactly(pub, 4) == bytes([0x40, 2, 0, packet_id])  # PUBACK
        # The subscriber's packet ids are the broker's own: 1, then 2.
        for packet_id in (1, 2):
            body = mqtt_str("raw1/t") + struct.pack(">H", packet_id) + b"hi"
            assert recv_exactly(sub, 2 + len(body)) == bytes([0x32, len(body)]) + body
            sub.sendall(bytes([0x40, 2, 0, packet_id]))  # PUBACK from the subscriber
        sub.sendall(b"\xc0\x00")
        assert recv_exactly(sub, 2) == b"\xd0\x00"


def test_qos2_publish_resent_before_pubrel_is_delivered_once(
    server: ExampleServer,
) -> None:
    with connected(server) as sub, connected(server) as pub:
        subscribe(sub, "twice/t")
        body = mqtt_str("twice/t") + struct.pack(">H", 9) + b"x"
        pub.sendall(bytes([0x34, len(body)]) + body)
        assert recv_exactly(pub, 4) == b"\x50\x02\x00\x09"  # PUBREC
        pub.sendall(bytes([0x3C, len(body)]) + body)  # DUP re-send
        assert recv_exactly(pub, 4) == b"\x50\x02\x00\x09"
        pub.sendall(b"\x62\x02\x00\x09")  # PUBREL
        assert recv_exactly(pub, 4) == b"\x70\x02\x00\x09"  # PUBCOMP
        delivered = mqtt_str("twice/t") + b"x"
        assert recv_exactly(sub, 2 + len(delivered)) == b"\x30\x0a" + delivered
        sub.sendall(b"\xc0\x00")
        assert recv_exactly(sub, 2) == b"\xd0\x00"  # not a second PUBLISH


# -- conformance --------------------------------------------------------------------------


def connect_packet(flags: int, payload: bytes) -> bytes:
    body = mqtt_str("MQTT") + bytes([4, flags, 0, 60]) + payload
    return bytes([0x10, len(body)]) + body


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(
            connect_packet(0x42, mqtt_str("c") + mqtt_str("secret")),
            id="password without user name",
        ),
        pytest.param(
            connect_packet(0x1E, mqtt_str("c") + mqtt_str("w/t") + mqtt_str("bye")),
            id="will QoS 3",
        ),
    ],
)
def test_a_refused_connect_closes_without_connack(
    server: ExampleServer, packet: bytes
) -> None:
    with server.connect() as sock:
        sock.sendall(packet)
        assert recv_until_closed(sock) == b""


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(b"\x82\x06\x00\x01\x00\x01a\x03", id="SUBSCRIBE with QoS 3"),
        pytest.param(b"\x82\x06\x00\x00\x00\x01a\x00", id="SUBSCRIBE packet id 0"),
        pytest.param(b"\x32\x05\x00\x01a\x00\x00", id="PUBLISH QoS 1 packet id 0"),
        pytest.param(b"\xa2\x05\x00\x00\x00\x01a", id="UNSUBSCRIBE packet id 0"),
    ],
)
def test_a_refused_packet_after_connect_closes_the_connection(
    server: ExampleServer, packet: bytes
) -> None:
    with connected(server) as bad:
        bad.sendall(packet)
        assert recv_until_closed(bad) == b""


def test_a_second_connection_with_the_same_client_id_disconnects_the_first(
    server: ExampleServer,
) -> None:
    with server.connect() as older, server.connect() as newer, connected(server) as pub:
        for sock in (older, newer):
            sock.sendall(connect_packet(0x02, mqtt_str("same-id")))
            assert recv_exactly(sock, 4) == CONNACK_OK
        assert recv_until_closed(older) == b""
        assert subscribe(newer, "takeover/t") == b"\x90\x03\x00\x01\x00"
        body = mqtt_str("takeover/t") + b"x"
        pub.sendall(bytes([0x30, len(body)]) + body)
        assert recv_exactly(newer, 2 + len(body)) == bytes([0x30, len(body)]) + body


def test_a_client_cannot_publish_or_retain_on_sys_topics(server: ExampleServer) -> None:
    with connected(server) as watcher, connected(server) as pub:
        subscribe(watcher, "$SYS/#")
        body = mqtt_str("$SYS/broker/uptime") + struct.pack(">H", 3) + b"forged"
        pub.sendall(bytes([0x33, len(body)]) + body)  # QoS 1, retained
        assert recv_exactly(pub, 4) == b"\x40\x02\x00\x03"  # acknowledged anyway
        watcher.sendall(b"\xc0\x00")
        assert recv_exactly(watcher, 2) == b"\xd0\x00"  # nothing delivered before
    with connected(server) as late:
        subscribe(late, "$SYS/#")
        late.sendall(b"\xc0\x00")
        assert recv_exactly(late, 2) == b"\xd0\x00"  # and nothing retained


# -- the topic trie --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/x", True),
        ("+", "$SYS", False),
        ("#", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/+/c", "a/b/d", False),
    ],
)
def test_trie_agrees_with_the_reference_matcher(
    topic_filter: str, topic: str, expected: bool
) -> None:
    trie = TopicTrie()
    trie.add(topic_filter, "subscriber")
    assert matches(topic_filter, topic) is expected
    assert ("subscriber" in trie.match(topic)) is expected


def test_trie_collects_each_subscriber_once_and_prunes_on_remove() -> None:
    trie = TopicTrie()
    trie.add("a/#", "s1")
    trie.add("a/+", "s1")
    trie.add("a/b", "s2")
    assert set(trie.match("a/b")) == {"s1", "s2"}
    assert trie.remove("a/+", "s1") and not trie.remove("a/+", "s1")
    assert trie.remove("a/b", "s2")
    assert set(trie.match("a/b")) == {"s1"}
    assert trie.remove("a/#", "s1")
    assert len(trie) == 0 and trie._root.children == {}


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("a/#", True),
        ("#", True),
        ("+/b/+", True),
        ("a#", False),
        ("a/#/b", False),
        ("a+/b", False),
        ("", False),
    ],
)
def test_filter_validation(topic_filter: str, valid: bool) -> None:
    assert valid_filter(topic_filter) is valid


# -- the broker in-process: its state after a close ------------------------------------


class FakeLoop:
    """The timers the broker asks for, run by the test."""

    def __init__(self) -> None:
        self.timers: list = []

    def call_later(self, delay: float, fn, *args) -> None:
        self.timers.append((fn, args))


class FakeConn:
    """What the broker uses of a runtime conn: write, flush, closed, the pauses."""

    loop = FakeLoop()

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.write_paused = False  # set by the test: a slow subscriber
        self.read_paused = False  # set by the broker: a throttled publisher

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        self.read_paused = False

    def close(self) -> None:
        self.closed = True

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def flush(self) -> None:
        pass


@pytest.fixture(scope="module")
def broker_module(cache_dir: Path):
    import importlib.util
    import os

    saved = os.environ.get("PROTOGEN_CACHE_DIR")
    os.environ["PROTOGEN_CACHE_DIR"] = str(cache_dir)
    try:
        loader = importlib.util.spec_from_file_location(
            "mqtt_example_serve", EXAMPLES / "mqtt" / "serve.py"
        )
        assert loader is not None and loader.loader is not None
        serve = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(serve)
        return serve.load_example()
    finally:
        if saved is None:
            del os.environ["PROTOGEN_CACHE_DIR"]
        else:
            os.environ["PROTOGEN_CACHE_DIR"] = saved


def test_closing_a_connection_removes_its_subscriptions_from_the_trie(
    broker_module,
) -> None:
    modules, handler = broker_module
    decoder = modules["codec"].PacketDecoder()
    broker = handler.MqttBroker()

    def handle(conn: FakeConn, packet: bytes) -> None:
        frame, end = decoder.decode(packet)
        assert end == len(packet)
        # As the generated on_traffic does (`dispatch on type`): on_connect, ...
        getattr(broker, f"on_{frame.type.name}")(conn, frame)

    def subscribe_packet(packet_id: int, *filters: str) -> bytes:
        body = struct.pack(">H", packet_id)
        body += b"".join(mqtt_str(topic_filter) + b"\x00" for topic_filter in filters)
        return bytes([0x82, len(body)]) + body

    first, second = FakeConn(), FakeConn()
    for conn in (first, second):
        handle(conn, CONNECT_311)
        assert conn.written == CONNACK_OK
    handle(first, subscribe_packet(1, "a/+", "b/#"))
    handle(second, subscribe_packet(2, "a/+"))
    assert len(broker.subscriptions) == 3
    assert set(broker.subscriptions.match("a/x")) == {first, second}
    broker.on_close(first, None)
    assert len(broker.subscriptions) == 1
    assert set(broker.subscriptions.match("a/x")) == {second}
    assert broker.subscriptions.match("b/y") == {}
    assert first not in broker.sessions
    broker.on_close(second, None)
    assert len(broker.subscriptions) == 0 and broker.sessions == {}


class InProcess:
    """A broker driven with packets, as the generated on_traffic would."""

    def __init__(self, modules, handler, **options) -> None:
        self.decoder = modules["codec"].PacketDecoder()
        self.broker = handler.MqttBroker(**options)

    def handle(self, conn: FakeConn, packet: bytes) -> None:
        frame, end = self.decoder.decode(packet)
        assert end == len(packet)
        getattr(self.broker, f"on_{frame.type.name}")(conn, frame)

    def client(self, *filters: str, qos: int = 0) -> FakeConn:
        conn = FakeConn()
        self.handle(conn, CONNECT_311)
        if filters:
            body = struct.pack(">H", 1) + b"".join(
                mqtt_str(topic_filter) + bytes([qos]) for topic_filter in filters
            )
            self.handle(conn, bytes([0x82, len(body)]) + body)
        conn.written.clear()
        return conn

    def publish(
        self,
        conn: FakeConn,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
    ) -> None:
        body = mqtt_str(topic) + (struct.pack(">H", 1) if qos else b"") + payload
        header = 0x30 | qos << 1 | int(retain)
        self.handle(conn, bytes([header]) + varint(len(body)) + body)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


PAYLOAD = b"p" * 1000
COST = len("b/t") + len(PAYLOAD) + 64  # sessions.message_cost


def test_slow_subscriber_backlog_is_bounded_and_publishers_throttled(
    broker_module,
) -> None:
    run = InProcess(*broker_module, memory_budget=10 * COST)
    slow, fast = run.client("b/#"), run.client("b/#")
    publisher = run.client()
    slow.write_paused = True  # its output is over the high-water mark
    for index in range(14):
        run.publish(publisher, "b/t", PAYLOAD)
        # Throttled once the backlogs hold over half the budget.
        assert publisher.read_paused is (index >= 5)
    budget = run.broker.budget
    assert budget.queued == 10 * COST and run.broker.discarded == 4
    assert len(fast.written) == 14 * (len(PAYLOAD) + 8)  # the fast one got them all
    assert slow.written == b""
    # The slow subscriber drains: its backlog goes out, publishers are read again.
    slow.write_paused = False
    run.broker.on_write_pause(slow, False)
    assert len(slow.written) == 10 * (len(PAYLOAD) + 8)
    assert budget.queued == 0 and not publisher.read_paused and not slow.closed


def test_slow_qos1_subscriber_is_disconnected_past_the_budget(broker_module) -> None:
    run = InProcess(*broker_module, memory_budget=4 * COST)
    slow = run.client("b/#", qos=1)
    publisher = run.client()
    slow.write_paused = True
    for _ in range(4):
        run.publish(publisher, "b/t", PAYLOAD, qos=1)
    assert not slow.closed and run.broker.budget.queued == 4 * COST
    run.publish(publisher, "b/t", PAYLOAD, qos=1)  # does not fit: not lost, dropped
    assert slow.closed and run.broker.dropped == 1
    assert slow not in run.broker.sessions and run.broker.budget.queued == 0
    assert not publisher.read_paused  # the memory is back


def test_a_backlog_that_never_drains_is_dropped_after_the_grace(broker_module) -> None:
    FakeConn.loop.timers.clear()
    run = InProcess(*broker_module, memory_budget=10 * COST)
    stuck, publisher = run.client("b/#"), run.client()
    stuck.write_paused = True
    for _ in range(6):
        run.publish(publisher, "b/t", PAYLOAD)
    assert publisher.read_paused and len(FakeConn.loop.timers) == 1
    fn, args = FakeConn.loop.timers.pop()
    fn(*args)  # stall_grace later, still throttled
    assert stuck.closed and run.broker.dropped == 1
    assert not publisher.read_paused and FakeConn.loop.timers == []


def test_retained_messages_count_against_the_budget(broker_module) -> None:
    run = InProcess(*broker_module, memory_budget=2 * COST)
    publisher = run.client()
    run.publish(publisher, "r/1", PAYLOAD, retain=True)
    run.publish(publisher, "r/2", PAYLOAD, retain=True)
    run.publish(publisher, "r/3", PAYLOAD, retain=True)  # over the budget: not kept
    assert sorted(run.broker.retained) == ["r/1", "r/2"]
    run.publish(publisher, "r/1", b"", retain=True)  # clearing frees its share
    run.publish(publisher, "r/3", PAYLOAD, retain=True)
    assert sorted(run.broker.retained) == ["r/2", "r/3"]
    assert run.broker.budget.retained == 2 * COST


def test_puback_releases_a_qos1_packet_id(broker_module) -> None:
    run = InProcess(*broker_module)
    sub, publisher = run.client("q/#", qos=1), run.client()
    run.publish(publisher, "q/t", b"x", qos=1)
    run.publish(publisher, "q/t", b"y", qos=1)
    session = run.broker.sessions[sub]
    assert session.inflight == {1, 2}
    run.handle(sub, b"\x40\x02\x00\x01")
    assert session.inflight == {2}
    delivered = bytes(sub.written)
    assert delivered.startswith(b"\x32\x08\x00\x03q/t\x00\x01x")
    assert delivered.endswith(b"\x32\x08\x00\x03q/t\x00\x02y")


@needs_mosquitto
def test_memory_budget_flag_drops_a_subscriber_that_never_reads(
    server: ExampleServer, cache_dir: Path
) -> None:
    served = ExampleServer(
        "mqtt",
        cache_dir,  # built already by `server`
        "--memory-budget",
        "512KiB",
        "--drain-timeout",
        "1",
    )
    try:
        stuck = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        with stuck, connected(served) as healthy, connected(served) as pub:
            stuck.sendall(CONNECT_311)
            assert recv_exactly(stuck, 4) == CONNACK_OK
            body = struct.pack(">H", 1) + mqtt_str("flood/#") + b"\x01"
            stuck.sendall(bytes([0x82, len(body)]) + body)
            assert recv_exactly(stuck, 5) == b"\x90\x03\x00\x01\x01"
            subscribe(healthy, "flood/#")
            payload = b"z" * 32768
            body = mqtt_str("flood/t") + payload
            packet = bytes([0x30]) + varint(len(body)) + body
            # 8 MiB: more than the kernel's buffers, the high-water mark and
            # the budget. The stuck subscriber reads nothing until the end.
            COUNT = 256
            # A publisher throttled until the stuck one is dropped: sendall waits.
            got: list[bytes] = []
            reader = threading.Thread(
                target=lambda: got.append(recv_exactly(healthy, COUNT * len(packet)))
            )
            reader.start()
            try:
                pub.sendall(packet * COUNT)
                pub.sendall(b"\xc0\x00")
                assert recv_exactly(pub, 2) == b"\xd0\x00"
            finally:
                reader.join(CLIENT_TIMEOUT)
            assert got == [packet * COUNT]  # the healthy subscriber lost nothing
            received = recv_until_closed(stuck, timeout=15)
            # Dropped: it got less than was published, then the end.
            assert len(received) < COUNT * len(packet)
        assert served.alive()
    finally:
        served.stop()


def test_a_slow_subscriber_gets_its_whole_backlog_in_order(
    server: ExampleServer,
) -> None:
    # 16 MiB: beyond the kernel's buffers and the high-water mark, so most of it
    # waits in the broker's backlog, sent as the subscriber's output drains.
    count = 1024
    bodies = [mqtt_str("slow/t") + b"%05d" % i + b"s" * 16379 for i in range(count)]
    packets = [bytes([0x30]) + varint(len(body)) + body for body in bodies]
    with connected(server) as slow, connected(server) as pub:
        subscribe(slow, "slow/t")
        pub.sendall(b"".join(packets))
        pub.sendall(b"\xc0\x00")
        assert recv_exactly(pub, 2) == b"\xd0\x00"  # all handled by the broker
        slow.settimeout(CLIENT_TIMEOUT)
        received = recv_exactly(slow, sum(map(len, packets)))
        assert received == b"".join(packets)
