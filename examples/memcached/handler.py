"""The memcached binary-protocol example: one method per opcode over an in-memory store.

The generated `MemcachedHandler` (from `memcached.proto.dsl`) decodes `Request`
packets and dispatches on `opcode` to `on_get`, `on_set`, ...; this subclass
implements them on `store.Store` and answers with `Response` packets. The spec
types each command's extras (`frame.extras.flags`, `.delta`, `.expiration`, ...)
and refuses extras of the wrong size: nothing here unpacks a decoded request.

Protocol behaviour (memcached's):
- every response echoes the request's opcode and opaque;
- quiet variants (SETQ, GETQ, ...) send nothing on success (GETQ/GETKQ: on a
  miss), so a client pipelines them and ends the batch with NOOP;
- an opcode the enum does not know (`dispatch on opcode allow_unknown`) reaches
  `on_unknown_opcode`: an UNKNOWN_COMMAND response, and the connection goes on;
  a bad magic byte closes that connection only;
- QUIT answers then closes, QUITQ closes; packets pipelined after them are ignored;
- a packet whose value is over the item size limit (`-I`) is answered E2BIG
  ("Too large.", EINVAL for a command that takes no value) and its bytes are
  skipped as they arrive, never buffered: the connection goes on;
- a packet whose body does not fit its command (extras of another size than
  the command takes, extras and key longer than the body), which the spec
  refuses, is answered EINVAL and skipped: the connection goes on;
- the store keeps within its memory limit (`-m`) by evicting the least recently
  used items, and a timer reclaims expired items nobody reads (`store.py`).

The store lives in the process that serves it: with several worker processes
each would hold its own, and a key stored through one would be a miss on the
others. So serving it from more than one process is refused (`serve.py
--loops`, and here in on_boot for any other launcher).
"""

from __future__ import annotations

import os
import struct
import sys
import time
from typing import Any

from memcached_codec import Opcode, Request, Response
from memcached_handler import MemcachedHandler

from protogen.errors import FrameTooLarge, ProtocolError
from protogen.runtime import Action
from store import (  # beside this file (serve.py puts it on sys.path)
    DEFAULT_ITEM_SIZE_MAX,
    DEFAULT_MEMORY_LIMIT,
    Item,
    Status,
    Store,
)

__all__ = ["MemcachedExampleHandler", "VERSION"]

VERSION = b"1.6.0-protogen"
MAX_KEY = 250
MAX_EXTRAS = 255  # extras_length is one byte
HEADER_SIZE = 24
REQUEST_MAGIC = 0x80
RECLAIM_EVERY = 1.0  # seconds between two store.reclaim() calls

_HEADER = struct.Struct(">BBHBBHIIQ")
# Commands that carry a value: over the item size limit they are E2BIG.
_WITH_VALUE = frozenset(
    opcode.value
    for opcode in (
        Opcode.set,
        Opcode.add,
        Opcode.replace,
        Opcode.append,
        Opcode.prepend,
        Opcode.setq,
        Opcode.addq,
        Opcode.replaceq,
        Opcode.appendq,
        Opcode.prependq,
    )
)

_FLAGS = struct.Struct(">I")  # a GET response's extras
_U64 = struct.Struct(">Q")  # an INCREMENT response's value

_MESSAGES = {
    Status.KEY_ENOENT: b"Not found",
    Status.KEY_EEXISTS: b"Data exists for key.",
    Status.E2BIG: b"Too large.",
    Status.EINVAL: b"Invalid arguments",
    Status.NOT_STORED: b"Not stored.",
    Status.DELTA_BADVAL: b"Non-numeric server-side value for incr or decr",
    Status.UNKNOWN_COMMAND: b"Unknown command",
}


