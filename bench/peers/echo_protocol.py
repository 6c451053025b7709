"""Length-prefixed echo on an asyncio `Protocol`; `--loop uvloop` runs the same code
on uvloop. This is the idiomatic hand-written peer protogen is compared against.

Each frame is parsed and dispatched on its own (as a framework handler would see it);
the replies of one `data_received` call go out in a single write.
"""

from __future__ import annotations

import asyncio
import sys

from _common import LENGTH, parse_args, raise_nofile_limit

HEADER = LENGTH.size
unpack_length = LENGTH.unpack_from


class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport", "buffer")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        size = len(buffer)
        start = 0
        replies = []
        while size - start >= HEADER:
            (length,) = unpack_length(buffer, start)
            end = start + HEADER + length
            if end > size:
                break
            replies.append(self.frame_received(buffer[start + HEADER : end]))
            start = end
        if start:
            del buffer[:start]
        if replies:
            self.transport.write(b"".join(replies))

    def frame_received(self, payload: bytearray) -> bytes:
        return LENGTH.pack(len(payload)) + payload


async def serve(host: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, backlog=backlog)
    async with server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], loops=("asyncio", "uvloop"))
    raise_nofile_limit()
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    try:
        runner(serve(args.host, args.port, args.backlog))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
