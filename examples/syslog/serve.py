"""Serve the syslog example (a collector for syslog over TCP, RFC 6587).

    python examples/syslog/serve.py --listen tcp://127.0.0.1:5514 [--output FILE]
    logger -n 127.0.0.1 -P 5514 -T --octet-count "hello"

Builds `syslog.proto.dsl` into protogen's build cache (as `protogen serve`
does), then serves `SyslogExample` from `handler.py` until SIGINT/SIGTERM,
writing one line per message to stdout or FILE (appended), with every runtime
option on the command line (`serve.py --help`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from example_server import example_options, example_parser  # noqa: E402
from example_server import load_example, serve_example  # noqa: E402
from example_server import refuse_several_loops  # noqa: E402

SPEC = "syslog.proto.dsl"
DEFAULT_LISTEN = "tcp://127.0.0.1:5514"


def main(argv: Sequence[str] | None = None) -> int:
    parser = example_parser(__doc__.splitlines()[0], [DEFAULT_LISTEN])
    parser.add_argument(
        "--output", metavar="FILE", help="append the messages to FILE (default stdout)"
    )
    args = parser.parse_args(argv)
    listen = args.listen or [DEFAULT_LISTEN]
    options = example_options(parser, args, listen)
    refuse_several_loops(parser, options, "one process writes the output")
    modules, handler = load_example(HERE, SPEC)
    output = open(args.output, "a", encoding="utf-8") if args.output else None
    try:
        return serve_example(modules, handler.SyslogExample(output), listen, **options)
    finally:
        if output is not None:
            output.close()


if __name__ == "__main__":
    sys.exit(main())
