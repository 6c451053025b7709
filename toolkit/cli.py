"""The `protogen` command line: build, check, serve, templates export."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._version import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protogen",
        description="Generate fast, specialized network servers from a framing DSL.",
    )
    parser.add_argument(
        "--version", action="version", version=f"protogen {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    build = commands.add_parser("build", help="generate Python modules from specs")
    build.add_argument("specs", nargs="+", metavar="SPEC")
    build.add_argument("-o", "--output", default=".", metavar="DIR")
    build.add_argument("--templates", metavar="DIR", help="override templates from DIR")
    build.add_argument("--package", metavar="NAME", help="package name of the output")
    build.add_argument(
        "--with-tests", action="store_true", help="also emit property tests"
    )
    build.add_argument(
        "--handler-base",
        metavar="MODULE:CLASS",
        help="base class of the generated handler",
    )
    build.add_argument(
        "--frame-base",
        metavar="MODULE:CLASS",
        help="base class of the generated frames",
    )

    check = commands.add_parser("check", help="parse and validate specs only")
    check.add_argument("specs", nargs="+", metavar="SPEC")

    serve = commands.add_parser("serve", help="build a spec into a cache and serve it")
    serve.add_argument("spec", metavar="SPEC")
    serve.add_argument(
        "--handler", metavar="MODULE:CLASS", help="handler class (default: echo)"
    )
    serve.add_argument("--templates", metavar="DIR", help="override templates from DIR")
    serve.add_argument("--listen", action="append", metavar="URL")
    serve.add_argument("--loops", type=int, metavar="N")
    serve.add_argument(
        "--lb",
        choices=["round-robin", "least-connections", "source-hash", "reuseport"],
        metavar="POLICY",
    )

    templates = commands.add_parser("templates", help="work with the Jinja2 templates")
    template_commands = templates.add_subparsers(
        dest="templates_command", metavar="ACTION"
    )
    template_commands.required = True
    export = template_commands.add_parser("export", help="write the default templates")
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    from . import commands  # deferred: keeps `--help` and `--version` fast

    return commands.dispatch(args, parser)


if __name__ == "__main__":
    sys.exit(main())
