"""A pool of reusable bytearrays in size classes at most 25 % apart.

Allocating (and zero-filling) a fresh 64 KiB bytearray for every read or large
write is measurable at high connection churn; recycling a few per size class
removes that cost while a hard cap per class bounds the memory the pool keeps.

    buf = pool.acquire(n)      # len(buf) is the smallest class >= n
    ...                        # contents are undefined: recv_into() overwrites
    pool.release(buf)          # hand it back exactly once, keep no references

Requests larger than the biggest class get an exact, unpooled bytearray;
releasing it (or any bytearray whose length is not a class size, e.g. one that
was resized) simply drops it. The pool is thread-safe.
"""

from __future__ import annotations

import bisect
import os
import threading
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB


def _size_classes(smallest: int, largest: int) -> tuple[int, ...]:
    """4, 8, 12, 16 KiB, then four classes per doubling (x1.25, x1.5, x1.75, x2):
    a buffer is never more than a quarter (or 4 KiB) bigger than its request, so
    an unfinished frame pins little more than its size."""
    classes = [smallest, 2 * smallest, 3 * smallest, 4 * smallest]
    base = 4 * smallest
    while base < largest:
        classes += [base * step // 4 for step in (5, 6, 7, 8)]
        base *= 2
    return tuple(size for size in classes if size <= largest)


DEFAULT_SIZE_CLASSES: tuple[int, ...] = _size_classes(4 * KiB, 4 * MiB)
DEFAULT_MAX_PER_CLASS = 32
# Big buffers are kept more sparingly: the retained bytes per class stay bounded
# by this budget as well as by max_per_class, and all classes together by
# DEFAULT_MAX_RETAINED.
DEFAULT_MAX_BYTES_PER_CLASS = 8 * MiB
DEFAULT_MAX_RETAINED = 64 * MiB


@dataclass(frozen=True)
class PoolStats:
    """Counters since the pool was created (a snapshot)."""

    hits: int  # acquire() served from a free list
    misses: int  # acquire() had to allocate a pooled-size buffer
    oversize: int  # acquire() beyond the largest class (exact, unpooled)
    released: int  # release() kept the buffer for reuse
    dropped: int  # release() let the buffer go (cap reached or foreign size)
    retained: int  # buffers currently kept
    retained_bytes: int  # their total size


class BufferPool:
    """Size-classed free lists of bytearrays with a per-class retention cap."""

    def __init__(
        self,
        size_classes: tuple[int, ...] = DEFAULT_SIZE_CLASSES,
        *,
        max_per_class: int = DEFAULT_MAX_PER_CLASS,
        max_bytes_per_class: int = DEFAULT_MAX_BYTES_PER_CLASS,
        max_retained: int = DEFAULT_MAX_RETAINED,
    ) -> None:
        classes = tuple(sorted(set(size_classes)))
        if not classes or classes[0] <= 0:
            raise ValueError(f"size classes must be positive, got {size_classes!r}")
        if max_per_class < 0:
            raise ValueError(f"max_per_class must be >= 0, got {max_per_class}")
        self.size_classes = classes
        self.max_size = classes[-1]
        # How many buffers each class may keep: the count cap, further limited by
        # the byte budget (but always at least one so every class can recycle).
        self._caps = {
            size: (
                min(max_per_class, max(1, max_bytes_per_class // size))
                if max_per_class
                else 0
            )
            for size in classes
        }
        self._free: dict[int, list[bytearray]] = {size: [] for size in classes}
        self._max_retained = max_retained
        self._retained_bytes = 0
        # ids of buffers sitting in free lists: O(1) double-release detection.
        # An id is unique while its object is alive, and free buffers are alive.
        self._free_ids: set[int] = set()
        self._lock = threading.Lock()
        self._hits = self._misses = self._oversize = 0
        self._released = self._dropped = 0

    def class_for(self, min_size: int) -> int | None:
        """The size class acquire(min_size) would use; None if oversize."""
        classes = self.size_classes
        index = bisect.bisect_left(classes, min_size)
        return classes[index] if index < len(classes) else None

    def acquire(self, min_size: int) -> bytearray:
        """A bytearray of at least `min_size` bytes (contents undefined)."""
        if min_size < 0:
            raise ValueError(f"buffer size must be >= 0, got {min_size}")
        classes = self.size_classes
        index = bisect.bisect_left(classes, min_size)
        if index == len(classes):
            with self._lock:
                self._oversize += 1
            return bytearray(min_size)
        size = classes[index]
        with self._lock:
            free = self._free[size]
            if free:
                buf = free.pop()
                self._free_ids.discard(id(buf))
                self._retained_bytes -= size
                self._hits += 1
                return buf
            self._misses += 1
        return bytearray(size)

    def release(self, buf: bytearray) -> None:
        """Return `buf` for reuse; the caller must not touch it afterwards."""
        size = len(buf)
        with self._lock:
            free = self._free.get(size)
            if free is None or type(buf) is not bytearray:
                self._dropped += 1
                return
            if id(buf) in self._free_ids:
                raise ValueError(
                    f"bytearray of {size} bytes released twice to the buffer pool"
                )
            if (
                len(free) >= self._caps[size]
                or self._retained_bytes + size > self._max_retained
            ):
                self._dropped += 1
                return
            free.append(buf)
            self._free_ids.add(id(buf))
            self._retained_bytes += size
            self._released += 1

    def clear(self) -> None:
        """Drop every retained buffer (e.g. to hand memory back after a burst)."""
        with self._lock:
            for free in self._free.values():
                free.clear()
            self._free_ids.clear()
            self._retained_bytes = 0

    @property
    def stats(self) -> PoolStats:
        with self._lock:
            retained = sum(len(free) for free in self._free.values())
            retained_bytes = sum(size * len(free) for size, free in self._free.items())
            return PoolStats(
                hits=self._hits,
                misses=self._misses,
                oversize=self._oversize,
                released=self._released,
                dropped=self._dropped,
                retained=retained,
                retained_bytes=retained_bytes,
            )

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<BufferPool classes={len(self.size_classes)} retained={s.retained} "
            f"({s.retained_bytes} bytes) hits={s.hits} misses={s.misses}>"
        )


_default_pool: BufferPool | None = None
_default_lock = threading.Lock()


def default_pool() -> BufferPool:
    """The process-wide pool (a forked child starts with a fresh, empty one)."""
    global _default_pool
    pool = _default_pool
    if pool is None:
        with _default_lock:
            if _default_pool is None:
                _default_pool = BufferPool()
            pool = _default_pool
    return pool


def _reset_after_fork() -> None:
    # The parent's lock may have been held mid-fork, and its retained buffers are
    # only copy-on-write pages the child should not pin.
    global _default_pool, _default_lock
    _default_pool = None
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
