"""Response rate limiting for UDP: a token bucket per client network.

A DNS server answering UDP can be made to send its answers to a spoofed
address. `RateLimiter(rate)` allows `rate` responses per second to each IPv4
/24 (IPv6 /56) network, with a burst of one second's worth. Past it, one
response in `slip` goes out as an empty truncated reply (TC: a genuine client
retries over TCP, which cannot be spoofed) and the others are dropped, as
BIND's RRL does. TCP is never limited.

The table keeps the most recently seen `max_networks` networks: a flood from
many spoofed networks forgets the oldest, whose buckets would be full anyway.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimiter", "Verdict"]

MAX_NETWORKS = 65536


class Verdict(enum.Enum):
    SEND = 0
    SLIP = 1  # send an empty reply with TC set instead
    DROP = 2


class RateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        slip: int = 2,
        max_networks: int = MAX_NETWORKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"the response rate must be positive, not {rate}")
        if slip < 0:
            raise ValueError(f"slip must be 0 (drop all) or more, not {slip}")
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.slip = slip
        self.max_networks = max_networks
        self.clock = clock
        # network -> (tokens, time of the last refill, limited responses so far)
        self._buckets: dict[Any, tuple[float, float, int]] = {}

    def check(self, remote_addr: Any) -> Verdict:
        """Whether a response to `remote_addr` (a socket address) may go out."""
        network = _network(remote_addr[0])
        now = self.clock()
        buckets = self._buckets
        # pop and reinsert: the dict's order is then least recently seen first
        tokens, last, limited = buckets.pop(network, (self.burst, now, 0))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            buckets[network] = (tokens - 1.0, now, 0)
            verdict = Verdict.SEND
        else:
            limited += 1
            buckets[network] = (tokens, now, limited)
            slip = self.slip
            verdict = Verdict.SLIP if slip and limited % slip == 0 else Verdict.DROP
        if len(buckets) > self.max_networks:
            del buckets[next(iter(buckets))]
        return verdict


def _network(host: str) -> Any:
    """The /24 (IPv4) or /56 (IPv6) network of an address, as a hashable key."""
    address = ipaddress.ip_address(host.partition("%")[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return int(address) >> 8
    return (6, int(address) >> 72)
