"""The MQTT example: an MQTT 3.1.1 broker (QoS 0 and 1 delivery) on the generated handler.

`mqtt.proto.dsl` describes every packet, so the generated `MqttHandler` hands
this class typed frames — `frame.packet` is a `Connect` (flags, will, user
name, password), a `Publish` (topic, packet id when QoS > 0, payload), a
`Subscribe` (a list of topic filter and QoS), ... — already validated: QoS 3,
packet identifier 0, a password without a user name, reserved bits, wrong
fixed-header flags and truncated fields are `ProtocolError`s that close the
connection. Answers are encoded by the generated codec. What is left here is
the broker:

- CONNECT must come first (anything else closes the connection); protocol
  level 4, else CONNACK 0x01 and close; an empty client id needs clean session
  (else CONNACK 0x02 and close); a second connection with the same client id
  disconnects the first;
- SUBSCRIBE grants QoS 0 or 1 per filter (0x80 for an invalid filter) and
  delivers the retained messages the filters match; UNSUBSCRIBE -> UNSUBACK;
- PUBLISH fans out to matching subscribers at the lower of the two QoS (one
  encoded packet shared by all QoS 0 receivers; a packet id per QoS 1
  receiver, released by its PUBACK); QoS 1 is answered with PUBACK, QoS 2 with
  PUBREC and PUBREL -> PUBCOMP (delivered once); retain stores the message,
  an empty one clears the topic; topics beginning with `$` are the server's:
  a client's publish to one is acknowledged and dropped;
- PINGREQ -> PINGRESP; DISCONNECT closes without the will; a connection closed
  otherwise publishes its will, if any; subscriptions go with the connection;
- memory: retained messages and the backlogs of slow subscribers share one
  budget (`sessions.py`); past it QoS 0 messages to a slow subscriber are
  discarded, a slow QoS 1 subscriber is disconnected, a retained message is not
  stored; while the backlogs hold over half of it, publishers are not read,
  and if that lasts `stall_grace` seconds the largest backlog's subscriber is
  disconnected.

State lives in this process: serve it with one event loop.
"""

from __future__ import annotations

import logging
from typing import Any

from mqtt_codec import (
    ConnAck,
    Connect,
    ConnectReturn,
    Empty,
    Packet,
    PacketId,
    PacketType,
    Publish,
    SubAck,
    SubAckReturn,
    Subscribe,
    Unsubscribe,
)
from mqtt_handler import MqttHandler
from protogen.errors import InvalidValue, MalformedFrame, ProtocolError
from protogen.runtime import Action, ConnectionClosed
from sessions import MemoryBudget, Message, Session, message_cost  # beside this file
from topics import TopicTrie, matches, valid_filter, valid_topic

__all__ = ["DEFAULT_MEMORY_BUDGET", "MqttBroker", "Session"]

DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
# The highest QoS this broker delivers with (it grants at most this).
MAX_DELIVERY_QOS = 1

log = logging.getLogger("protogen.examples.mqtt")

PINGRESP_PACKET = Packet(PacketType.pingresp, 0, 0, 0, Empty()).encode()


def connack(code: ConnectReturn) -> Packet:
    return Packet(PacketType.connack, 0, 0, 0, ConnAck(0, code))


def ack(kind: PacketType, packet_id: int) -> Packet:
    """PUBACK, PUBREC, PUBCOMP, UNSUBACK (PUBREL would need QoS bits 1)."""
    return Packet(kind, 0, 0, 0, PacketId(packet_id))


def publish_packet(
    topic: str, payload: bytes, retain: bool, qos: int = 0, packet_id: int | None = None
) -> bytes:
    return Packet(
        PacketType.publish, 0, qos, int(retain), Publish(topic, payload, packet_id)
    ).encode()


