"""CPU-bound handler benchmark: 1 worker process vs N (issue 5).

The server is a length-prefixed echo whose handler burns ~50 us of CPU per
frame (measured with the thread's CPU clock, so time spent descheduled on a
busy machine does not count as work).  The native load client
(bench/bin/loadclient, built from bench/loadclient.c) drives it closed-loop
and verifies every reply; we compare requests/s for --loops 1 and --loops N.

    python bench/cpu_bound.py                # 1 vs 2 loops, 3 s each
    python bench/cpu_bound.py --loops 1 2 4 --duration 5 --burn-us 50

This is a benchmark, not a test: the result depends on free cores.  The
ideal speed-up with 2 workers is 2x; the load client needs CPU too, so on a
2-core machine expect less.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADCLIENT = ROOT / "bench" / "bin" / "loadclient"
HEADER = struct.Struct(">I")


def serve(port: int, loops: int, burn_us: float, policy: str) -> None:
    from protogen.runtime import Action, EventHandler, run

    burn_s = burn_us / 1e6
    cpu_clock = time.thread_time
    unpack_from = HEADER.unpack_from

    class BurningEcho(EventHandler):
        def on_traffic(self, conn):
            data = conn.peek()
            size = len(data)
            end = 0
            while size - end >= 4:
                (length,) = unpack_from(data, end)
                frame_end = end + 4 + length
                if frame_end > size:
                    conn.peek(frame_end)
                    break
                deadline = cpu_clock() + burn_s  # ~50 us of real CPU work per frame
                while cpu_clock() < deadline:
                    pass
                end = frame_end
            if end:
                conn.write(data[:end])
                conn.discard(end)
            return Action.NONE

    run(BurningEcho(), f"tcp://127.0.0.1:{port}", loops=loops, load_balancing=policy)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def measure(loops: int, args: argparse.Namespace) -> dict:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(port),
            "--loops",
            str(loops),
            "--burn-us",
            str(args.burn_us),
            "--lb",
            args.lb,
        ],
        start_new_session=True,
    )
    try:
        wait_listening(port)
        time.sleep(0.3)  # let every worker boot
        result = subprocess.run(
            [
                str(LOADCLIENT),
                "--port",
                str(port),
                "--conns",
                str(args.conns),
                "--depth",
                str(args.depth),
                "--size",
                str(args.size),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
            ],
            capture_output=True,
            text=True,
            timeout=args.duration + args.warmup + 30,
        )
        if not result.stdout.strip():
            raise RuntimeError(f"loadclient failed: {result.stderr}")
        report = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        # WNOWAIT: see it exit without reaping, so wait4 can still read its rusage.
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        while os.waitid(os.P_PID, server.pid, flags) is None:
            if time.monotonic() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        cpu = _reap_cpu_seconds(server)
    report["loops"] = loops
    # CPU the whole server (parent + workers) burned: on a shared machine it
    # shows whether the workers actually got the cores they needed.
    report["server_cpu_s"] = cpu
    return report


def _reap_cpu_seconds(server: subprocess.Popen) -> float:
    """Reap the server and return its CPU seconds, reaped workers included."""
    try:
        _, _, usage = os.wait4(server.pid, 0)
    except ChildProcessError:  # reaped elsewhere
        return float("nan")
    server.returncode = 0
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--loops", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--burn-us", type=float, default=50.0)
    parser.add_argument(
        "--lb",
        default="round_robin",
        help="round_robin, least_connections, source_addr_hash or reuseport",
    )
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="print raw reports")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.loops[0], args.burn_us, args.lb)
        return
    if not LOADCLIENT.exists():
        sys.exit(f"{LOADCLIENT} is missing: build it (see bench/loadclient.c)")
    reports = [measure(loops, args) for loops in args.loops]
    base = reports[0]["rps"] or 1.0
    print(
        f"cpu-bound echo, {args.burn_us:g} us CPU/frame, {args.conns} conns x depth "
        f"{args.depth}, {args.lb}, {os.cpu_count()} CPUs"
    )
    for report in reports:
        errors = report["lost"] + report["mismatches"] + report["errors"]
        print(
            f"  loops={report['loops']}: {report['rps']:10.0f} req/s  p99 "
            f"{report['p99_us']:8.0f} us  speed-up {report['rps'] / base:4.2f}x  "
            f"server CPU {report['server_cpu_s']:5.1f} s"
            f"{'  ERRORS=' + str(errors) if errors else ''}"
        )
        if args.json:
            print("   ", json.dumps(report))


if __name__ == "__main__":
    main()
