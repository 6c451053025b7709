"""The MQTT example: an MQTT 3.1.1 broker (QoS 0 delivery) on the generated handler.

The generated `MqttHandler` (from `mqtt.proto.dsl`) cuts the stream into
`Packet`s — the fixed-header byte and the bytes its varint remaining length
counts — and calls `on_packet`; this subclass splits the byte into packet type
and flags and parses the rest per type:

- CONNECT must come first (anything else closes the connection); protocol
  name "MQTT" and level 4 are required (else CONNACK 0x01 and close); an empty
  client id needs clean session (else CONNACK 0x02 and close);
- SUBSCRIBE grants QoS 0 per filter (0x80 for an invalid filter) and delivers
  the retained messages the filter matches; UNSUBSCRIBE answers UNSUBACK;
- PUBLISH fans out to matching subscribers as QoS 0 (one encoded packet shared
  by all); QoS 1 is acknowledged with PUBACK, QoS 2 with PUBREC/PUBCOMP; a
  retained message is stored (an empty one clears the topic);
- PINGREQ -> PINGRESP; DISCONNECT closes without the will; a connection closed
  otherwise publishes its will, if any; subscriptions go with the connection.

A malformed packet (bad flags, truncated fields, over-long remaining length...)
closes that connection only. State lives in this process: serve it with one
event loop.
"""

from __future__ import annotations

import struct
from typing import Any

from mqtt_codec import Packet
from mqtt_handler import MqttHandler

from protogen.errors import MalformedFrame
from protogen.runtime import Action
from topics import TopicTrie, matches, valid_filter, valid_topic  # beside this file

__all__ = ["MqttBroker", "Session"]

# Packet types (high nibble of the fixed header).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8,
    9,
    10,
    11,
    12,
    13,
    14,
)

# CONNACK return codes.
ACCEPTED, BAD_PROTOCOL_LEVEL, IDENTIFIER_REJECTED = 0, 1, 2

_U16 = struct.Struct(">H")
PINGRESP_PACKET = bytes((PINGRESP << 4, 0))


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
        (PUBLISH << 4) | (1 if retain else 0), mqtt_string(topic) + payload
    ).encode()


class MqttBroker(MqttHandler):
    """An in-memory MQTT 3.1.1 broker; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: dict[Any, Session] = {}
        self.subscriptions = TopicTrie()
        self.retained: dict[str, bytes] = {}
        self._handlers = {
            PUBLISH: self._publish,
            PUBREL: self._pubrel,
            SUBSCRIBE: self._subscribe,
            UNSUBSCRIBE: self._unsubscribe,
            PINGREQ: self._pingreq,
            DISCONNECT: self._disconnect,
        }
        # Flags each packet type must carry (section 2.2.2); PUBLISH's vary.
        self._required_flags = {
            PUBREL: 2,
            SUBSCRIBE: 2,
            UNSUBSCRIBE: 2,
            PINGREQ: 0,
            DISCONNECT: 0,
        }

    # -- dispatch on the fixed header ---------------------------------------------

    def on_packet(self, conn: Any, frame: Packet) -> Action | None:
        kind = frame.type_and_flags >> 4
        flags = frame.type_and_flags & 0x0F
        session = self.sessions.get(conn)
        if session is None:
            if kind != CONNECT:
                raise MalformedFrame(
                    f"the first packet must be CONNECT, not type {kind}"
                )
            return self._connect(conn, flags, Reader(frame.rest))
        handler = self._handlers.get(kind)
        if handler is None:
            raise MalformedFrame(
                f"packet type {kind} is not allowed from a client here"
            )
        required = self._required_flags.get(kind)
        if required is not None and flags != required:
            raise MalformedFrame(f"packet type {kind} with flags {flags:#x}")
        return handler(conn, session, flags, Reader(frame.rest))

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

    # -- packets ---------------------------------------------------------------------

    def _connect(self, conn: Any, flags: int, reader: Reader) -> Action | None:
        if flags:
            raise MalformedFrame("CONNECT with non-zero flags")
        name = reader.string()
        level = reader.u8()
        if name != "MQTT" or level != 4:
            conn.write(bytes((CONNACK << 4, 2, 0, BAD_PROTOCOL_LEVEL)))
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
            conn.write(bytes((CONNACK << 4, 2, 0, IDENTIFIER_REJECTED)))
            return Action.CLOSE  # an empty client id needs a clean session
        session = Session(client_id)
        session.will = will
        self.sessions[conn] = session
        conn.write(bytes((CONNACK << 4, 2, 0, ACCEPTED)))

    def _publish(self, conn: Any, session: Session, flags: int, reader: Reader) -> None:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedFrame("PUBLISH with QoS 3")
        retain = bool(flags & 0x01)
        topic = reader.string()
        if not valid_topic(topic):
            raise MalformedFrame(f"PUBLISH to an invalid topic {topic!r}")
        if qos:
            packet_id = reader.u16()
            # Accepted and delivered as QoS 0; acknowledged as the client expects.
            ack = PUBACK if qos == 1 else PUBREC
            conn.write(bytes((ack << 4, 2)) + _U16.pack(packet_id))
        self._deliver(topic, reader.rest(), retain)

    def _pubrel(self, conn: Any, session: Session, flags: int, reader: Reader) -> None:
        conn.write(bytes((PUBCOMP << 4, 2)) + _U16.pack(reader.u16()))

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

    def _subscribe(
        self, conn: Any, session: Session, flags: int, reader: Reader
    ) -> None:
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
        conn.write(Packet(SUBACK << 4, _U16.pack(packet_id) + bytes(codes)).encode())
        for topic, payload in self.retained.items():
            if any(matches(topic_filter, topic) for topic_filter in granted):
                conn.write(publish_packet(topic, payload, retain=True))

    def _unsubscribe(
        self, conn: Any, session: Session, flags: int, reader: Reader
    ) -> None:
        packet_id = reader.u16()
        if reader.done:
            raise MalformedFrame("UNSUBSCRIBE without a topic filter")
        while not reader.done:
            topic_filter = reader.string()
            if topic_filter in session.filters:
                session.filters.discard(topic_filter)
                self.subscriptions.remove(topic_filter, conn)
        conn.write(bytes((UNSUBACK << 4, 2)) + _U16.pack(packet_id))

    def _pingreq(self, conn: Any, session: Session, flags: int, reader: Reader) -> None:
        conn.write(PINGRESP_PACKET)

    def _disconnect(
        self, conn: Any, session: Session, flags: int, reader: Reader
    ) -> Action:
        session.will = None  # a clean disconnect discards the will
        return Action.CLOSE
