"""Serve the DNS example over UDP and TCP.

    python examples/dns/serve.py --listen udp://127.0.0.1:5353 --listen tcp://127.0.0.1:5353
    python examples/dns/serve.py --port 5353 [--zone FILE]     # both, on 127.0.0.1
    python examples/dns/serve.py --help                         # every runtime option

Builds `dns.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`DnsExampleHandler` from `handler.py` with the zone `example.zone` (or --zone)
until SIGINT/SIGTERM.
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

SPEC = "dns.proto.dsl"
DEFAULT_LISTEN = ("udp://127.0.0.1:5353", "tcp://127.0.0.1:5353")


def load_example() -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module)."""
    return _load(HERE, SPEC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0], DEFAULT_LISTEN)
    parser.add_argument(
        "--port",
        type=int,
        metavar="PORT",
        help="listen on udp and tcp 127.0.0.1:PORT (default: 5353, with no --listen)",
    )
    parser.add_argument(
        "--zone", type=Path, metavar="FILE", help="zone file (default: example.zone)"
    )
    args = parser.parse_args(argv)
    listen = list(args.listen or [])
    if args.port is not None:
        listen += [f"udp://127.0.0.1:{args.port}", f"tcp://127.0.0.1:{args.port}"]
    listen = listen or list(DEFAULT_LISTEN)
    options = example_options(parser, args, listen)
    modules, handler = load_example()
    try:
        zone = handler.load_zone(args.zone) if args.zone else None
    except (OSError, ValueError) as exc:
        print(f"serve.py: error: {exc}", file=sys.stderr)
        return 1
    return serve_example(
        modules, handler.DnsExampleHandler(zone=zone), listen, **options
    )


if __name__ == "__main__":
    sys.exit(main())
