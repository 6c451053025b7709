"""Compiled mode keeps the codec's behaviour: the property tests that
`protogen build --with-tests` writes (round trip, chunking, garbage) run
against the compiled MQTT and WebSocket codecs, frames as extension types.

(A file of its own, apart from test_compiled_mode.py: each codec is a minute
of C compiler, and with `--dist loadfile` a file stays on one worker.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from compiled_helpers import ECHO, compiled_work, env_for, protogen

EXTENSION = ".so"


@pytest.fixture(scope="module")
def work(
    tmp_path_factory: pytest.TempPathFactory,
    with_shared_compiled: Callable[[Path], Path],
) -> Path:
    return compiled_work(tmp_path_factory, with_shared_compiled, "compiled-properties")


@pytest.mark.parametrize("spec", ["mqtt/mqtt", "websocket/websocket"])
def test_generated_property_tests_pass_against_the_compiled_codec(
    spec: str, work: Path
) -> None:
    """Frames as extension types (an augmenting .pxd) keep the codec's behaviour:
    the property tests `--with-tests` writes run against the compiled build."""
    out = work / spec.replace("/", "-")
    source = ECHO.parent / f"{spec}.proto.dsl"
    env = env_for(work / "cache")
    result = protogen("build", source, "-o", out, "--compile", "--with-tests", env=env)
    assert result.returncode == 0, result.stderr
    name = Path(spec).name
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import {name}_codec as c; print(c.__file__); "
            "print(all(not f.__flags__ & (1 << 9) for f in c.FRAMES))",
        ],
        cwd=out,
        env={**env, "PYTHONPATH": str(out)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    loaded, extension_types = probe.stdout.split()
    assert loaded.endswith(EXTENSION)
    assert extension_types == "True"  # not heap types: Cython extension types
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "."],
        cwd=out,
        env={**env, "PYTHONPATH": str(out)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-2000:]
    assert " passed" in tests.stdout
