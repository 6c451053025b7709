"""The `protogen` command line: build, check, serve, templates export."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ._version import __version__

LOAD_HINT = "(the current directory is on the import path)"


class _HelpFormatter(argparse.HelpFormatter):
    """Wider help columns: the runtime options' names are long."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def _build_parser() -> argparse.ArgumentParser:
    from protogen.runtime.cli import add_listen_flag, add_runtime_flags

    parser = argparse.ArgumentParser(
        prog="protogen",
        description="Generate fast, specialized network servers from a framing DSL.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"protogen {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    build = commands.add_parser(
        "build",
        help="generate Python modules from specs",
        description="Parse each spec and write its codec, handler, server, client "
        "and asyncio modules (NAME_codec.py, ...) into DIR.",
        formatter_class=_HelpFormatter,
    )
    build.add_argument("specs", nargs="+", metavar="SPEC", help="a .proto.dsl file")
    build.add_argument(
        "-o",
        "--output",
        default=".",
        metavar="DIR",
        help="where to write the modules (default: the current directory)",
    )
    build.add_argument(
        "--templates",
        metavar="DIR",
        help="take templates from DIR first, the built-in ones for the rest "
        "(default: built-in only)",
    )
    build.add_argument(
        "--package",
        metavar="NAME",
        help="write into DIR/NAME/ as a package, modules importing each other "
        "relatively (default: plain modules in DIR)",
    )
    build.add_argument(
        "--with-tests",
        action="store_true",
        help="also write hypothesis property tests of the codec (default: off)",
    )
    build.add_argument(
        "--handler-base",
        metavar="MODULE:CLASS",
        help="base class of the generated handler (default: the spec's "
        "handler_base, else protogen.runtime.EventHandler)",
    )
    build.add_argument(
        "--compile",
        action="store_true",
        help="also compile the codec and handler modules into C extensions with "
        "Cython, beside them (needs the compiled extra; default: pure Python)",
    )
    build.add_argument(
        "--frame-base",
        metavar="MODULE:CLASS",
        help="base class of the generated frames (default: the spec's "
        "frame_base, else none)",
    )

    check = commands.add_parser(
        "check",
        help="parse and validate specs only",
        description="Parse and validate each spec; print `SPEC: ok` or every "
        "problem found.",
        formatter_class=_HelpFormatter,
    )
    check.add_argument("specs", nargs="+", metavar="SPEC", help="a .proto.dsl file")

    serve = commands.add_parser(
        "serve",
        help="build a spec into a cache and serve it",
        description="Build SPEC into protogen's build cache (only when it changed) "
        "and serve it until SIGINT/SIGTERM.",
        usage="%(prog)s SPEC [--handler MODULE:CLASS] [--listen URL ...] "
        "[--templates DIR] [runtime options]",
        formatter_class=_HelpFormatter,
    )
    serve.add_argument("spec", metavar="SPEC", help="a .proto.dsl file")
    serve.add_argument(
        "--handler",
        metavar="MODULE:CLASS",
        help="the EventHandler class to serve, imported " + LOAD_HINT + " "
        "(default: the generated echo handler; required when the spec's "
        "server decodes and encodes different frames)",
    )
    serve.add_argument(
        "--templates",
        metavar="DIR",
        help="take templates from DIR first (default: built-in only)",
    )
    serve.add_argument(
        "--compile",
        action="store_true",
        help="serve the codec and handler compiled into C extensions with Cython "
        "(built once into the cache; needs the compiled extra; default: pure Python)",
    )
    add_listen_flag(serve, "127.0.0.1 port 7000 on each of the spec's transports")
    add_runtime_flags(serve)

    version = commands.add_parser(
        "version",
        help="print protogen's version",
        description="Print protogen's version; with --verbose, also the "
        "interpreter and whether compiled mode is available and in use.",
    )
    version.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also report Cython, the C compiler and which runtime hot modules "
        "are compiled",
    )

    compile_runtime = commands.add_parser(
        "compile-runtime",
        help="compile the runtime's hot modules with Cython",
        description="Compile the runtime modules every read event runs through "
        "(buffer, poller, inbound, outbound, conn, eventloop) into C extensions; "
        "protogen.runtime loads them while they match their sources. Needs the "
        "compiled extra (Cython) and a C compiler. PROTOGEN_COMPILED=0 ignores them.",
    )
    compile_runtime.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="where to write them (default: beside the runtime's sources; "
        "another directory is used when PROTOGEN_COMPILED_DIR names it)",
    )

    compile_user = commands.add_parser(
        "compile",
        help="compile your own modules (handlers) with Cython",
        description="Compile each MODULE.py into a C extension beside it (or in "
        "DIR), which Python imports instead of the .py; rebuilt only when the "
        "source changed. Rerun it after editing the module: the extension, not "
        "the .py, is what gets imported. Needs the compiled extra (Cython) and a "
        "C compiler. protogen serve --compile does this for the --handler module "
        "by itself, in the build cache.",
    )
    compile_user.add_argument(
        "modules", nargs="+", metavar="MODULE.py", help="a Python source file"
    )
    compile_user.add_argument(
        "--package",
        metavar="PKG",
        help="the package the modules belong to, when imported as PKG.MODULE "
        "(default: top-level modules)",
    )
    compile_user.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="where to write the extensions (default: beside each source)",
    )

    templates = commands.add_parser(
        "templates",
        help="work with the Jinja2 templates",
        description="Work with the built-in Jinja2 templates.",
    )
    template_commands = templates.add_subparsers(
        dest="templates_command", metavar="ACTION"
    )
    template_commands.required = True
    export = template_commands.add_parser(
        "export",
        help="write the default templates",
        description="Write the built-in templates into DIR for editing.",
    )
    export.add_argument("directory", metavar="DIR", help="where to write them")
    export.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing files (default: refuse)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    from . import commands  # deferred: keeps `--help` and `--version` fast

    return commands.dispatch(args, parser)


if __name__ == "__main__":
    sys.exit(main())
