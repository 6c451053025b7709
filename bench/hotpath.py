"""Per-event Python cost of the event loop's hot path, without the kernel.

The network benchmarks measure syscalls plus Python; on this noisy 2-core machine
the Python part (what protogen can change) drowns in their variance. This runs
the real `EventLoop.run()` against scripted sockets whose recv_into/send do no
I/O, so one number -- nanoseconds per read event -- compares two versions of the
runtime or the generated handler A/B, to within a few percent:

    .venv/bin/python bench/hotpath.py                       # generated echo handler
    .venv/bin/python bench/hotpath.py --handler runtime     # examples/runtime_echo.py
    .venv/bin/python bench/hotpath.py --handler typed       # a user's typed handler
    .venv/bin/python bench/hotpath.py --depth 16            # 16 frames per read
    .venv/bin/python bench/hotpath.py --handler typed --compile      # compiled codec+handler
    .venv/bin/python bench/hotpath.py --handler typed --compile --pure-handler
    .venv/bin/python bench/hotpath.py --handler typed --instructions # callgrind count
    .venv/bin/python bench/hotpath.py --handler uvloop-typed --instructions

`--compile` builds the generated modules with `protogen build --compile` and
the typed handler's module with `protogen compile` (not with --pure-handler); the
runtime's hot modules are compiled when `protogen compile-runtime` built them
(PROTOGEN_COMPILED=0 forces the pure runtime). `--instructions` runs the same
loop under valgrind's callgrind twice, with two event counts, and prints the
difference per read event: CPU instructions, exact on a shared machine.

`--handler uvloop-typed` runs the `uvloop-typed` peer's Protocol
(bench/peers/typed_uvloop.py) the same way: each read event is one
`data_received(bytes)` of the same request on each of `--conns` protocols, whose
transport's write accepts everything. uvloop's own C read path (its recv into a
new bytes object, the call into Python) is modelled by a bytes copy and a
Python call per read, so its count is a lower bound of the peer's per-frame
cost (the comparison favours the peer).

Each poll reports every connection readable; each read returns `depth` frames of
`--size` bytes; the handler echoes them (send accepts everything). The figure is
the median of --rounds, each of --events read events.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TYPED_HANDLER = ROOT / "bench" / "peers" / "typed_echo.py"
sys.path.insert(0, str(ROOT / "examples"))

from protogen.runtime import Options  # noqa: E402
from protogen.runtime.metrics import LoopMetrics  # noqa: E402
from protogen.runtime.eventloop import EventLoop  # noqa: E402
from protogen.runtime.poller import READABLE  # noqa: E402
from benchlib.callgrind import instructions as callgrind_instructions  # noqa: E402


class ScriptedSocket:
    """recv_into copies a fixed request; send (the builtin len) accepts everything."""

    send = staticmethod(len)

    def __init__(self, fd: int, request: bytes) -> None:
        self._fd = fd
        # A bytearray: assigning one to a bytearray slice is one memcpy, as the
        # kernel's copy is; assigning bytes first copies them into a temporary
        # bytearray (1,100-1,500 instructions per read, measured: no socket has it).
        self._request = bytearray(request)
        self._size = len(request)
        self._pos = 0

    def fileno(self) -> int:
        return self._fd

    def recv_into(self, buf: bytearray | memoryview) -> int:
        if not self._pos:
            size = self._size
            try:
                buf[:size] = self._request
                return size
            except (BufferError, ValueError):  # a request larger than the buffer
                pass
        # As a socket would: what fits, the rest of the request next time.
        chunk = self._request[self._pos : self._pos + len(buf)]
        buf[: len(chunk)] = chunk
        self._pos = (self._pos + len(chunk)) % self._size
        return len(chunk)

    def setblocking(self, flag: bool) -> None:
        pass

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", self._fd)

    def close(self) -> None:
        pass


class ScriptedPoller:
    """Reports every connection readable, `polls` times, then stops the loop."""

    edge_triggered = True  # as epoll is for the loop's connections by default

    def __init__(self, fds: list[int], polls: int) -> None:
        self._events = [(fd, READABLE) for fd in fds]
        self._left = polls
        self.loop: EventLoop | None = None

    def poll_raw(self, timeout: float | None) -> list[tuple[int, int]]:
        self._left -= 1
        if self._left < 0:
            raise StopIteration  # ends run(); its finally-block closes the conns
        return self._events

    poll = poll_raw

    def register(self, fd: int, events: int, *, level: bool = False) -> None:
        pass

    def modify(self, fd: int, events: int) -> None:
        pass

    def unregister(self, fd: int) -> None:
        pass

    def close(self) -> None:
        pass


def generated_handler() -> object:
    """Build examples/echo.proto.dsl into a temp dir and return its default handler."""
    out = Path(tempfile.mkdtemp(prefix="protogen-hotpath-"))
    if os.environ.get("HOTPATH_GENERATED"):  # a hand-edited variant, for A/B
        out = Path(os.environ["HOTPATH_GENERATED"])
    else:
        build_into(out, compiled=bool(os.environ.get("HOTPATH_COMPILE")))
    sys.path.insert(0, str(out))
    module = importlib.import_module("echo_handler")
    return module.EchoEchoHandler()


def build_into(out: Path, compiled: bool = False) -> None:
    """The echo example built into `out`, with the typed handler beside it;
    compiled, the handler module is compiled too (as `protogen serve --compile
    --handler` does) unless HOTPATH_PURE_HANDLER is set."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(TYPED_HANDLER, out / TYPED_HANDLER.name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "protogen",
            "build",
            str(ROOT / "examples" / "echo.proto.dsl"),
            "-o",
            str(out),
            *(["--compile"] if compiled else []),
        ],
        check=True,
        capture_output=True,
    )
    if compiled and not os.environ.get("HOTPATH_PURE_HANDLER"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "protogen",
                "compile",
                str(out / TYPED_HANDLER.name),
            ],
            check=True,
            capture_output=True,
        )


