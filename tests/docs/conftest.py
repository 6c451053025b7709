"""The build cache the documents share."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(
    tmp_path_factory: pytest.TempPathFactory,
    with_shared_compiled: Callable[[Path], Path],
) -> Path:
    """protogen serve's build cache for every document of the session (both
    test files, every xdist worker: the cache's builds are renamed into place,
    so concurrent builds of one spec are safe). docs/compiled.md builds what
    tests/compiled builds (the echo example, the runtime): its C extensions
    come from the session's compiled cache."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, above each worker's
    return with_shared_compiled(base / "docs-build-cache")
