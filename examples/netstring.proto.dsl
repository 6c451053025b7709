# Netstrings (https://cr.yp.to/proto/netstrings.txt): "12:hello world!,"
protocol netstring
transport tcp

frame Netstring {
    framing decimal ":" ","
    max_frame 64 KiB
    body {
        data: bytes[rest]
    }
}
