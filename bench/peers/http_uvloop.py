"""TechEmpower-style HTTP/1.1 plaintext server on uvloop + httptools: the HTTP peer
protogen's HTTP example is compared against. `GET /plaintext` answers
`Hello, World!` with Date and Server headers; keep-alive and pipelining supported
(the replies to all requests parsed from one read go out in one write).
With --tls-cert/--tls-key it serves https through uvloop's `ssl=`."""

from __future__ import annotations

import asyncio
import ssl
import sys
from email.utils import formatdate

import httptools
import uvloop

from _common import parse_args, raise_nofile_limit, server_ssl_context

BODY = b"Hello, World!"
_date_header = b""


def _refresh_date(loop: asyncio.AbstractEventLoop) -> None:
    # Formatting the date per request would dominate the profile; once a second is
    # what TechEmpower entries do too.
    global _date_header
    _date_header = formatdate(usegmt=True).encode()
    loop.call_later(1.0, _refresh_date, loop)


def _plaintext(keep_alive: bool) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 200 OK\r\nServer: uvloop-httptools\r\nDate: ",
            _date_header,
            b"\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n",
            b"" if keep_alive else b"Connection: close\r\n",
            b"\r\n",
            BODY,
        )
    )


NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nServer: uvloop-httptools\r\nContent-Length: 0\r\n\r\n"
)
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class HttpProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.replies: list[bytes] = []
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        if self.url == b"/plaintext":
            self.replies.append(_plaintext(keep_alive))
        else:
            self.replies.append(NOT_FOUND)
        self.url = b""
        if not keep_alive:
            self.closing = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.replies.append(BAD_REQUEST)
            self.closing = True
        if self.replies:
            self.transport.write(b"".join(self.replies))
            self.replies.clear()
        if self.closing:
            self.transport.close()


async def serve(
    host: str, port: int, backlog: int, context: ssl.SSLContext | None
) -> None:
    loop = asyncio.get_running_loop()
    _refresh_date(loop)
    server = await loop.create_server(
        HttpProtocol, host, port, backlog=backlog, ssl=context
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], tls=True)
    raise_nofile_limit()
    try:
        uvloop.run(serve(args.host, args.port, args.backlog, server_ssl_context(args)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
