"""Serve the memcached binary-protocol example.

    python examples/memcached/serve.py --listen tcp://127.0.0.1:11211 [--loops N]

Builds `memcached.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MemcachedExampleHandler` from `handler.py` on the generated server until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import load_example as _load  # noqa: E402
from example_server import loops_options, serve_example  # noqa: E402

SPEC = "memcached.proto.dsl"


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="serve.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--listen", action="append", metavar="URL", help="default tcp://127.0.0.1:11211"
    )
    parser.add_argument(
        "--loops", type=int, default=1, metavar="N", help="event loops (processes)"
    )
    args = parser.parse_args(argv)
    if args.loops < 1:
        parser.error("--loops must be at least 1")
    modules, handler = load_example()
    return serve_example(
        modules,
        handler.MemcachedExampleHandler(),
        args.listen or ["tcp://127.0.0.1:11211"],
        **loops_options(args.loops),
    )


if __name__ == "__main__":
    sys.exit(main())
