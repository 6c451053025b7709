"""The memcached example's in-memory store: items with flags, expiry and CAS.

Pure data structure, no I/O: the handler maps protocol opcodes onto these methods
and their `Status` results onto response packets.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Callable

MAX_VALUE = 1024 * 1024  # memcached's default item size limit
# memcached reads an expiry up to 30 days as relative seconds, above as a unix time.
RELATIVE_EXPIRY_LIMIT = 60 * 60 * 24 * 30
U64 = 1 << 64


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
    """Key -> Item. Expired items vanish when next looked up."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.items: dict[bytes, Item] = {}
        self.total_items = 0
        self._last_cas = 0
        self._flush_at = 0.0  # a delayed flush_all takes effect at this time

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

    def get(self, key: bytes) -> Item | None:
        """The live item under `key`, or None (dropping it if it expired)."""
        if self._flush_at and self.clock() >= self._flush_at:
            self.items.clear()
            self._flush_at = 0.0
        item = self.items.get(key)
        if item is not None and item.expires and item.expires <= self.clock():
            del self.items[key]
            return None
        return item

    def _put(self, key: bytes, value: bytes, flags: int, expires: float) -> Item:
        item = Item(value, flags, expires, self._next_cas())
        self.items[key] = item
        self.total_items += 1
        return item

    # -- storage commands ---------------------------------------------------------------

    def store(
        self, mode: str, key: bytes, value: bytes, flags: int, exptime: int, cas: int
    ) -> tuple[Status, Item | None]:
        """set / add / replace. `cas` != 0 demands the item's current CAS."""
        if len(value) > MAX_VALUE:
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
        value = data + current.value if prepend else current.value + data
        if len(value) > MAX_VALUE:
            return Status.E2BIG, None
        return Status.SUCCESS, self._put(key, value, current.flags, current.expires)

    def delete(self, key: bytes, cas: int) -> Status:
        current = self.get(key)
        if current is None:
            return Status.KEY_ENOENT
        if cas and current.cas != cas:
            return Status.KEY_EEXISTS
        del self.items[key]
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
        item = self.get(key)
        if item is not None:
            item.expires = self.expiry(exptime)
        return item

    def flush(self, delay: int) -> None:
        """flush_all: now, or (delay > 0) every item alive at that time expires then."""
        if delay:
            self._flush_at = self.expiry(delay)
        else:
            self.items.clear()
            self._flush_at = 0.0

    def __len__(self) -> int:
        return len(self.items)

    def bytes_used(self) -> int:
        return sum(len(key) + len(item.value) for key, item in self.items.items())
