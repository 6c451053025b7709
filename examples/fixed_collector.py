"""A sensor-readings collector on the `sensors` protocol (`fixed.proto.dsl`).

    protogen serve examples/fixed.proto.dsl --handler examples.fixed_collector:SensorCollector

Every frame is a fixed 16-byte `Reading`. The spec has one frame type, so the
collector speaks with it both ways, telling the two uses apart by `version`:

- a **report** (version 1) from a sensor: `value` is the measurement and `delta`
  its age in seconds (0 = just now). The collector validates it (a finite value
  within the kind's physical range, an age between 0 and `MAX_AGE`), adds it to
  the aggregate of that (sensor_id, kind), and acks it;
- a **query** (version 2) from a dashboard: nothing is recorded, the answer is the
  current aggregate;
- the **answer** to both is a summary (version 2) with the same kind and
  sensor_id, `delta` = how many readings were accepted so far and `value` = their
  mean (0.0 before the first one). A report that fails validation is answered
  with `delta` = `REJECTED` (-1) and the unchanged mean.

Bad magic, an unknown version or kind are protocol errors raised by the generated
decoder (`InvalidValue`): they close that connection only. Over udp, each
datagram of readings gets one answer datagram per reading.

`collector.aggregates[(sensor_id, kind)]` holds count, mean, min and max; the
totals are printed on shutdown. With `--loops N` each worker process keeps its
own aggregates (see docs/multicore.md).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from sensors_codec import Kind, Reading
from sensors_handler import SensorsHandler

__all__ = [
    "Aggregate",
    "MAX_AGE",
    "QUERY",
    "REJECTED",
    "REPORT",
    "SensorCollector",
    "VALID_RANGE",
]

REPORT = 1  # version of a measurement sent by a sensor
QUERY = 2  # version of a question, and of every answer
REJECTED = -1  # `delta` of the answer to a report that failed validation
MAX_AGE = 3600  # seconds: older reports are stale
# Physically plausible values per kind: °C, % relative humidity, hPa.
VALID_RANGE: dict[Kind, tuple[float, float]] = {
    Kind.temperature: (-90.0, 60.0),
    Kind.humidity: (0.0, 100.0),
    Kind.pressure: (300.0, 1100.0),
}


@dataclass
class Aggregate:
    """The accepted readings of one (sensor, kind)."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)


class SensorCollector(SensorsHandler):
    """Validates reports, aggregates them per (sensor_id, kind), answers each frame."""

    def __init__(self) -> None:
        super().__init__()
        self.aggregates: dict[tuple[int, Kind], Aggregate] = {}
        self.rejected = 0

    def on_reading(self, conn: Any, frame: Reading) -> None:
        # dispatch on kind: on_temperature, on_humidity and on_pressure all land here
        # because the rules differ only by VALID_RANGE.
        key = (frame.sensor_id, frame.kind)
        aggregate = self.aggregates.get(key)
        if frame.version == REPORT:
            if not self.is_valid(frame):
                self.rejected += 1
                self._answer(conn, frame, REJECTED, aggregate)
                return
            if aggregate is None:
                aggregate = self.aggregates[key] = Aggregate()
            aggregate.add(frame.value)
        self._answer(conn, frame, aggregate.count if aggregate else 0, aggregate)

    @staticmethod
    def is_valid(frame: Reading) -> bool:
        low, high = VALID_RANGE[frame.kind]
        return low <= frame.value <= high and 0 <= frame.delta <= MAX_AGE

    def _answer(
        self, conn: Any, frame: Reading, delta: int, aggregate: Aggregate | None
    ) -> None:
        summary = Reading(
            version=QUERY,
            kind=frame.kind,
            sensor_id=frame.sensor_id,
            delta=delta,
            value=aggregate.mean if aggregate else 0.0,
        )
        self.send(conn, summary)

    def on_shutdown(self, engine: Any) -> None:
        for (sensor_id, kind), aggregate in sorted(self.aggregates.items()):
            print(
                f"sensor {sensor_id} {kind.name}: {aggregate.count} readings,"
                f" mean {aggregate.mean:.2f}, min {aggregate.minimum:.2f},"
                f" max {aggregate.maximum:.2f}",
                file=sys.stderr,
            )
        if self.rejected:
            print(f"{self.rejected} readings rejected", file=sys.stderr)
