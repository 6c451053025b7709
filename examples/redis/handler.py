"""The Redis example: an in-memory Redis speaking RESP2, enough for `redis-cli`
and `redis-benchmark`.

`redis.proto.dsl` gives the connection two phases. In `Commands` the first
byte tells an array of bulk strings (`*`) from an inline command (anything
else); an array's head switches the connection to `Arguments`, where only bulk
strings (`$3\\r\\nfoo\\r\\n`) are accepted, and the last of them switches back.
The switch takes effect at the next unread byte, so pipelined commands
(`redis-benchmark -P 16`) are decoded in one pass. The commands are
`store.py`'s; this module only assembles them and writes the replies.

Bad input gets Redis's own answer, then the connection closes (others go on):
`-ERR Protocol error: expected '$', got '*'` for an array whose count lies (its
next command's `*` arrives while bulk strings are still due), `invalid
multibulk length`, `invalid bulk length`, `too big inline request`.
"""

from __future__ import annotations

import resp
from redis_codec import ArrayHead, BulkString, InlineCommand
from redis_handler import Phase, RedisHandler
from store import Store

from protogen.errors import FrameTooLarge, MalformedFrame, ProtocolError
from protogen.runtime import Action, Conn

__all__ = ["RedisExample"]

MAX_ARGUMENTS = 1024 * 1024  # Redis refuses larger multibulk counts
QUIT = b"QUIT"


class Pending:
    """The command being assembled from an array's bulk strings."""

    __slots__ = ("arguments", "missing")

    def __init__(self, missing: int) -> None:
        self.arguments: list[bytes] = []
        self.missing = missing


class RedisExample(RedisHandler):
    """One keyspace shared by every connection of the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store()

    # -- Commands ----------------------------------------------------------------------

    def on_array_head(self, conn: Conn, frame: ArrayHead) -> Action | None:
        text = bytes(frame.count[1:])
        if not text.lstrip(b"-").isdigit() or len(text) > 20:
            return self._protocol_error(conn, "invalid multibulk length")
        count = int(text)
        if count > MAX_ARGUMENTS:
            return self._protocol_error(conn, "invalid multibulk length")
        if count > 0:  # `*0` and `*-1` are no command at all
            conn.context = Pending(count)
            self.switch(conn, Phase.Arguments)
        return None

    def on_inline_command(self, conn: Conn, frame: InlineCommand) -> Action | None:
        arguments = bytes(frame.line).split()
        if not arguments:
            return None
        return self._run(conn, arguments)

    # -- Arguments ---------------------------------------------------------------------

    def on_bulk_string(self, conn: Conn, frame: BulkString) -> Action | None:
        pending: Pending = conn.context
        pending.arguments.append(frame.value)
        pending.missing -= 1
        if pending.missing:
            return None
        conn.context = None
        self.switch(conn, Phase.Commands)
        return self._run(conn, pending.arguments)

    def _run(self, conn: Conn, arguments: list[bytes]) -> Action | None:
        if arguments[0].upper() == QUIT:
            conn.write(resp.OK)
            return Action.CLOSE
        conn.write(self.store.execute(arguments))
        return None

    # -- errors ------------------------------------------------------------------------

    def on_protocol_error(self, conn: Conn, err: ProtocolError) -> Action:
        data = conn.peek()
        if isinstance(err, FrameTooLarge):
            if self.phase(conn) is Phase.Arguments:
                return self._protocol_error(conn, "invalid bulk length")
            if len(data) and data[0] == ord("*"):  # an array head without its end
                return self._protocol_error(conn, "invalid multibulk length")
            return self._protocol_error(conn, "too big inline request")
        if self.phase(conn) is Phase.Arguments and isinstance(err, MalformedFrame):
            if len(data) and data[0] != ord("$"):
                got = chr(data[0]) if 32 < data[0] < 127 else f"\\x{data[0]:02x}"
                return self._protocol_error(conn, f"expected '$', got '{got}'")
            return self._protocol_error(conn, "invalid bulk length")
        return self._protocol_error(conn, "invalid multibulk length")

    def _protocol_error(self, conn: Conn, what: str) -> Action:
        conn.write(resp.error(f"ERR Protocol error: {what}"))
        return Action.CLOSE
