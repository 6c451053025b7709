"""Length-prefixed echo on Twisted (epoll reactor), parsed frame by frame like the
asyncio peer so that both do the same work per frame."""

from __future__ import annotations

from _common import LENGTH, parse_args, raise_nofile_limit

HEADER = LENGTH.size
unpack_length = LENGTH.unpack_from


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    raise_nofile_limit()
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import protocol, reactor

    class Echo(protocol.Protocol):
        def connectionMade(self) -> None:
            self.buffer = bytearray()

        def dataReceived(self, data: bytes) -> None:
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
                payload = buffer[start + HEADER : end]
                replies.append(LENGTH.pack(len(payload)) + payload)
                start = end
            if start:
                del buffer[:start]
            if replies:
                self.transport.write(b"".join(replies))

    factory = protocol.Factory.forProtocol(Echo)
    reactor.listenTCP(args.port, factory, backlog=args.backlog, interface=args.host)
    reactor.run()


if __name__ == "__main__":
    main()
