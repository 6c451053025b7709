"""Serve the memcached binary-protocol example.

    python examples/memcached/serve.py --listen tcp://127.0.0.1:11211 [-m MB] [-I SIZE]

Builds `memcached.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MemcachedExampleHandler` from `handler.py` on the generated server until SIGINT/SIGTERM.
`-m` and `-I` are memcached's: the memory limit in megabytes (least recently used
items are evicted past it) and the largest value (`1m`, `512k` or bytes).
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
from example_server import example_options, example_parser  # noqa: E402
from example_server import serve_example  # noqa: E402
from example_server import refuse_several_loops  # noqa: E402

SPEC = "memcached.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:11211"


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def size(text: str) -> int:
    """`1m`, `512k`, `2048` (bytes), as memcached's -I takes them."""
    units = {"k": 1024, "m": 1024 * 1024}
    scale = units.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1m, 512k, 2048)")
    return int(digits) * scale


def main(argv: Sequence[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0], [DEFAULT_LISTEN])
    parser.add_argument(
        "-m",
        "--memory-limit",
        type=int,
        default=64,
        metavar="MB",
        help="memory for items, in megabytes (default 64)",
    )
    parser.add_argument(
        "-I",
        "--max-item-size",
        type=size,
        default=1024 * 1024,
        metavar="SIZE",
        help="largest value: 1m, 512k or bytes (default 1m)",
    )
    args = parser.parse_args(argv)
    listen = args.listen or [DEFAULT_LISTEN]
    options = example_options(parser, args, listen)
    refuse_several_loops(
        parser,
        options,
        "the cache lives in one process; with several worker processes a key "
        "stored through one would be a miss on the others",
    )
    if args.memory_limit < 1:
        parser.error("-m must be at least 1 (megabyte)")
    modules, handler = load_example()
    try:
        served = handler.MemcachedExampleHandler(
            memory_limit=args.memory_limit * 1024 * 1024,
            item_size_max=args.max_item_size,
        )
    except ValueError as exc:  # the store's own limits (-I vs -m, -I minimum)
        parser.error(f"-I {args.max_item_size} with -m {args.memory_limit}: {exc}")
    return serve_example(modules, served, listen, **options)


if __name__ == "__main__":
    sys.exit(main())
