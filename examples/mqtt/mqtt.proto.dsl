# mqtt.proto.dsl — every MQTT 3.1.1 control packet, fixed header, variable
# header and payload (OASIS MQTT Version 3.1.1, sections 2 and 3).
#
# The fixed header's high nibble is the packet type; its low nibble carries
# PUBLISH's DUP, QoS and RETAIN and must be 0010 for PUBREL, SUBSCRIBE and
# UNSUBSCRIBE, 0000 for the others (section 2.2.2). The remaining length is a
# varint of at most 4 bytes (a fifth byte is MalformedFrame); the body it
# counts is described per packet type. Whatever this file refuses (QoS 3,
# packet identifier 0, a password without a user name, reserved bits set, a
# string running past the packet...) is a ProtocolError naming the field: the
# broker closes that connection (an unsupported protocol level gets CONNACK
# 0x01 first, as section 3.1.2.2 requires).
protocol mqtt
transport tcp
max_frame 1 MiB                 # MQTT allows 256 MiB; this broker takes less

# Packet types (section 2.2.1); 0 and 15 are reserved: decoding them raises
# InvalidValue.
enum PacketType : u8 {
    connect = 1, connack = 2, publish = 3, puback = 4, pubrec = 5,
    pubrel = 6, pubcomp = 7, subscribe = 8, suback = 9, unsubscribe = 10,
    unsuback = 11, pingreq = 12, pingresp = 13, disconnect = 14,
}

enum ConnectReturn : u8 {
    accepted = 0, unacceptable_protocol_version = 1, identifier_rejected = 2,
    server_unavailable = 3, bad_user_name_or_password = 4, not_authorized = 5,
}

# SUBACK return codes (3.9.3): the QoS granted per filter, or failure.
enum SubAckReturn : u8 { qos0 = 0, qos1 = 1, qos2 = 2, failure = 0x80 }

frame Packet {
    framing varint mqtt
    header {
        control: u8 bits { type: PacketType 4, dup: 1, qos: 2, retain: 1 }
    }
    body {
        packet: switch type {
            connect => Connect
            connack => ConnAck
            publish => Publish(qos)
            puback, pubrec, pubrel, pubcomp, unsuback => PacketId
            subscribe => Subscribe
            suback => SubAck
            unsubscribe => Unsubscribe
            pingreq, pingresp, disconnect => Empty
        }
    }
    where qos < 3
    where type == PacketType.publish or (dup == 0 and retain == 0
        and qos == (type in {PacketType.pubrel, PacketType.subscribe, PacketType.unsubscribe}))
    dispatch on type            # on_connect, on_publish, ... in the handler
}

# CONNECT (3.1): the flags say which of the optional payload fields follow.
struct Connect {
    protocol_name: string[u16] = "MQTT"
    level: u8 = 4
    flags: u8 bits {
        has_user_name: 1, has_password: 1, will_retain: 1, will_qos: 2,
        has_will: 1, clean_session: 1, reserved: 1 = 0
    } where will_qos < 3 and (has_will or will_qos == 0 and will_retain == 0)
        and (has_user_name or not has_password)
    keep_alive: u16
    client_id: string[u16]
    will_topic: string[u16] if has_will
    will_message: bytes[u16] if has_will
    user_name: string[u16] if has_user_name
    password: bytes[u16] if has_password
}

struct ConnAck {
    flags: u8 bits { reserved: 7 = 0, session_present: 1 }
    return_code: ConnectReturn
}

# The packet identifier is present only for QoS 1 and 2, and never 0 (2.3.1).
struct Publish(qos: u8) {
    topic: string[u16]
    packet_id: u16 if qos > 0 where packet_id > 0
    payload: bytes[rest]
}

# PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: a packet identifier only.
struct PacketId {
    packet_id: u16 where packet_id > 0
}

struct Subscribe {
    packet_id: u16 where packet_id > 0
    subscriptions: Subscription[rest] where len(subscriptions) > 0
}

struct Subscription {
    topic_filter: string[u16]
    options: u8 bits { reserved: 6 = 0, qos: 2 } where qos < 3
}

struct SubAck {
    packet_id: u16 where packet_id > 0
    return_codes: SubAckReturn[rest] where len(return_codes) > 0
}

struct Unsubscribe {
    packet_id: u16 where packet_id > 0
    topic_filters: string[u16][rest] where len(topic_filters) > 0
}

# PINGREQ, PINGRESP, DISCONNECT: no variable header, no payload.
struct Empty {}
