"""`make fuzz`, second half: the property tests `protogen build --with-tests` emits,
for every example spec (examples/**/*.proto.dsl), run with PROTOGEN_FUZZ_EXAMPLES
examples per property.

    PROTOGEN_FUZZ_EXAMPLES=100000 python tests/robustness/fuzz_examples.py [PYTEST ARGS]

Each spec is built into its own directory of a temporary tree (the generated
modules import each other by bare name) and pytest runs over the tree. Not
collected by pytest itself (no test_ prefix): it is long on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from protogen.generator import generate, write_outputs
from protogen.parser import load_spec

REPO = Path(__file__).resolve().parents[2]


def build_all(root: Path) -> list[Path]:
    written = []
    for spec_path in sorted((REPO / "examples").glob("**/*.proto.dsl")):
        spec = load_spec(spec_path)
        directory = root / spec.name
        write_outputs(generate(spec, with_tests=True), directory)
        written.append(directory / f"test_{spec.name}_properties.py")
    return written


def main(argv: list[str]) -> int:
    examples = os.environ.setdefault("PROTOGEN_FUZZ_EXAMPLES", "100000")
    with tempfile.TemporaryDirectory(prefix="protogen-fuzz-") as tmp:
        modules = build_all(Path(tmp))
        print(
            f"fuzzing {len(modules)} example codecs with {examples} examples per property",
            flush=True,
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            tmp,
            *argv,
            *map(str, modules),
        ]
        return subprocess.run(command, cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
