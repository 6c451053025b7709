"""BufferPool size classes, reuse, retention caps and oversize requests."""

from __future__ import annotations

import os
import threading

import pytest

from protogen.runtime.buffer import (
    DEFAULT_SIZE_CLASSES,
    KiB,
    MiB,
    BufferPool,
    default_pool,
)


def test_default_classes_go_from_4k_to_4m_at_most_a_quarter_apart():
    classes = DEFAULT_SIZE_CLASSES
    assert classes[:5] == (4 * KiB, 8 * KiB, 12 * KiB, 16 * KiB, 20 * KiB)
    assert classes[-1] == 4 * MiB and BufferPool().max_size == 4 * MiB
    assert list(classes) == sorted(set(classes))
    for smaller, bigger in zip(classes, classes[1:]):
        assert bigger <= max(smaller * 1.25, smaller + 4 * KiB)


@pytest.mark.parametrize(
    "request_size, class_size",
    [
        (0, 4 * KiB),
        (1, 4 * KiB),
        (4 * KiB, 4 * KiB),
        (4 * KiB + 1, 8 * KiB),
        (60_000, 64 * KiB),
        (64 * KiB, 64 * KiB),
        (200_000, 224 * KiB),
        (MiB, MiB),
        (MiB + 1, 1280 * KiB),
        (4 * MiB, 4 * MiB),
    ],
)
def test_acquire_returns_the_smallest_class_that_fits(request_size, class_size):
    pool = BufferPool()
    buf = pool.acquire(request_size)
    assert type(buf) is bytearray
    assert len(buf) == class_size
    assert pool.class_for(request_size) == class_size


def test_released_buffers_are_reused():
    pool = BufferPool()
    first = pool.acquire(1000)
    pool.release(first)
    again = pool.acquire(4000)  # same class
    assert again is first
    other_class = pool.acquire(5000)
    assert other_class is not first and len(other_class) == 8 * KiB
    stats = pool.stats
    assert (stats.hits, stats.misses, stats.released) == (1, 2, 1)


def test_reuse_is_lifo_per_class():
    pool = BufferPool()
    a, b = pool.acquire(10), pool.acquire(10)
    pool.release(a)
    pool.release(b)
    assert pool.acquire(10) is b  # the most recently used buffer is cache-warm
    assert pool.acquire(10) is a
    fresh = pool.acquire(10)
    assert fresh is not a and fresh is not b


def test_retention_is_capped_per_class():
    pool = BufferPool(max_per_class=3)
    bufs = [pool.acquire(100) for _ in range(5)]
    for buf in bufs:
        pool.release(buf)
    stats = pool.stats
    assert stats.retained == 3
    assert stats.retained_bytes == 3 * 4 * KiB
    assert stats.released == 3 and stats.dropped == 2
    reused = [pool.acquire(100) for _ in range(4)]
    assert sum(any(r is b for b in bufs) for r in reused) == 3
    assert pool.stats.misses == 5 + 1


def test_byte_budget_limits_large_classes():
    pool = BufferPool(max_per_class=32, max_bytes_per_class=8 * MiB)
    bigs = [pool.acquire(4 * MiB) for _ in range(4)]
    for buf in bigs:
        pool.release(buf)
    assert pool.stats.retained == 2  # 8 MiB budget / 4 MiB buffers
    smalls = [pool.acquire(1) for _ in range(40)]
    for buf in smalls:
        pool.release(buf)
    assert pool.stats.retained == 2 + 32  # small class limited by the count cap


def test_all_classes_together_retain_at_most_max_retained():
    pool = BufferPool(max_retained=10 * MiB)
    bufs = [pool.acquire(size) for size in (2 * MiB, 3 * MiB, 4 * MiB, 4 * MiB)]
    for buf in bufs:
        pool.release(buf)
    assert pool.stats.retained_bytes <= 10 * MiB
    assert pool.stats.retained == 3 and pool.stats.dropped == 1
    pool.acquire(4 * MiB)  # taken back out: room for another
    pool.release(bytearray(4 * MiB))
    assert pool.stats.retained_bytes == 2 * MiB + 3 * MiB + 4 * MiB


