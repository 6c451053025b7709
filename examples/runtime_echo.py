"""Length-prefixed echo written directly against the runtime (no generated code).

Frame: 4-byte big-endian payload length, then the payload. Every complete frame is
sent back unchanged. The handler checks every complete frame in the inbound buffer
(length limit), echoes them with ONE write of a zero-copy view, and consumes them
with one discard.

    python examples/runtime_echo.py --listen tcp://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import logging
import struct

from protogen.errors import FrameTooLarge
from protogen.runtime import Action, Conn, EventHandler, run

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 16 * 1024 * 1024


class LengthPrefixedEcho(EventHandler):
    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame

    def on_traffic(self, conn: Conn) -> Action:
        data = conn.peek()  # everything buffered, zero-copy
        size = len(data)
        unpack_from = HEADER.unpack_from
        max_frame = self.max_frame
        end = 0
        partial = 0
        while size - end >= 4:
            (length,) = unpack_from(data, end)
            if length > max_frame:
                raise FrameTooLarge(length, max_frame)  # closes only this conn
            frame_end = end + 4 + length
            if frame_end > size:
                partial = frame_end - end
                break
            end = frame_end
        if end:
            # Each frame's answer is the frame itself and answers go out in order,
            # so all complete frames are answered with ONE zero-copy write. (Many
            # write() calls would be batched into one send as well, just slower.)
            conn.write(data[:end])
            conn.discard(end)
        if partial:
            conn.peek(partial)  # size hint: the buffer's growth stops at the frame
        return Action.NONE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--listen", action="append", default=None, help="address URL (repeatable)"
    )
    parser.add_argument(
        "--loops", type=int, default=1, help="event loops (worker processes)"
    )
    parser.add_argument(
        "--poller", default="auto", help="auto, epoll, kqueue or selectors"
    )
    parser.add_argument("--edge-triggered", action="store_true")
    parser.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    listen = args.listen or ["tcp://127.0.0.1:9000"]
    run(
        LengthPrefixedEcho(args.max_frame),
        *listen,
        loops=args.loops,
        poller=args.poller,
        edge_triggered=args.edge_triggered,
    )


if __name__ == "__main__":
    main()
