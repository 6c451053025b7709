"""examples/memcached/store.py on its own, with a fake clock: the memory limit and
LRU eviction, the expiry index and its bounded reclaim, the item size limit."""

from __future__ import annotations

import importlib.util
import sys
import tracemalloc
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "examples" / "memcached" / "store.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("memcached_example_store", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


store_module = _load()
Store, Status = store_module.Store, store_module.Status
KiB = 1024


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(limit: int = 64 * KiB, item_max: int = 4 * KiB, clock: Clock | None = None):
    return Store(limit, item_max, clock=clock or Clock())


def put(store, key: bytes, value: bytes, exptime: int = 0):
    return store.store("set", key, value, 0, exptime, 0)


def test_lru_eviction_keeps_within_the_limit_and_spares_recent_reads() -> None:
    store = make()
    value = b"v" * 1000
    for index in range(100):
        assert put(store, b"k%d" % index, value)[0] == Status.SUCCESS
        store.get(b"k0")  # k0 is read after every store: never the oldest
        assert store.bytes_used <= store.memory_limit
    assert store.get(b"k0") is not None
    assert store.get(b"k1") is None  # the least recently used went first
    assert store.get(b"k99") is not None
    assert store.evictions > 0
    assert store.bytes_used == sum(
        store.charge(key, item.value) for key, item in store.items.items()
    )


def test_overwrite_delete_and_concat_keep_the_accounting() -> None:
    store = make()
    put(store, b"a", b"1" * 100)
    put(store, b"a", b"2" * 10)
    store.concat(b"a", b"33", 0, prepend=False)
    put(store, b"b", b"x")
    store.delete(b"b", 0)
    assert store.get(b"a").value == b"2" * 10 + b"33"
    assert store.bytes_used == store.charge(b"a", b"2" * 10 + b"33")


def test_item_size_limit() -> None:
    store = make(item_max=2 * KiB)
    assert put(store, b"k", b"x" * (2 * KiB + 1))[0] == Status.E2BIG
    assert put(store, b"k", b"x" * (2 * KiB))[0] == Status.SUCCESS
    assert store.concat(b"k", b"y", 0, prepend=True)[0] == Status.E2BIG


@pytest.mark.parametrize(
    ("limit", "item_max", "words"),
    [(64 * KiB, 512, "under 1024"), (64 * KiB, 33 * KiB, "half of the memory")],
)
def test_limits_are_checked(limit: int, item_max: int, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Store(limit, item_max)


def test_expired_items_are_reclaimed_without_being_read() -> None:
    clock = Clock()
    store = make(limit=1024 * KiB, clock=clock)
    for index in range(100):
        put(store, b"e%d" % index, b"x", exptime=5)
    put(store, b"later", b"x", exptime=50)
    put(store, b"never", b"x")
    clock.now += 4
    assert store.reclaim() == 0
    clock.now += 2
    assert store.reclaim() == 100
    assert len(store) == 2 and store.reclaimed == 100
    assert store.bytes_used == store.charge(b"later", b"x") + store.charge(
        b"never", b"x"
    )
    clock.now += 100
    assert store.reclaim() == 1
    assert list(store.items) == [b"never"]


def test_reclaim_does_bounded_work_per_call() -> None:
    clock = Clock()
    store = make(limit=4096 * KiB, clock=clock)
    for index in range(250):
        put(store, b"e%d" % index, b"x", exptime=1)
    clock.now += 10
    assert [store.reclaim(max_items=100) for _ in range(4)] == [100, 100, 50, 0]
    # A long jump of the clock is walked a bounded number of seconds at a time.
    put(store, b"far", b"x", exptime=1000)
    clock.now += 5000
    assert store.reclaim(max_seconds=400) == 0
    assert store.reclaim(max_seconds=400) == 0
    assert store.reclaim(max_seconds=400) == 1


def test_touch_moves_an_item_in_the_expiry_index() -> None:
    clock = Clock()
    store = make(clock=clock)
    put(store, b"t", b"x", exptime=5)
    store.touch(b"t", 100)
    clock.now += 10
    assert store.reclaim() == 0 and store.get(b"t") is not None
    store.touch(b"t", 0)  # never expires now
    clock.now += 1000
    assert store.reclaim() == 0 and store.get(b"t") is not None


def test_a_store_with_an_expiry_already_past_keeps_nothing() -> None:
    clock = Clock()
    store = make(clock=clock)
    put(store, b"p", b"old")
    status, item = store.store("set", b"p", b"new", 0, int(clock.now) - 10, 0)
    assert status == Status.SUCCESS and item is not None
    assert store.get(b"p") is None and store.bytes_used == 0


def test_the_clock_going_back_is_followed() -> None:
    clock = Clock()
    store = make(clock=clock)
    clock.now -= 3600
    put(store, b"b", b"x", exptime=5)
    clock.now += 10
    assert store.reclaim() == 1


def test_flush_now_and_delayed() -> None:
    clock = Clock()
    store = make(clock=clock)
    put(store, b"a", b"x", exptime=100)
    store.flush(0)
    assert len(store) == 0 and store.bytes_used == 0
    put(store, b"b", b"x")
    store.flush(5)
    clock.now += 6
    store.reclaim()
    assert len(store) == 0 and store.bytes_used == 0


@pytest.mark.parametrize("expiry", ["none", "same-second", "own-second"])
def test_the_charge_covers_what_cpython_really_spends(expiry: str) -> None:
    """ITEM_OVERHEAD is an honest bound: the traced memory of a store under
    constant replacement and eviction stays within its limit."""
    for limit in (256 * KiB, 1024 * KiB):
        clock = Clock()
        tracemalloc.start()
        try:
            store = make(limit=limit, clock=clock)
            for index in range(limit // 20):
                exptime = {"none": 0, "same-second": 3600, "own-second": 3600 + index}
                key = (
                    b"new%07d" % index
                    if index % 3 == 0
                    else b"key%07d" % (index % (limit // 200))
                )
                put(store, key, b"v" * 20, exptime=exptime[expiry])
            traced, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert store.evictions > 0
        assert traced <= limit, f"{traced} bytes traced for a {limit}-byte limit"
