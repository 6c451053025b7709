"""Serve the memcached binary-protocol example.

    python examples/memcached/serve.py --listen tcp://127.0.0.1:11211 [--loops N]

Builds `memcached.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MemcachedExampleHandler` from `handler.py` on the generated server until SIGINT/SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import load_example as _load  # noqa: E402
from example_server import main_with_loops  # noqa: E402

SPEC = "memcached.proto.dsl"


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_loops(
        HERE,
        SPEC,
        "MemcachedExampleHandler",
        "tcp://127.0.0.1:11211",
        __doc__.splitlines()[0],
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
