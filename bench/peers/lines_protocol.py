"""Newline-delimited line echo on an asyncio `Protocol` (`--loop uvloop` too): the
reference peer for the line mode of the load client and for soak self-tests."""

from __future__ import annotations

import asyncio
import sys

from _common import parse_args, raise_nofile_limit


class LineEcho(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        end = buffer.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(buffer[: end + 1]).split(b"\n")
        del buffer[: end + 1]
        self.transport.write(b"".join(line + b"\n" for line in lines[:-1]))


async def serve(host: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(LineEcho, host, port, backlog=backlog)
    async with server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], loops=("asyncio", "uvloop"))
    raise_nofile_limit()
    runner = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    try:
        runner(serve(args.host, args.port, args.backlog))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
