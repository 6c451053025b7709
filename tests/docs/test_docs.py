"""Every command and snippet in README.md and docs/ runs as written (see
doc_harness.py for how each kind of block is run or checked)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from doc_harness import REPO, DocTestFailure, blocks_of, run_document

# The examples' READMEs are run by test_example_docs.py: with `--dist
# loadfile` a file stays on one worker, and the two halves take about as long.
EXAMPLE_DOCUMENTS = sorted(
    [REPO / "examples" / "README.md", *(REPO / "examples").glob("*/README.md")]
)
DOCUMENTS = sorted(
    [REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")]
)


@pytest.mark.parametrize(
    "document", DOCUMENTS, ids=[str(d.relative_to(REPO)) for d in DOCUMENTS]
)
def test_document_runs_as_written(
    document: Path, tmp_path: Path, shared_cache: Path
) -> None:
    session = run_document(document, tmp_path, shared_cache)
    runnable = [b for b in blocks_of(document) if b.kind not in ("read", "skip")]
    assert session.ran == len(runnable)


def test_every_skipped_block_says_why() -> None:
    for document in DOCUMENTS + EXAMPLE_DOCUMENTS:
        for block in blocks_of(document):
            if block.kind == "skip":
                assert block.directive.partition(":")[2].strip(), block.where  # type: ignore[union-attr]


def test_the_readme_tour_is_run_not_just_read() -> None:
    kinds = [block.kind for block in blocks_of(REPO / "README.md")]
    assert kinds.count("run-shell") >= 4
    assert kinds.count("run-python") >= 1
    assert "file" in kinds and "check-spec" in kinds


def _document(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_wrong_expected_output_fails(tmp_path: Path) -> None:
    doc = _document(
        tmp_path,
        """\
        ```console
        $ protogen check examples/echo.proto.dsl
        examples/echo.proto.dsl: fine
        ```
        """,
    )
    with pytest.raises(DocTestFailure, match="expected"):
        run_document(doc, tmp_path / "ws")


def test_a_failing_command_and_a_stale_flag_fail(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    failing = _document(tmp_path, "```sh\nprotogen check nosuch.proto.dsl\n```\n")
    with pytest.raises(DocTestFailure, match="exited"):
        run_document(failing, tmp_path / "ws")
    stale = _document(tmp_path, "```sh\npython bench/run.py --no-such-flag 3\n```\n")
    with pytest.raises(DocTestFailure, match="no --no-such-flag"):
        run_document(stale, tmp_path / "ws")
    # With environment assignments first, the bench script is still checked.
    prefixed = _document(
        tmp_path,
        "```sh\nPROTOGEN_COMPILED=0 python bench/run.py --no-such-flag 3\n```\n",
    )
    with pytest.raises(DocTestFailure, match="no --no-such-flag"):
        run_document(prefixed, tmp_path / "ws")
    target = _document(tmp_path, "```sh\nmake no-such-target\n```\n")
    with pytest.raises(DocTestFailure, match="make no-such-target"):
        run_document(target, tmp_path / "ws")


def test_a_server_is_kept_for_the_next_block_then_stopped(tmp_path: Path) -> None:
    doc = _document(
        tmp_path,
        """\
        ```sh
        protogen serve examples/echo.proto.dsl --listen tcp://127.0.0.1:7000
        ```

        ```python
        import socket

        with socket.create_connection(("127.0.0.1", 7000)) as s:
            s.sendall(b"\\x00\\x00\\x00\\x02hi")
            print(s.recv(6))  # b'\\x00\\x00\\x00\\x02hi'
        ```
        """,
    )
    session = run_document(doc, tmp_path / "ws")
    assert session.ran == 2 and session.servers == []


def test_a_snippet_printing_something_else_fails(tmp_path: Path) -> None:
    doc = _document(tmp_path, "```python\nprint(1 + 1)  # 3\n```\n")
    with pytest.raises(DocTestFailure, match="should print '3'"):
        run_document(doc, tmp_path / "ws")
