# Any WebSocket frame, masked or not (RFC 6455 section 5.2): the masking key is
# present when the mask bit says so, and the frame length counts it.
protocol wsany
transport tcp
max_frame 4 MiB

enum Opcode : u8 {
    continuation = 0x0, text = 0x1, binary = 0x2,
    close = 0x8, ping = 0x9, pong = 0xA,
}

frame Frame {
    framing length(payload_length + 4 * masked)
    header {
        b0: u8 bits { fin: 1, rsv1: 1, rsv2: 1, rsv3: 1, opcode: Opcode 4 }
        b1: u8 bits { masked: 1, payload_length: 7 escape { 126: u16, 127: u64 } }
    }
    body {
        masking_key: bytes[4] if masked
        payload: bytes[rest] xor masking_key
    }
    where opcode < 8 or (fin == 1 and payload_length <= 125)
}
