# dns.proto.dsl — DNS messages (RFC 1035) over TCP and UDP.
#
# Over TCP every message follows a 2-byte big-endian length (RFC 1035 4.2.2);
# over UDP a datagram is one message with no prefix: `stream_only` says so.
# The 12-byte header is typed; the question and resource records stay bytes
# (names are compressed and variable-length: the handler parses them).
protocol dns
transport tcp, udp
max_frame 65537                 # the u16 length prefix plus up to 65535 bytes

frame Message {
    framing length(length) counts after_field stream_only
    header big {
        length: u16             # TCP only: the message size (the bytes after it)
        id: u16
        flags: u16              # QR | opcode(4) | AA | TC | RD | RA | Z(3) | rcode(4)
        qdcount: u16
        ancount: u16
        nscount: u16
        arcount: u16
    }
    body {
        sections: bytes[rest]   # question, answer, authority, additional
    }
}
