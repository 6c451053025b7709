"""The memcached example's in-memory store: items with flags, expiry and CAS,
within a memory limit.

Pure data structure, no I/O: the handler maps protocol opcodes onto these methods
and their `Status` results onto response packets.

Memory: every item is charged its key, its value and ITEM_OVERHEAD (what CPython
spends around them: the item object, two bytes objects, its slot in the LRU and
in the expiry index). When a store would pass `memory_limit`, the least recently
used items are evicted first, as memcached does with `-m`. A value over
`item_size_max` is refused (E2BIG), as with memcached's `-I`.

Expiry: an expired item is dropped when it is next looked up (lazily), and
`reclaim()`, called periodically, drops expired items nobody reads: items with an
expiry are indexed by the second they expire in, and each call walks the seconds
that have passed since the last one, with bounded work per call.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

MEGABYTE = 1024 * 1024
DEFAULT_MEMORY_LIMIT = 64 * MEGABYTE  # memcached's default -m 64
DEFAULT_ITEM_SIZE_MAX = 1 * MEGABYTE  # memcached's default -I 1m
MIN_ITEM_SIZE_MAX = 1024  # memcached refuses a smaller -I
# CPython's cost of one item beyond its key and value bytes: the item object, two
# bytes objects, the LRU's entry and node, the expiry index's entry. Measured
# with tracemalloc: 210 bytes for a store filled once without expiries, up to
# 460 under constant replacement with every item expiring in its own second
# (tables keep room after deletions). The upper figure, rounded up, so a full
# store's memory stays within its limit (tests/examples/test_memcached_store.py).
ITEM_OVERHEAD = 480
# memcached reads an expiry up to 30 days as relative seconds, above as a unix time.
RELATIVE_EXPIRY_LIMIT = 60 * 60 * 24 * 30
U64 = 1 << 64
# reclaim() bounds: items dropped and seconds walked per call.
RECLAIM_ITEMS = 1000
RECLAIM_SECONDS = 100_000


class Status(enum.IntEnum):
    """Response status codes of the binary protocol."""

    SUCCESS = 0x00
    KEY_ENOENT = 0x01
    KEY_EEXISTS = 0x02
    E2BIG = 0x03
    EINVAL = 0x04
    NOT_STORED = 0x05
    DELTA_BADVAL = 0x06
    UNKNOWN_COMMAND = 0x81
    ENOMEM = 0x82


@dataclass(slots=True)
class Item:
    value: bytes
    flags: int
    expires: float  # unix time; 0 = never
    cas: int


class Store:
    """Key -> Item, in least-recently-used order, within `memory_limit` bytes."""

    def __init__(
        self,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if item_size_max < MIN_ITEM_SIZE_MAX:
            raise ValueError(f"item size limit under {MIN_ITEM_SIZE_MAX} bytes")
        if item_size_max > memory_limit // 2:
            raise ValueError(
                "item size limit above half of the memory limit "
                f"({item_size_max} > {memory_limit} / 2)"
            )
        self.memory_limit = memory_limit
        self.item_size_max = item_size_max
        self.clock = clock
        # Oldest use first: a hit moves its item to the end; eviction pops the front.
        self.items: OrderedDict[bytes, Item] = OrderedDict()
        self.bytes_used = 0  # charged bytes of the items held
        self.total_items = 0
        self.evictions = 0  # items dropped for room
        self.reclaimed = 0  # expired items dropped by reclaim() unread
        self._last_cas = 0
        self._flush_at = 0.0  # a delayed flush_all takes effect at this time
        # Keys of the items expiring during each second (int(expires)): one key,
        # or a set of them. reclaim() walks the seconds from _next_second on.
        self._expiring: dict[int, bytes | set[bytes]] = {}
        self._next_second = int(clock())

    # -- helpers ------------------------------------------------------------------------

    def _next_cas(self) -> int:
        self._last_cas += 1
        return self._last_cas

    def expiry(self, exptime: int) -> float:
        """The protocol's expiration field -> an absolute time (0 = never)."""
        if exptime == 0:
            return 0.0
        if exptime <= RELATIVE_EXPIRY_LIMIT:
            return self.clock() + exptime
        return float(exptime)

    @staticmethod
    def charge(key: bytes, value: bytes) -> int:
        """The bytes an item counts against the memory limit."""
        return len(key) + len(value) + ITEM_OVERHEAD

    def _flush_if_due(self) -> None:
        if self._flush_at and self.clock() >= self._flush_at:
            self._clear()

    def get(self, key: bytes) -> Item | None:
        """The live item under `key`, or None (dropping it if it expired).
        A hit makes the item the most recently used."""
        if self._flush_at:
            self._flush_if_due()
        item = self.items.get(key)
        if item is None:
            return None
        if item.expires and item.expires <= self.clock():
            self._remove(key, item)
            return None
        self.items.move_to_end(key)
        return item

    def _remove(self, key: bytes, item: Item) -> None:
        del self.items[key]
        self.bytes_used -= self.charge(key, item.value)
        if item.expires:
            self._unindex(key, item.expires)

    def _unindex(self, key: bytes, expires: float) -> None:
        second = int(expires)
        keys = self._expiring.get(second)
        if keys is None:
            return
        if type(keys) is bytes:
            if keys == key:
                del self._expiring[second]
            return
        keys.discard(key)
        if not keys:
            del self._expiring[second]

    def _index(self, key: bytes, expires: float) -> None:
        second = int(expires)
        expiring = self._expiring
        keys = expiring.get(second)
        if keys is None:
            # Most seconds hold one key: the key itself, not a set (a third of
            # the memory an item costs).
            expiring[second] = key
            if second < self._next_second:  # the clock went back
                self._next_second = second
        elif type(keys) is bytes:
            expiring[second] = {keys, key}
        else:
            keys.add(key)

    def _put(self, key: bytes, value: bytes, flags: int, expires: float) -> Item:
        """Store (replacing any item under `key`), evicting for room; the new
        item is the most recently used. Already expired: nothing is kept."""
        item = Item(value, flags, expires, self._next_cas())
        current = self.items.get(key)
        if current is not None:
            self._remove(key, current)
        self.total_items += 1
        if expires and expires <= self.clock():
            return item  # stored and at once expired, as memcached does
        size = self.charge(key, value)
        items = self.items
        while self.bytes_used + size > self.memory_limit and items:
            old_key, old = items.popitem(last=False)
            self.bytes_used -= self.charge(old_key, old.value)
            if old.expires:
                self._unindex(old_key, old.expires)
            self.evictions += 1
        items[key] = item
        self.bytes_used += size
        if expires:
            self._index(key, expires)
        return item

    # -- storage commands ---------------------------------------------------------------

    def store(
        self, mode: str, key: bytes, value: bytes, flags: int, exptime: int, cas: int
    ) -> tuple[Status, Item | None]:
        """set / add / replace. `cas` != 0 demands the item's current CAS."""
        if len(value) > self.item_size_max:
            return Status.E2BIG, None
        current = self.get(key)
        if mode == "add":
            if current is not None:
                return Status.KEY_EEXISTS, None
        elif current is None:
            if mode == "replace" or cas:
                return Status.KEY_ENOENT, None
        elif cas and current.cas != cas:
            return Status.KEY_EEXISTS, None
        return Status.SUCCESS, self._put(key, value, flags, self.expiry(exptime))

    def concat(
        self, key: bytes, data: bytes, cas: int, prepend: bool
    ) -> tuple[Status, Item | None]:
        """append / prepend: the item must exist; flags and expiry are kept."""
        current = self.get(key)
        if current is None:
            return Status.NOT_STORED, None
        if cas and current.cas != cas:
            return Status.KEY_EEXISTS, None
        if len(current.value) + len(data) > self.item_size_max:
            return Status.E2BIG, None
        value = data + current.value if prepend else current.value + data
        return Status.SUCCESS, self._put(key, value, current.flags, current.expires)

    def delete(self, key: bytes, cas: int) -> Status:
        current = self.get(key)
        if current is None:
            return Status.KEY_ENOENT
        if cas and current.cas != cas:
            return Status.KEY_EEXISTS
        self._remove(key, current)
        return Status.SUCCESS

    def arithmetic(
        self,
        key: bytes,
        delta: int,
        initial: int,
        exptime: int,
        cas: int,
        decrement: bool,
    ) -> tuple[Status, int, Item | None]:
        """incr / decr on a decimal value: (status, new value, item).

        A missing item is created with `initial` unless exptime is 0xFFFFFFFF.
        Increments wrap at 2**64; decrements stop at 0.
        """
        current = self.get(key)
        if current is None:
            if exptime == 0xFFFFFFFF:
                return Status.KEY_ENOENT, 0, None
            item = self._put(key, b"%d" % initial, 0, self.expiry(exptime))
            return Status.SUCCESS, initial, item
        if cas and current.cas != cas:
            return Status.KEY_EEXISTS, 0, None
        digits = current.value.strip()
        if not digits.isdigit() or len(digits) > 20 or int(digits) >= U64:
            return Status.DELTA_BADVAL, 0, None
        number = int(digits)
        number = max(0, number - delta) if decrement else (number + delta) % U64
        item = self._put(key, b"%d" % number, current.flags, current.expires)
        return Status.SUCCESS, number, item

    def touch(self, key: bytes, exptime: int) -> Item | None:
        """A new expiry for the live item under `key` (None: no such item). An
        expiry already past drops the item, as a set with it would."""
        item = self.get(key)
        if item is None:
            return None
        expires = self.expiry(exptime)
        if expires and expires <= self.clock():
            self._remove(key, item)
            return item
        if item.expires:
            self._unindex(key, item.expires)
        item.expires = expires
        if expires:
            self._index(key, expires)
        return item

    def flush(self, delay: int) -> None:
        """flush_all: now, or (delay > 0) every item alive at that time expires then."""
        if delay:
            self._flush_at = self.expiry(delay)
        else:
            self._clear()

    def _clear(self) -> None:
        self.items.clear()
        self._expiring.clear()
        self.bytes_used = 0
        self._flush_at = 0.0

    # -- periodic reclaim -----------------------------------------------------------------

    def reclaim(
        self, max_items: int = RECLAIM_ITEMS, max_seconds: int = RECLAIM_SECONDS
    ) -> int:
        """Drop expired items nobody read: those expiring in the seconds wholly
        past, from where the last call stopped, at most `max_items` of them and
        `max_seconds` seconds walked. Returns how many were dropped."""
        if self._flush_at:
            self._flush_if_due()
        now = int(self.clock())  # every item of a second before `now` has expired
        expiring = self._expiring
        if not expiring:
            self._next_second = max(self._next_second, now)
            return 0
        dropped = 0
        second = self._next_second
        stop = min(now, second + max_seconds)
        items = self.items
        while second < stop and dropped < max_items:
            keys = expiring.get(second)
            if keys is None:
                second += 1
                continue
            if type(keys) is bytes:
                keys = {keys}
            while keys and dropped < max_items:
                key = keys.pop()
                item = items.pop(key)
                self.bytes_used -= self.charge(key, item.value)
                dropped += 1
            if keys:
                expiring[second] = keys
                break  # budget spent: this second goes on next time
            del expiring[second]
            second += 1
        self._next_second = second
        self.reclaimed += dropped
        return dropped

    def __len__(self) -> int:
        return len(self.items)