def typed_handler() -> object:
    """What a user writes (bench/peers/typed_echo.py, the network benchmark's
    handler too): the generated handler, subclassed; every frame is a typed
    Message, answered with a new Message through self.send."""
    generated_handler()
    module = importlib.import_module("typed_echo")
    if os.environ.get("HOTPATH_SHOW_HANDLER"):
        print(f"typed handler from {module.__file__}", file=sys.stderr)
    return module.TypedEcho()


def silent_handler() -> object:
    """The decode loop and dispatch alone: on_message answers nothing."""
    generated_handler()
    from echo_codec import Message
    from echo_handler import EchoHandler

    class Silent(EchoHandler):  # type: ignore[misc, valid-type]
        def on_message(self, conn: object, frame: Message) -> None:
            return None

    return Silent()


class DiscardTransport:
    """What the uvloop-typed peer writes to: write (the builtin len) accepts everything."""

    write = staticmethod(len)


def uvloop_typed_round(conns: int, polls: int, request: bytes) -> float:
    """Seconds per read event of the uvloop-typed peer's data_received."""
    sys.path.insert(0, str(ROOT / "bench" / "peers"))
    from typed_uvloop import TypedEchoProtocol

    protocols = []
    for _ in range(conns):
        protocol = TypedEchoProtocol()
        protocol.connection_made(DiscardTransport())  # type: ignore[arg-type]
        protocols.append(protocol.data_received)
    raw = bytearray(request)
    start = time.perf_counter()
    for _ in range(polls):
        for data_received in protocols:
            data_received(bytes(raw))  # uvloop hands each read over as new bytes
    elapsed = time.perf_counter() - start
    return elapsed / (conns * polls)


def load_handler(name: str) -> object:
    if name == "generated":
        return generated_handler()
    if name == "runtime":
        return importlib.import_module("runtime_echo").LengthPrefixedEcho()
    if name == "typed":
        return typed_handler()
    if name == "silent":
        return silent_handler()
    if name == "uvloop-typed":
        return name  # not a protogen handler: one_round runs the peer's Protocol
    raise SystemExit(
        f"unknown --handler {name!r}: generated, runtime, typed, silent or uvloop-typed"
    )


