"""Serve the WebSocket echo example.

    python examples/websocket/serve.py --listen tcp://127.0.0.1:8765 [--loops N]

Builds `websocket.proto.dsl` into protogen's build cache (as `protogen serve`
does: regenerated only when the spec, protogen or the templates change), then
serves `EchoServer` from `handler.py` until SIGINT/SIGTERM. Each connection's
state lives on the connection, so several event loops (processes) work.
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
        "websocket.proto.dsl",
        "EchoServer",
        "tcp://127.0.0.1:8765",
        __doc__.splitlines()[0],
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
