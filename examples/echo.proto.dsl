# The benchmark protocol: a 4-byte big-endian unsigned payload length, then the
# payload. The server echoes every frame back.
protocol echo
transport tcp
max_frame 16 MiB

frame Message {
    framing length(length)          # `length` counts the bytes after the header
    header big {
        length: u32
    }
    body {
        payload: bytes[rest]
    }
}
