# mqtt.proto.dsl — MQTT 3.1.1 control packets (OASIS MQTT v3.1.1, section 2).
#
# Every packet is a 1-byte fixed header — the packet type in the high nibble,
# type-specific flags in the low nibble — then the "remaining length", a
# varint of at most 4 bytes (longer is MalformedFrame), then that many bytes:
# the variable header and the payload, which the broker parses per type.
protocol mqtt
transport tcp
max_frame 1 MiB                 # MQTT allows 256 MiB; this broker takes less

frame Packet {
    framing varint mqtt
    header {
        type_and_flags: u8      # type << 4 | flags (split by the handler)
    }
    body {
        rest: bytes[rest]       # variable header + payload
    }
}
