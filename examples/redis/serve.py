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
from example_server import example_options, example_parser  # noqa: E402
from example_server import load_example, serve_example  # noqa: E402

SPEC = "redis.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:6379"


def main(argv: Sequence[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0], [DEFAULT_LISTEN])
    args = parser.parse_args(argv)
    listen = args.listen or [DEFAULT_LISTEN]
    options = example_options(parser, args, listen)
    loops = options.get("loops", 1)
    if loops > 1 or options.get("multicore"):
        parser.error(
            f"--loops {loops}: the keyspace lives in one process; a key set through "
            "one worker would be missing in the others, so this example serves "
            "with one event loop only"
        )
    modules, handler = load_example(HERE, SPEC)
    return serve_example(modules, handler.RedisExample(), listen, **options)


if __name__ == "__main__":
    sys.exit(main())
