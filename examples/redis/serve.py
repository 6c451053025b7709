"""Serve the Redis example (an in-memory Redis on RESP2).

    python examples/redis/serve.py --listen tcp://127.0.0.1:6379
    redis-cli -p 6379 SET k v

Builds `redis.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`RedisExample` from `handler.py` until SIGINT/SIGTERM, with every runtime option
on the command line (`serve.py --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import main_with_loops  # noqa: E402

SPEC = "redis.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:6379"


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_loops(
        HERE,
        SPEC,
        "RedisExample",
        DEFAULT_LISTEN,
        __doc__.splitlines()[0],
        argv,
        one_process="the keyspace lives in one process; a key set through one "
        "worker would be missing in the others",
    )


if __name__ == "__main__":
    sys.exit(main())
