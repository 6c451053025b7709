"""Every command and snippet in the examples' READMEs runs as written (the
other documents: test_docs.py; how each block runs: doc_harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_harness import REPO, blocks_of, run_document
from test_docs import EXAMPLE_DOCUMENTS


@pytest.mark.parametrize(
    "document",
    EXAMPLE_DOCUMENTS,
    ids=[str(d.relative_to(REPO)) for d in EXAMPLE_DOCUMENTS],
)
def test_example_document_runs_as_written(
    document: Path, tmp_path: Path, shared_cache: Path
) -> None:
    session = run_document(document, tmp_path, shared_cache)
    runnable = [b for b in blocks_of(document) if b.kind not in ("read", "skip")]
    assert session.ran == len(runnable)
