"""Serve the PostgreSQL example (a kv table behind the v3 wire protocol).

    python examples/postgres/serve.py --listen tcp://127.0.0.1:5432
    psql -h 127.0.0.1 -p 5432 -c "INSERT INTO kv VALUES ('k', 'v')"

Builds `postgres.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`PostgresExample` from `handler.py` until SIGINT/SIGTERM, with every runtime
option on the command line (`serve.py --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import main_with_loops  # noqa: E402

SPEC = "postgres.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:5432"


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_loops(
        HERE,
        SPEC,
        "PostgresExample",
        DEFAULT_LISTEN,
        __doc__.splitlines()[0],
        argv,
        one_process="the table lives in one process; rows inserted through one "
        "worker would be missing in the others",
    )


if __name__ == "__main__":
    sys.exit(main())
