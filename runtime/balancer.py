"""Load balancing of accepted connections over worker event loops.

The multi-process engine (``protogen.runtime.multicore``) in *acceptor* mode
accepts every connection in the parent and hands it to one worker; the
policy that picks the worker lives here, as in gnet:

``round-robin``
    Workers in turn.  With N workers and k*N connections each gets k.
``least-connections``
    The worker holding the fewest live connections.  Workers publish their
    live count in :class:`ConnectionCounters` (shared memory); the parent adds
    connections it has handed over that the worker has not adopted yet, so a
    burst of accepts does not all land on the worker that looked idle.  Ties
    go to the lowest index.
``source-hash``
    ``crc32(remote IP) % N``.  **The port is not included**: every connection
    from one client IP sticks to one worker (gnet hashes ``ip:port``, which
    spreads one client's connections; we prefer affinity, e.g. for per-client
    caches).  Unix-socket peers have no address, so they fall back to
    round-robin.

``reuseport`` is not a balancer: every worker binds its own ``SO_REUSEPORT``
listener and the kernel spreads connections (UDP always works that way).
"""

from __future__ import annotations

import abc
import mmap
import socket
import zlib
from typing import Any

__all__ = [
    "ACCEPTOR_POLICIES",
    "POLICIES",
    "Balancer",
    "ConnectionCounters",
    "LeastConnections",
    "RoundRobin",
    "SourceAddrHash",
    "new_balancer",
    "normalize_policy",
]

ROUND_ROBIN = "round-robin"
LEAST_CONNECTIONS = "least-connections"
SOURCE_HASH = "source-hash"
REUSEPORT = "reuseport"
ACCEPTOR_POLICIES = (ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_HASH)
POLICIES = ACCEPTOR_POLICIES + (REUSEPORT,)

_ALIASES = {
    "round-robin": ROUND_ROBIN,
    "roundrobin": ROUND_ROBIN,
    "rr": ROUND_ROBIN,
    "least-connections": LEAST_CONNECTIONS,
    "leastconnections": LEAST_CONNECTIONS,
    "least-conn": LEAST_CONNECTIONS,
    "source-hash": SOURCE_HASH,
    "source-addr-hash": SOURCE_HASH,
    "sourceaddrhash": SOURCE_HASH,
    "reuseport": REUSEPORT,
    "reuse-port": REUSEPORT,
}


def normalize_policy(policy: str) -> str:
    """Canonical policy name; accepts ``_`` for ``-`` and gnet-style spellings."""
    key = str(policy).strip().lower().replace("_", "-")
    try:
        return _ALIASES[key]
    except KeyError:
        raise ValueError(
            f"unknown load_balancing policy {policy!r}; expected one of "
            + ", ".join(POLICIES)
        ) from None


class ConnectionCounters:
    """Per-worker counters in anonymous shared memory (``mmap``, ``MAP_SHARED``).

    Created in the parent before the workers are forked, so every worker
    sees the same pages.  Each slot has exactly one writer (its worker), and
    aligned 8-byte stores are not torn on the platforms we run on, so no lock
    is needed; readers may see a value a moment old, which is fine for
    balancing and ``count_connections()``.

    Fields per worker: ``conns`` - the live connection count and the number
    of sockets adopted from the parent, packed into one 64-bit word
    (``adopted mod 2**32 << 32 | live``) so the parent always reads a
    consistent pair: with two words it could see a connection counted twice
    (live and still in flight) or not at all, and least-connections would
    wobble; then ``opened``/``closed`` (totals) and ``bytes_in``/``bytes_out``,
    published periodically by the worker.
    """

    FIELDS = ("conns", "opened", "closed", "bytes_in", "bytes_out")
    CONNS, OPENED, CLOSED, BYTES_IN, BYTES_OUT = range(5)
    _SLOT = len(FIELDS)
    _LOW = 0xFFFFFFFF

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self.workers = workers
        size = max(mmap.PAGESIZE, workers * self._SLOT * 8)
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
        self._values = memoryview(self._map).cast("Q")

    def get(self, worker: int, field: int) -> int:
        return self._values[worker * self._SLOT + field]

    def set(self, worker: int, field: int, value: int) -> None:
        """Single writer per slot: only the owning worker may call it."""
        self._values[worker * self._SLOT + field] = value

    def publish_conns(self, worker: int, live: int, adopted: int) -> None:
        """One store of the worker's live count and adopted total (worker only)."""
        self._values[worker * self._SLOT] = (adopted & self._LOW) << 32 | live

    def conns(self, worker: int) -> tuple[int, int]:
        """``(live, adopted mod 2**32)`` read in one load."""
        word = self._values[worker * self._SLOT]
        return word & self._LOW, word >> 32

    def live(self, worker: int) -> int:
        return self._values[worker * self._SLOT] & self._LOW

    def load(self, worker: int, assigned: int) -> int:
        """Live connections plus those assigned by the parent, not yet adopted."""
        live, adopted = self.conns(worker)
        in_flight = (assigned - adopted) & self._LOW
        return live + (in_flight if in_flight < 1 << 31 else 0)

    def total_live(self) -> int:
        """Live connections summed over every worker (0 once closed)."""
        if self._map.closed:
            return 0
        values, slot, low = self._values, self._SLOT, self._LOW
        return sum(values[w * slot] & low for w in range(self.workers))

    def total(self, field: int) -> int:
        """Sum over every worker (0 once the counters are closed)."""
        if self._map.closed:
            return 0
        values, slot = self._values, self._SLOT
        return sum(values[w * slot + field] for w in range(self.workers))

    def reset(self, worker: int) -> None:
        """Zero a slot (a restarted worker starts with no connections)."""
        base = worker * self._SLOT
        for offset in range(self._SLOT):
            self._values[base + offset] = 0

    def snapshot(self, worker: int) -> dict[str, int]:
        base = worker * self._SLOT
        values = {name: self._values[base + i] for i, name in enumerate(self.FIELDS)}
        values["live"], values["adopted"] = self.conns(worker)
        del values["conns"]
        return values

    def close(self) -> None:
        if not self._map.closed:
            self._values.release()
            self._map.close()


