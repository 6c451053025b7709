"""The MQTT example: an MQTT 3.1.1 broker (QoS 0 delivery) on the generated handler.

The generated `MqttHandler` (from `mqtt.proto.dsl`) cuts the stream into
`Packet`s — the fixed header's bit fields `type` and `flags`, and the bytes its
varint remaining length counts — and, as the spec says `dispatch on type`,
calls one method per packet type. This subclass overrides those a client may
send and parses `frame.rest` per type:

- CONNECT must come first (anything else closes the connection); protocol
  name "MQTT" and level 4 are required (else CONNACK 0x01 and close); an empty
  client id needs clean session (else CONNACK 0x02 and close);
- SUBSCRIBE grants QoS 0 per filter (0x80 for an invalid filter) and delivers
  the retained messages the filter matches; UNSUBSCRIBE answers UNSUBACK;
- PUBLISH fans out to matching subscribers as QoS 0 (one encoded packet shared
  by all); QoS 1 is acknowledged with PUBACK, QoS 2 with PUBREC/PUBCOMP; a
  retained message is stored (an empty one clears the topic);
- PINGREQ -> PINGRESP; DISCONNECT closes without the will; a connection closed
  otherwise publishes its will, if any; subscriptions go with the connection;
- the other types (server-to-client ones) reach `on_packet`, which rejects them.

A malformed packet (reserved type, bad flags, truncated fields, over-long
remaining length...) closes that connection only. State lives in this process:
serve it with one event loop.
"""

from __future__ import annotations

import struct
from typing import Any

from mqtt_codec import Packet, PacketType
from mqtt_handler import MqttHandler

from protogen.errors import MalformedFrame
from protogen.runtime import Action
from topics import TopicTrie, matches, valid_filter, valid_topic  # beside this file

__all__ = ["MqttBroker", "Session"]

# CONNACK return codes.
ACCEPTED, BAD_PROTOCOL_LEVEL, IDENTIFIER_REJECTED = 0, 1, 2
# Fixed-header flags the spec requires (section 2.2.2); PUBLISH's vary.
RESERVED_FLAGS = 0
PUBREL_FLAGS = SUBSCRIBE_FLAGS = UNSUBSCRIBE_FLAGS = 2

_U16 = struct.Struct(">H")
PINGRESP_PACKET = Packet(PacketType.pingresp, 0, b"").encode()


class Session:
    """One connected client."""

    __slots__ = ("client_id", "filters", "will")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.filters: set[str] = set()
        self.will: tuple[str, bytes, bool] | None = None  # topic, payload, retain


