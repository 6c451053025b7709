"""The typed baseline: a hand-written uvloop Protocol doing what a protogen user's
typed handler does per frame -- decode it into an object, call a method with it,
build the answer as a new object and encode it -- with the answers of one
`data_received` written at once (`uvloop-typed` peer).

It is what a Python user would write by hand for the same server: `__slots__`
frame class, precompiled struct, zero-copy payload slices, one write per read.
With --tls-cert/--tls-key it serves TLS through uvloop's `ssl=` (`make bench-tls`).
"""

from __future__ import annotations

import asyncio
import ssl
import sys

from _common import LENGTH, parse_args, raise_nofile_limit, server_ssl_context

HEADER = LENGTH.size
unpack_length = LENGTH.unpack_from
pack_length = LENGTH.pack


class Message:
    __slots__ = ("payload", "length")

    def __init__(self, payload: bytes | memoryview, length: int | None = None) -> None:
        self.payload = payload
        self.length = length


def encode(frame: Message) -> bytes:
    payload = frame.payload
    return pack_length(len(payload)) + payload


class TypedEchoProtocol(asyncio.Protocol):
    __slots__ = ("transport", "buffer", "replies")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.replies: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        if buffer:
            buffer += data
            view = memoryview(buffer)
        else:
            view = memoryview(data)
        size = len(view)
        start = 0
        on_message = self.on_message
        while size - start >= HEADER:
            (length,) = unpack_length(view, start)
            end = start + HEADER + length
            if end > size:
                break
            on_message(Message(view[start + HEADER : end], length))
            start = end
        replies = self.replies
        if replies:
            self.transport.write(b"".join(replies))  # type: ignore[union-attr]
            replies.clear()
        view.release()
        if buffer:
            del buffer[:start]
        elif start < size:
            buffer += data[start:]

    def on_message(self, frame: Message) -> None:
        self.send(Message(frame.payload))

    def send(self, frame: Message) -> None:
        self.replies.append(encode(frame))


async def serve(
    host: str, port: int, backlog: int, context: ssl.SSLContext | None
) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        TypedEchoProtocol, host, port, backlog=backlog, ssl=context
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    import uvloop

    args = parse_args(__doc__.splitlines()[0], tls=True)
    raise_nofile_limit()
    try:
        uvloop.run(serve(args.host, args.port, args.backlog, server_ssl_context(args)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