class Balancer(abc.ABC):
    """Chooses the worker index for a newly accepted connection."""

    name: str

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self.workers = workers

    @abc.abstractmethod
    def choose(self, remote_addr: Any) -> int:
        """Worker index in ``range(workers)`` for a peer at ``remote_addr``."""

    def handed(self, worker: int) -> None:
        """Called when a connection is assigned to ``worker`` (before it is sent)."""


class RoundRobin(Balancer):
    name = ROUND_ROBIN

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._next = 0

    def choose(self, remote_addr: Any) -> int:
        index = self._next
        self._next = (index + 1) % self.workers
        return index


class LeastConnections(Balancer):
    name = LEAST_CONNECTIONS

    def __init__(self, workers: int, counters: ConnectionCounters) -> None:
        super().__init__(workers)
        self._counters = counters
        # Sockets the parent has passed to each worker (parent-local).
        self._handed = [0] * workers

    def load(self, worker: int) -> int:
        return self._counters.load(worker, self._handed[worker])

    def choose(self, remote_addr: Any) -> int:
        best, best_load = 0, None
        for worker in range(self.workers):
            load = self.load(worker)
            if best_load is None or load < best_load:
                best, best_load = worker, load
        return best

    def handed(self, worker: int) -> None:
        self._handed[worker] += 1

    def worker_restarted(self, worker: int) -> None:
        """A replacement worker starts with fresh counters."""
        self._handed[worker] = 0


class SourceAddrHash(Balancer):
    """``crc32(packed remote IP) % workers``; the port is deliberately ignored."""

    name = SOURCE_HASH

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self._fallback = RoundRobin(workers)

    def choose(self, remote_addr: Any) -> int:
        key = ip_key(remote_addr)
        if key is None:
            return self._fallback.choose(remote_addr)
        return zlib.crc32(key) % self.workers


def ip_key(remote_addr: Any) -> bytes | None:
    """The packed IP of an ``accept()`` address, or None (unix peers)."""
    if not isinstance(remote_addr, tuple) or not remote_addr:
        return None
    host = remote_addr[0]
    if not isinstance(host, str) or not host:
        return None
    # An IPv4-mapped IPv6 peer (dual-stack listener) hashes like plain IPv4.
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, host.split("%", 1)[0])
        except OSError:
            continue
    return host.encode()


def new_balancer(policy: str, workers: int, counters: ConnectionCounters) -> Balancer:
    """The balancer for an acceptor-mode policy name (see :func:`normalize_policy`)."""
    policy = normalize_policy(policy)
    if policy == ROUND_ROBIN:
        return RoundRobin(workers)
    if policy == LEAST_CONNECTIONS:
        return LeastConnections(workers, counters)
    if policy == SOURCE_HASH:
        return SourceAddrHash(workers)
    raise ValueError(f"{policy!r} has no balancer: workers accept for themselves")
