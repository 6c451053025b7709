"""CPU instructions per pipelined command of the Redis example, without sockets.

    .venv/bin/python bench/redis_hotpath.py                  # SET and GET, callgrind
    .venv/bin/python bench/redis_hotpath.py --example DIR    # another copy of examples/redis

The example's handler (`examples/redis/handler.py` over its generated codec and
handler, pure Python) gets reads of 16 pipelined `SET key:N xxx` (or `GET
key:N` of keys set before, as redis-benchmark's GET test reads what its SET test
wrote) commands from a stand-in connection (`peek`, `discard`, `write`: no
socket, no event loop), as redis-benchmark -P 16 sends them. Run under valgrind
twice with different numbers of reads, the difference in instructions divided
by the commands in between is the decode, dispatch, store and reply work of one
command: exact, so comparable across commits on a shared machine (the runtime's
per-read socket work is not in it; bench/cpu_per_request.py --redis has all).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib.callgrind import instructions as callgrind_instructions

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "redis"
PIPELINE = 16

WORKLOAD = """
import sys
sys.path[:0] = [{gen!r}, {example!r}]
from handler import RedisExample

class Loop:
    frame_budget = 64

class Conn:
    write_paused = False
    context = None  # for handlers keeping per-connection state there
    loop = Loop()

    def __init__(self, data):
        self.data = data

    def peek(self):
        return memoryview(self.data)

    def discard(self, n=-1):
        return n

    def write(self, data):
        return len(data)

def command(*args):
    return b"*%d\\r\\n" % len(args) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(a), a) for a in args)

sets = b"".join(command(b"SET", b"key:%012d" % i, b"xxx") for i in range({pipeline}))
gets = b"".join(command(b"GET", b"key:%012d" % i) for i in range({pipeline}))
handler = RedisExample()
handler.on_traffic(Conn(bytearray(sets)))
conn = Conn(bytearray(sets if {test!r} == "set" else gets))
handler.on_traffic(conn)  # the first allocations are made
for _ in range(int(sys.argv[1])):
    handler.on_traffic(conn)
"""


def instructions(script: Path, reads: int) -> int:
    return callgrind_instructions([sys.executable, str(script), str(reads)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=EXAMPLE)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("needs valgrind")
    work = Path(tempfile.mkdtemp(prefix="protogen-redis-hotpath-"))
    gen = work / "gen"
    subprocess.run(
        [sys.executable, "-m", "protogen", "build", "-o", str(gen),
         str(args.example / "redis.proto.dsl")],
        check=True, capture_output=True,
    )  # fmt: skip
    for test in ("set", "get"):
        script = work / f"{test}.py"
        script.write_text(
            WORKLOAD.format(
                gen=str(gen), example=str(args.example), test=test, pipeline=PIPELINE
            )
        )
        per = (instructions(script, args.reads) - instructions(script, 0)) / (
            args.reads * PIPELINE
        )
        print(f"{test.upper()}: {per:,.0f} instructions per command")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