def test_oversize_requests_get_an_exact_unpooled_buffer():
    pool = BufferPool(size_classes=(1024, 4096))
    buf = pool.acquire(5000)
    assert len(buf) == 5000
    assert pool.class_for(5000) is None
    pool.release(buf)  # silently dropped: not a class size
    stats = pool.stats
    assert stats.oversize == 1 and stats.retained == 0 and stats.dropped == 1
    assert pool.acquire(5000) is not buf


def test_resized_or_foreign_buffers_are_dropped_not_pooled():
    pool = BufferPool()
    buf = pool.acquire(100)
    buf.extend(b"more")  # no longer a class size
    pool.release(buf)
    pool.release(bytearray(12345))
    pool.release(bytes(4 * KiB))  # type: ignore[arg-type]  # immutable: unusable
    assert pool.stats.retained == 0
    assert pool.stats.dropped == 3
    foreign = bytearray(4 * KiB)  # a class-sized buffer from elsewhere is welcome
    pool.release(foreign)
    assert pool.acquire(1) is foreign


def test_double_release_is_detected():
    pool = BufferPool()
    buf = pool.acquire(10)
    pool.release(buf)
    with pytest.raises(ValueError, match="released twice"):
        pool.release(buf)
    assert pool.acquire(10) is buf
    assert pool.acquire(10) is not buf  # handed out once, not twice


def test_clear_drops_retained_buffers():
    pool = BufferPool()
    buf = pool.acquire(10)
    pool.release(buf)
    pool.clear()
    assert pool.stats.retained == 0
    assert pool.acquire(10) is not buf


def test_custom_classes_are_sorted_and_validated():
    pool = BufferPool(size_classes=(2048, 512, 2048))
    assert pool.size_classes == (512, 2048)
    assert len(pool.acquire(513)) == 2048
    with pytest.raises(ValueError):
        BufferPool(size_classes=())
    with pytest.raises(ValueError):
        BufferPool(size_classes=(0, 10))
    with pytest.raises(ValueError):
        BufferPool(max_per_class=-1)
    with pytest.raises(ValueError):
        BufferPool().acquire(-1)


def test_zero_retention_pool_never_keeps_anything():
    pool = BufferPool(max_per_class=0)
    buf = pool.acquire(1)
    pool.release(buf)
    assert pool.stats.retained == 0
    assert pool.acquire(1) is not buf


def test_pooled_buffers_work_with_recv_into():
    import socket

    pool = BufferPool()
    a, b = socket.socketpair()
    with a, b:
        buf = pool.acquire(8)
        b.sendall(b"payload")
        a.settimeout(5)
        n = a.recv_into(buf)
        assert bytes(memoryview(buf)[:n]) == b"payload"
        pool.release(buf)


def test_concurrent_use_never_hands_one_buffer_to_two_owners():
    pool = BufferPool(max_per_class=8)
    errors: list[str] = []

    def worker() -> None:
        for _ in range(2000):
            buf = pool.acquire(100)
            marker = threading.get_ident().to_bytes(8, "little")
            buf[:8] = marker
            if bytes(buf[:8]) != marker:
                errors.append("buffer shared between threads")
            pool.release(buf)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    stats = pool.stats
    assert stats.hits + stats.misses == 8000
    assert stats.retained <= 8


def test_default_pool_is_a_per_process_singleton():
    assert default_pool() is default_pool()
    assert isinstance(default_pool(), BufferPool)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_default_pool():
    parent_pool = default_pool()
    buf = parent_pool.acquire(10)
    parent_pool.release(buf)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running pytest teardown
        try:
            child = default_pool()
            ok = child is not parent_pool and child.stats.retained == 0
            os.write(write_fd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        result = os.read(read_fd, 1)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    assert result == b"1"
    assert default_pool() is parent_pool
