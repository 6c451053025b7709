"""The repository layout maps into the single import package `protogen`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
            "--no-build-isolation", "-w", str(out), str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel_path,) = out.glob("protogen_toolkit-*.whl")
    return wheel_path


def test_wheel_installs_everything_under_protogen(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level - {"protogen"} == {
        name.split("/", 1)[0] for name in names if ".dist-info/" in name
    }
    for forbidden in ("runtime", "toolkit", "templates", "grammars"):
        assert forbidden not in top_level


def test_wheel_ships_runtime_templates_and_grammar(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "protogen/cli.py" in names
    assert "protogen/runtime/__init__.py" in names
    assert any(n.startswith("protogen/templates/") and n.endswith(".j2") for n in names)
    assert "protogen/grammars/protogen.lark" in names


def test_console_script_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "protogen = protogen.cli:main" in text
