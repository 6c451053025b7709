"""Per-request Python cost of the HTTP example against its uvloop + httptools
peer, without the kernel: bench/hotpath.py's method for `http-distinct`.

    .venv/bin/python bench/httppath.py                     # protogen, ns per read
    .venv/bin/python bench/httppath.py --peer uvloop       # the peer, same reads
    .venv/bin/python bench/httppath.py --instructions      # both, callgrind counts

Each read event is `--depth` pipelined `GET /plaintext` requests as wrk's
pipeline_distinct.lua sends them, every one with its own X-Request-Id value; a
connection cycles through 64 such reads, so no two reads of a run are alike.
`--peer protogen` runs the real `EventLoop.run()` with the HTTP example's handler
(examples/http) over bench/hotpath.py's scripted sockets (recv_into copies the
read, send accepts everything). `--peer uvloop` feeds the same reads to the
peer's Protocol (bench/peers/http_uvloop.py) through a transport whose write
does nothing: its Python and httptools work per read, without uvloop's own C
read path (recv into a new bytes object, the call into Python), so the
comparison favours the peer. `--instructions` runs each under valgrind's
callgrind with two event counts and prints the difference per request.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import hotpath  # noqa: E402
from benchlib.callgrind import instructions as callgrind_instructions  # noqa: E402


def distinct_reads(depth: int, count: int) -> list[bytes]:
    """`count` reads of `depth` pipelined requests, as pipeline_distinct.lua
    makes them (Host, then a distinct X-Request-Id): no two heads the same."""
    reads = []
    counter = 0
    for _ in range(count):
        batch = []
        for _ in range(depth):
            counter += 1
            batch.append(
                b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                b"X-Request-Id: %016x\r\n\r\n" % counter
            )
        reads.append(b"".join(batch))
    return reads


class DistinctSocket(hotpath.ScriptedSocket):
    """recv_into returns the next read of a cycle of distinct ones."""

    def __init__(self, fd: int, reads: list[bytes]) -> None:
        super().__init__(fd, reads[0])
        self._reads = reads
        self._next = 0

    def recv_into(self, buf: bytearray | memoryview) -> int:
        request = self._reads[self._next]
        self._next = (self._next + 1) % len(self._reads)
        size = len(request)
        buf[:size] = request
        return size


def http_handler() -> object:
    """The HTTP example's handler, as its serve.py loads it."""
    sys.path.insert(0, str(ROOT / "examples" / "http"))
    import serve  # examples/http/serve.py

    _, module = serve.load_example()
    return module.HttpExampleHandler()  # its Date timer starts in on_boot: not here


def protogen_round(handler: object, conns: int, polls: int, reads: list[bytes]) -> float:
    """Seconds per read event of the real loop serving the HTTP example."""
    fds = list(range(1000, 1000 + conns))
    loop = hotpath.EventLoop(
        handler, hotpath.Options(), poller=hotpath.ScriptedPoller(fds, polls)
    )
    for fd in fds:
        loop.open(DistinctSocket(fd, reads), ("127.0.0.1", fd))
    start = time.perf_counter()
    try:
        loop.run()
    except StopIteration:
        pass
    elapsed = time.perf_counter() - start
    loop.close()
    return elapsed / (conns * polls)


class NullTransport:
    """What the peer's Protocol writes to: nothing is sent."""

    write = staticmethod(len)

    def close(self) -> None:
        pass


def uvloop_round(conns: int, polls: int, reads: list[bytes]) -> float:
    """Seconds per read event of the uvloop + httptools peer's data_received."""
    sys.path.insert(0, str(HERE / "peers"))
    import http_uvloop

    http_uvloop._date_header = b"Wed, 02 Dec 2026 06:00:00 GMT"  # its timer's job
    protocols = []
    for _ in range(conns):
        protocol = http_uvloop.HttpProtocol()
        protocol.connection_made(NullTransport())  # type: ignore[arg-type]
        protocols.append(protocol.data_received)
    raws = [bytearray(read) for read in reads]
    cycle = len(raws)
    start = time.perf_counter()
    for poll in range(polls):
        raw = raws[poll % cycle]
        for data_received in protocols:
            data_received(bytes(raw))  # uvloop hands each read over as new bytes
    return (time.perf_counter() - start) / (conns * polls)


def instructions(args: argparse.Namespace, peer: str) -> float:
    """Instructions per request: two callgrind runs differing in events only."""
    counts = []
    small, large = args.conns * 20, args.conns * 120
    for events in (small, large):
        counts.append(callgrind_instructions([
            sys.executable, __file__, "--peer", peer,
            "--conns", str(args.conns), "--depth", str(args.depth),
            "--events", str(events), "--rounds", "1", "--no-warmup",
        ]))  # fmt: skip
    return (counts[1] - counts[0]) / (large - small) / args.depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default="protogen", choices=("protogen", "uvloop"))
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--depth", type=int, default=16, help="requests per read")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--no-warmup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        # Build the example into protogen's build cache first: a build in one of
        # the two counted runs only would not cancel out.
        subprocess.run(
            [sys.executable, __file__, "--events", "1", "--rounds", "1"],
            check=True,
            capture_output=True,
        )
        mine = instructions(args, "protogen")
        peer = instructions(args, "uvloop")
        print(
            f"http-distinct, depth {args.depth}, {args.conns} conns: protogen "
            f"{mine:,.0f} instructions per request, uvloop + httptools {peer:,.0f} "
            f"(its Python and httptools part): {peer / mine:.2f}x"
        )
        return
    reads = distinct_reads(args.depth, 64)
    polls = max(1, args.events // args.conns)
    if args.peer == "uvloop":

        def run(count: int) -> float:
            return uvloop_round(args.conns, count, reads)

    else:
        handler = http_handler()

        def run(count: int) -> float:
            return protogen_round(handler, args.conns, count, reads)

    if not args.no_warmup:
        run(max(1, polls // 10))
    rounds = [run(polls) for _ in range(args.rounds)]
    median = statistics.median(rounds)
    print(
        f"{args.peer}, http-distinct, depth {args.depth}, {args.conns} conns: "
        f"{median * 1e9 / args.depth:.0f} ns per request (median of {args.rounds}; "
        f"min {min(rounds) * 1e9 / args.depth:.0f}, max {max(rounds) * 1e9 / args.depth:.0f})"
    )


if __name__ == "__main__":
    main()