class MemcachedExampleHandler(MemcachedHandler):
    """memcached over the binary protocol, in memory. See the module docstring."""

    def __init__(
        self,
        *args: Any,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
        **kwargs: Any,
    ) -> None:
        # A packet with a value at the item size limit, and the largest key and
        # extras, is the largest frame decoded; a longer one is skipped (E2BIG).
        kwargs.setdefault(
            "max_frame", HEADER_SIZE + MAX_EXTRAS + MAX_KEY + item_size_max
        )
        super().__init__(*args, **kwargs)
        self.store = Store(memory_limit, item_size_max)
        # Connections skipping an oversize packet: bytes still to skip.
        self._skipping: dict[Any, int] = {}
        self._loop: Any = None
        self.started = time.time()
        self.stats = dict.fromkeys(
            (
                "cmd_get",
                "get_hits",
                "get_misses",
                "cmd_set",
                "cmd_touch",
                "total_connections",
            ),
            0,
        )
        self.connections = 0

    # -- the process ----------------------------------------------------------------------

    def on_boot(self, engine: Any) -> Action:
        workers = getattr(engine, "workers", 1)
        if workers > 1:
            print(
                f"memcached example: refusing to run in {workers} worker processes: "
                "each would hold its own cache, and keys stored through one would be "
                "misses on the others; serve it with one event loop",
                file=sys.stderr,
            )
            engine.stop()
            return Action.SHUTDOWN
        self._loop = engine.loop
        self._loop.call_later(RECLAIM_EVERY, self._reclaim)
        return super().on_boot(engine)

    def _reclaim(self) -> None:
        """Drop expired items nobody reads (bounded work), then re-arm."""
        self.store.reclaim()
        self._loop.call_later(RECLAIM_EVERY, self._reclaim)

    # -- connections ----------------------------------------------------------------------

    def on_open(self, conn: Any) -> tuple[bytes | None, Action]:
        self.connections += 1
        self.stats["total_connections"] += 1
        return super().on_open(conn)

    def on_close(self, conn: Any, err: BaseException | None) -> Action:
        self.connections -= 1
        self._skipping.pop(conn, None)
        return super().on_close(conn, err)

    # -- oversize packets: answered, then skipped ---------------------------------------

    def on_traffic(self, conn: Any) -> Action | None:
        skipping = self._skipping
        while True:
            if skipping and conn in skipping:
                left = skipping[conn]
                skipped = conn.discard(left)
                if skipped < left:
                    skipping[conn] = left - skipped
                    return None
                del skipping[conn]
            action = super().on_traffic(conn)
            # on_protocol_error began a skip: go on with what follows it, if here.
            if action or not skipping or conn not in skipping:
                return action
            if not conn.inbound_buffered():
                return None

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        """A packet over max_frame, or whose body does not fit its command: answer
        it from its header (E2BIG, EINVAL) and skip it, as its header frames it.
        A bad magic byte closes the connection: the framing is lost."""
        # The generated loop consumed the packets before this one: its header is
        # first. (A refused packet has no decoded frame to read it from.)
        magic, opcode, _, _, _, _, total_body, opaque, _ = _HEADER.unpack(
            conn.peek()[:HEADER_SIZE]
        )
        if magic != REQUEST_MAGIC:
            return super().on_protocol_error(conn, err)
        if isinstance(err, FrameTooLarge) and opcode in _WITH_VALUE:
            status = Status.E2BIG
        else:
            status = Status.EINVAL
        self._error(conn, opcode, opaque, status)
        self._skipping[conn] = HEADER_SIZE + total_body
        return Action.NONE

    # -- replies -----------------------------------------------------------------------------

    def _reply(
        self,
        conn: Any,
        frame: Request,
        status: int = Status.SUCCESS,
        *,
        extras: bytes = b"",
        key: bytes = b"",
        value: bytes = b"",
        cas: int = 0,
    ) -> None:
        self.send(
            conn,
            Response(
                opcode=frame.opcode,
                status=status,
                opaque=frame.opaque,
                cas=cas,
                extras=extras,
                key=key,
                value=value,
            ),
        )

    def _error(
        self, conn: Any, opcode: int, opaque: int, status: Status, key: bytes = b""
    ) -> None:
        self.send(
            conn,
            Response(
                opcode=opcode,
                status=status,
                opaque=opaque,
                cas=0,
                extras=b"",
                key=key,
                value=_MESSAGES[status],
            ),
        )

    def _fail(
        self, conn: Any, frame: Request, status: Status, key: bytes = b""
    ) -> None:
        self._error(conn, frame.opcode, frame.opaque, status, key)

    def _valid(self, conn: Any, frame: Request, key: bool | None, value: bool) -> bool:
        """Check the key and value (the spec checked the extras): key required
        (True), forbidden (False) or optional (None), value allowed. EINVAL
        otherwise."""
        ok = (
            (key is None or bool(frame.key) == key)
            and len(frame.key) <= MAX_KEY
            and (value or not frame.value)
        )
        if not ok:
            self._fail(conn, frame, Status.EINVAL)
        return ok

    # -- retrieval ------------------------------------------------------------------------------

    def _get(
        self,
        conn: Any,
        frame: Request,
        *,
        with_key: bool,
        quiet: bool,
        touch: bool = False,
    ) -> None:
        if touch:
            if not self._valid(conn, frame, True, False):
                return
            self.stats["cmd_touch"] += 1
            item = self.store.touch(frame.key, frame.extras.expiration)
        else:
            if not self._valid(conn, frame, True, False):
                return
            item = self.store.get(frame.key)
        self.stats["cmd_get"] += 1
        if item is None:
            self.stats["get_misses"] += 1
            if not quiet:
                self._fail(
                    conn, frame, Status.KEY_ENOENT, frame.key if with_key else b""
                )
            return
        self.stats["get_hits"] += 1
        self._reply(
            conn,
            frame,
            extras=_FLAGS.pack(item.flags),
            key=frame.key if with_key else b"",
            value=item.value,
            cas=item.cas,
        )

    def on_get(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=False, quiet=False)

    def on_getq(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=False, quiet=True)

    def on_getk(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=True, quiet=False)

    def on_getkq(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=True, quiet=True)

    def on_gat(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=False, quiet=False, touch=True)

    def on_gatq(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=False, quiet=True, touch=True)

    def on_gatk(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=True, quiet=False, touch=True)

    def on_gatkq(self, conn: Any, frame: Request) -> None:
        self._get(conn, frame, with_key=True, quiet=True, touch=True)

    def on_touch(self, conn: Any, frame: Request) -> None:
        if not self._valid(conn, frame, True, False):
            return
        self.stats["cmd_touch"] += 1
        item = self.store.touch(frame.key, frame.extras.expiration)
        if item is None:
            self._fail(conn, frame, Status.KEY_ENOENT)
        else:
            self._reply(conn, frame, cas=item.cas)

    # -- storage ----------------------------------------------------------------------------------

    def _store(self, conn: Any, frame: Request, mode: str, quiet: bool) -> None:
        if not self._valid(conn, frame, True, True):
            return
        self.stats["cmd_set"] += 1
        extras = frame.extras
        status, item = self.store.store(
            mode, frame.key, frame.value, extras.flags, extras.expiration, frame.cas
        )
        self._stored(conn, frame, status, item, quiet)

    def _stored(
        self, conn: Any, frame: Request, status: Status, item: Item | None, quiet: bool
    ) -> None:
        if status != Status.SUCCESS:
            self._fail(conn, frame, status)
        elif not quiet:
            assert item is not None
            self._reply(conn, frame, cas=item.cas)

    def on_set(self, conn: Any, frame: Request) -> None:
        self._store(conn, frame, "set", quiet=False)

    def on_setq(self, conn: Any, frame: Request) -> None:
        self._store(conn, frame, "set", quiet=True)

    def on_add(self, conn: Any, frame: Request) -> None:
        self._store(conn, frame, "add", quiet=False)

    def on_addq(self, conn: Any, frame: Request) -> None:
        self._store(conn, frame, "add", quiet=True)

    def on_replace(self, conn: Any, frame: Request) -> None:
        self._store(conn, frame, "replace", quiet=False)

    def on_replaceq(self, conn: Any, frame: Request) -> None:
        self._store(conn, frame, "replace", quiet=True)

    def _concat(self, conn: Any, frame: Request, prepend: bool, quiet: bool) -> None:
        if not self._valid(conn, frame, True, True):
            return
        self.stats["cmd_set"] += 1
        status, item = self.store.concat(frame.key, frame.value, frame.cas, prepend)
        self._stored(conn, frame, status, item, quiet)

    def on_append(self, conn: Any, frame: Request) -> None:
        self._concat(conn, frame, prepend=False, quiet=False)

    def on_appendq(self, conn: Any, frame: Request) -> None:
        self._concat(conn, frame, prepend=False, quiet=True)

    def on_prepend(self, conn: Any, frame: Request) -> None:
        self._concat(conn, frame, prepend=True, quiet=False)

    def on_prependq(self, conn: Any, frame: Request) -> None:
        self._concat(conn, frame, prepend=True, quiet=True)

    def _delete(self, conn: Any, frame: Request, quiet: bool) -> None:
        if not self._valid(conn, frame, True, False):
            return
        status = self.store.delete(frame.key, frame.cas)
        if status != Status.SUCCESS:
            self._fail(conn, frame, status)
        elif not quiet:
            self._reply(conn, frame)

    def on_delete(self, conn: Any, frame: Request) -> None:
        self._delete(conn, frame, quiet=False)

    def on_deleteq(self, conn: Any, frame: Request) -> None:
        self._delete(conn, frame, quiet=True)

    def _arithmetic(
        self, conn: Any, frame: Request, decrement: bool, quiet: bool
    ) -> None:
        if not self._valid(conn, frame, True, False):
            return
        extras = frame.extras
        status, number, item = self.store.arithmetic(
            frame.key,
            extras.delta,
            extras.initial,
            extras.expiration,
            frame.cas,
            decrement,
        )
        if status != Status.SUCCESS:
            self._fail(conn, frame, status)
        elif not quiet:
            assert item is not None
            self._reply(conn, frame, value=_U64.pack(number), cas=item.cas)

    def on_increment(self, conn: Any, frame: Request) -> None:
        self._arithmetic(conn, frame, decrement=False, quiet=False)

    def on_incrementq(self, conn: Any, frame: Request) -> None:
        self._arithmetic(conn, frame, decrement=False, quiet=True)

    def on_decrement(self, conn: Any, frame: Request) -> None:
        self._arithmetic(conn, frame, decrement=True, quiet=False)

    def on_decrementq(self, conn: Any, frame: Request) -> None:
        self._arithmetic(conn, frame, decrement=True, quiet=True)

    # -- everything else ----------------------------------------------------------------------

    def _flush(self, conn: Any, frame: Request, quiet: bool) -> None:
        if not self._valid(conn, frame, False, False):
            return
        delay = frame.extras.delay  # [] (no extras): now
        self.store.flush(delay[0] if delay else 0)
        if not quiet:
            self._reply(conn, frame)

    def on_flush(self, conn: Any, frame: Request) -> None:
        self._flush(conn, frame, quiet=False)

    def on_flushq(self, conn: Any, frame: Request) -> None:
        self._flush(conn, frame, quiet=True)

    def on_noop(self, conn: Any, frame: Request) -> None:
        if self._valid(conn, frame, False, False):
            self._reply(conn, frame)

    def on_version(self, conn: Any, frame: Request) -> None:
        if self._valid(conn, frame, False, False):
            self._reply(conn, frame, value=VERSION)

    def on_verbosity(self, conn: Any, frame: Request) -> None:
        if self._valid(conn, frame, False, False):
            self._reply(conn, frame)

    # Returning CLOSE stops the generated loop: nothing after QUIT is handled.
    def on_quit(self, conn: Any, frame: Request) -> Action:
        self._reply(conn, frame)
        return Action.CLOSE

    def on_quitq(self, conn: Any, frame: Request) -> Action:
        return Action.CLOSE

    def on_stat(self, conn: Any, frame: Request) -> None:
        """All stats, one packet each, then an empty-key terminator. Groups: none."""
        if not self._valid(conn, frame, None, False):
            return
        if frame.key:
            self._fail(conn, frame, Status.KEY_ENOENT)
            return
        now = time.time()
        stats = {
            "pid": os.getpid(),
            "uptime": int(now - self.started),
            "time": int(now),
            "version": VERSION.decode(),
            "pointer_size": 64,
            "curr_connections": self.connections,
            "curr_items": len(self.store),
            "total_items": self.store.total_items,
            "bytes": self.store.bytes_used,
            "limit_maxbytes": self.store.memory_limit,
            "evictions": self.store.evictions,
            "reclaimed": self.store.reclaimed,
            **self.stats,
        }
        for name, value in stats.items():
            self._reply(conn, frame, key=name.encode(), value=str(value).encode())
        self._reply(conn, frame)

    def on_unknown_opcode(self, conn: Any, frame: Request) -> None:
        """An opcode the enum does not name (`allow_unknown` in the spec): the
        packet was framed all the same, so the connection goes on."""
        self._fail(conn, frame, Status.UNKNOWN_COMMAND)
