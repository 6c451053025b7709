"""Serve the MQTT example broker.

    python examples/mqtt/serve.py --listen tcp://127.0.0.1:1883

Builds `mqtt.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`MqttBroker` from `handler.py` on the generated server until SIGINT/SIGTERM.
One event loop: the broker's subscriptions and retained messages live in it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

HERE = Path(__file__).resolve().parent
SPEC = HERE / "mqtt.proto.dsl"


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    from protogen.cache import ensure_built, import_built
    from protogen.parser import load_spec

    spec = load_spec(SPEC)
    root, package = ensure_built(spec)
    modules = import_built(spec, root, package)  # also importable as mqtt_codec, ...
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # handler.py imports topics.py
    loader = importlib.util.spec_from_file_location(
        "mqtt_example_handler", HERE / "handler.py"
    )
    assert loader is not None and loader.loader is not None
    handler = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = handler
    loader.loader.exec_module(handler)
    return modules, handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="serve.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--listen", action="append", metavar="URL", help="default tcp://127.0.0.1:1883"
    )
    args = parser.parse_args(argv)
    modules, handler = load_example()
    try:
        modules["server"].serve(
            handler.MqttBroker(), *(args.listen or ["tcp://127.0.0.1:1883"])
        )
    except (OSError, ValueError) as exc:
        print(f"serve.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
