"""What every example's `serve.py` does: build its spec into protogen's build cache
(as `protogen serve` does: regenerated only when the spec, protogen or the templates
change), load the example's `handler.py`, and serve it until SIGINT/SIGTERM, with
every runtime option on the command line (`serve.py --help`)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from protogen.runtime.cli import (
    add_listen_flag,
    add_runtime_flags,
    check_listen,
    configure_logging,
    log_format,
    log_level,
    runtime_options,
    serve_command,
)


def load_example(
    here: Path, spec_name: str
) -> tuple[dict[str, ModuleType], ModuleType]:
    """(the generated modules by kind, the example's handler module).

    The generated modules are also importable by their plain names (`http_codec`, …),
    and `here` goes on sys.path so a handler can import its helper modules.
    """
    from protogen.cache import ensure_built, import_built
    from protogen.parser import load_spec

    spec = load_spec(here / spec_name)
    root, package = ensure_built(spec)
    modules = import_built(spec, root, package)
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    loader = importlib.util.spec_from_file_location(
        f"{spec.name}_example_handler", here / "handler.py"
    )
    assert loader is not None and loader.loader is not None
    handler = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = handler
    loader.loader.exec_module(handler)
    return modules, handler


def example_parser(
    description: str, default_listen: Sequence[str]
) -> argparse.ArgumentParser:
    """`serve.py [--listen URL ...] [runtime options]`: every runtime option
    (`--loops`, `--idle-timeout`, `--max-connections`, `--log-level`, ...) is a
    flag, from `protogen.runtime.cli`. Add the example's own flags to it."""
    parser = argparse.ArgumentParser(
        prog="serve.py",
        description=description,
        usage="%(prog)s [--listen URL ...] [options] [runtime options]",
    )
    add_listen_flag(parser, default_listen)
    add_runtime_flags(parser)
    return parser


def example_options(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    listen: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The runtime options chosen (flags, then PROTOGEN_* variables, then
    `base`), with --listen checked and logging set up; bad values exit 2."""
    options = runtime_options(args, parser=parser, base=base)
    check_listen(parser, listen)
    try:
        configure_logging(log_level(args), log_format(args))
    except ValueError as exc:
        parser.error(str(exc))
    return options


def serve_example(
    modules: dict[str, ModuleType],
    handler: Any,
    listen: Sequence[str],
    **options: Any,
) -> int:
    """Serve until stopped; prints `serve.py: serving ...` once every listener
    is bound; a bind error, or a handler refusing to boot, is one line on
    stderr and exit status 1."""
    protocol = modules["server"].__name__.rpartition(".")[2].removesuffix("_server")
    return serve_command("serve.py", handler, listen, options, protocol=protocol)


def loops_options(loops: int) -> dict[str, Any]:
    return {"loops": loops, "multicore": True} if loops > 1 else {}


def refuse_several_loops(
    parser: argparse.ArgumentParser, options: dict[str, Any], why: str
) -> None:
    """Exit 2 when `--loops N > 1` or `--multicore` is asked of an example whose
    state lives in one process: several workers would each hold a part of it
    (`why` says which) and answer as if the rest did not exist."""
    loops = options.get("loops", 1)
    if loops > 1 or options.get("multicore"):
        parser.error(
            f"--loops {loops}: {why}, so this example serves with one event loop only"
        )


def main_with_loops(
    here: Path,
    spec_name: str,
    handler_class: str,
    default_listen: str,
    description: str,
    argv: Sequence[str] | None = None,
    one_process: str | None = None,
) -> int:
    """`serve.py [--listen URL ...] [runtime options]` for an example whose
    handler class takes no arguments. Its state may live in several worker
    processes (`--loops N`) unless `one_process` says why it cannot."""
    parser = example_parser(description, [default_listen])
    args = parser.parse_args(argv)
    listen = args.listen or [default_listen]
    options = example_options(parser, args, listen)
    if one_process is not None:
        refuse_several_loops(parser, options, one_process)
    modules, handler = load_example(here, spec_name)
    return serve_example(modules, getattr(handler, handler_class)(), listen, **options)


__all__ = [
    "example_options",
    "example_parser",
    "load_example",
    "loops_options",
    "main_with_loops",
    "refuse_several_loops",
    "serve_example",
]
