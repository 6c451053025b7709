# A line (chat) protocol: each frame is one line ended by "\r\n" or "\n".
# The delimiter is stripped from the delivered line; lines longer than 8 KiB
# are refused with FrameTooLarge.
protocol lines
transport tcp, udp

frame Line {
    framing delimited "\r\n", "\n"
    max_frame 8 KiB
    body {
        line: bytes[rest]
    }
}
