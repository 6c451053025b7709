"""Where a TLS echo server's time goes, exactly: the echo peers over TLS driven
by a deterministic client, under callgrind (instructions per frame, the
interpreter's and OpenSSL's alike), strace (system calls per frame) or
cProfile (protogen's Python functions).

    .venv/bin/python bench/tlsprofile.py                      # callgrind, both peers
    .venv/bin/python bench/tlsprofile.py --strace             # syscalls per frame
    .venv/bin/python bench/tlsprofile.py --cprofile --peers protogen-typed
    .venv/bin/python bench/tlsprofile.py --size 4096 --top 40
    .venv/bin/python bench/tlsprofile.py --handshakes --rounds 100  # per connection

The client opens `--conns` TLS connections on one certificate and, round after
round, writes `--depth` frames of `--size` bytes on every connection (one
write, so one TLS record each for small frames) and reads every echo back
before the next round: each read event of the server holds whole records, and
both peers get exactly the same bytes. Every figure is the difference between
a run of `--rounds` rounds and one of `--rounds * 3`, divided by the frames in
between, so that start-up, imports and the handshakes cancel out. The machine's
load changes none of these counts (unlike req/s or CPU time).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.peers import ECHO, all_peers  # noqa: E402
from benchlib.servers import free_port, raise_nofile_limit  # noqa: E402
from benchlib.tls import Certificate, make_certificate, over_tls  # noqa: E402
from hotprofile import annotate  # noqa: E402  (callgrind_annotate, inclusive counts)

SYSCALL = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$")


def drive(
    port: int, certificate: Certificate, args: argparse.Namespace, rounds: int
) -> None:
    """The deterministic client (see the module docstring)."""
    context = None if args.plain else certificate.client_context()
    frame = len(b"x" * args.size).to_bytes(4, "big") + b"x" * args.size
    batch = frame * args.depth
    if args.handshakes:
        # A new connection per round: a full handshake (no resumption), one
        # frame echoed, a graceful close.
        for _ in range(rounds):
            raw = socket.create_connection(("127.0.0.1", port), timeout=120)
            if context is not None:
                raw = context.wrap_socket(raw, server_hostname="127.0.0.1")
            with raw:
                raw.sendall(frame)
                left = len(frame)
                while left:
                    got = raw.recv(left)
                    if not got:
                        raise SystemExit("the server closed a connection")
                    left -= len(got)
        return
    conns = []
    for _ in range(args.conns):
        raw = socket.create_connection(("127.0.0.1", port), timeout=120)
        if context is not None:
            raw = context.wrap_socket(raw, server_hostname="127.0.0.1")
        conns.append(raw)
    for _ in range(rounds):
        for conn in conns:
            conn.sendall(batch)
        for conn in conns:
            left = len(batch)
            while left:
                got = conn.recv(left)
                if not got:
                    raise SystemExit("the server closed a connection")
                left -= len(got)
    for conn in conns:
        conn.close()


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not listen")


def run_server(
    peer: Any,
    prefix: list[str],
    certificate: Certificate,
    args: argparse.Namespace,
    rounds: int,
    env: dict[str, str],
) -> None:
    """The peer under `prefix` (valgrind, strace) for one client run; returns
    once the server exited (so its tool wrote its report)."""
    port = free_port()
    cmd, cwd = peer.command(port)
    raise_nofile_limit()
    proc = subprocess.Popen(
        [*prefix, *cmd],
        cwd=cwd,
        env={**os.environ, **peer.env, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(port, proc, 300)
        drive(port, certificate, args, rounds)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def syscalls(out: Path) -> dict[str, int]:
    counts = {}
    for line in out.read_text().splitlines():
        match = SYSCALL.match(line)
        if match and match.group(2) != "total":
            counts[match.group(2)] = int(match.group(1))
    return counts


def profile(
    peer: Any, certificate: Certificate, args: argparse.Namespace, scratch: Path
) -> None:
    small, large = args.rounds, args.rounds * 3
    frames = (large - small) * (1 if args.handshakes else args.conns * args.depth)
    if args.cprofile:
        out = scratch / f"{peer.name}.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(out)]
        # cProfile wraps the interpreter: the peer's own python is replaced.
        run_server(_Wrapped(peer, cmd), [], certificate, args, large, {})
        import pstats

        print(f"\n== {peer.name}: cProfile, {large} rounds")
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(args.top)
        return
    counts = []
    for rounds in (small, large):
        if args.strace:
            out = scratch / f"{peer.name}.strace.{rounds}"
            prefix = ["strace", "-f", "-c", "-o", str(out)]
            run_server(peer, prefix, certificate, args, rounds, {})
            counts.append(syscalls(out))
        else:
            out = scratch / f"{peer.name}.callgrind.{rounds}"
            prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            run_server(peer, prefix, certificate, args, rounds, {"PYTHONHASHSEED": "0"})
            counts.append(annotate(out))
    rows = sorted(((counts[1][k] - counts[0].get(k, 0)) / frames, k) for k in counts[1])
    what = "system calls" if args.strace else "instructions (inclusive)"
    over = "TCP" if args.plain else "TLS"
    if args.handshakes:
        print(f"\n== {peer.name} over {over}: {what} per connection (handshake)")
    else:
        print(
            f"\n== {peer.name} over {over}: {what} per frame, {args.conns} conns, "
            f"depth {args.depth}, {args.size} B"
        )
    if args.strace:
        print(f"{sum(r[0] for r in rows):9.3f}  total")
    else:
        total = "PROGRAM TOTALS"
        print(f"{(counts[1][total] - counts[0][total]) / frames:9,.0f}  total")
    for per_frame, name in reversed(rows[-args.top :]):
        print(
            f"{per_frame:9,.3f}  {name[-110:]}"
            if args.strace
            else f"{per_frame:9,.0f}  {name[-110:]}"
        )


class _Wrapped:
    """`peer` with its interpreter run as `interpreter -m cProfile -o ...`."""

    def __init__(self, peer: Any, python: list[str]) -> None:
        self.peer, self.python = peer, python
        self.name, self.env = peer.name, peer.env

    def command(self, port: int) -> tuple[list[str], Path | None]:
        cmd, cwd = self.peer.command(port)
        return [*self.python, *cmd[1:]], cwd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="uvloop-typed,protogen-typed")
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--plain", action="store_true", help="the same over plain TCP (what TLS adds)"
    )
    parser.add_argument(
        "--handshakes",
        action="store_true",
        help="per connection instead: a new one per round, one frame, closed",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--strace", action="store_true")
    mode.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="protogen-tlsprofile-"))
    certificate = make_certificate(scratch)
    by_name = {p.name: p for p in all_peers() if p.kind == ECHO}
    for name in args.peers.split(","):
        peer = by_name[name.strip()]
        if not args.plain:
            peer = over_tls(peer, certificate)
        if not peer.prepare(scratch):
            print(f"skipping {peer.name}: {peer.skip_reason}")
            continue
        profile(peer, certificate, args, scratch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
