"""`make soak`: drive the generated echo and lines servers for a long time (default
10 minutes) with the native load client, reconnect churn and random frame sizes.

Every response is verified. Prints frames sent/received/lost per protocol and the
server RSS at start, peak and end; exits non-zero if any frame was lost or wrong, a
connection failed, or a server died. `--against uvloop` soaks the reference peers
instead (a self-test of the harness). See docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.client import (  # noqa: E402
    ClientError,
    LoadSpec,
    Target,
    ensure_loadclient,
    finish_load,
    load_budget,
    load_command,
)
from benchlib.paths import RESULTS  # noqa: E402
from benchlib.peers import ECHO, LINES, Peer, all_peers  # noqa: E402
from benchlib.scenarios import start_server  # noqa: E402
from benchlib.servers import Server, ServerError, install_cleanup  # noqa: E402

RSS_SAMPLE_EVERY = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=600.0, help="seconds (default 600)"
    )
    parser.add_argument(
        "--conns", type=int, default=32, help="connections per protocol"
    )
    parser.add_argument(
        "--depth", type=int, default=8, help="frames in flight per connection"
    )
    parser.add_argument(
        "--churn", type=int, default=500, help="reconnect after K frames"
    )
    parser.add_argument(
        "--echo-max", type=int, default=16384, help="largest echo payload"
    )
    parser.add_argument("--lines-max", type=int, default=2048, help="longest line")
    parser.add_argument("--against", choices=("protogen", "uvloop"), default="protogen")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _peers(against: str, workdir: Path) -> dict[str, Peer]:
    chosen = {}
    for peer in all_peers():
        if (
            peer.kind in (ECHO, LINES)
            and peer.name == against
            and peer.kind not in chosen
        ):
            chosen[peer.kind] = peer
    for kind, peer in chosen.items():
        if not peer.prepare(workdir):
            raise ServerError(f"cannot soak {against} {kind}: {peer.skip_reason}")
    return chosen


def _spec(kind: str, args: argparse.Namespace) -> LoadSpec:
    return LoadSpec(
        conns=args.conns,
        depth=args.depth,
        size=1,
        max_size=args.echo_max if kind == ECHO else args.lines_max,
        duration=args.duration,
        warmup=0.0,
        churn=args.churn,
        proto="echo" if kind == ECHO else "lines",
        extra=["--stall", "30"],
    )


def soak(
    args: argparse.Namespace, binary: Path, peers: dict[str, Peer]
) -> dict[str, dict]:
    servers: dict[str, Server] = {}
    results: dict[str, dict] = {}
    try:
        for kind, peer in peers.items():
            servers[kind] = start_server(peer)
        rss = {k: {"start": s.rss(), "peak": s.rss()} for k, s in servers.items()}
        clients = {}
        for kind, server in servers.items():
            spec = _spec(kind, args)
            cmd = load_command(binary, Target(server.port), spec, cpu=None)
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            clients[kind] = (proc, spec)
        started = time.monotonic()
        next_report = started + 60
        while any(proc.poll() is None for proc, _ in clients.values()):
            time.sleep(min(RSS_SAMPLE_EVERY, 0.5 + args.duration / 10))
            for kind, server in servers.items():
                rss[kind]["peak"] = max(rss[kind]["peak"], server.rss())
            if time.monotonic() >= next_report:
                next_report += 60
                elapsed = time.monotonic() - started
                mem = ", ".join(
                    f"{k} RSS {rss[k]['peak'] / 2**20:.1f} MiB peak" for k in servers
                )
                print(f"  {elapsed:5.0f} s elapsed; {mem}", flush=True)
        for kind, (proc, spec) in clients.items():
            server = servers[kind]
            try:
                report = finish_load(proc, load_budget(spec))
            except ClientError as exc:
                report = {"errors": 1, "first_error": str(exc)}
            report["rss_start"] = rss[kind]["start"]
            report["rss_peak"] = rss[kind]["peak"]
            report["rss_end"] = server.rss()
            report["server_alive"] = server.alive()
            if not server.alive():
                report["errors"] = int(report.get("errors", 0)) + 1
                report["first_error"] = f"server died: {server.log_tail(300)}"
            results[kind] = report
    finally:
        for server in servers.values():
            server.stop()
    return results


def _print_summary(results: dict[str, dict]) -> None:
    mib = 2**20
    for kind, r in results.items():
        print(
            f"{kind:<6} sent {r.get('sent', 0):>10,}  received {r.get('received', 0):>10,}  "
            f"lost {r.get('lost', 0):>3}  mismatched {r.get('mismatches', 0):>3}  "
            f"reconnects {r.get('reconnects', 0):>7,}  errors {r.get('errors', 0)}"
        )
        print(
            f"       server RSS start {r['rss_start'] / mib:.1f} MiB, peak {r['rss_peak'] / mib:.1f} MiB, "
            f"end {r['rss_end'] / mib:.1f} MiB; p99 {r.get('p99_us', 0):.0f} us"
        )
        if r.get("first_error"):
            print(f"       first error: {r['first_error']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    try:
        binary = ensure_loadclient()
    except ClientError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    print(
        f"soak: {args.against} echo + lines for {args.duration:.0f} s, {args.conns} connections "
        f"each, depth {args.depth}, churn every {args.churn} frames",
        flush=True,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory(prefix="protogen-soak-") as workdir:
        try:
            peers = _peers(args.against, Path(workdir))
            results = soak(args, binary, peers)
        except ServerError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
    _print_summary(results)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"soak-{stamp}.json"
    path.write_text(
        json.dumps(
            {"args": vars(args) | {"output": str(args.output)}, "results": results},
            indent=2,
        )
        + "\n"
    )
    print(f"results: {path}")
    failed = any(
        int(r.get("errors", 0)) or int(r.get("lost", 0)) for r in results.values()
    )
    print("SOAK FAILED" if failed else "soak passed: 0 frames lost")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
