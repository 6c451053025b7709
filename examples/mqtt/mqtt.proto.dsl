# mqtt.proto.dsl — MQTT 3.1.1 control packets (OASIS MQTT v3.1.1, section 2).
#
# Every packet is a 1-byte fixed header — the packet type in the high nibble,
# type-specific flags in the low nibble — then the "remaining length", a
# varint of at most 4 bytes (longer is MalformedFrame), then that many bytes:
# the variable header and the payload, which the broker parses per type.
protocol mqtt
transport tcp
max_frame 1 MiB                 # MQTT allows 256 MiB; this broker takes less

# Packet types (section 2.2.1); 0 and 15 are reserved: decoding them raises
# InvalidValue, which closes the connection.
enum PacketType : u8 {
    connect = 1, connack = 2, publish = 3, puback = 4, pubrec = 5,
    pubrel = 6, pubcomp = 7, subscribe = 8, suback = 9, unsubscribe = 10,
    unsuback = 11, pingreq = 12, pingresp = 13, disconnect = 14,
}

frame Packet {
    framing varint mqtt
    header {
        control: u8 bits {
            type: PacketType 4  # high nibble (bits are listed MSB first)
            flags: 4            # low nibble; required values vary per type
        }
    }
    body {
        rest: bytes[rest]       # variable header + payload
    }
    dispatch on type            # on_connect, on_publish, ... in the handler
}
