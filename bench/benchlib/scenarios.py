"""The benchmark scenarios and how one run of each is carried out."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .client import ClientError, HeldConnections, LoadSpec, Target, run_load
from .memcaslap import run_memcaslap
from .peers import ECHO, HTTP, MEMCACHED, REDIS, Peer
from .redisbench import TESTS, check_redis, run_redis_benchmark
from .report import CAPACITY, MEMORY, THROUGHPUT
from .servers import Server, ServerError, free_port
from .wrk import check_plaintext, run_wrk


@dataclass
class Scenario:
    name: str
    family: str  # THROUGHPUT, MEMORY or CAPACITY
    kind: str  # which peers serve it: ECHO or HTTP
    load: LoadSpec | None = None  # echo throughput
    http: tuple[int, int] | None = None  # (connections, pipelined requests)
    lua: str = "pipeline_distinct.lua"  # wrk script of an HTTP scenario
    memcaslap: int = 0  # memcaslap -B concurrency (memcached throughput)
    # redis-benchmark: (connections, pipeline depth, requests per test)
    redis: tuple[int, int, int] | None = None
    hold: int = 0  # idle connections held (memory, capacity)


def echo_scenarios(duration: float, warmup: float) -> list[Scenario]:
    scenarios = []
    for depth in (1, 16):
        for size, label in ((64, "64B"), (4096, "4KiB")):
            for conns in (50, 1000):
                spec = LoadSpec(
                    conns=conns,
                    depth=depth,
                    size=size,
                    duration=duration,
                    warmup=warmup,
                )
                name = f"echo-d{depth}-{label}-c{conns}"
                scenarios.append(Scenario(name, THROUGHPUT, ECHO, load=spec))
    return scenarios


def redis_row(scenario: str, test: str) -> str:
    """The row of one redis-benchmark test: `redis-c50-p16` -> `redis-set-c50-p16`."""
    return scenario.replace("redis-", f"redis-{test}-", 1)


def all_scenarios(
    duration: float, warmup: float, idle_conns: int, max_conns: int
) -> list[Scenario]:
    # redis-benchmark runs a number of requests, not a time: about `duration`
    # seconds of the Python servers' pace (100 000 requests/s).
    redis_requests = max(50_000, int(duration * 100_000))
    return [
        *echo_scenarios(duration, warmup),
        # Every request with its own X-Request-Id (as behind a proxy) leads; the
        # byte-identical heads of TechEmpower's script stay as a secondary row.
        Scenario("http-distinct-c256-p16", THROUGHPUT, HTTP, http=(256, 16)),
        Scenario(
            "http-plaintext-c256-p16",
            THROUGHPUT,
            HTTP,
            http=(256, 16),
            lua="pipeline.lua",
        ),
        Scenario("memcached-binary-c64", THROUGHPUT, MEMCACHED, memcaslap=64),
        Scenario("redis-c50-p16", THROUGHPUT, REDIS, redis=(50, 16, redis_requests)),
        Scenario(f"idle-rss-c{idle_conns}", MEMORY, ECHO, hold=idle_conns),
        Scenario(f"concurrent-c{max_conns}", CAPACITY, ECHO, hold=max_conns),
    ]


def start_server(peer: Peer, attempts: int = 3) -> Server:
    """Start `peer` on a free port; retry on a new port if it fails to start (the
    port may have been taken between the probe and the server's bind)."""
    for attempt in range(attempts):
        port = free_port()
        cmd, cwd = peer.command(port)
        try:
            return Server(
                f"{peer.name}-{peer.kind}", cmd, port, cwd=cwd, env=peer.env
            ).start()
        except ServerError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class ServerPool:
    """One long-lived server per peer for the throughput runs (idle servers cost no
    CPU); a server that died is reported by the run and restarted for the next."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, str], Server] = {}

    def get(self, peer: Peer) -> Server:
        key = (peer.name, peer.kind)
        server = self.servers.get(key)
        if server is None or not server.alive():
            self.servers[key] = server = start_server(peer)
        return server

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def _record(
    scenario: Scenario, peer: Peer, round_no: int, **values: Any
) -> dict[str, Any]:
    record = {"scenario": scenario.name, "family": scenario.family, "peer": peer.name}
    record.update(round=round_no, **values)
    record.setdefault("errors", 0)
    record["ok"] = record["errors"] == 0
    return record


def run_throughput(
    scenario: Scenario,
    peer: Peer,
    pool: ServerPool,
    binary: Path,
    round_no: int,
    duration: float,
) -> dict[str, Any]:
    try:
        server = pool.get(peer)
        if scenario.load is not None:
            report = run_load(binary, Target(server.port), scenario.load)
        elif scenario.memcaslap:
            report = run_memcaslap(server.port, scenario.memcaslap, duration)
        else:
            assert scenario.http is not None
            if wrong := check_plaintext(server.port):
                return _record(scenario, peer, round_no, errors=1, first_error=wrong)
            conns, pipeline = scenario.http
            report = run_wrk(
                server.port, conns, pipeline, duration, script=scenario.lua
            )
    except (ClientError, ServerError, OSError) as exc:
        return _record(scenario, peer, round_no, errors=1, first_error=str(exc)[-300:])
    keep = ("rps", "p50_us", "p99_us", "errors", "first_error")
    values = {k: report[k] for k in keep if k in report}
    values.update(port=server.port, client=report)  # the client's full report
    if not server.alive():
        values["errors"] = int(values.get("errors", 0)) + 1
        values["first_error"] = f"server died: {server.log_tail(300)}"
    return _record(scenario, peer, round_no, **values)


def run_redis(
    scenario: Scenario, peer: Peer, pool: ServerPool, round_no: int
) -> list[dict[str, Any]]:
    """One redis-benchmark run (SET, then GET): a record per test."""
    assert scenario.redis is not None
    conns, pipeline, requests = scenario.redis
    rows = [redis_row(scenario.name, test) for test in TESTS]
    try:
        server = pool.get(peer)
        if wrong := check_redis(server.port):
            reports = {test: {"errors": 1, "first_error": wrong} for test in TESTS}
        else:
            reports = run_redis_benchmark(server.port, requests, conns, pipeline)
    except (ServerError, OSError, subprocess.SubprocessError) as exc:
        failed = {"errors": 1, "first_error": str(exc)[-300:]}
        reports = {test: failed for test in TESTS}
        server = None
    records = []
    for test, row in zip(TESTS, rows):
        report = reports[test]
        keep = ("rps", "p50_us", "p99_us", "errors", "first_error")
        values = {k: report[k] for k in keep if k in report}
        if server is not None:
            values.update(port=server.port, client=report)
            if not server.alive():
                values["errors"] = int(values.get("errors", 0)) + 1
                values["first_error"] = f"server died: {server.log_tail(300)}"
        records.append(_record(replace(scenario, name=row), peer, round_no, **values))
    return records


def run_idle(scenario: Scenario, peer: Peer, binary: Path) -> dict[str, Any]:
    """Fresh server; RSS before and while holding `scenario.hold` connections that
    have each been answered once; then every held connection is answered again."""
    count = scenario.hold
    try:
        with start_server(peer) as server:
            target = Target(server.port)
            # A few connections first: lazy imports and first allocations are not
            # the cost of an idle connection.
            with HeldConnections(binary, target, 16) as warm:
                warm.release()
            time.sleep(0.5)
            before = server.rss()
            with HeldConnections(binary, target, count) as held:
                time.sleep(1.0)  # let the server settle before sampling
                after = server.rss()
                report = held.release()
            alive = server.alive()
    except (ClientError, ServerError, OSError) as exc:
        return _record(scenario, peer, 0, errors=1, first_error=str(exc)[-300:])
    errors = int(report.get("errors", 0)) + (0 if alive else 1)
    return _record(
        scenario,
        peer,
        0,
        errors=errors,
        first_error=report.get("first_error", "") or ("" if alive else "server died"),
        held=report.get("held"),
        connect_s=report.get("connect_s"),
        port=server.port,
        client=report,
        rss_before=before,
        rss_after=after,
        bytes_per_conn=(after - before) / count,
    )
