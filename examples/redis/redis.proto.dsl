# redis.proto.dsl — what a Redis client sends (RESP2, the Redis protocol spec).
#
# A command is an array of bulk strings, `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, or an
# inline command, `GET k\r\n` (what telnet and redis-cli's scripts send): the
# first byte tells them apart. The array's head says how many bulk strings
# follow; the handler counts them in phase Arguments and switches back to
# Commands after the last. In Arguments anything but `$` is a protocol error,
# so an array whose count lies is caught at the next command's `*`.
protocol redis
transport tcp
max_frame 512 MiB                      # Redis's proto-max-bulk-len
server decodes InlineCommand

start phase Commands {
    "*" => ArrayHead                   # the handler switches to Arguments
    default => InlineCommand
}
phase Arguments {
    "$" => BulkString
}

frame ArrayHead {
    framing delimited "\r\n"
    max_frame 32 B
    body { count: bytes[rest] }        # `*3`: the marker and the decimal count
}

frame InlineCommand {
    framing delimited "\r\n", "\n"
    max_frame 64 KiB                   # Redis's PROTO_INLINE_MAX_SIZE
    body { line: bytes[rest] }
}

frame BulkString {
    framing decimal "\r\n" "\r\n" marker "$"
    body { value: bytes[rest] }
}
