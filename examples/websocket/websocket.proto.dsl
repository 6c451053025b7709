# websocket.proto.dsl — WebSocket frames (RFC 6455, section 5).
#
# A frame is two bytes — FIN, three reserved bits and the opcode; the mask bit
# and a 7-bit payload length — then, for longer payloads, the real length in 16
# bits (code 126) or 64 bits (code 127), then a 4-byte masking key when the mask
# bit is set, then the payload XOR-ed with that key. The spec frames every valid
# frame exactly: the shortest length form only (section 5.2), control frames
# unfragmented and at most 125 bytes (section 5.5), reserved bits 0 (no extension
# is negotiated). Clients always mask (section 5.3); servers never do.
#
# Before the frames comes the opening handshake (section 4): an HTTP/1.1 GET
# asking for the upgrade. The handler answers it and switches the connection to
# Frames; frames the client sends right behind its request are decoded there.
protocol websocket
transport tcp
max_frame 4 MiB
server decodes ClientFrame encodes ServerFrame

start phase Opening {
    Handshake                         # the handler switches to Frames after its 101
}
phase Frames {
    ClientFrame
}

frame Handshake {                     # the request head, up to its empty line
    framing delimited "\r\n\r\n"
    max_frame 8 KiB
    body { head: bytes[rest] }
}

enum Opcode : u8 {
    continuation = 0x0, text = 0x1, binary = 0x2,
    close = 0x8, ping = 0x9, pong = 0xA,
}

frame ClientFrame {
    framing length(payload_length + 4)   # the masking key, then the payload
    header {
        b0: u8 bits { fin: 1, rsv1: 1 = 0, rsv2: 1 = 0, rsv3: 1 = 0, opcode: Opcode 4 }
        b1: u8 bits { masked: 1 = 1, payload_length: 7 escape { 126: u16, 127: u64 } }
    }
    body {
        masking_key: bytes[4]
        payload: bytes[rest] xor masking_key
    }
    where opcode < 8 or (fin == 1 and payload_length <= 125)
    dispatch on opcode
}

frame ServerFrame {
    framing length(payload_length)
    header {
        b0: u8 bits { fin: 1, rsv1: 1 = 0, rsv2: 1 = 0, rsv3: 1 = 0, opcode: Opcode 4 }
        b1: u8 bits { masked: 1 = 0, payload_length: 7 escape { 126: u16, 127: u64 } }
    }
    body {
        payload: bytes[rest]
    }
    where opcode < 8 or (fin == 1 and payload_length <= 125)
}

# The payload of a close frame that carries a status code (section 5.5.1).
struct ClosePayload {
    code: u16 where code >= 1000 and code < 5000 and code not in {1004, 1005, 1006, 1015}
    reason: string[rest]
}
