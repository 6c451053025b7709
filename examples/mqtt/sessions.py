"""The broker's per-client state and its global memory budget.

A subscriber's connection queues what it cannot send yet up to the runtime's
`write_high_water`; past that the connection is write-paused and the broker
keeps further messages in the session's `backlog`, charged to one
`MemoryBudget` shared with the retained messages. When a message does not fit
the budget, a QoS 0 one is discarded for that subscriber and a QoS 1 one drops
the subscriber (MQTT cannot lose it silently). Publishers stop being read while
the queued bytes are over half the budget, and are read again under a quarter.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["MemoryBudget", "Message", "Session", "message_cost"]

# What a held message costs besides its topic and payload (tuple, refs, the
# encoded fixed header): a round figure, so that empty messages are not free.
MESSAGE_OVERHEAD = 64
# MQTT packet identifiers are 1..65535 (section 2.3.1).
MAX_PACKET_ID = 65535

Message = tuple[str, bytes, int, bool]  # topic, payload, QoS, retain


def message_cost(topic: str, payload: bytes) -> int:
    return len(topic) + len(payload) + MESSAGE_OVERHEAD


class MemoryBudget:
    """Bytes held by retained messages and backlogs, against one limit."""

    __slots__ = ("limit", "queued", "retained")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"memory budget must be positive, not {limit}")
        self.limit = limit
        self.retained = 0
        self.queued = 0

    @property
    def used(self) -> int:
        return self.retained + self.queued

    def fits(self, cost: int) -> bool:
        return self.used + cost <= self.limit

    @property
    def throttling(self) -> bool:
        """Over half the budget queued for slow subscribers: pause publishers."""
        return self.queued * 2 > self.limit

    @property
    def relieved(self) -> bool:
        """Under a quarter queued: throttled publishers may go on."""
        return self.queued * 4 <= self.limit


class Session:
    """One connected client: its subscriptions, will, packet identifiers and backlog."""

    __slots__ = (
        "awaiting_release",
        "backlog",
        "backlog_bytes",
        "client_id",
        "conn",
        "filters",
        "inflight",
        "next_id",
        "will",
    )

    def __init__(self, conn: Any, client_id: str) -> None:
        self.conn = conn
        self.client_id = client_id
        self.filters: dict[str, int] = {}  # topic filter -> granted QoS
        self.will: Message | None = None
        self.next_id = 1
        # QoS 1 deliveries the client has not acknowledged (PUBACK) yet.
        self.inflight: set[int] = set()
        # QoS 2 publishes received, delivered, waiting for the client's PUBREL:
        # a re-sent PUBLISH with one of these identifiers is not delivered again.
        self.awaiting_release: set[int] = set()
        # Messages held while the connection is write-paused, with their cost.
        self.backlog: deque[tuple[Message, int]] = deque()
        self.backlog_bytes = 0

    def packet_id(self) -> int | None:
        """A free identifier for a QoS 1 delivery; None if all are in flight."""
        if len(self.inflight) >= MAX_PACKET_ID:
            return None
        packet_id = self.next_id
        while packet_id in self.inflight:
            packet_id = packet_id % MAX_PACKET_ID + 1
        self.next_id = packet_id % MAX_PACKET_ID + 1
        self.inflight.add(packet_id)
        return packet_id
