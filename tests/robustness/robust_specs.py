"""Small specs written for the robustness tests (one protocol name each)."""

# Length-prefixed with a magic, an enum and a 64 KiB limit: oversize, bad magic,
# value outside an enum, garbage.
REQUEST = """
protocol robreq
transport tcp
max_frame 64 KiB
enum Op : u8 { ping = 1, echo = 2 }
frame Request {
    framing length(length)
    header big {
        magic: u16 = 0xCAFE
        op: Op
        length: u32
    }
    body { payload: bytes[rest] }
}
"""

# The benchmark framing (the generated handler's inline fast path).
ECHO = """
protocol robecho
max_frame 64 KiB
frame Message {
    framing length(length)
    header big { length: u32 }
    body { payload: bytes[rest] }
}
"""

# LEB128 varint length: over-long varint.
VARINT = """
protocol robvar
frame Message {
    framing varint leb128
    max_frame 64 KiB
    body { payload: bytes[rest] }
}
"""

# Lines: a line without its delimiter growing past max_frame.
LINES = """
protocol roblines
frame Line {
    framing delimited "\\r\\n", "\\n"
    max_frame 8 KiB
    body { payload: bytes[rest] }
}
"""

# HTTP-like composite head: malformed Content-Length.
HTTPISH = """
protocol robhttp
frame Message {
    framing composite head "\\r\\n\\r\\n" length_header "Content-Length"
    max_frame 64 KiB
}
"""

# memcached-text-like composite head: a `set` without its length token.
MEMCACHEISH = """
protocol robmc
frame Command {
    framing composite head "\\r\\n" length_token 4 when "set" body_trailer "\\r\\n"
    max_frame 64 KiB
}
"""
