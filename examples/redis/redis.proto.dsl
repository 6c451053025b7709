# redis.proto.dsl — what a Redis client sends (RESP2, the Redis protocol spec).
#
# A command is an array of bulk strings, `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, or an
# inline command, `GET k\r\n` (what telnet and redis-cli's scripts send): the
# first byte tells them apart. The array is one frame: its count, then that
# many bulk strings; it ends where the last one ends. A count that lies is
# caught where the bytes stop matching it (a `*` where a `$` is due).
protocol redis
transport tcp
max_frame 512 MiB                      # Redis's proto-max-bulk-len
server decodes InlineCommand

phase Commands {
    "*" => Command
    default => InlineCommand
}

frame Command {
    # `*N\r\n`, at most 1 048 576 (Redis refuses more), then N bulk strings `$3\r\nGET\r\n`
    framing array "*" decimal "\r\n" max 1048576 of "$" decimal "\r\n" bytes "\r\n"
    body { args: bytes[rest][rest] }
}

frame InlineCommand {
    framing delimited "\r\n", "\n"
    max_frame 64 KiB                   # Redis's PROTO_INLINE_MAX_SIZE
    body { line: bytes[rest] }
}
