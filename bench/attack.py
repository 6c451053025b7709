"""`make attack`: hostile clients against every example server, for a bounded time
each, and what they cost: connections held, RSS, a bystander's worst latency,
errors, sockets and file descriptors left behind.

    .venv/bin/python bench/attack.py [--servers echo,http] [--attacks slowloris]
                                     [--duration 5] [--check]

Per server (echo, lines, fixed, netstring, varint, http, memcached, mqtt, dns:
its example as documented, on a free loopback port, pinned to CPU 0), each attack
runs for --duration seconds while a bystander (its own process, CPU 1) does
request/answer round trips on its own connection:

- slowloris: many connections trickling a frame that never completes;
- never-reading: connections pipelining requests with large answers, never reading;
- data+FIN: connections sending a request and their FIN in one segment;
- oversize+burst: frames over max_frame, and one connection pipelining a long burst.

Then every client closes and, once the server holds no more connections and
descriptors than before (or after 6 s), the server's sockets on its port are
counted (CLOSE_WAIT: a FIN it never noticed) with its open files. Goals:
bystander worst latency under --max-latency-ms, peak RSS growth under
--max-rss-growth-mb, no bystander error, nothing left behind. --check exits 1
when one is missed. --pass-cpu runs each server under benchlib/passcpu.py and
adds the CPU time of its event loop's heaviest pass during each attack: what
the server really spent, where a busy machine inflates wall-clock latency.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.attacks import (  # noqa: E402
    ATTACKS,
    AttackResult,
    Bystander,
    BystanderReport,
    Goals,
    Knobs,
    MiB,
    format_table,
)
from benchlib.passcpu import worst_pass  # noqa: E402
from benchlib.paths import ROOT  # noqa: E402
from benchlib.pinning import CLIENT_CPU, pinning_enabled  # noqa: E402
from benchlib.servers import (
    Server,
    ServerError,
    free_port,
    install_cleanup,
)  # noqa: E402
from benchlib.sockets import Holdings  # noqa: E402
from benchlib.targets import AnswerError, Stream, Target, all_targets  # noqa: E402

# Seconds for the server to let go of closed connections, at most: beyond the
# runtime's drain_timeout (5 s), the longest a closed socket may linger.
SETTLE = 6.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    targets = [target.name for target in all_targets()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers",
        default=",".join(targets),
        help=f"comma-separated, of {','.join(targets)} (default: all)",
    )
    parser.add_argument(
        "--attacks",
        default=",".join(ATTACKS),
        help=f"comma-separated, of {','.join(ATTACKS)} (default: all)",
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per attack (default 5)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a goal is missed"
    )
    parser.add_argument("--max-latency-ms", type=float, default=50.0)
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    knobs = Knobs()
    for name, value in vars(knobs).items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(value),
            default=value,
            help=f"default {value}",
        )
    parser.add_argument(
        "--pass-cpu",
        action="store_true",
        help="time each event-loop pass of the server in CPU time (benchlib/passcpu.py)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for option, known in (("servers", targets), ("attacks", list(ATTACKS))):
        chosen = [name for name in getattr(args, option).split(",") if name]
        unknown = sorted(set(chosen) - set(known))
        if unknown or not chosen:
            parser.error(
                f"--{option}: unknown {unknown or 'empty'}; choose from {known}"
            )
        setattr(args, option, chosen)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


PASSCPU = Path(__file__).resolve().parent / "benchlib" / "passcpu.py"


def start(target: Target, cache: Path, pass_log: Path | None = None) -> Server:
    for attempt in range(3):
        port = free_port()
        command = target.command(port)
        if pass_log is not None:  # python [-m module | script] ... under the timer
            command = [command[0], str(PASSCPU), str(pass_log), *command[1:]]
        server = Server(
            target.name,
            command,
            port,
            cwd=ROOT,
            env={"PROTOGEN_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"},
            start_timeout=120.0,  # the first start builds the spec
        )
        try:
            return server.start()
        except ServerError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def prepare(target: Target, port: int) -> None:
    """Store what the attacks ask for (a large value to fetch, ...)."""
    if not target.setup:
        return
    from benchlib.attacks import connect

    with connect(port) as sock:
        stream = Stream(sock)
        sock.sendall(target.hello(2_000_000) + target.setup)
        if target.read_hello is not None:
            target.read_hello(stream)
        if target.read_setup is not None:
            target.read_setup(stream)


def pid_of(server: Server) -> int | None:
    return server.proc.pid if server.proc is not None else None


def settle(port: int, pid: int | None, before: Holdings) -> Holdings:
    """What the server holds once it let go of what it held beyond `before`
    (or after SETTLE seconds): a socket it never lets go of stays counted.

    Its descriptors count too: a socket reset by its client is neither
    ESTABLISHED nor CLOSE_WAIT, yet open until the server's loop gets to it.
    """
    deadline = time.monotonic() + SETTLE
    while True:
        after = Holdings.of(port, pid)
        if after.connections <= before.connections and after.fds <= before.fds:
            return after
        if time.monotonic() >= deadline:
            return after
        time.sleep(0.02)


def run_attack(
    target: Target,
    server: Server,
    name: str,
    knobs: Knobs,
    duration: float,
    pass_log: Path | None = None,
) -> AttackResult:
    window_start = time.time()
    port, pid = server.port, pid_of(server)
    before = Holdings.of(port, pid)
    rss_before = server.rss()
    bystander = Bystander(target, port)
    if not bystander.start():
        report = bystander.stop()
        report.errors.insert(0, "the bystander got no first answer")
        return AttackResult(
            target.name,
            name,
            0,
            0,
            rss_before,
            rss_before,
            server.rss(),
            report,
            0,
            0,
            server.alive(),
        )
    attack = ATTACKS[name](target, port, knobs)
    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], server.rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = time.monotonic() + duration
    try:
        attack.open()
        attack.run(deadline)
        peak[0] = max(peak[0], server.rss())
        # Not the bystander, nor what an earlier attack left behind.
        held = Holdings.of(port, pid).connections - 1 - before.connections
    finally:
        attack.close()
        done.set()
        sampler.join()
    report = bystander.stop()
    after = settle(port, pid, before)
    heaviest = (0.0, 0)
    if pass_log is not None:
        heaviest = worst_pass(str(pass_log), window_start, time.time())
    return AttackResult(
        target.name,
        name,
        attack.clients,
        max(0, min(held, attack.clients)),
        rss_before,
        peak[0],
        server.rss(),
        report,
        # Growth only: a socket left by the start-up probe may be reaped meanwhile.
        max(0, after.close_wait - before.close_wait),
        after.fds - before.fds if after.fds >= 0 and before.fds >= 0 else 0,
        server.alive(),
        attack.detail,
        *heaviest,
    )


def attack_server(
    target: Target,
    names: list[str],
    knobs: Knobs,
    duration: float,
    cache: Path,
    pass_cpu: bool = False,
) -> list[AttackResult]:
    results = []
    pass_log = cache / f"{target.name}.passes" if pass_cpu else None
    try:
        server = start(target, cache, pass_log)
    except ServerError as exc:
        dead = BystanderReport(errors=[f"did not start: {exc}"])
        return [
            AttackResult(target.name, name, 0, 0, 0, 0, 0, dead, 0, 0, False)
            for name in names
        ]
    try:
        prepare(target, server.port)
        for name in names:
            if not server.alive():  # a previous attack killed it: start afresh
                server.stop()
                server = start(target, cache, pass_log)
                prepare(target, server.port)
            results.append(run_attack(target, server, name, knobs, duration, pass_log))
    except (OSError, AnswerError, ServerError) as exc:
        dead = BystanderReport(errors=[f"{type(exc).__name__}: {exc}"])
        for name in names[len(results) :]:
            results.append(
                AttackResult(
                    target.name, name, 0, 0, 0, 0, 0, dead, 0, 0, server.alive()
                )
            )
    finally:
        server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    if pinning_enabled():
        os.sched_setaffinity(0, {CLIENT_CPU})
    knobs = Knobs(**{name: getattr(args, name) for name in vars(Knobs())})
    goals = Goals(args.max_latency_ms / 1e3, int(args.max_rss_growth_mb * MiB))
    targets = {target.name: target for target in all_targets()}
    everything: list[AttackResult] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="protogen-attack-") as cache:
        for name in args.servers:
            target = targets[name]
            results = attack_server(
                target, args.attacks, knobs, args.duration, Path(cache), args.pass_cpu
            )
            everything += results
            print(format_table(name, results, goals), flush=True)
            for note in target.notes:
                print(f"  note: {note}")
            print(flush=True)
    missed = [r for r in everything if r.missed(goals)]
    print(
        f"{len(everything) - len(missed)}/{len(everything)} attack runs met every goal "
        f"(bystander worst < {args.max_latency_ms:g} ms, RSS growth <= "
        f"{args.max_rss_growth_mb:g} MiB, no errors, nothing left behind); "
        f"{time.monotonic() - started:.0f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in everything], indent=1))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
