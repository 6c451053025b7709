"""Serve the DNS example over UDP and TCP.

    python examples/dns/serve.py --listen udp://127.0.0.1:5353 --listen tcp://127.0.0.1:5353
    python examples/dns/serve.py --port 5353 [--zone FILE]     # both, on 127.0.0.1
    python examples/dns/serve.py --help                         # every runtime option

Builds `dns.proto.dsl` into protogen's build cache (as `protogen serve` does:
regenerated only when the spec, protogen or the templates change), then serves
`DnsExampleHandler` from `handler.py` with the zone `example.zone` (or --zone)
until SIGINT/SIGTERM.

UDP abuse guards: --udp-amplification (answers over UDP at most that many times
the query's size, else truncated: default 8, 0 for no limit but the client's)
and --rrl (responses per second per client /24 or /56 network; default 0: off).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
# The handler's modules and the spec's plug-in type (dns_names), which the
# generated codec imports.
sys.path.insert(0, str(HERE))
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
    parser.add_argument(
        "--udp-amplification",
        type=float,
        default=8.0,
        metavar="FACTOR",
        help="answer over UDP with at most FACTOR times the query's bytes; a larger"
        " answer is sent truncated (TC) so the client retries over TCP"
        " (default: 8; 0: only the 512-byte or EDNS limit)",
    )
    parser.add_argument(
        "--rrl",
        type=float,
        default=0.0,
        metavar="RATE",
        help="response rate limit: UDP responses per second per client network"
        " (/24, /56 for IPv6); past it every --rrl-slip-th response is sent empty"
        " with TC and the others dropped (default: 0, off)",
    )
    parser.add_argument(
        "--rrl-slip",
        type=int,
        default=2,
        metavar="N",
        help="with --rrl, one limited response in N is a truncated reply"
        " (default: 2; 0: drop them all)",
    )
    args = parser.parse_args(argv)
    if args.udp_amplification < 0:
        parser.error("--udp-amplification: the factor must be 0 or more")
    if args.rrl < 0 or args.rrl_slip < 0:
        parser.error("--rrl and --rrl-slip must be 0 or more")
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
    limiter = None
    if args.rrl:
        limiter = handler.RateLimiter(args.rrl, slip=args.rrl_slip)
    dns_handler = handler.DnsExampleHandler(
        zone=zone, amplification=args.udp_amplification, rate_limiter=limiter
    )
    return serve_example(modules, dns_handler, listen, **options)


if __name__ == "__main__":
    sys.exit(main())