class Reader:
    """Reads MQTT's variable-header and payload fields, raising MalformedFrame."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise MalformedFrame("packet ends inside a field")
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise MalformedFrame("packet ends inside a field")
        (value,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return value

    def binary(self) -> bytes:
        size = self.u16()
        if self.pos + size > len(self.data):
            raise MalformedFrame("a string runs past the packet")
        self.pos += size
        return bytes(self.data[self.pos - size : self.pos])

    def string(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame("a string is not UTF-8") from None

    def rest(self) -> bytes:
        return bytes(self.data[self.pos :])

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def mqtt_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return _U16.pack(len(data)) + data


def publish_packet(topic: str, payload: bytes, retain: bool = False) -> bytes:
    """A QoS 0 PUBLISH, encoded once per publish and shared by all its receivers."""
    return Packet(
        PacketType.publish, 1 if retain else 0, mqtt_string(topic) + payload
    ).encode()


def connack(return_code: int) -> Packet:
    return Packet(PacketType.connack, 0, bytes((0, return_code)))


def check_flags(frame: Packet, required: int) -> None:
    if frame.flags != required:
        raise MalformedFrame(f"{frame.type.name.upper()} with flags {frame.flags:#x}")


class MqttBroker(MqttHandler):
    """An in-memory MQTT 3.1.1 broker; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: dict[Any, Session] = {}
        self.subscriptions = TopicTrie()
        self.retained: dict[str, bytes] = {}

    def _session(self, conn: Any, frame: Packet) -> Session:
        """The connection's session; a packet before CONNECT is malformed."""
        session = self.sessions.get(conn)
        if session is None:
            raise MalformedFrame(
                f"the first packet must be CONNECT, not {frame.type.name.upper()}"
            )
        return session

    # -- packets a client does not send: every type not overridden below ---------

    def on_packet(self, conn: Any, frame: Packet) -> Action | None:
        self._session(conn, frame)
        raise MalformedFrame(
            f"packet type {frame.type.name.upper()} is not allowed from a client here"
        )

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        session = self.sessions.pop(conn, None)
        if session is not None:
            for topic_filter in session.filters:
                self.subscriptions.remove(topic_filter, conn)
            if session.will is not None:  # closed without DISCONNECT
                topic, payload, retain = session.will
                # The loop flushes writes made in on_traffic, not in on_close: now.
                for receiver in self._deliver(topic, payload, retain):
                    if not receiver.closed:
                        receiver.flush()
        return super().on_close(conn, err)

    # -- packets, one method per PacketType (generated dispatch) -------------------

    def on_connect(self, conn: Any, frame: Packet) -> Action | None:
        if conn in self.sessions:
            raise MalformedFrame("a second CONNECT")
        check_flags(frame, RESERVED_FLAGS)
        reader = Reader(frame.rest)
        name = reader.string()
        level = reader.u8()
        if name != "MQTT" or level != 4:
            self.send(conn, connack(BAD_PROTOCOL_LEVEL))
            return Action.CLOSE  # after the CONNACK: not MQTT 3.1.1
        connect_flags = reader.u8()
        if connect_flags & 0x01:
            raise MalformedFrame("CONNECT reserved flag set")
        reader.u16()  # keep alive: the client pings; we do not time it out
        client_id = reader.string()
        clean_session = bool(connect_flags & 0x02)
        will = None
        if connect_flags & 0x04:
            will_topic = reader.string()
            will_payload = reader.binary()
            if not valid_topic(will_topic):
                raise MalformedFrame(f"invalid will topic {will_topic!r}")
            will = (will_topic, will_payload, bool(connect_flags & 0x20))
        elif connect_flags & 0x38:
            raise MalformedFrame("will QoS/retain without a will")
        if connect_flags & 0x80:
            reader.string()  # user name: accepted, not checked
        if connect_flags & 0x40:
            reader.binary()  # password
        if not client_id and not clean_session:
            self.send(conn, connack(IDENTIFIER_REJECTED))
            return Action.CLOSE  # an empty client id needs a clean session
        session = Session(client_id)
        session.will = will
        self.sessions[conn] = session
        self.send(conn, connack(ACCEPTED))
        return None

    def on_publish(self, conn: Any, frame: Packet) -> None:
        self._session(conn, frame)
        qos = (frame.flags >> 1) & 0x03
        if qos == 3:
            raise MalformedFrame("PUBLISH with QoS 3")
        retain = bool(frame.flags & 0x01)
        reader = Reader(frame.rest)
        topic = reader.string()
        if not valid_topic(topic):
            raise MalformedFrame(f"PUBLISH to an invalid topic {topic!r}")
        if qos:
            packet_id = reader.u16()
            # Accepted and delivered as QoS 0; acknowledged as the client expects.
            ack = PacketType.puback if qos == 1 else PacketType.pubrec
            self.send(conn, Packet(ack, 0, _U16.pack(packet_id)))
        self._deliver(topic, reader.rest(), retain)

    def on_pubrel(self, conn: Any, frame: Packet) -> None:
        self._session(conn, frame)
        check_flags(frame, PUBREL_FLAGS)
        packet_id = Reader(frame.rest).u16()
        self.send(conn, Packet(PacketType.pubcomp, 0, _U16.pack(packet_id)))

    def _deliver(self, topic: str, payload: bytes, retain: bool) -> dict[Any, int]:
        """Store a retained message, write the publish to every matching subscriber."""
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)  # an empty retained message clears
        receivers = self.subscriptions.match(topic)
        if not receivers:
            return receivers
        packet = publish_packet(topic, payload)  # live delivery: retain flag off
        for receiver in receivers:
            try:
                receiver.write(packet)
            except Exception:  # closing meanwhile: its on_close cleans up
                pass
        return receivers

    def on_subscribe(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        check_flags(frame, SUBSCRIBE_FLAGS)
        reader = Reader(frame.rest)
        packet_id = reader.u16()
        if reader.done:
            raise MalformedFrame("SUBSCRIBE without a topic filter")
        codes = bytearray()
        granted: list[str] = []
        while not reader.done:
            topic_filter = reader.string()
            requested = reader.u8()
            if requested & 0xFC:
                raise MalformedFrame("SUBSCRIBE with reserved QoS bits")
            if not valid_filter(topic_filter):
                codes.append(0x80)
                continue
            self.subscriptions.add(topic_filter, conn, 0)
            session.filters.add(topic_filter)
            granted.append(topic_filter)
            codes.append(0)  # QoS 0 granted whatever was asked
        self.send(conn, Packet(PacketType.suback, 0, _U16.pack(packet_id) + codes))
        for topic, payload in self.retained.items():
            if any(matches(topic_filter, topic) for topic_filter in granted):
                conn.write(publish_packet(topic, payload, retain=True))

    def on_unsubscribe(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        check_flags(frame, UNSUBSCRIBE_FLAGS)
        reader = Reader(frame.rest)
        packet_id = reader.u16()
        if reader.done:
            raise MalformedFrame("UNSUBSCRIBE without a topic filter")
        while not reader.done:
            topic_filter = reader.string()
            if topic_filter in session.filters:
                session.filters.discard(topic_filter)
                self.subscriptions.remove(topic_filter, conn)
        self.send(conn, Packet(PacketType.unsuback, 0, _U16.pack(packet_id)))

    def on_pingreq(self, conn: Any, frame: Packet) -> None:
        self._session(conn, frame)
        check_flags(frame, RESERVED_FLAGS)
        conn.write(PINGRESP_PACKET)

    def on_disconnect(self, conn: Any, frame: Packet) -> Action:
        session = self._session(conn, frame)
        check_flags(frame, RESERVED_FLAGS)
        session.will = None  # a clean disconnect discards the will
        return Action.CLOSE
