"""Serve the MQTT example broker.

    python examples/mqtt/serve.py --listen tcp://127.0.0.1:1883 [--memory-budget 256MiB]

Builds `mqtt.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MqttBroker` from `handler.py` on the generated server until SIGINT/SIGTERM.
One event loop: the broker's subscriptions and retained messages live in it.
`--memory-budget` bounds what retained messages and the backlogs of slow
subscribers hold together (see handler.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import example_options, example_parser  # noqa: E402
from example_server import load_example as _load  # noqa: E402
from example_server import serve_example  # noqa: E402
from example_server import refuse_several_loops  # noqa: E402

from protogen.runtime.cli import format_size, parse_size  # noqa: E402

SPEC = "mqtt.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:1883"


# The handler's default; repeated so that --help needs no build.
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024


def _size(text: str) -> int:
    size = parse_size(text)
    if size <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return size


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0], [DEFAULT_LISTEN])
    parser.add_argument(
        "--memory-budget",
        type=_size,
        default=DEFAULT_MEMORY_BUDGET,
        metavar="SIZE",
        help="bytes that retained messages and slow subscribers' backlogs may hold"
        f" together (default {format_size(DEFAULT_MEMORY_BUDGET)}); past it QoS 0"
        " messages to slow subscribers are discarded and slow QoS 1 subscribers"
        " disconnected, and publishers are throttled",
    )
    args = parser.parse_args(argv)
    listen = args.listen or [DEFAULT_LISTEN]
    options = example_options(parser, args, listen)
    refuse_several_loops(
        parser,
        options,
        "the broker keeps sessions, subscriptions and retained messages in one process",
    )
    modules, handler = load_example()
    broker = handler.MqttBroker(memory_budget=args.memory_budget)
    return serve_example(modules, broker, listen, **options)


if __name__ == "__main__":
    sys.exit(main())
