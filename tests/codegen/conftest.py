"""Fixtures for the codec generator tests (helpers live in codec_helpers.py)."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import ModuleType

import pytest

from codec_helpers import import_codec
from protogen import models as ir

_dirs = itertools.count()


@pytest.fixture
def build(tmp_path: Path):
    """build(spec, **generate_options) -> imported codec module (fresh each call)."""

    def _build(protocol: ir.ProtocolSpec, **options) -> ModuleType:
        directory = tmp_path / f"gen{next(_dirs)}"
        return import_codec(protocol, directory, **options)

    return _build


@pytest.fixture(scope="session")
def codec(tmp_path_factory: pytest.TempPathFactory):
    """codec(spec) -> imported codec module, generated once per spec per session."""
    cache: dict[tuple[str, str], ModuleType] = {}

    def _codec(protocol: ir.ProtocolSpec) -> ModuleType:
        key = (protocol.name, protocol.source_sha256)
        if key not in cache:
            cache[key] = import_codec(protocol, tmp_path_factory.mktemp("codec"))
        return cache[key]

    return _codec