class MqttBroker(MqttHandler):
    """An in-memory MQTT 3.1.1 broker; see the module docstring."""

    # Seconds publishers may stay throttled before the largest backlog is dropped.
    stall_grace = 2.0

    def __init__(
        self, *args: Any, memory_budget: int = DEFAULT_MEMORY_BUDGET, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: dict[Any, Session] = {}  # by connection
        self.clients: dict[str, Session] = {}  # by non-empty client id
        self.subscriptions = TopicTrie()  # filter -> {conn: granted QoS}
        self.retained: dict[str, tuple[bytes, int]] = {}  # topic -> payload, QoS
        self.budget = MemoryBudget(memory_budget)
        self.throttled: set[Any] = set()  # publishers not read (pause_reading)
        self.discarded = 0  # QoS 0 messages not delivered for want of memory
        self.dropped = 0  # slow subscribers disconnected
        self._loop: Any = None
        self._stall_timer: Any = None

    def _session(self, conn: Any, frame: Packet) -> Session:
        """The connection's session; a packet before CONNECT is malformed."""
        session = self.sessions.get(conn)
        if session is None:
            raise MalformedFrame(
                f"the first packet must be CONNECT, not {frame.type.name.upper()}"
            )
        return session

    # -- errors and packets a client does not send ---------------------------------

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        if (
            isinstance(err, InvalidValue)
            and err.field == "Connect.level"
            and conn not in self.sessions
        ):
            # Section 3.1.2.2: an unsupported level is answered, then closed.
            self.send(conn, connack(ConnectReturn.unacceptable_protocol_version))
            return Action.CLOSE
        raise err

    def on_packet(self, conn: Any, frame: Packet) -> Action | None:
        self._session(conn, frame)
        raise MalformedFrame(
            f"packet type {frame.type.name.upper()} is not allowed from a client here"
        )

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        self.throttled.discard(conn)
        session = self.sessions.get(conn)
        if session is not None:
            self._end_session(session)
        return super().on_close(conn, err)

    def _end_session(self, session: Session) -> None:
        """Forget a session (closed, or taken over): its subscriptions, backlog, will."""
        conn = session.conn
        del self.sessions[conn]
        if self.clients.get(session.client_id) is session:
            del self.clients[session.client_id]
        for topic_filter in session.filters:
            self.subscriptions.remove(topic_filter, conn)
        self._release(session.backlog_bytes)
        session.backlog.clear()
        session.backlog_bytes = 0
        if session.will is not None:  # closed without DISCONNECT
            topic, payload, qos, retain = session.will
            session.will = None
            self._publish(topic, payload, qos, retain)
            # The loop flushes writes made in on_traffic, not in on_close: now.
            receivers: dict[Any, int] = self.subscriptions.match(topic)
            for receiver in receivers:
                if not receiver.closed:
                    receiver.flush()

    # -- packets, one method per PacketType (generated dispatch) -------------------

    def on_connect(self, conn: Any, frame: Packet) -> Action | None:
        if conn in self.sessions:
            raise MalformedFrame("a second CONNECT")
        connect = frame.packet
        assert isinstance(connect, Connect)
        if not connect.client_id and not connect.clean_session:
            self.send(conn, connack(ConnectReturn.identifier_rejected))
            return Action.CLOSE  # an empty client id needs a clean session
        session = Session(conn, connect.client_id)
        if connect.will_topic is not None:
            if not valid_topic(connect.will_topic):
                raise MalformedFrame(f"invalid will topic {connect.will_topic!r}")
            assert connect.will_message is not None
            session.will = (
                connect.will_topic,
                connect.will_message,
                min(connect.will_qos, MAX_DELIVERY_QOS),
                bool(connect.will_retain),
            )
        if connect.client_id:
            older = self.clients.get(connect.client_id)
            if older is not None:  # section 3.1.4: the older one is disconnected
                self._end_session(older)
                older.conn.close()
            self.clients[connect.client_id] = session
        self.sessions[conn] = session
        self.send(conn, connack(ConnectReturn.accepted))
        return None

    def on_publish(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        publish = frame.packet
        assert isinstance(publish, Publish)
        topic = publish.topic
        if not valid_topic(topic):
            raise MalformedFrame(f"PUBLISH to an invalid topic {topic!r}")
        qos = frame.qos
        if qos == 2:
            assert publish.packet_id is not None
            first = publish.packet_id not in session.awaiting_release
            session.awaiting_release.add(publish.packet_id)
            self.send(conn, ack(PacketType.pubrec, publish.packet_id))
            if not first:
                return  # a re-sent QoS 2 publish is delivered once
        elif qos == 1:
            assert publish.packet_id is not None
            self.send(conn, ack(PacketType.puback, publish.packet_id))
        self._publish(topic, publish.payload, qos, bool(frame.retain))
        if self.budget.throttling:
            self._throttle(conn)

    def on_puback(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        assert isinstance(frame.packet, PacketId)
        session.inflight.discard(frame.packet.packet_id)

    def on_pubrel(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        assert isinstance(frame.packet, PacketId)
        session.awaiting_release.discard(frame.packet.packet_id)
        self.send(conn, ack(PacketType.pubcomp, frame.packet.packet_id))

    def on_subscribe(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        subscribe = frame.packet
        assert isinstance(subscribe, Subscribe)
        codes: list[SubAckReturn] = []
        granted: dict[str, int] = {}
        for subscription in subscribe.subscriptions:
            topic_filter = subscription.topic_filter
            if not valid_filter(topic_filter):
                codes.append(SubAckReturn.failure)
                continue
            qos = min(subscription.qos, MAX_DELIVERY_QOS)
            self.subscriptions.add(topic_filter, conn, qos)
            session.filters[topic_filter] = granted[topic_filter] = qos
            codes.append(SubAckReturn(qos))
        self.send(
            conn,
            Packet(PacketType.suback, 0, 0, 0, SubAck(subscribe.packet_id, codes)),
        )
        for topic, (payload, qos) in self.retained.items():
            best = max(
                (q for f, q in granted.items() if matches(f, topic)), default=None
            )
            if best is not None:
                self._deliver(session, (topic, payload, min(qos, best), True))

    def on_unsubscribe(self, conn: Any, frame: Packet) -> None:
        session = self._session(conn, frame)
        unsubscribe = frame.packet
        assert isinstance(unsubscribe, Unsubscribe)
        for topic_filter in unsubscribe.topic_filters:
            if session.filters.pop(topic_filter, None) is not None:
                self.subscriptions.remove(topic_filter, conn)
        self.send(conn, ack(PacketType.unsuback, unsubscribe.packet_id))

    def on_pingreq(self, conn: Any, frame: Packet) -> None:
        self._session(conn, frame)
        conn.write(PINGRESP_PACKET)

    def on_disconnect(self, conn: Any, frame: Packet) -> Action:
        session = self._session(conn, frame)
        session.will = None  # a clean disconnect discards the will
        return Action.CLOSE

    # -- delivery ----------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Store a retained message, deliver the publish to every matching subscriber."""
        if topic.startswith("$"):
            # Section 4.7.2: `$` topics are the server's; a client's is dropped.
            log.debug("dropped a client's publish to %r", topic)
            return
        if retain:
            self._retain(topic, payload, qos)
        receivers: dict[Any, int] = self.subscriptions.match(topic)
        if not receivers:
            return
        shared: bytes | None = None  # the QoS 0 packet, encoded once for all
        for receiver, granted in receivers.items():
            session = self.sessions.get(receiver)
            if session is None:
                continue
            message = (topic, payload, min(qos, granted), False)  # live: retain off
            if message[2] == 0 and not (session.backlog or receiver.write_paused):
                if shared is None:
                    shared = publish_packet(topic, payload, False)
                try:
                    receiver.write(shared)
                except ConnectionClosed:  # closing meanwhile: on_close cleans up
                    pass
            else:
                self._deliver(session, message)

    def _retain(self, topic: str, payload: bytes, qos: int) -> None:
        old = self.retained.pop(topic, None)
        if old is not None:
            self.budget.retained -= message_cost(topic, old[0])
        if not payload:
            return  # an empty retained message clears the topic
        cost = message_cost(topic, payload)
        if not self.budget.fits(cost):
            log.warning("memory budget spent: retained message on %r not kept", topic)
            return
        self.retained[topic] = (payload, qos)
        self.budget.retained += cost

    def _deliver(self, session: Session, message: Message) -> None:
        """Write a message to a subscriber, or hold it while its output is paused."""
        conn = session.conn
        if session.backlog or conn.write_paused:
            cost = message_cost(message[0], message[1])
            if self.budget.fits(cost):
                session.backlog.append((message, cost))
                session.backlog_bytes += cost
                self.budget.queued += cost
            elif message[2] == 0:
                self.discarded += 1
            else:
                self._drop(session, "memory budget spent")
            return
        self._write(session, message)

    def _write(self, session: Session, message: Message) -> None:
        topic, payload, qos, retain = message
        packet_id = None
        if qos:
            packet_id = session.packet_id()
            if packet_id is None:
                self._drop(session, "65535 QoS 1 messages unacknowledged")
                return
        try:
            session.conn.write(publish_packet(topic, payload, retain, qos, packet_id))
        except ConnectionClosed:  # closing meanwhile: on_close cleans up
            pass

    def _drop(self, session: Session, why: str) -> None:
        log.info("disconnected slow subscriber %r: %s", session.client_id, why)
        self.dropped += 1
        self._end_session(session)
        session.conn.close()

    def on_write_pause(self, conn: Any, paused: bool) -> None:
        """A subscriber's output drained to the low-water mark: send its backlog."""
        if paused:
            return
        session = self.sessions.get(conn)
        if session is None or not session.backlog:
            return
        backlog = session.backlog
        while backlog and not conn.write_paused and conn in self.sessions:
            message, cost = backlog.popleft()
            session.backlog_bytes -= cost
            self._release(cost)
            self._write(session, message)

    def _release(self, freed: int) -> None:
        """Backlog bytes went out or away: read throttled publishers again if room."""
        self.budget.queued -= freed
        if self.throttled and self.budget.relieved:
            throttled, self.throttled = self.throttled, set()
            for publisher in throttled:
                if not publisher.closed:
                    publisher.resume_reading()

    def _throttle(self, publisher: Any) -> None:
        """Stop reading a publisher while the backlogs are over half the budget."""
        publisher.pause_reading()  # resumed by _release
        self.throttled.add(publisher)
        if self._stall_timer is None:
            self._loop = publisher.loop
            self._stall_timer = self._loop.call_later(self.stall_grace, self._unstall)

    def _unstall(self) -> None:
        """Still throttled a while later: a subscriber that does not drain its
        backlog must not hold every publisher back. Drop the largest one."""
        self._stall_timer = None
        if not self.throttled:
            return
        hog = max(self.sessions.values(), key=lambda s: s.backlog_bytes, default=None)
        if hog is not None and hog.backlog_bytes:
            self._drop(hog, "its backlog does not drain")
        if self.throttled and self._loop is not None:
            self._stall_timer = self._loop.call_later(self.stall_grace, self._unstall)