def one_round(
    handler: object, conns: int, polls: int, request: bytes, metrics: bool = False
) -> float:
    """Seconds per read event for one run of the loop."""
    if handler == "uvloop-typed":
        return uvloop_typed_round(conns, polls, request)
    fds = list(range(1000, 1000 + conns))
    poller = ScriptedPoller(fds, polls)
    loop = EventLoop(handler, Options(), poller=poller)
    if metrics:
        LoopMetrics(loop, handler)  # what the metrics option installs
    for fd in fds:
        loop.open(ScriptedSocket(fd, request), ("127.0.0.1", fd))
    start = time.perf_counter()
    try:
        loop.run()
    except StopIteration:
        pass
    elapsed = time.perf_counter() - start
    loop.close()
    return elapsed / (conns * polls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--handler",
        default="generated",
        help="generated, runtime, typed, silent or uvloop-typed",
    )
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--depth", type=int, default=1, help="frames per read")
    parser.add_argument("--size", type=int, default=64, help="payload bytes per frame")
    parser.add_argument(
        "--events", type=int, default=500_000, help="read events per round"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--metrics", action="store_true", help="count as the metrics option does"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="the generated modules compiled (protogen build --compile)",
    )
    parser.add_argument(
        "--pure-handler",
        action="store_true",
        help="with --compile: the typed handler's own module stays pure Python",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="CPU instructions per read event, under callgrind",
    )
    parser.add_argument("--no-warmup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile:
        os.environ["HOTPATH_COMPILE"] = "1"
    if args.pure_handler:
        os.environ["HOTPATH_PURE_HANDLER"] = "1"
    if args.instructions:
        instructions(args)
        return
    frame = struct.pack(">I", args.size) + b"x" * args.size
    request = frame * args.depth
    handler = load_handler(args.handler)
    polls = max(1, args.events // args.conns)
    if not args.no_warmup:
        warm = max(1, polls // 10)
        one_round(handler, args.conns, warm, request, args.metrics)
    rounds = [
        one_round(handler, args.conns, polls, request, args.metrics)
        for _ in range(args.rounds)
    ]
    median = statistics.median(rounds)
    print(
        f"{args.handler} handler, depth {args.depth}, {args.size} B, {args.conns} conns: "
        f"{median * 1e9:.0f} ns per read event (median of {args.rounds}; "
        f"min {min(rounds) * 1e9:.0f}, max {max(rounds) * 1e9:.0f})"
    )


def instructions(args: argparse.Namespace) -> None:
    """Instructions per read event: two callgrind runs that differ only in the
    number of events, so start-up, imports and the build cancel out."""
    out = Path(tempfile.mkdtemp(prefix="protogen-hotpath-"))
    if os.environ.get("HOTPATH_GENERATED"):
        out = Path(os.environ["HOTPATH_GENERATED"])
    elif args.handler not in ("runtime", "uvloop-typed"):
        build_into(out, compiled=args.compile)
    env = dict(os.environ, HOTPATH_GENERATED=str(out), PYTHONHASHSEED="0")
    counts = []
    small, large = args.conns * 20, args.conns * 120
    for events in (small, large):
        command = [
                sys.executable,
                __file__,
                "--handler",
                args.handler,
                "--conns",
                str(args.conns),
                "--depth",
                str(args.depth),
                "--size",
                str(args.size),
                "--events",
                str(events),
                "--rounds",
                "1",
                "--no-warmup",
        ]
        counts.append(callgrind_instructions(command, env))
    per_event = (counts[1] - counts[0]) / (large - small)
    mode = "compiled" if args.compile else "pure"
    if args.handler == "uvloop-typed":
        mode = "pure Python on uvloop, read path modelled"
    if args.compile and args.handler == "typed":
        mode += ", handler pure" if args.pure_handler else ", handler compiled"
    print(
        f"{args.handler} handler ({mode}), depth {args.depth}, {args.size} B, "
        f"{args.conns} conns: {per_event:,.0f} instructions per read event, "
        f"{per_event / args.depth:,.0f} per frame"
    )


if __name__ == "__main__":
    main()
