"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture(scope="session")
def with_shared_compiled(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Path], Path]:
    """with_shared_compiled(cache) -> cache, a PROTOGEN_CACHE_DIR whose
    `compiled/` (the C extensions compiled mode builds) is one directory for
    the whole session, every xdist worker included.

    A Cython build of the runtime or of a codec costs a minute of C compiler;
    the compiled-mode tests and docs/compiled.md build the same modules (the
    echo example, the runtime's hot modules), and the cache is keyed by
    content, so each is compiled once per session (toolkit/compile.py locks a
    build that another worker is already running). The rest of each cache
    (`serve`'s generated packages) stays the test's own.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, above each worker's
    shared = base / "shared-compiled-cache"
    shared.mkdir(exist_ok=True)

    def _link(cache: Path) -> Path:
        cache.mkdir(parents=True, exist_ok=True)
        link = cache / "compiled"
        if not link.exists():
            link.symlink_to(shared, target_is_directory=True)
        return cache

    return _link
