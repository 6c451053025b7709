"""A chat room on the `lines` protocol (`lines.proto.dsl`).

    protogen serve examples/lines.proto.dsl --handler examples.lines_chat:ChatRoom
    nc 127.0.0.1 7000            # or telnet, or the generated lines_client

Every line a client sends reaches every *other* client as `nick: text`.
Commands:

    /nick NAME   change your nick (1-32 letters, digits, `_` or `-`; unique)
    /who         list who is here
    /quit        leave (the server says goodbye and closes the connection)

Server notices start with `* `, errors (sent to you only) with `! `.
A line over 8 KiB (the spec's `max_frame`) is refused with `FrameTooLarge`:
that client gets `! ...` and is disconnected, the others chat on. A message
that fits but would not once prefixed with the nick is refused (`! message too
long`), since no member could receive it.
Over udp (the spec's second transport) a datagram of lines is posted to the
room under the sender's address; there is no membership, so no commands.

The room lives in this handler object, so every client must be on the same
event loop: the room refuses to boot with `--loops` > 1 (worker processes
would each hold a separate room).

Joins and leaves are announced together once per pass of the event loop: each
member gets one write holding every `joined`/`left` notice of the pass. Told
one by one, 500 clients arriving (or dropping) at once would cost 500 x 500
writes in one pass and stall the room; together they cost one per member.

A member that does not read what the room sends it is dropped (`left (too
slow)`) once 1 MiB waits for it (an IRC server's "SendQ exceeded"): the lines
of a busy room would otherwise pile up for it to the runtime's 64 MiB
`write_buffer_cap`, for every such member.
"""

from __future__ import annotations

import re
from typing import Any

from lines_codec import Line
from lines_handler import LinesHandler

from protogen.errors import ProtocolError
from protogen.runtime import Action
from protogen.runtime.conn import ConnectionClosed
from protogen.runtime.engine import BootError

__all__ = ["ChatRoom", "NICK_RULE"]

NICK_RULE = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Bytes that may wait for a member before it is dropped as too slow.
SEND_QUEUE_LIMIT = 1024 * 1024


