# Protobuf-style length-delimited messages: a LEB128 varint length (base 128,
# least significant group first), then that many bytes.
protocol varint
transport tcp

frame Message {
    framing varint leb128
    max_frame 4 MiB
    body {
        message: bytes[rest]
    }
}
