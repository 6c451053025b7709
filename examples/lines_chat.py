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


class ChatRoom(LinesHandler):
    """Broadcasts each line to the other members; `/nick`, `/who`, `/quit`."""

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[Any, str] = {}  # conn -> nick, in order of arrival
        self._leaving: dict[Any, str] = {}  # conn -> why, once it is on its way out
        self._guests = 0

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
        self._broadcast(f"* {nick} joined", exclude=conn)
        self.members[conn] = nick
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
            self._broadcast(f"* {nick} left" + (f" ({why})" if why else ""))
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
        conn.write(self._encode(text))

    def _broadcast(self, text: str, exclude: Any = None) -> None:
        # Encoded once; the runtime queues it on each member and sends every
        # member's queue in one system call when the current callback returns.
        data = self._encode(text)
        for member in self.members:
            if member is exclude or member in self._leaving:
                continue
            try:
                member.write(data)
            except ConnectionClosed:
                pass  # closing already; its on_close will tidy up


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)
