"""`make bench-tls`: protogen over tls:// against uvloop with `ssl=`, on one
certificate made at run time: typed echo at depth 16, HTTP with wrk over https,
and handshakes per second.

Servers run pinned to CPU 0; every client is native and pinned to CPU 1: the C
load client through haproxy (plain TCP in, TLS out: the same originator for
every peer), wrk (https itself), `openssl s_time -new` (full handshakes one
after another) and wrk with `Connection: close` (a new TLS connection per
request, 64 at once). The plain-* rows run the same peers and loads over
plain TCP in the same rounds, for comparison. Peers alternate within every
round (their order rotates from round to round); the table shows medians over
rounds and the ratio to the uvloop peer, then each server's CPU share and CPU
time per request. Results go to bench/results/tls-<timestamp>.json. See
docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import pinning  # noqa: E402
from benchlib.client import (  # noqa: E402
    ClientError,
    LoadSpec,
    Target,
    ensure_loadclient,
    run_load,
)
from benchlib.paths import RESULTS  # noqa: E402
from benchlib.peers import ECHO, HTTP, Peer, all_peers  # noqa: E402
from benchlib.report import THROUGHPUT, format_table, summarize  # noqa: E402
from benchlib.report import write_json  # noqa: E402
from benchlib.scenarios import ServerPool  # noqa: E402
from benchlib.servers import Server, ServerError, install_cleanup  # noqa: E402
from benchlib.tls import (  # noqa: E402
    Certificate,
    TlsPeer,
    check_echo,
    haproxy_available,
    make_certificate,
    over_tls,
    run_s_time,
    tls_originator,
)
from benchlib.wrk import check_plaintext, run_wrk, wrk_available  # noqa: E402

#: (name, kind) of the peers compared, the uvloop one first in each kind: the
#: typed echo pair (decode into an object, method call, encode) and HTTP.
PEERS = (
    ("uvloop-typed", ECHO),
    ("protogen-typed", ECHO),
    ("uvloop", HTTP),
    ("protogen", HTTP),
)


@dataclass
class Context:
    """What a measurement needs besides the server."""

    binary: Path
    workdir: Path
    duration: float
    warmup: float
    originators: dict[int, Server]

    def originator(self, server: Server) -> Server:
        """The haproxy in front of `server` (one per server process)."""
        front = self.originators.get(server.port)
        if front is None or not front.alive():
            front = tls_originator(server.port, self.workdir).start()
            self.originators[server.port] = front
        return front


Measure = Callable[[Server, Context], dict[str, Any]]


@dataclass
class TlsScenario:
    name: str
    kind: str
    measure: Measure
    tls: bool = True  # False: the same peers over plain TCP, for comparison


def _echo(size: int, tls: bool = True) -> Measure:
    def measure(server: Server, ctx: Context) -> dict[str, Any]:
        spec = LoadSpec(
            conns=50, depth=16, size=size, duration=ctx.duration, warmup=ctx.warmup
        )
        port = ctx.originator(server).port if tls else server.port
        return run_load(ctx.binary, Target(port), spec)

    return measure


def _http(scheme: str) -> Measure:
    def measure(server: Server, ctx: Context) -> dict[str, Any]:
        return run_wrk(
            server.port,
            256,
            16,
            ctx.duration,
            script="pipeline_distinct.lua",
            scheme=scheme,
        )

    return measure


def _https_new_connections(server: Server, ctx: Context) -> dict[str, Any]:
    return run_wrk(
        server.port, 64, 1, ctx.duration, scheme="https", headers=["Connection: close"]
    )


def _s_time(server: Server, ctx: Context) -> dict[str, Any]:
    return run_s_time(server.port, ctx.duration)


def all_scenarios() -> list[TlsScenario]:
    return [
        TlsScenario("tls-echo-d16-64B-c50", ECHO, _echo(64)),
        TlsScenario("tls-echo-d16-4KiB-c50", ECHO, _echo(4096)),
        TlsScenario("tls-http-distinct-c256-p16", HTTP, _http("https")),
        TlsScenario("tls-handshake-echo-s_time", ECHO, _s_time),
        TlsScenario("tls-handshake-http-s_time", HTTP, _s_time),
        TlsScenario("tls-handshake-http-close-c64", HTTP, _https_new_connections),
        # The same peers and loads without TLS, in the same rounds: what TLS
        # adds per request on each side (no originator in the echo path here).
        TlsScenario("plain-echo-d16-64B-c50", ECHO, _echo(64, tls=False), tls=False),
        TlsScenario("plain-http-distinct-c256-p16", HTTP, _http("http"), tls=False),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds before measuring (echo)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 1 s"
    )
    parser.add_argument(
        "--scenarios", help="comma list of substrings selecting scenarios"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory for the JSON"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.3
    return args


def prepare_peers(
    certificate: Certificate, workdir: Path
) -> tuple[list[TlsPeer], dict[str, str]]:
    by_key = {(p.name, p.kind): p for p in all_peers()}
    ready, skipped = [], {}
    for key in PEERS:
        peer = over_tls(by_key[key], certificate)
        label = f"{peer.name} ({peer.kind})"
        if peer.kind == HTTP and not wrk_available():
            skipped[label] = "wrk is not installed"
        elif peer.prepare(workdir):
            ready.append(peer)
        else:
            skipped[label] = peer.skip_reason or "unavailable"
    return ready, skipped


def check_answer(peer: Peer, server: Server, certificate: Certificate) -> str | None:
    """A verified TLS request on the certificate before any load: the clients
    do not verify it, and do not read what they count. (Over plain TCP: the
    load client verifies every echo itself, wrk does not read bodies.)"""
    if not isinstance(peer, TlsPeer):
        return None if peer.kind == ECHO else check_plaintext(server.port)
    context = certificate.client_context()
    if peer.kind == ECHO:
        return check_echo(server.port, context)
    return check_plaintext(server.port, tls=context)


def _record(scenario: str, peer: str, round_no: int, **values: Any) -> dict[str, Any]:
    record = {"scenario": scenario, "family": THROUGHPUT, "peer": peer}
    record.update(round=round_no, **values)
    record.setdefault("errors", 0)
    record["ok"] = record["errors"] == 0
    return record


def run_one(
    scenario: TlsScenario,
    peer: Peer,
    pool: ServerPool,
    ctx: Context,
    certificate: Certificate,
    checked: set[int],
    round_no: int,
) -> dict[str, Any]:
    try:
        server = pool.get(peer)
        if server.port not in checked:
            if wrong := check_answer(peer, server, certificate):
                return _record(
                    scenario.name, peer.name, round_no, errors=1, first_error=wrong
                )
            checked.add(server.port)
        assert server.proc is not None
        cpu_before, wall_before = cpu_seconds(server.proc.pid), time.monotonic()
        report = scenario.measure(server, ctx)
        cpu = cpu_seconds(server.proc.pid) - cpu_before
        share = cpu / (time.monotonic() - wall_before)
    except (ClientError, ServerError, OSError) as exc:
        return _record(
            scenario.name, peer.name, round_no, errors=1, first_error=str(exc)[-300:]
        )
    keep = ("rps", "p50_us", "p99_us", "errors", "first_error")
    values = {k: report[k] for k in keep if k in report}
    values.update(port=server.port, client=report, server_cpu=share)
    if values.get("rps"):
        # Server CPU per request, taking the whole window as steady state.
        values["cpu_us"] = share * 1e6 / values["rps"]
    if not server.alive():
        values["errors"] = int(values.get("errors", 0)) + 1
        values["first_error"] = f"server died: {server.log_tail(300)}"
    return _record(scenario.name, peer.name, round_no, **values)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def format_cpu(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    """Medians of the server's CPU share (1.0: it had its core to itself) and of
    its CPU time per request: steadier than req/s on a shared machine."""
    lines = [f"{'scenario':<30} {'peer':<15} {'server CPU':>10} {'CPU us/req':>10}"]
    for row in rows:
        good = [
            r
            for r in runs
            if r["scenario"] == row["scenario"] and r["peer"] == row["peer"] and r["ok"]
        ]
        share = [r["server_cpu"] for r in good if "server_cpu" in r]
        per = [r["cpu_us"] for r in good if "cpu_us" in r]
        lines.append(
            f"{row['scenario']:<30} {row['peer']:<15} "
            f"{median(share) if share else 0:>10.2f} {median(per) if per else 0:>10.1f}"
        )
    return "\n".join(lines)


def _rotate(items: list[Peer], by: int) -> list[Peer]:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    pinning.set_pinning(not args.no_pin)
    if not haproxy_available():
        print(
            "bench-tls: haproxy is needed in front of the load client", file=sys.stderr
        )
        return 2
    try:
        binary = ensure_loadclient()
    except ClientError as exc:
        print(f"bench-tls: {exc}", file=sys.stderr)
        return 2
    wanted = [s.strip() for s in (args.scenarios or "").split(",") if s.strip()]
    scenarios = [
        s for s in all_scenarios() if not wanted or any(w in s.name for w in wanted)
    ]
    runs: list[dict[str, Any]] = []
    started = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="protogen-bench-tls-") as tmp:
        workdir = Path(tmp)
        certificate = make_certificate(workdir)
        peers, skipped = prepare_peers(certificate, workdir)
        for label, reason in skipped.items():
            print(f"skipping {label}: {reason}", flush=True)
        # Plain and TLS servers of one peer share its name: a pool for each.
        pools = {True: ServerPool(), False: ServerPool()}
        ctx = Context(binary, workdir, args.duration, args.warmup, {})
        checked: set[int] = set()
        try:
            for round_no in range(args.rounds):
                for scenario in scenarios:
                    serving = [
                        p if scenario.tls else p.inner
                        for p in peers
                        if p.kind == scenario.kind and p.inner is not None
                    ]
                    for peer in _rotate(serving, round_no):
                        run = run_one(
                            scenario,
                            peer,
                            pools[scenario.tls],
                            ctx,
                            certificate,
                            checked,
                            round_no,
                        )
                        runs.append(run)
                        _progress(run, args.rounds)
        finally:
            for front in ctx.originators.values():
                front.stop()
            for pool in pools.values():
                pool.close()

    rows = summarize(runs)
    print()
    print(format_table(rows))
    print()
    print(format_cpu(rows, runs))
    meta = {
        "started": started,
        "argv": sys.argv[1:] if argv is None else argv,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "pinned": pinning.pinning_enabled(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    json_path = args.output / f"tls-{started}.json"
    write_json(json_path, meta, runs, rows, skipped)
    print(f"\nresults: {json_path}")
    failed = [r for r in runs if not r["ok"]]
    for run in failed:
        print(
            f"ERROR {run['scenario']} {run['peer']}: {run.get('first_error', '')}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _progress(run: dict[str, Any], rounds: int) -> None:
    status = "ok" if run["ok"] else f"ERROR {run.get('first_error', '')}"
    print(
        f"[{run['round'] + 1}/{rounds}] {run['scenario']:<30} {run['peer']:<15} "
        f"{run.get('rps') or 0:,.0f}/s  {status}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
