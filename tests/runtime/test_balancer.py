"""Balancer policies and the shared-memory connection counters (no sockets served)."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from protogen.runtime.balancer import (
    ConnectionCounters,
    LeastConnections,
    RoundRobin,
    SourceAddrHash,
    ip_key,
    new_balancer,
    normalize_policy,
)


@pytest.fixture
def counters():
    shared = ConnectionCounters(4)
    yield shared
    shared.close()


def test_normalize_policy_accepts_spellings_and_rejects_unknown():
    assert normalize_policy("round_robin") == "round-robin"
    assert normalize_policy("LEAST-CONNECTIONS") == "least-connections"
    assert normalize_policy("source-addr-hash") == "source-hash"
    assert normalize_policy("reuseport") == "reuseport"
    with pytest.raises(ValueError, match="random"):
        normalize_policy("random")


def test_round_robin_cycles_evenly():
    balancer = RoundRobin(3)
    picks = [balancer.choose(("127.0.0.1", 1000 + i)) for i in range(300)]
    assert picks[:6] == [0, 1, 2, 0, 1, 2]
    assert Counter(picks) == {0: 100, 1: 100, 2: 100}


def test_least_connections_picks_the_least_loaded_worker(counters):
    balancer = LeastConnections(4, counters)
    for worker, live in enumerate([5, 2, 7, 3]):
        counters.publish_conns(worker, live, 0)
    assert balancer.choose(None) == 1
    counters.publish_conns(1, 9, 0)
    assert balancer.choose(None) == 3
    counters.publish_conns(0, 3, 0)
    assert balancer.choose(None) == 0  # ties go to the lowest index


def test_least_connections_counts_connections_in_flight(counters):
    """A burst of accepts must spread even before workers report anything."""
    balancer = LeastConnections(4, counters)
    picks = []
    for _ in range(8):
        worker = balancer.choose(None)
        balancer.handed(worker)
        picks.append(worker)
    assert Counter(picks) == {0: 2, 1: 2, 2: 2, 3: 2}
    # Adopting moves a connection from "in flight" to "live": same load.
    counters.publish_conns(1, 2, 2)
    assert balancer.load(1) == 2
    # Worker 0 adopts its two and closes both: it is the least loaded again.
    counters.publish_conns(0, 0, 2)
    for worker in (1, 2, 3):
        counters.publish_conns(worker, 2, 2)
    assert balancer.choose(None) == 0
    balancer.worker_restarted(2)
    counters.reset(2)
    assert balancer.load(2) == 0


def test_source_hash_ignores_the_port_and_spreads_addresses():
    balancer = SourceAddrHash(2)
    for host in ("127.0.0.2", "127.0.0.3", "10.1.2.3", "::1", "2001:db8::7"):
        picks = {balancer.choose((host, port)) for port in range(40000, 40050)}
        assert len(picks) == 1, host
    spread = Counter(
        balancer.choose((f"10.0.{i // 256}.{i % 256}", 5)) for i in range(1000)
    )
    assert set(spread) == {0, 1}
    assert min(spread.values()) > 350


def test_source_hash_treats_ipv4_mapped_ipv6_like_ipv4():
    balancer = SourceAddrHash(7)
    assert balancer.choose(("::ffff:192.0.2.5", 1, 0, 0)) == balancer.choose(
        ("192.0.2.5", 2)
    )
    assert ip_key(("192.0.2.5", 1)) == bytes([192, 0, 2, 5])


def test_source_hash_falls_back_to_round_robin_for_unix_peers():
    balancer = SourceAddrHash(2)
    assert [balancer.choose("") for _ in range(4)] == [0, 1, 0, 1]
    assert ip_key("") is None and ip_key(None) is None


def test_new_balancer_builds_each_policy(counters):
    assert isinstance(new_balancer("round-robin", 4, counters), RoundRobin)
    assert isinstance(new_balancer("least_connections", 4, counters), LeastConnections)
    assert isinstance(new_balancer("source-hash", 4, counters), SourceAddrHash)
    with pytest.raises(ValueError, match="reuseport"):
        new_balancer("reuseport", 4, counters)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_counters_are_shared_with_forked_children(counters):
    pid = os.fork()
    if pid == 0:
        try:
            counters.publish_conns(2, 42, 7)
            counters.set(3, counters.OPENED, 5)
            counters.set(3, counters.BYTES_IN, 1 << 40)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert counters.live(2) == 42 and counters.conns(2) == (42, 7)
    assert counters.get(3, counters.BYTES_IN) == 1 << 40
    assert counters.total(counters.OPENED) == 5
    assert counters.total_live() == 42
    assert counters.snapshot(2)["live"] == 42 and counters.snapshot(2)["adopted"] == 7
    counters.reset(2)
    assert counters.total_live() == 0


def test_live_and_adopted_share_one_word_and_wrap_safely(counters):
    counters.publish_conns(0, 3, (1 << 32) + 5)  # adopted is kept mod 2**32
    assert counters.conns(0) == (3, 5)
    assert counters.load(0, (1 << 32) + 9) == 3 + 4  # 4 still in flight
    assert counters.load(0, 5) == 3  # none in flight
    assert counters.load(0, 4) == 3  # never negative
