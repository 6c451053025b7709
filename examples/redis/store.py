"""The Redis example's keyspace and commands: a command (a list of byte strings)
in, a RESP reply (bytes) out. No I/O here: the wire protocol is the handler's.

Values are byte strings, lists (deques), sets, hashes and sorted sets. Keys
with a time to live expire when next touched (lazily, as Redis does for keys
nobody reads; no background sweep).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from fnmatch import fnmatchcase

import resp
from resp import BULK_HEADERS, SHORT_BULK

__all__ = ["Store"]

Reply = bytes
Command = list[bytes]

WRONGTYPE = resp.error(
    "WRONGTYPE Operation against a key holding the wrong kind of value"
)
NOT_INTEGER = resp.error("ERR value is not an integer or out of range")
SYNTAX = resp.error("ERR syntax error")
INT64 = (-(1 << 63), (1 << 63) - 1)
CONFIG = {"save": "", "appendonly": "no", "maxmemory": "0", "databases": "16"}


class SortedSet:
    """Members by score; ZPOPMIN from a heap whose stale entries are skipped."""

    __slots__ = ("heap", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.heap: list[tuple[float, bytes]] = []

    def add(self, member: bytes, score: float) -> bool:
        new = member not in self.scores
        if new or self.scores[member] != score:
            self.scores[member] = score
            heapq.heappush(self.heap, (score, member))
        return new

    def pop_min(self) -> tuple[bytes, float] | None:
        while self.heap:
            score, member = heapq.heappop(self.heap)
            if self.scores.get(member) == score:
                del self.scores[member]
                return member, score
        return None

    def __len__(self) -> int:
        return len(self.scores)


def parse_int(text: bytes) -> int | None:
    """A Redis integer argument: optional sign, digits, within 64 bits."""
    if not text or len(text) > 20 or not text.lstrip(b"-").isdigit():
        return None
    value = int(text)
    return value if INT64[0] <= value <= INT64[1] else None


def format_score(score: float) -> bytes:
    return b"%d" % score if score == int(score) else repr(score).encode()


class Store:
    """One keyspace (database 0) and the commands over it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.data: dict[bytes, object] = {}
        self.expires: dict[bytes, float] = {}  # key -> deadline (clock seconds)
        self.clock = clock
        # name -> (method, arity): arity N exactly, -N at least N (the name counts)
        self.commands: dict[bytes, tuple[Callable[[Command], Reply], int]] = {
            b"PING": (self.ping, -1),
            b"ECHO": (self.echo, 2),
            b"GET": (self.get, 2),
            b"SET": (self.set, -3),
            b"DEL": (self.delete, -2),
            b"EXISTS": (self.exists, -2),
            b"INCR": (self.incr, 2),
            b"DECR": (self.decr, 2),
            b"INCRBY": (self.incrby, 3),
            b"DECRBY": (self.decrby, 3),
            b"MGET": (self.mget, -2),
            b"MSET": (self.mset, -3),
            b"EXPIRE": (self.expire, 3),
            b"PEXPIRE": (self.pexpire, 3),
            b"TTL": (self.ttl, 2),
            b"PTTL": (self.pttl, 2),
            b"LPUSH": (self.lpush, -3),
            b"RPUSH": (self.rpush, -3),
            b"LPOP": (self.lpop, -2),
            b"RPOP": (self.rpop, -2),
            b"LRANGE": (self.lrange, 4),
            b"LLEN": (self.llen, 2),
            b"SADD": (self.sadd, -3),
            b"SPOP": (self.spop, -2),
            b"SCARD": (self.scard, 2),
            b"HSET": (self.hset, -4),
            b"HGET": (self.hget, 3),
            b"ZADD": (self.zadd, -4),
            b"ZPOPMIN": (self.zpopmin, -2),
            b"ZCARD": (self.zcard, 2),
            b"FLUSHALL": (self.flushall, -1),
            b"FLUSHDB": (self.flushall, -1),
            b"DBSIZE": (self.dbsize, 1),
            b"SELECT": (self.select, 2),
            b"CONFIG": (self.config, -2),
        }

    def execute(self, command: Command) -> Reply:
        """Run `command` (its name in any case) and return its reply."""
        name = command[0].upper()
        entry = self.commands.get(name)
        if entry is None:
            shown = " ".join(
                f"'{arg.decode('utf-8', 'replace')[:64]}'" for arg in command[1:4]
            )
            return resp.error(
                f"ERR unknown command '{command[0].decode('utf-8', 'replace')[:64]}',"
                f" with args beginning with: {shown}"
            )
        method, arity = entry
        if len(command) != arity and (arity >= 0 or len(command) < -arity):
            return self.wrong_arguments(name)
        return method(command)

    def wrong_arguments(self, name: bytes) -> Reply:
        return resp.error(
            f"ERR wrong number of arguments for '{name.decode('utf-8', 'replace').lower()}' command"
        )

    # -- the keyspace ------------------------------------------------------------------

    def _lookup(self, key: bytes) -> object | None:
        deadline = self.expires.get(key)
        if deadline is not None and deadline <= self.clock():
            del self.expires[key]
            del self.data[key]
            return None
        return self.data.get(key)

    def _typed(self, key: bytes, kind: type, create: bool) -> object | None:
        """The value of `key` if it is a `kind` (made when `create`); WRONGTYPE otherwise."""
        value = self._lookup(key)
        if value is None:
            if not create:
                return None
            value = self.data[key] = kind()
        if type(value) is not kind:
            raise _WrongType
        return value

    def _drop_if_empty(self, key: bytes, value: object) -> None:
        if not value:  # Redis removes an emptied list, set, hash or sorted set
            self.data.pop(key, None)
            self.expires.pop(key, None)

    # -- connection, server --------------------------------------------------------

    def ping(self, command: Command) -> Reply:
        if len(command) > 2:
            return resp.error("ERR wrong number of arguments for 'ping' command")
        return resp.bulk(command[1]) if len(command) == 2 else resp.PONG

    def echo(self, command: Command) -> Reply:
        return resp.bulk(command[1])

    def flushall(self, command: Command) -> Reply:
        self.data.clear()
        self.expires.clear()
        return resp.OK

    def dbsize(self, command: Command) -> Reply:
        return resp.integer(
            sum(1 for key in list(self.data) if self._lookup(key) is not None)
        )

    def select(self, command: Command) -> Reply:
        if command[1] != b"0":
            return resp.error("ERR DB index is out of range")
        return resp.OK

    def config(self, command: Command) -> Reply:
        if command[1].upper() != b"GET" or len(command) < 3:
            return resp.error("ERR CONFIG supports GET only here")
        items: list[bytes | None] = []
        for pattern in command[2:]:
            text = pattern.decode("utf-8", "replace").lower()
            for name, value in CONFIG.items():
                if fnmatchcase(name, text):
                    items += [name.encode(), value.encode()]
        return resp.array(items)

    # -- strings ---------------------------------------------------------------------

    def get(self, command: Command) -> Reply:
        key = command[1]
        expires = self.expires  # (empty, its test costs less than a lookup)
        value = self._lookup(key) if expires and key in expires else self.data.get(key)
        if type(value) is bytes:
            # resp.bulk, inlined: the call would cost a third of a GET's own work.
            length = len(value)
            if length < SHORT_BULK:
                return BULK_HEADERS[length] + value + b"\r\n"
            return resp.bulk(value)
        return resp.NULL if value is None else WRONGTYPE

    def set(self, command: Command) -> Reply:
        key = command[1]
        if len(command) == 3:  # no options: the common case, without parsing them
            self.data[key] = command[2]
            expires = self.expires
            if expires and key in expires:
                del expires[key]
            return resp.OK
        value = command[2]
        ttl: float | None = None
        condition = b""
        keep_ttl = False
        options = iter(command[3:])
        for option in options:
            word = option.upper()
            if word in (b"EX", b"PX"):
                argument = next(options, None)
                if argument is None:
                    return SYNTAX
                amount = parse_int(argument)
                if amount is None:
                    return NOT_INTEGER
                if amount <= 0 or ttl is not None or keep_ttl:
                    return resp.error("ERR invalid expire time in 'set' command")
                ttl = amount if word == b"EX" else amount / 1000
            elif word in (b"NX", b"XX") and not condition:
                condition = word
            elif word == b"KEEPTTL" and ttl is None:
                keep_ttl = True
            else:
                return SYNTAX
        exists = self._lookup(key) is not None
        if (condition == b"NX" and exists) or (condition == b"XX" and not exists):
            return resp.NULL
        self.data[key] = value
        if ttl is not None:
            self.expires[key] = self.clock() + ttl
        elif not keep_ttl:
            self.expires.pop(key, None)
        return resp.OK

    def mget(self, command: Command) -> Reply:
        values = []
        for key in command[1:]:
            value = self._lookup(key)
            values.append(value if type(value) is bytes else None)
        return resp.array(values)  # type: ignore[arg-type]

    def mset(self, command: Command) -> Reply:
        if len(command) % 2 != 1:
            return resp.error("ERR wrong number of arguments for 'mset' command")
        for key, value in zip(command[1::2], command[2::2]):
            self.data[key] = value
            self.expires.pop(key, None)
        return resp.OK

    def delete(self, command: Command) -> Reply:
        count = 0
        for key in command[1:]:
            if self._lookup(key) is not None:
                del self.data[key]
                self.expires.pop(key, None)
                count += 1
        return resp.integer(count)

    def exists(self, command: Command) -> Reply:
        return resp.integer(
            sum(1 for key in command[1:] if self._lookup(key) is not None)
        )

    def _add(self, key: bytes, delta: int) -> Reply:
        try:
            value = self._typed(key, bytes, False)
        except _WrongType:
            return WRONGTYPE
        current = 0 if value is None else parse_int(value)  # type: ignore[arg-type]
        if current is None:
            return NOT_INTEGER
        result = current + delta
        if not INT64[0] <= result <= INT64[1]:
            return resp.error("ERR increment or decrement would overflow")
        self.data[key] = b"%d" % result
        return resp.integer(result)

    def incr(self, command: Command) -> Reply:
        return self._add(command[1], 1)

    def decr(self, command: Command) -> Reply:
        return self._add(command[1], -1)

    def incrby(self, command: Command) -> Reply:
        delta = parse_int(command[2])
        return NOT_INTEGER if delta is None else self._add(command[1], delta)

    def decrby(self, command: Command) -> Reply:
        delta = parse_int(command[2])
        return NOT_INTEGER if delta is None else self._add(command[1], -delta)

    # -- expiry ----------------------------------------------------------------------

    def _expire(self, key: bytes, seconds: float) -> Reply:
        if self._lookup(key) is None:
            return resp.integer(0)
        if seconds <= 0:
            del self.data[key]
            self.expires.pop(key, None)
        else:
            self.expires[key] = self.clock() + seconds
        return resp.integer(1)

    def expire(self, command: Command) -> Reply:
        seconds = parse_int(command[2])
        return NOT_INTEGER if seconds is None else self._expire(command[1], seconds)

    def pexpire(self, command: Command) -> Reply:
        millis = parse_int(command[2])
        return (
            NOT_INTEGER if millis is None else self._expire(command[1], millis / 1000)
        )

    def _remaining(self, key: bytes) -> float | None:
        """Seconds left; -1.0 without a deadline; None for a missing key."""
        if self._lookup(key) is None:
            return None
        deadline = self.expires.get(key)
        return -1.0 if deadline is None else max(deadline - self.clock(), 0.0)

    def ttl(self, command: Command) -> Reply:
        left = self._remaining(command[1])
        if left is None:
            return resp.integer(-2)
        return resp.integer(-1 if left < 0 else int(left + 0.5))

    def pttl(self, command: Command) -> Reply:
        left = self._remaining(command[1])
        if left is None:
            return resp.integer(-2)
        return resp.integer(-1 if left < 0 else int(left * 1000 + 0.5))

    # -- lists -----------------------------------------------------------------------

    def _push(self, command: Command, left: bool) -> Reply:
        try:
            items = self._typed(command[1], deque, True)
        except _WrongType:
            return WRONGTYPE
        assert isinstance(items, deque)
        if left:
            items.extendleft(command[2:])
        else:
            items.extend(command[2:])
        return resp.integer(len(items))

    def lpush(self, command: Command) -> Reply:
        return self._push(command, True)

    def rpush(self, command: Command) -> Reply:
        return self._push(command, False)

    def _pop(self, command: Command, left: bool) -> Reply:
        if len(command) > 3:
            return SYNTAX
        count = parse_int(command[2]) if len(command) == 3 else None
        if len(command) == 3 and (count is None or count < 0):
            return resp.error("ERR value is out of range, must be positive")
        try:
            items = self._typed(command[1], deque, False)
        except _WrongType:
            return WRONGTYPE
        if items is None:
            return resp.NULL if count is None else resp.NULL_ARRAY
        assert isinstance(items, deque)
        pop = items.popleft if left else items.pop
        if count is None:
            value = pop()
            self._drop_if_empty(command[1], items)
            return resp.bulk(value)
        popped = [pop() for _ in range(min(count, len(items)))]
        self._drop_if_empty(command[1], items)
        return resp.array(popped)

    def lpop(self, command: Command) -> Reply:
        return self._pop(command, True)

    def rpop(self, command: Command) -> Reply:
        return self._pop(command, False)

    def lrange(self, command: Command) -> Reply:
        start, stop = parse_int(command[2]), parse_int(command[3])
        if start is None or stop is None:
            return NOT_INTEGER
        try:
            items = self._typed(command[1], deque, False)
        except _WrongType:
            return WRONGTYPE
        if items is None:
            return resp.array([])
        assert isinstance(items, deque)
        size = len(items)
        start = max(start + size if start < 0 else start, 0)
        stop = min(stop + size if stop < 0 else stop, size - 1)
        if start > stop:
            return resp.array([])
        if start == 0 and stop == size - 1:
            return resp.array(items)
        items.rotate(
            -start
        )  # a deque slices from its ends only: rotate, read, rotate back
        try:
            return resp.array([items[i] for i in range(stop - start + 1)])
        finally:
            items.rotate(start)

    def llen(self, command: Command) -> Reply:
        try:
            items = self._typed(command[1], deque, False)
        except _WrongType:
            return WRONGTYPE
        return resp.integer(len(items) if items is not None else 0)  # type: ignore[arg-type]

    # -- sets ------------------------------------------------------------------------

    def sadd(self, command: Command) -> Reply:
        try:
            members = self._typed(command[1], set, True)
        except _WrongType:
            return WRONGTYPE
        assert isinstance(members, set)
        before = len(members)
        members.update(command[2:])
        return resp.integer(len(members) - before)

    def spop(self, command: Command) -> Reply:
        if len(command) > 3:
            return SYNTAX
        count = parse_int(command[2]) if len(command) == 3 else None
        if len(command) == 3 and (count is None or count < 0):
            return resp.error("ERR value is out of range, must be positive")
        try:
            members = self._typed(command[1], set, False)
        except _WrongType:
            return WRONGTYPE
        if members is None:
            return resp.NULL if count is None else resp.array([])
        assert isinstance(members, set)
        if count is None:
            value = members.pop()
            self._drop_if_empty(command[1], members)
            return resp.bulk(value)
        popped = [members.pop() for _ in range(min(count, len(members)))]
        self._drop_if_empty(command[1], members)
        return resp.array(popped)

    def scard(self, command: Command) -> Reply:
        try:
            members = self._typed(command[1], set, False)
        except _WrongType:
            return WRONGTYPE
        return resp.integer(len(members) if members is not None else 0)  # type: ignore[arg-type]

    # -- hashes ----------------------------------------------------------------------

    def hset(self, command: Command) -> Reply:
        if len(command) % 2:
            return resp.error("ERR wrong number of arguments for 'hset' command")
        try:
            fields = self._typed(command[1], dict, True)
        except _WrongType:
            return WRONGTYPE
        assert isinstance(fields, dict)
        before = len(fields)
        fields.update(zip(command[2::2], command[3::2]))
        return resp.integer(len(fields) - before)

    def hget(self, command: Command) -> Reply:
        try:
            fields = self._typed(command[1], dict, False)
        except _WrongType:
            return WRONGTYPE
        return resp.bulk(fields.get(command[2]) if fields is not None else None)  # type: ignore[union-attr]

    # -- sorted sets -------------------------------------------------------------------

    def zadd(self, command: Command) -> Reply:
        if len(command) % 2:
            return SYNTAX
        pairs = []
        for score_text, member in zip(command[2::2], command[3::2]):
            try:
                score = float(score_text)
            except ValueError:
                return resp.error("ERR value is not a valid float")
            if score != score:
                return resp.error("ERR value is not a valid float")
            pairs.append((score, member))
        try:
            zset = self._typed(command[1], SortedSet, True)
        except _WrongType:
            return WRONGTYPE
        assert isinstance(zset, SortedSet)
        return resp.integer(sum(zset.add(member, score) for score, member in pairs))

    def zpopmin(self, command: Command) -> Reply:
        if len(command) > 3:
            return SYNTAX
        count = parse_int(command[2]) if len(command) == 3 else 1
        if count is None:
            return NOT_INTEGER
        try:
            zset = self._typed(command[1], SortedSet, False)
        except _WrongType:
            return WRONGTYPE
        items: list[bytes | None] = []
        if zset is not None:
            assert isinstance(zset, SortedSet)
            for _ in range(max(count, 0)):
                popped = zset.pop_min()
                if popped is None:
                    break
                items += [popped[0], format_score(popped[1])]
            self._drop_if_empty(command[1], zset)
        return resp.array(items)

    def zcard(self, command: Command) -> Reply:
        try:
            zset = self._typed(command[1], SortedSet, False)
        except _WrongType:
            return WRONGTYPE
        return resp.integer(len(zset) if zset is not None else 0)  # type: ignore[arg-type]


class _WrongType(Exception):
    """The key holds another kind of value (answered WRONGTYPE)."""
