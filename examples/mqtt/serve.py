"""Serve the MQTT example broker.

    python examples/mqtt/serve.py --listen tcp://127.0.0.1:1883

Builds `mqtt.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MqttBroker` from `handler.py` on the generated server until SIGINT/SIGTERM.
One event loop: the broker's subscriptions and retained messages live in it.
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
from example_server import serve_example  # noqa: E402

SPEC = "mqtt.proto.dsl"


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="serve.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--listen", action="append", metavar="URL", help="default tcp://127.0.0.1:1883"
    )
    args = parser.parse_args(argv)
    modules, handler = load_example()
    return serve_example(
        modules, handler.MqttBroker(), args.listen or ["tcp://127.0.0.1:1883"]
    )


if __name__ == "__main__":
    sys.exit(main())
