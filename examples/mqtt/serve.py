"""Serve the MQTT example broker.

    python examples/mqtt/serve.py --listen tcp://127.0.0.1:1883

Builds `mqtt.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MqttBroker` from `handler.py` on the generated server until SIGINT/SIGTERM.
One event loop: the broker's subscriptions and retained messages live in it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import example_options, example_parser  # noqa: E402
from example_server import load_example as _load  # noqa: E402
from example_server import serve_example  # noqa: E402

SPEC = "mqtt.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:1883"


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0], [DEFAULT_LISTEN])
    args = parser.parse_args(argv)
    listen = args.listen or [DEFAULT_LISTEN]
    options = example_options(parser, args, listen)
    if options.get("loops", 1) > 1 or options.get("multicore"):
        parser.error(
            "the broker keeps sessions, subscriptions and retained messages in one"
            " process: --loops and --multicore are not supported"
        )
    modules, handler = load_example()
    return serve_example(modules, handler.MqttBroker(), listen, **options)


if __name__ == "__main__":
    sys.exit(main())