class ChatRoom(LinesHandler):
    """Broadcasts each line to the other members; `/nick`, `/who`, `/quit`."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[Any, str] = {}  # conn -> nick, in order of arrival
        self._leaving: dict[Any, str] = {}  # conn -> why, once it is on its way out
        self._guests = 0
        # Joins and leaves of this loop pass not yet announced: (who joined, or
        # None for a leave; the encoded notice).
        self._presence: list[tuple[Any, bytes]] = []

    # -- lifetime ----------------------------------------------------------------

    def on_boot(self, engine: Any) -> Action:
        if getattr(engine, "workers", 1) > 1:
            # The server stops with this message and a non-zero exit status.
            raise BootError(
                "the chat room is kept in memory and needs a single event loop;"
                " run without --loops"
            )
        return Action.NONE

    def on_open(self, conn: Any) -> tuple[bytes | None, Action]:
        self._guests += 1
        nick = f"guest{self._guests}"
        self.members[conn] = nick
        self._announce(conn, f"* {nick} joined", joined=True)
        welcome = (
            f"* welcome, {nick}; {len(self.members)} here; /nick NAME, /who, /quit"
        )
        return Line(line=welcome.encode()).encode(), Action.NONE

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        nick = self.members.pop(conn, None)
        why = self._leaving.pop(conn, None)
        if nick is not None:
            if why is None and err is not None:
                # A reset or timeout says nothing to the room; a protocol error does.
                lost = not isinstance(err, ProtocolError)
                why = "connection lost" if lost else type(err).__name__
            self._announce(conn, f"* {nick} left" + (f" ({why})" if why else ""))
        return super().on_close(conn, err)

    # -- lines -------------------------------------------------------------------

    def on_traffic(self, conn: Any) -> Action:
        action = super().on_traffic(conn)
        # /quit and oversize lines close after the replies queued so far are sent.
        return Action.CLOSE if conn in self._leaving else action

    def on_line(self, conn: Any, frame: Line) -> None:
        text = bytes(frame.line).decode("utf-8", "replace").strip()
        if conn.datagram:
            if text:
                self._broadcast(f"{_address(conn.remote_addr)}: {text}")
            return
        if not text or conn in self._leaving:
            return  # lines pipelined behind /quit are dropped
        if text.startswith("/"):
            self._command(conn, text)
            return
        message = f"{self.members[conn]}: {text}"
        if len(message.encode()) > self.max_frame:
            # The nick makes the relayed line longer than members may receive.
            self._tell(
                conn,
                f"! message too long: at most {self.max_frame} bytes with your nick",
            )
        else:
            self._broadcast(message, exclude=conn)

    def _command(self, conn: Any, text: str) -> None:
        command, _, argument = text.partition(" ")
        argument = argument.strip()
        if command == "/nick":
            self._rename(conn, argument)
        elif command == "/who":
            self._tell(conn, f"* here: {', '.join(self.members.values())}")
        elif command == "/quit":
            self._tell(conn, "* bye")
            self._leaving[conn] = "quit"
        else:
            self._tell(conn, f"! unknown command {command}; try /nick, /who, /quit")

    def _rename(self, conn: Any, nick: str) -> None:
        old = self.members[conn]
        if not NICK_RULE.fullmatch(nick):
            self._tell(conn, "! a nick is 1-32 letters, digits, '_' or '-'")
        elif nick in self.members.values() and nick != old:
            self._tell(conn, f"! {nick} is taken")
        else:
            self.members[conn] = nick
            self._broadcast(f"* {old} is now {nick}")

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        # Answer first (the default re-raise would close without a word), then close
        # only this client; the room hears why it left.
        if conn.datagram:
            return Action.NONE  # a bad datagram is dropped; its sender has no session
        self._tell(conn, f"! {err}")
        self._leaving[conn] = type(err).__name__
        return Action.CLOSE

    # -- writing -------------------------------------------------------------------

    def _encode(self, text: str) -> bytes:
        # Notices (a long /who list) are cut to what a member may receive.
        line = text.encode()[: self.max_frame].decode("utf-8", "ignore")
        return Line(line=line.encode()).encode()

    def _tell(self, conn: Any, text: str) -> None:
        if self._presence:
            self._announce_presence()  # (a /who answer comes after the joins)
        conn.write(self._encode(text))

    def _broadcast(self, text: str, exclude: Any = None) -> None:
        # Encoded once; the runtime queues it on each member and sends every
        # member's queue in one system call at the end of the loop pass.
        if self._presence:
            self._announce_presence()  # in order: the joins and leaves first
        self._send_all(self._encode(text), exclude)

    def _announce(self, conn: Any, text: str, joined: bool = False) -> None:
        """Queue a join or leave notice for the end of this loop pass."""
        if not self._presence:
            # A zero delay runs after the pass's events: every join and leave
            # of the pass is in by then.
            conn.loop.call_later(0, self._announce_presence)
        self._presence.append((conn if joined else None, self._encode(text)))

    def _announce_presence(self) -> None:
        """Every queued join and leave, in one write per member."""
        notices, self._presence = self._presence, []
        if not notices:
            return  # announced already, before a later line
        lines = [line for _, line in notices]
        everything = b"".join(lines)
        # Who joined in this pass hears only of those after it: its welcome
        # counted the ones before, and it is not told of its own arrival.
        joined_at = {who: i for i, (who, _) in enumerate(notices) if who is not None}
        if not joined_at:
            self._send_all(everything)
            return
        for member in self.members:
            at = joined_at.get(member)
            data = everything if at is None else b"".join(lines[at + 1 :])
            if data and member not in self._leaving:
                self._deliver(member, data)

    def _send_all(self, data: bytes, exclude: Any = None) -> None:
        deliver = self._deliver
        leaving = self._leaving
        for member in self.members:
            if member is not exclude and member not in leaving:
                deliver(member, data)

    def _deliver(self, member: Any, data: bytes) -> None:
        try:
            member.write(data)
        except ConnectionClosed:
            return  # closing already; its on_close will tidy up
        if member.is_write_paused() and member.outbound_buffered() > SEND_QUEUE_LIMIT:
            # It does not read: drop it rather than queue the room for it. (It is
            # told nothing more; the room hears why it left.)
            self._leaving[member] = "too slow"
            member.close()


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)
