"""Fixtures for the robustness tests: one generated-code root per session."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from robust_harness import build


@pytest.fixture(scope="session")
def gen_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("robust-gen")


@pytest.fixture(scope="session")
def built(gen_root: Path) -> Callable[[str], tuple[Path, str, ModuleType]]:
    """built(spec_text) -> (generated dir, protocol, imported codec module)."""

    def _built(spec_text: str) -> tuple[Path, str, ModuleType]:
        directory, protocol = build(spec_text, gen_root)
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
        return directory, protocol, importlib.import_module(f"{protocol}_codec")

    return _built
