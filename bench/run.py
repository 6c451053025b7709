"""`make bench`: protogen against asyncio, uvloop and Twisted (and uvloop + httptools
for HTTP), measured by the native load client and wrk.

Servers run pinned to CPU 0, the client to CPU 1; peers alternate within every round
(their order rotates from round to round); the table shows medians over rounds and
the ratio to uvloop. Results go to bench/results/<timestamp>.json and .png.
See docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import pinning  # noqa: E402
from benchlib.client import ClientError, ensure_loadclient  # noqa: E402
from benchlib.paths import RESULTS, ROOT  # noqa: E402
from benchlib.peers import (  # noqa: E402
    BASELINE,
    ECHO,
    HTTP,
    MEMCACHED,
    REDIS,
    Peer,
    all_peers,
)
from benchlib.report import (  # noqa: E402
    THROUGHPUT,
    check_targets,
    format_targets,
    format_table,
    summarize,
    write_chart,
    write_json,
)
from benchlib.scenarios import (  # noqa: E402
    Scenario,
    ServerPool,
    all_scenarios,
    run_idle,
    run_redis,
    run_throughput,
)
from benchlib.servers import install_cleanup  # noqa: E402
from benchlib.wrk import wrk_available  # noqa: E402

IDLE_PEERS = "uvloop,protogen,protogen-runtime"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds before measuring"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 1 s, small counts"
    )
    parser.add_argument("--peers", help="comma list of peer names (default: all)")
    parser.add_argument(
        "--idle-peers", default=IDLE_PEERS, help="peers for the memory/capacity runs"
    )
    parser.add_argument(
        "--scenarios", help="comma list of substrings selecting scenarios"
    )
    parser.add_argument("--idle-conns", type=int, default=10_000)
    parser.add_argument("--max-conns", type=int, default=15_000)
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="directory for JSON/PNG"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 1.0, 0.3
        args.idle_conns = min(args.idle_conns, 1_000)
        args.max_conns = min(args.max_conns, 2_000)
    return args


def _selected(scenarios: list[Scenario], spec: str | None) -> list[Scenario]:
    if not spec:
        return scenarios
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    return [s for s in scenarios if any(w in s.name for w in wanted)]


def _prepare_peers(
    names: str | None, workdir: Path
) -> tuple[list[Peer], dict[str, str]]:
    wanted = {n.strip() for n in names.split(",")} if names else None
    ready, skipped = [], {}
    for peer in all_peers():
        if peer.kind not in (ECHO, HTTP, MEMCACHED, REDIS) or (
            wanted and peer.name not in wanted
        ):
            continue
        label = f"{peer.name} ({peer.kind})"
        if peer.kind == HTTP and not wrk_available():
            skipped[label] = "wrk is not installed"
        elif peer.kind == MEMCACHED and shutil.which("memcaslap") is None:
            skipped[label] = "memcaslap (libmemcached-tools) is not installed"
        elif peer.kind == REDIS and shutil.which("redis-benchmark") is None:
            skipped[label] = "redis-benchmark (redis-tools) is not installed"
        elif peer.prepare(workdir):
            ready.append(peer)
        else:
            skipped[label] = peer.skip_reason or "unavailable"
    return ready, skipped


def _rotate(items: list[Peer], by: int) -> list[Peer]:
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    pinning.set_pinning(not args.no_pin)
    try:
        binary = ensure_loadclient()
    except ClientError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    scenarios = _selected(
        all_scenarios(args.duration, args.warmup, args.idle_conns, args.max_conns),
        args.scenarios,
    )
    runs: list[dict] = []
    started = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="protogen-bench-") as workdir:
        peers, skipped = _prepare_peers(args.peers, Path(workdir))
        for label, reason in skipped.items():
            print(f"skipping {label}: {reason}", flush=True)
        pool = ServerPool()
        try:
            for round_no in range(args.rounds):
                for scenario in (s for s in scenarios if s.family == THROUGHPUT):
                    serving = [p for p in peers if p.kind == scenario.kind]
                    for peer in _rotate(serving, round_no):
                        if scenario.redis is not None:
                            done = run_redis(scenario, peer, pool, round_no)
                        else:
                            done = [
                                run_throughput(
                                    scenario,
                                    peer,
                                    pool,
                                    binary,
                                    round_no,
                                    args.duration,
                                )
                            ]
                        for run in done:
                            runs.append(run)
                            _progress(run, args.rounds)
        finally:
            pool.close()
        idle_names = {n.strip() for n in args.idle_peers.split(",")}
        for scenario in (s for s in scenarios if s.family != THROUGHPUT):
            for peer in (p for p in peers if p.kind == ECHO and p.name in idle_names):
                run = run_idle(scenario, peer, binary)
                runs.append(run)
                _progress(run, 1)

    rows = summarize(runs)
    print()
    print(format_table(rows))
    targets = check_targets(rows)
    if targets:
        print("\ntargets (generated server):")
        print(format_targets(targets))
    meta = {
        "started": started,
        "argv": sys.argv[1:] if argv is None else argv,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "pinned": pinning.pinning_enabled(),
        "baseline": BASELINE,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git": _git_revision(),
    }
    json_path = args.output / f"{started}.json"
    write_json(json_path, meta | {"targets": targets}, runs, rows, skipped)
    print(f"\nresults: {json_path}")
    png_path = json_path.with_suffix(".png")
    if write_chart(
        png_path,
        rows,
        f"protogen benchmarks {started} (medians of {args.rounds} rounds)",
    ):
        print(f"chart:   {png_path}")
    failed = [r for r in runs if not r["ok"]]
    for run in failed:
        print(
            f"ERROR {run['scenario']} {run['peer']}: {run.get('first_error', '')}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _progress(run: dict, rounds: int) -> None:
    what = (
        f"{run['rps']:,.0f} req/s"
        if run.get("rps") is not None
        else (
            f"{run['bytes_per_conn']:,.0f} B/conn, held {run.get('held')}"
            if run.get("bytes_per_conn") is not None
            else "-"
        )
    )
    status = "ok" if run["ok"] else f"ERROR {run.get('first_error', '')}"
    print(
        f"[{run['round'] + 1}/{rounds}] {run['scenario']:<26} {run['peer']:<23} {what}  {status}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
