"""Server CPU time per request, user and system apart, peers alternating.

On a shared machine req/s moves by ±10 % from run to run, which hides changes of
a few percent. The pinned server's CPU time over the measured window (from
/proc/<pid>/stat), divided by the requests answered in it, is steadier, and it
splits user time (Python, the interpreter) from system time (the kernel): an A/B
of a runtime change shows which side it moved.

    .venv/bin/python bench/cpu_per_request.py                    # uvloop vs protogen
    .venv/bin/python bench/cpu_per_request.py --peers uvloop,protogen,asyncio \\
        --conns 50 --depth 16 --size 4096 --rounds 7
    .venv/bin/python bench/cpu_per_request.py --http --conns 256 --depth 16
        # the HTTP peers (uvloop + httptools, the HTTP example) under wrk with
        # pipeline_distinct.lua: every request its own X-Request-Id
    .venv/bin/python bench/cpu_per_request.py --redis --depth 16 \\
        --peers redis-server,protogen,protogen-compiled      # redis-benchmark SET + GET
    .venv/bin/python bench/cpu_per_request.py --tls --depth 16 \\
        --peers uvloop-typed,protogen-typed                     # over TLS

With --http the load is wrk (`--lua` names its script in bench/peers/), the
requests answered are wrk's count over its whole run, and the CPU window is the
middle of that run (wrk has no warm-up phase of its own: the first --warmup
seconds and the last 0.5 s are left out of the window).

With --tls every peer serves TLS on one certificate made at run time and the
load client reaches it through the haproxy originator of `make bench-tls`
(docs/benchmarks.md, *TLS*): the server's CPU then includes its TLS layer.

Same servers, pinning and load client as `make bench` (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import pinning  # noqa: E402
from benchlib.client import (  # noqa: E402
    LoadSpec,
    Target,
    ensure_loadclient,
    finish_load,
    load_budget,
    load_command,
)
from benchlib.peers import ECHO, HTTP, REDIS, all_peers  # noqa: E402
from benchlib.redisbench import check_redis, run_redis_benchmark  # noqa: E402
from benchlib.scenarios import start_server  # noqa: E402
from benchlib.servers import Server, install_cleanup  # noqa: E402
from benchlib.tls import make_certificate, over_tls, tls_originator  # noqa: E402
from benchlib.wrk import check_plaintext, parse_wrk, wrk_command  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def measure(
    peer, binary: Path, spec: LoadSpec, settle: float, workdir: Path | None = None
) -> dict[str, float]:
    """One run: µs of server user/system CPU per request, and req/s. With
    `workdir` (a TLS peer) the load goes through a TLS originator made there."""
    with start_server(peer) as server:
        assert server.proc is not None
        port = server.port
        front: Server | None = None
        if workdir is not None:
            front = tls_originator(server.port, workdir).start()
            port = front.port
        try:
            return _measure(server, port, binary, spec, settle)
        finally:
            if front is not None:
                front.stop()


def _measure(
    server: Server, port: int, binary: Path, spec: LoadSpec, settle: float
) -> dict[str, float]:
    assert server.proc is not None
    proc = subprocess.Popen(
        load_command(binary, Target(port), spec),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(spec.warmup + settle)
    user0, sys0 = cpu_ticks(server.proc.pid)
    start = time.monotonic()
    time.sleep(max(0.5, spec.duration - 2 * settle))
    user1, sys1 = cpu_ticks(server.proc.pid)
    window = time.monotonic() - start
    report = finish_load(proc, load_budget(spec))
    if report.get("errors"):
        raise SystemExit(
            f"{server.name}: load client errors: {report.get('first_error')}"
        )
    requests = report["rps"] * window
    return {
        "rps": report["rps"],
        "user_us": (user1 - user0) / TICK / requests * 1e6,
        "sys_us": (sys1 - sys0) / TICK / requests * 1e6,
        "cpu": (user1 - user0 + sys1 - sys0) / TICK / window,
    }


def measure_http(peer, spec: LoadSpec, lua: str, settle: float) -> dict[str, float]:
    """As `measure`, with wrk as the load: rps is wrk's over its whole run."""
    with start_server(peer) as server:
        assert server.proc is not None
        if wrong := check_plaintext(server.port):
            raise SystemExit(f"{peer.name}: {wrong}")
        length = spec.warmup + spec.duration
        proc = subprocess.Popen(
            wrk_command(server.port, spec.conns, spec.depth, length, script=lua),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(spec.warmup + settle)
        user0, sys0 = cpu_ticks(server.proc.pid)
        start = time.monotonic()
        time.sleep(max(0.5, spec.duration - 2 * settle))
        user1, sys1 = cpu_ticks(server.proc.pid)
        window = time.monotonic() - start
        out, err = proc.communicate(timeout=length + 60)
    report = parse_wrk(out)
    if report.get("errors") or proc.returncode:
        raise SystemExit(f"{peer.name}: wrk errors: {report.get('first_error')} {err}")
    requests = report["rps"] * window
    return {
        "rps": report["rps"],
        "user_us": (user1 - user0) / TICK / requests * 1e6,
        "sys_us": (sys1 - sys0) / TICK / requests * 1e6,
        "cpu": (user1 - user0 + sys1 - sys0) / TICK / window,
    }


def measure_redis(peer, requests: int, conns: int, pipeline: int) -> dict[str, float]:
    """One redis-benchmark run of SET then GET (`requests` each): µs of server
    CPU per request over the whole run, and the mean req/s of the two tests."""
    with start_server(peer) as server:
        assert server.proc is not None
        if wrong := check_redis(server.port):
            raise SystemExit(f"{peer.name}: {wrong}")
        user0, sys0 = cpu_ticks(server.proc.pid)
        reports = run_redis_benchmark(server.port, requests, conns, pipeline)
        user1, sys1 = cpu_ticks(server.proc.pid)
    if any(r.get("errors") for r in reports.values()):
        raise SystemExit(f"{peer.name}: {reports}")
    total = 2 * requests
    return {
        "rps": statistics.mean(r["rps"] for r in reports.values()),
        "user_us": (user1 - user0) / TICK / total * 1e6,
        "sys_us": (sys1 - sys0) / TICK / total * 1e6,
        "cpu": 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="uvloop,protogen")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--http", action="store_true", help="the HTTP peers, under wrk (see above)"
    )
    parser.add_argument("--lua", default="pipeline_distinct.lua", help="with --http")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="the Redis peers under redis-benchmark -t set,get -P DEPTH -c CONNS",
    )
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument(
        "--tls", action="store_true", help="the echo peers over TLS (see above)"
    )
    args = parser.parse_args()
    install_cleanup()
    binary = None if args.redis else ensure_loadclient()
    wanted = [name.strip() for name in args.peers.split(",")]
    kind = HTTP if args.http else REDIS if args.redis else ECHO
    by_name = {p.name: p for p in all_peers() if p.kind == kind}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        parser.error(f"unknown peers {unknown}; {kind} peers: {', '.join(by_name)}")
    workdir = Path(tempfile.mkdtemp(prefix="protogen-cpu-"))
    peers = [by_name[name] for name in wanted]
    if args.tls:
        certificate = make_certificate(workdir)
        peers = [over_tls(peer, certificate) for peer in peers]
    for peer in peers:
        if not peer.prepare(workdir):
            parser.error(f"{peer.name}: {peer.skip_reason}")
    spec = LoadSpec(
        conns=args.conns,
        depth=args.depth,
        size=args.size,
        duration=args.duration,
        warmup=args.warmup,
    )
    if not pinning.pinning_enabled():
        print("warning: taskset unavailable or one CPU: runs are not pinned")
    results: dict[str, list[dict[str, float]]] = {p.name: [] for p in peers}
    for round_no in range(args.rounds):
        shift = round_no % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            if args.http:
                run = measure_http(peer, spec, args.lua, settle=0.5)
            elif args.redis:
                run = measure_redis(peer, args.requests, args.conns, args.depth)
            else:
                run = measure(
                    peer,
                    binary,
                    spec,
                    settle=0.5,
                    workdir=workdir if args.tls else None,
                )
            results[peer.name].append(run)
            print(
                f"[{round_no + 1}/{args.rounds}] {peer.name:18s} {run['rps']:10,.0f} req/s"
                f"  user {run['user_us']:5.2f}  sys {run['sys_us']:5.2f} µs/req"
                f"  (server CPU {run['cpu']:.2f})",
                flush=True,
            )
    print(
        f"\nmedians, {args.conns} conns, depth {args.depth}, "
        f"{args.lua if args.http else f'{args.size} B'}"
        f"{' over TLS' if args.tls else ''} ({args.rounds} rounds):"
    )
    base = None
    for peer in peers:
        runs = results[peer.name]
        user = statistics.median(r["user_us"] for r in runs)
        system = statistics.median(r["sys_us"] for r in runs)
        total = statistics.median(r["user_us"] + r["sys_us"] for r in runs)
        base = base or total
        print(
            f"  {peer.name:18s} user {user:5.2f}  sys {system:5.2f}  "
            f"total {total:5.2f} µs/req  ({total / base:.2f}x {peers[0].name}'s CPU)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
