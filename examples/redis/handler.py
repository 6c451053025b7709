"""The Redis example: an in-memory Redis speaking RESP2, enough for `redis-cli`
and `redis-benchmark`.

`redis.proto.dsl` tells a RESP array (`*`) from an inline command (anything
else) by the first byte. An array is one frame, `Command`, whose `args` are its
bulk strings: `SET k v` arrives as `Command(args=[b"SET", b"k", b"v"])`, one
decode and one callback. The commands are `store.py`'s; this module looks each
one up (a dict from the name to the bound method) and queues the replies: all
the replies of one read go out in one write, after the last command of it.

Bad input gets Redis's own answer, then the connection closes (others go on):
`-ERR Protocol error: expected '$', got '*'` for an array whose count is too
large (the next command's `*` arrives where a bulk string is due), `expected
'*', got '$'` for one whose count is too small (a bulk string where a command is
due), `invalid multibulk length`, `invalid bulk length`, `too big inline
request`.
"""

from __future__ import annotations

import resp
from redis_codec import Command, InlineCommand
from redis_handler import RedisHandler
from store import Store

from protogen.errors import FrameTooLarge, InvalidValue, ProtocolError
from protogen.runtime import Action, Conn

__all__ = ["RedisExample"]

QUIT = b"QUIT"


class RedisExample(RedisHandler):
    """One keyspace shared by every connection of the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.commands = self.store.commands
        # The replies to the commands of the read being decoded (one connection's
        # at a time: the loop runs one callback at once), written by on_traffic.
        self._replies: list[bytes] = []

    def on_traffic(self, conn: Conn) -> Action | None:
        action = super().on_traffic(conn)
        replies = self._replies
        if replies:
            conn.write(b"".join(replies) if len(replies) > 1 else replies[0])
            replies.clear()
        return action

    def on_command(self, conn: Conn, frame: Command) -> Action | None:
        args = frame.args
        # A try costs nothing when the name is found (every command of a
        # pipeline, as clients send names in upper case); a miss pays the raise.
        try:
            method, arity = self.commands[args[0]]
        except (KeyError, IndexError):  # another spelling, QUIT, unknown, or `*0`
            return self._run(conn, args)
        if len(args) == arity or (arity < 0 and len(args) >= -arity):
            self._replies.append(method(args))
        else:
            self._replies.append(self.store.wrong_arguments(args[0]))
        return None

    def on_inline_command(self, conn: Conn, frame: InlineCommand) -> Action | None:
        line = bytes(frame.line)
        if line[:1] == b"$":  # a bulk string where a command is due: a count too small
            return self._protocol_error(conn, "expected '*', got '$'")
        return self._run(conn, line.split())

    def _run(self, conn: Conn, args: list[bytes]) -> Action | None:
        if not args:  # `*0`, an empty line: no command, no reply
            return None
        if args[0].upper() == QUIT:
            self._replies.append(resp.OK)
            return Action.CLOSE
        self._replies.append(self.store.execute(args))
        return None

    # -- errors ------------------------------------------------------------------------

    def on_protocol_error(self, conn: Conn, err: ProtocolError) -> Action:
        field = err.field if isinstance(err, InvalidValue) else ""
        if field.endswith(".marker") and isinstance(err.value, bytes):
            got = err.value[:1]
            shown = chr(got[0]) if got and 32 < got[0] < 127 else f"\\x{got.hex()}"
            return self._protocol_error(conn, f"expected '$', got '{shown}'")
        if field.endswith((".length", ".terminator")):
            return self._protocol_error(conn, "invalid bulk length")
        if isinstance(err, FrameTooLarge):
            data = conn.peek()
            if len(data) and data[0] == ord("*"):  # a bulk string beyond 512 MiB
                return self._protocol_error(conn, "invalid bulk length")
            return self._protocol_error(conn, "too big inline request")
        return self._protocol_error(conn, "invalid multibulk length")

    def _protocol_error(self, conn: Conn, what: str) -> Action:
        # The replies to the commands before the bad bytes go first.
        self._replies.append(resp.error(f"ERR Protocol error: {what}"))
        return Action.CLOSE
