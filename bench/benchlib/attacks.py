"""The hostile clients of `make attack`, the bystander that measures what they cost
everyone else, and the report.

Each attack opens its connections, runs until a deadline, and closes them; the
runner measures the server around it (bench/attack.py). Every attack is bounded:
in connections, in bytes asked for, and in time.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .pinning import CLIENT_CPU, pinning_enabled
from .sockets import send_with_fin
from .targets import AnswerError, Stream, Target

TIMEOUT = 5.0  # a bystander answer slower than this is an error
MiB = 1024 * 1024


@dataclass
class Knobs:
    """How hard each attack pushes (command-line options of bench/attack.py)."""

    slowloris: int = 500  # connections trickling an unfinished frame
    trickle_every: float = 1.0  # seconds between two trickled bytes
    never_reading: int = 4  # connections that never read
    never_reading_ask: int = 96 * MiB  # answer bytes each asks for, at most
    fin: int = 200  # connections sending request + FIN in one segment
    oversize: int = 20  # connections sending a frame over max_frame
    burst: int = 16 * MiB  # bytes of pipelined requests one connection sends


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect: it sizes the TCP window
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server closed (or reset) `sock`; reads whatever it sent."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


class Attack:
    """Base: `open()`, `run(deadline)`, `close()`; `clients` and `detail` after."""

    name = ""
    goal = ""  # what a well-behaved server does, for the report

    def __init__(self, target: Target, port: int, knobs: Knobs) -> None:
        self.target, self.port, self.knobs = target, port, knobs
        self.socks: list[socket.socket] = []
        self.clients = 0
        self.detail = ""

    def open(self) -> None:
        pass

    def run(self, deadline: float) -> None:
        pass

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


class Slowloris(Attack):
    """Many connections, each sending an unfinished frame and then one more byte
    of it now and then: a server without a read timeout holds them all."""

    name = "slowloris"
    goal = "drops connections whose frame does not complete"

    def open(self) -> None:
        target = self.target
        for index in range(self.knobs.slowloris):
            try:
                sock = connect(self.port)
                sock.sendall(target.hello(index) + target.partial)
            except OSError:
                break  # the server refuses more: what it holds is measured anyway
            sock.setblocking(False)
            self.socks.append(sock)
        self.clients = len(self.socks)

    def run(self, deadline: float) -> None:
        trickle = self.target.trickle
        while time.monotonic() < deadline:
            time.sleep(
                min(self.knobs.trickle_every, max(0.0, deadline - time.monotonic()))
            )
            if not trickle:
                continue
            for sock in self.socks:
                try:
                    sock.send(trickle)
                except OSError:
                    pass  # closed by the server, or its buffer full: both fine
        dropped = sum(closed_by_peer(sock) for sock in self.socks)
        self.detail = f"dropped by the server {dropped}/{self.clients}"


class NeverReading(Attack):
    """Connections pipelining requests with large answers and never reading: a
    server that keeps decoding builds the answers up in memory."""

    name = "never-reading"
    goal = "bounds each connection's queued output"

    def open(self) -> None:
        target = self.target
        for index in range(self.knobs.never_reading):
            sock = connect(self.port, rcvbuf=4096)
            sock.sendall(target.hello(index) + target.prelude)
            sock.setblocking(False)
            self.socks.append(sock)
        self.clients = len(self.socks)

    def run(self, deadline: float) -> None:
        target = self.target
        budget = max(1, math.ceil(self.knobs.never_reading_ask / target.big_answer))
        asked = [0] * len(self.socks)  # requests wholly sent, per connection
        live = [True] * len(self.socks)
        pending = [memoryview(target.big_request) for _ in self.socks]
        sent = 0
        while time.monotonic() < deadline:
            progress = False
            for index, sock in enumerate(self.socks):
                if not live[index] or asked[index] >= budget:
                    continue
                try:
                    count = sock.send(pending[index])
                except BlockingIOError:
                    continue
                except OSError:
                    live[index] = False  # closed by the server
                    continue
                progress = True
                sent += count
                pending[index] = pending[index][count:]
                if not pending[index]:
                    asked[index] += 1
                    pending[index] = memoryview(target.big_request)
            if not progress:
                time.sleep(0.01)
        dropped = sum(closed_by_peer(sock) for sock in self.socks)
        self.detail = (
            f"{sum(asked)} requests sent ({sent / MiB:.1f} MiB) asking "
            f"~{sum(asked) * target.big_answer / MiB:.0f} MiB of answers; "
            f"dropped by the server {dropped}/{self.clients}"
        )


class DataWithFin(Attack):
    """Connections sending one request and their FIN in one segment, reading the
    answer, then closing: a server that misses the FIN leaves them in CLOSE_WAIT."""

    name = "data+FIN"
    goal = "answers, then closes: no CLOSE_WAIT left"

    def run(self, deadline: float) -> None:
        target = self.target
        answered = 0
        while self.clients < self.knobs.fin and time.monotonic() < deadline:
            batch = []
            for _ in range(min(50, self.knobs.fin - self.clients)):
                try:
                    sock = connect(self.port)
                    send_with_fin(sock, target.hello(self.clients) + target.request)
                except OSError:
                    continue
                finally:
                    self.clients += 1
                batch.append(sock)
            for sock in batch:
                sock.settimeout(2.0)
                stream = Stream(sock)
                try:
                    if target.read_hello is not None:
                        target.read_hello(stream)
                    target.read_answer(stream)
                    answered += 1
                except (OSError, AnswerError):
                    pass
                sock.close()
        self.detail = f"answered {answered}/{self.clients}"


class OversizeBurst(Attack):
    """Connections sending a frame over max_frame, and one connection sending a
    long burst of pipelined requests (reading the answers)."""

    name = "oversize+burst"
    goal = "refuses oversize frames; a heavy pipeliner does not starve others"

    def open(self) -> None:
        target = self.target
        if target.oversize is not None:
            for index in range(self.knobs.oversize):
                try:
                    sock = connect(self.port)
                    sock.sendall(target.hello(index) + target.oversize)
                except OSError:
                    continue
                self.socks.append(sock)
        self.oversized = len(self.socks)
        self.burster = connect(self.port)
        self.burster.sendall(target.hello(self.oversized))
        self.socks.append(self.burster)
        self.clients = len(self.socks)
        self.received = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        try:
            while chunk := self.burster.recv(262144):
                self.received += len(chunk)
        except OSError:
            pass

    def run(self, deadline: float) -> None:
        request = self.target.request
        chunk = request * max(1, 65536 // len(request))
        sent = 0
        try:
            while sent < self.knobs.burst and time.monotonic() < deadline:
                self.burster.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
        refused = sum(closed_by_peer(sock) for sock in self.socks[: self.oversized])
        self.detail = (
            f"oversize frames refused (closed) {refused}/{self.oversized}; "
            f"burst sent {sent / MiB:.1f} MiB, got {self.received / MiB:.1f} MiB back"
        )

    def close(self) -> None:
        super().close()
        self._reader.join(timeout=2)


ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (Slowloris, NeverReading, DataWithFin, OversizeBurst)
}


# -- the bystander ------------------------------------------------------------------------


@dataclass
class BystanderReport:
    worst: float = 0.0  # seconds
    requests: int = 0
    errors: list[str] = field(default_factory=list)


def _bystand(target: Target, port: int, ready: Any, stop: Any, results: Any) -> None:
    """A normal client: request, answer, 10 ms pause, again; on its own process
    (the attackers' Python must not delay its clock)."""
    if pinning_enabled():
        os.sched_setaffinity(0, {CLIENT_CPU})
    report = BystanderReport()
    sock: socket.socket | None = None
    stream: Stream | None = None
    while not stop.is_set():
        try:
            if sock is None:
                sock = connect(port)
                stream = Stream(sock)
                hello = target.hello(1_000_000)
                if hello:
                    sock.sendall(hello)
                if target.read_hello is not None:
                    target.read_hello(stream)
            assert stream is not None
            start = time.perf_counter()
            sock.sendall(target.request)
            target.read_answer(stream)
            report.worst = max(report.worst, time.perf_counter() - start)
            report.requests += 1
            ready.set()
        except (OSError, AnswerError) as exc:
            if isinstance(exc, socket.timeout):
                report.worst = max(report.worst, TIMEOUT)
            if len(report.errors) < 5:
                report.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                report.errors.append("")
            if sock is not None:
                sock.close()
            sock = stream = None
            stop.wait(0.1)
            continue
        stop.wait(0.01)
    if sock is not None:
        sock.close()
    results.put(report)


class Bystander:
    """Runs `_bystand` in a child process from start() to stop()."""

    def __init__(self, target: Target, port: int) -> None:
        context = multiprocessing.get_context("fork")
        self.ready, self.stopping = context.Event(), context.Event()
        self.results: Any = context.Queue()
        self.process = context.Process(
            target=_bystand,
            args=(target, port, self.ready, self.stopping, self.results),
            daemon=True,
        )

    def start(self) -> bool:
        """True once the first answer came back (within TIMEOUT)."""
        self.process.start()
        return self.ready.wait(TIMEOUT)

    def stop(self) -> BystanderReport:
        self.stopping.set()
        try:
            report: BystanderReport = self.results.get(timeout=TIMEOUT + 2)
        except Exception:
            report = BystanderReport(errors=["the bystander did not report"])
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
        return report


# -- results and goals --------------------------------------------------------------------


@dataclass
class Goals:
    max_latency: float = 0.050  # seconds, the bystander's worst
    max_rss_growth: int = 64 * MiB  # peak RSS over RSS before the attack


@dataclass
class AttackResult:
    server: str
    attack: str
    clients: int
    held: int  # attack connections the server still had open at the deadline
    rss_before: int
    rss_peak: int
    rss_after: int
    bystander: BystanderReport
    close_wait: int  # server sockets left in CLOSE_WAIT by this attack's clients
    fd_growth: int  # server fds then, minus before the attack
    alive: bool
    detail: str = ""
    # The server loop's heaviest pass in CPU seconds and its event count
    # (--pass-cpu; 0: not measured).
    worst_pass: float = 0.0
    worst_pass_events: int = 0

    def missed(self, goals: Goals) -> list[str]:
        misses = []
        if not self.alive:
            misses.append("the server died")
        if self.bystander.errors:
            misses.append(f"bystander errors: {len(self.bystander.errors)}")
        if self.bystander.worst >= goals.max_latency:
            misses.append(
                f"bystander worst {self.bystander.worst * 1e3:.0f} ms "
                f">= {goals.max_latency * 1e3:.0f} ms"
            )
        if self.rss_peak - self.rss_before > goals.max_rss_growth:
            misses.append(
                f"RSS grew {(self.rss_peak - self.rss_before) / MiB:.0f} MiB "
                f"> {goals.max_rss_growth / MiB:.0f} MiB"
            )
        if self.close_wait:
            misses.append(f"{self.close_wait} sockets left in CLOSE_WAIT")
        if self.fd_growth > 0:
            misses.append(f"{self.fd_growth} file descriptors leaked")
        return misses


def _mb(value: int) -> str:
    return f"{value / MiB:.0f}"


COLUMNS = (
    ("attack", 14),
    ("held", 9),
    ("RSS MiB before/peak/after", 25),
    ("bystander worst", 15),
    ("errors", 6),
    ("CLOSE_WAIT", 10),
    ("fds +", 5),
    ("goals", 5),
    ("worst pass CPU", 14),
)


def format_table(server: str, results: list[AttackResult], goals: Goals) -> str:
    """One server's results: a row per attack, then each row's notes."""
    lines = [f"== {server} =="]
    lines.append("  ".join(title.ljust(width) for title, width in COLUMNS).rstrip())
    notes = []
    for result in results:
        misses = result.missed(goals)
        cells = (
            result.attack,
            f"{result.held}/{result.clients}",
            f"{_mb(result.rss_before)}/{_mb(result.rss_peak)}/{_mb(result.rss_after)}",
            f"{result.bystander.worst * 1e3:.1f} ms",
            str(len(result.bystander.errors) + (not result.alive)),
            str(result.close_wait),
            str(max(0, result.fd_growth)),
            "ok" if not misses else "MISS",
            (
                f"{result.worst_pass * 1e3:.1f} ms ({result.worst_pass_events} ev)"
                if result.worst_pass
                else ""
            ),
        )
        lines.append(
            "  ".join(
                cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS)
            ).rstrip()
        )
        if result.detail:
            notes.append(f"  {result.attack}: {result.detail}")
        for miss in misses:
            notes.append(f"  {result.attack}: MISSED: {miss}")
        for error in result.bystander.errors[:3]:
            if error:
                notes.append(f"  {result.attack}: bystander: {error}")
    return "\n".join(lines + notes)
