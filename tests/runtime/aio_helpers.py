"""Helpers for the asyncio tests: build example specs once, and the loops to run on."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from protogen.generator import generate, write_outputs
from protogen.parser import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KINDS = ("codec", "handler", "server", "client", "aio")


def build_example(spec_file: str, root: Path) -> dict[str, ModuleType]:
    """Generate examples/`spec_file` as a uniquely named package under `root`."""
    spec = load_spec(EXAMPLES / spec_file)
    package = f"gen_{spec.name}_{uuid.uuid4().hex[:10]}"
    write_outputs(generate(spec, package=package), root / package)
    (root / package / "__init__.py").write_text("")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return {
        kind: importlib.import_module(f"{package}.{spec.name}_{kind}") for kind in KINDS
    }


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop  # type: ignore[no-any-return]


LOOPS = [
    pytest.param(lambda: asyncio.new_event_loop, id="asyncio"),
    pytest.param(_uvloop_factory, id="uvloop"),
]


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Any) -> Any:
    """Run coroutine `main` on a fresh loop from `loop_factory`, with a deadline."""

    async def bounded() -> Any:
        async with asyncio.timeout(30):
            return await main

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(bounded())
