"""What every example's `serve.py` does: build its spec into protogen's build cache
(as `protogen serve` does: regenerated only when the spec, protogen or the templates
change), load the example's `handler.py`, and serve it until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence


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


def serve_example(
    modules: dict[str, ModuleType],
    handler: Any,
    listen: list[str],
    **options: Any,
) -> int:
    """Serve until stopped; a bind or address error is one line on stderr, exit 1."""
    try:
        modules["server"].serve(handler, *listen, **options)
    except (OSError, ValueError) as exc:
        print(f"serve.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def loops_options(loops: int) -> dict[str, Any]:
    return {"loops": loops, "multicore": True} if loops > 1 else {}


def main_with_loops(
    here: Path,
    spec_name: str,
    handler_class: str,
    default_listen: str,
    description: str,
    argv: Sequence[str] | None = None,
) -> int:
    """`serve.py [--listen URL ...] [--loops N]` for an example whose handler class
    takes no arguments and whose state may live in several worker processes."""
    parser = argparse.ArgumentParser(prog="serve.py", description=description)
    parser.add_argument(
        "--listen", action="append", metavar="URL", help=f"default {default_listen}"
    )
    parser.add_argument(
        "--loops", type=int, default=1, metavar="N", help="event loops (processes)"
    )
    args = parser.parse_args(argv)
    if args.loops < 1:
        parser.error("--loops must be at least 1")
    modules, handler = load_example(here, spec_name)
    return serve_example(
        modules,
        getattr(handler, handler_class)(),
        args.listen or [default_listen],
        **loops_options(args.loops),
    )


__all__ = ["load_example", "serve_example", "loops_options", "main_with_loops"]
