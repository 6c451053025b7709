"""Prometheus metrics and a readiness answer (the `metrics` option).

Counting stays off the hot path: the loop already keeps plain integer
counters (`opened`, `closed`, `bytes_in`, `bytes_out`); `LoopMetrics` adds
only what the loop does not count, each as a plain int on the loop thread:
frames (a wrapper around the generated handler's frame callback, one extra
call per frame, installed only when metrics are on), errors that closed a
connection by kind (a close watcher), and the loop's lag (a timer every
`LAG_INTERVAL` seconds measuring how late it fires). Everything is read when
a scrape comes (`snapshot()`), and turned into the exposition format by
prometheus_client there.

With several worker processes, each worker writes its snapshot to a file of
a directory every `PUBLISH_INTERVAL` (one small write, atomic rename) and the
parent serves the endpoint from those files, one `worker` label per process.

`MetricsServer` is a minimal HTTP/1.0 responder driven by the caller's
poller (`add_reader`/`remove_reader`: the loop's, or the supervisor's
selector), so it never blocks the loop and needs no thread:
`GET /metrics` (text exposition), `GET /healthz` (200 `ok` while serving,
503 `draining` once shutdown or reload began), anything else 404.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from protogen.errors import ProtocolError

from .address import bind_listener, parse_address
from .conn import IdleTimeout, OutboundOverflow, ReadTimeout
from .inbound import BufferBudgetExceeded

if TYPE_CHECKING:  # pragma: no cover
    from .eventloop import EventLoop

__all__ = [
    "LAG_BUCKETS",
    "LoopMetrics",
    "MetricsServer",
    "SnapshotFiles",
    "exposition",
]

LAG_INTERVAL = 0.25
PUBLISH_INTERVAL = 0.5
# Seconds; a healthy loop answers its timer within a millisecond.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Errors that close a connection and count as protocol errors, by class name.
_ERROR_KINDS = (
    ProtocolError,
    OutboundOverflow,
    BufferBudgetExceeded,
    IdleTimeout,
    ReadTimeout,
)
MAX_REQUEST = 8192
MAX_SCRAPES = 64  # scrape connections open at once; the oldest makes room

Snapshot = dict[str, Any]


class LoopMetrics:
    """What one loop counts beyond its own counters; read with `snapshot()`."""

    def __init__(self, loop: EventLoop, handler: Any) -> None:
        self.loop = loop
        self.frames: dict[str, list[int]] = {}  # name -> [count] (a cell)
        self.errors: dict[str, int] = {}
        self.lag_counts = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        self.lag_count = 0
        self._expected = 0.0
        loop.watch(closed=self._closed)
        self._count_frames(handler)
        loop.call_soon_threadsafe(self._start_probe)

    # -- counting -----------------------------------------------------------------
    def _count_frames(self, handler: Any) -> None:
        """Wrap the generated handler's frame callbacks (instance attributes
        shadow the class's: the decode loop looks them up per read)."""
        frame = getattr(handler, "decoded_frame", None)
        callback = getattr(handler, "frame_callback", None)
        if not frame or not callback:
            return  # a hand-written handler: it may call count_frame itself
        cell = self.frames.setdefault(frame, [0])
        handler.__dict__[callback] = _counting(getattr(handler, callback), cell)
        dispatch = getattr(handler, "_dispatch", None)
        if isinstance(dispatch, dict):
            for key, method in list(dispatch.items()):
                dispatch[key] = _counting(method, cell)
            for name in dir(type(handler)):
                if name.startswith("on_unknown_"):
                    handler.__dict__[name] = _counting(getattr(handler, name), cell)

    def count_frame(self, name: str, n: int = 1) -> None:
        """For hand-written handlers: `n` frames named `name` were decoded."""
        cell = self.frames.get(name)
        if cell is None:
            cell = self.frames[name] = [0]
        cell[0] += n

    def count_error(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def _closed(self, conn: Any, err: BaseException | None) -> None:
        if err is not None and isinstance(err, _ERROR_KINDS):
            self.count_error(err)

    def _start_probe(self) -> None:
        self._expected = time.monotonic() + LAG_INTERVAL
        self.loop.call_later(LAG_INTERVAL, self._probe)

    def _probe(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._expected)
        index = 0
        for bound in LAG_BUCKETS:
            if lag <= bound:
                break
            index += 1
        self.lag_counts[index] += 1
        self.lag_sum += lag
        self.lag_count += 1
        if not self.loop.stopping:
            self._expected = now + LAG_INTERVAL
            self.loop.call_later(LAG_INTERVAL, self._probe)

    # -- reading ------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        loop = self.loop
        queued = 0
        for conn in loop.connections():
            queued += conn.outbound_buffered()
        return {
            "pid": os.getpid(),
            "opened": loop.opened,
            "closed": loop.closed,
            "open": loop.count_connections(),
            "bytes_in": loop.bytes_in,
            "bytes_out": loop.bytes_out,
            "queued": queued,
            "frames": {name: cell[0] for name, cell in self.frames.items()},
            "errors": dict(self.errors),
            "lag_counts": list(self.lag_counts),
            "lag_sum": self.lag_sum,
            "lag_count": self.lag_count,
        }


def _counting(callback: Callable[..., Any], cell: list[int]) -> Callable[..., Any]:
    # A handler counted by an earlier loop (an engine run twice) is unwrapped:
    # one increment per frame, into this loop's cell.
    callback = getattr(callback, "__wrapped__", callback)

    def counted(conn: Any, frame: Any) -> Any:
        cell[0] += 1
        return callback(conn, frame)

    counted.__wrapped__ = callback  # type: ignore[attr-defined]
    return counted


# --------------------------------------------------------------- worker files


class SnapshotFiles:
    """Snapshots of worker processes, one JSON file per worker in `directory`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def write(self, worker: str, snapshot: Snapshot) -> None:
        path = os.path.join(self.directory, f"worker-{worker}.json")
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as out:
                json.dump(snapshot, out)
            os.replace(tmp, path)
        except OSError:
            pass  # the directory is gone: a retiring worker after a reload

    def read(self) -> list[tuple[str, Snapshot]]:
        found = []
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        for name in names:
            if not (name.startswith("worker-") and name.endswith(".json")):
                continue
            try:
                with open(os.path.join(self.directory, name)) as source:
                    found.append((name[7:-5], json.load(source)))
            except (OSError, ValueError):
                continue  # a worker replacing it right now: next scrape
        return found

    def remove(self, worker: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, f"worker-{worker}.json"))
        except OSError:
            pass


# ----------------------------------------------------------------- exposition


def exposition(snapshots: Iterable[tuple[str, Snapshot]]) -> bytes:
    """The Prometheus text format for these (worker label, snapshot) pairs."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    pairs = list(snapshots)

    class Collector:
        def collect(self) -> Iterable[Any]:
            def counter(name: str, doc: str, key: str) -> Any:
                family = CounterMetricFamily(name, doc, labels=["worker"])
                for worker, snap in pairs:
                    family.add_metric([worker], snap[key])
                return family

            def gauge(name: str, doc: str, key: str) -> Any:
                family = GaugeMetricFamily(name, doc, labels=["worker"])
                for worker, snap in pairs:
                    family.add_metric([worker], snap[key])
                return family

            yield gauge("protogen_connections_open", "Connections open now.", "open")
            yield counter(
                "protogen_connections", "Connections accepted or dialed.", "opened"
            )
            yield counter(
                "protogen_bytes_received", "Bytes read from connections.", "bytes_in"
            )
            yield counter(
                "protogen_bytes_sent", "Bytes written to connections.", "bytes_out"
            )
            yield gauge(
                "protogen_outbound_queued_bytes",
                "Bytes queued for sending, not yet taken by the kernel.",
                "queued",
            )
            frames = CounterMetricFamily(
                "protogen_frames_decoded",
                "Frames decoded and handed to the handler.",
                labels=["worker", "frame"],
            )
            errors = CounterMetricFamily(
                "protogen_protocol_errors",
                "Connections closed for breaking the protocol or a limit, by error.",
                labels=["worker", "kind"],
            )
            for worker, snap in pairs:
                for frame, count in sorted(snap["frames"].items()):
                    frames.add_metric([worker, frame], count)
                for kind, count in sorted(snap["errors"].items()):
                    errors.add_metric([worker, kind], count)
            yield frames
            yield errors
            lag = HistogramMetricFamily(
                "protogen_loop_lag_seconds",
                "How late the event loop ran a timer (a busy or blocked loop).",
                labels=["worker"],
            )
            for worker, snap in pairs:
                buckets = []
                total = 0
                for bound, count in zip(
                    (*map(str, LAG_BUCKETS), "+Inf"), snap["lag_counts"]
                ):
                    total += count
                    buckets.append((bound, total))
                lag.add_metric([worker], buckets, snap["lag_sum"])
            yield lag

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return bytes(generate_latest(registry))


# --------------------------------------------------------------------- server


class MetricsServer:
    """`/metrics` and `/healthz` on `url`, served through the caller's poller."""

    def __init__(
        self,
        url: str,
        snapshots: Callable[[], Iterable[tuple[str, Snapshot]]],
        ready: Callable[[], bool],
        add_reader: Callable[[int, Callable[[int], Any]], Any],
        remove_reader: Callable[[int], Any],
        logger: logging.Logger | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.ready = ready
        self._add_reader = add_reader
        self._remove_reader = remove_reader
        self.logger = logger or logging.getLogger("protogen.runtime.metrics")
        self.address = parse_address(url)
        self.sock = bind_listener(self.address, backlog=64)
        self.sock.setblocking(False)
        self._clients: dict[int, tuple[socket.socket, bytearray]] = {}
        add_reader(self.sock.fileno(), self._accept)

    def fds(self) -> list[int]:
        """Its descriptors (a forked worker closes them)."""
        return [self.sock.fileno(), *self._clients]

    @property
    def url(self) -> str:
        if self.address.network == "unix":
            return self.address.url
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"tcp://{host}:{port}"

    def close(self, unlink: bool = True) -> None:
        for fd in list(self._clients):
            self._drop(fd)
        if self.sock.fileno() >= 0:
            self._remove_reader(self.sock.fileno())
            self.sock.close()
        if unlink and self.address.network == "unix" and self.address.path:
            try:
                os.unlink(self.address.path)
            except OSError:
                pass

    def _accept(self, _events: int) -> None:
        for _ in range(16):
            try:
                sock, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self._clients) >= MAX_SCRAPES:
                # Idle or slow clients cannot lock scrapes out: the one that
                # has waited longest goes.
                self._drop(next(iter(self._clients)))
            sock.setblocking(False)
            fd = sock.fileno()
            self._clients[fd] = (sock, bytearray())
            self._add_reader(fd, lambda _e, fd=fd: self._readable(fd))

    def _drop(self, fd: int) -> None:
        entry = self._clients.pop(fd, None)
        if entry is not None:
            self._remove_reader(fd)
            entry[0].close()

    def _readable(self, fd: int) -> None:
        sock, request = self._clients[fd]
        try:
            data = sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        request += data
        if b"\r\n\r\n" not in request and b"\n\n" not in request:
            if data and len(request) < MAX_REQUEST:
                return
            if not request.startswith(b"GET "):
                self._drop(fd)
                return
        self._respond(sock, bytes(request))
        self._drop(fd)

    def _respond(self, sock: socket.socket, request: bytes) -> None:
        line = request.split(b"\n", 1)[0].split()
        path = line[1].split(b"?", 1)[0] if len(line) >= 2 else b""
        content_type = b"text/plain; charset=utf-8"
        if len(line) < 2 or line[0] not in (b"GET", b"HEAD"):
            status, body = b"405 Method Not Allowed", b"GET only\n"
        elif path == b"/metrics":
            try:
                status, body = b"200 OK", exposition(self.snapshots())
                content_type = b"text/plain; version=0.0.4; charset=utf-8"
            except Exception:
                self.logger.exception("protogen: metrics collection failed")
                status, body = b"500 Internal Server Error", b"collection failed\n"
        elif path in (b"/healthz", b"/readyz"):
            if self.ready():
                status, body = b"200 OK", b"ok\n"
            else:
                status, body = b"503 Service Unavailable", b"draining\n"
        else:
            status, body = b"404 Not Found", b"try /metrics or /healthz\n"
        head = (
            b"HTTP/1.0 "
            + status
            + b"\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
        )
        response = head if line and line[0] == b"HEAD" else head + body
        try:
            # The whole answer fits the socket's send buffer (sized for it), so
            # one non-blocking send takes it all and the loop never waits.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, len(response) + 4096)
            sent = sock.send(response)
        except OSError:
            return
        if sent < len(response):
            self.logger.warning(
                "protogen: metrics answer cut at %d of %d bytes", sent, len(response)
            )
