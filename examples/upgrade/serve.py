"""Serve the upgrade example (HTTP/1.1, WebSocket echo after `GET /ws`).

    python examples/upgrade/serve.py --listen tcp://127.0.0.1:8080 [--loops N]
    python -m websockets ws://127.0.0.1:8080/ws

Builds `upgrade.proto.dsl` (and the WebSocket example's spec) into protogen's
build cache, then serves `UpgradeExample` from `handler.py` until
SIGINT/SIGTERM. Each connection's state lives on the connection, so several
event loops (processes) work.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import main_with_loops  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    return main_with_loops(
        HERE,
        "upgrade.proto.dsl",
        "UpgradeExample",
        "tcp://127.0.0.1:8080",
        __doc__.splitlines()[0],
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
