# syslog.proto.dsl — syslog over TCP (RFC 6587): two framings on one stream.
#
# Octet counting (section 3.4.1) sends "LEN SP MSG", LEN in ASCII decimal;
# non-transparent framing (section 3.4.2) sends "MSG LF". A syslog message
# starts with "<" (its PRI, RFC 5424 section 6.2.1), a count with a non-zero
# digit: the first byte of each message tells the framing.
protocol syslog
transport tcp
max_frame 64 KiB
server decodes Line

start phase Messages {
    "1", "2", "3", "4", "5", "6", "7", "8", "9" => Counted
    default => Line
}

frame Counted {
    framing decimal " " ""
    body { message: bytes[rest] }
}

frame Line {
    framing delimited "\n"
    max_frame 8 KiB
    body { message: bytes[rest] }
}
