"""`pip install .` in a fresh venv: no deprecation warning from the project's
metadata, and it is the runtime alone (no lark, jinja2, black), which runs
generated code; the generator is the `generator` extra."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ("lark", "jinja2", "black")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh venv with `pip install <repo>` (build isolation, as a user's)."""
    home = tmp_path_factory.mktemp("runtime-venv")
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-v", "--disable-pip-version-check",
         str(ROOT)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return python, result.stdout + result.stderr


def test_pip_install_shows_no_deprecation_warning_from_our_metadata(
    runtime_venv: tuple[Path, str],
) -> None:
    _, output = runtime_venv
    for warning in (
        "BuildBackendWarning",
        "SetuptoolsDeprecationWarning",
        "project.license",
        "License classifiers are deprecated",
    ):
        assert warning not in output, [
            line for line in output.splitlines() if warning in line
        ]


def test_the_plain_install_is_the_runtime_alone(
    runtime_venv: tuple[Path, str],
) -> None:
    python, _ = runtime_venv
    probe = (
        "import importlib.util, sys\n"
        "import protogen.runtime, protogen.errors, protogen.runtime.cli\n"
        "import protogen.runtime.aio, protogen.runtime.pool, protogen.wire\n"
        f"print([m for m in {GENERATOR!r} if m in sys.modules])\n"
        f"print([m for m in {GENERATOR!r} if importlib.util.find_spec(m)])\n"
    )
    result = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    imported, installed = result.stdout.splitlines()
    assert imported == "[]"  # importing the runtime pulls none of them in
    assert installed == "[]"  # and the plain install did not bring them


def test_protogen_build_says_what_to_install(
    runtime_venv: tuple[Path, str], tmp_path: Path
) -> None:
    python, _ = runtime_venv
    result = subprocess.run(
        [str(python), "-m", "protogen", "build", str(ROOT / "examples/echo.proto.dsl"),
         "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "pip install 'protogen-toolkit[generator]'" in result.stderr
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_generated_modules_run_on_the_runtime_alone(
    runtime_venv: tuple[Path, str], tmp_path: Path
) -> None:
    """Built here (with the generator), served and driven there (without)."""
    python, _ = runtime_venv
    built = subprocess.run(
        [sys.executable, "-m", "protogen", "build",
         str(ROOT / "examples/echo.proto.dsl"), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, built.stderr
    port = free_port()
    server = subprocess.Popen(
        [str(python), "-m", "echo_server", "--listen", f"tcp://127.0.0.1:{port}"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    try:
        client = (
            "import sys, time\n"
            "from echo_client import connect\n"
            "from echo_codec import Message\n"
            "import echo_aio, echo_handler, echo_server\n"
            "deadline = time.monotonic() + 30\n"
            "while True:\n"
            "    try:\n"
            f"        c = connect('tcp://127.0.0.1:{port}')\n"
            "        break\n"
            "    except OSError:\n"
            "        if time.monotonic() > deadline: raise\n"
            "        time.sleep(0.05)\n"
            "with c:\n"
            "    print(bytes(c.request(Message(payload=b'runtime only')).payload))\n"
            f"print([m for m in {GENERATOR!r} if m in sys.modules])\n"
        )
        result = subprocess.run(
            [str(python), "-c", client], cwd=tmp_path, capture_output=True,
            text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["b'runtime only'", "[]"]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    assert re.search(r"echo_server: serving echo on tcp://127\.0\.0\.1:\d+", stderr)


def test_generated_code_imports_only_the_runtime_and_the_standard_library(
    tmp_path: Path,
) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "protogen", "build",
         *(str(p) for p in sorted((ROOT / "examples").glob("**/*.proto.dsl"))),
         "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    stdlib = sys.stdlib_module_names
    local = {path.stem for path in tmp_path.glob("*.py")}
    # A spec's `extern NAME: TYPE = "module:object"` plug-ins are the user's own
    # modules, imported by the codec that uses them.
    plugins = {
        found[1]
        for spec in (ROOT / "examples").glob("**/*.proto.dsl")
        for found in re.finditer(r'^\s*extern\s+\w+.*?=\s*"([\w.]+):', spec.read_text(), re.M)
    }
    local |= {name.split(".")[0] for name in plugins}
    pattern = re.compile(
        r"^\s*(?:from\s+(\S+)\s+import\s+(\w+)|import\s+(\S+))", re.M
    )
    runtime = ("protogen.runtime", "protogen.errors", "protogen.wire")
    for path in tmp_path.glob("*.py"):
        if path.name.startswith("test_"):
            continue
        for match in pattern.finditer(path.read_text()):
            full = match.group(1) or match.group(3)
            if full == "protogen":  # from protogen import wire
                full = f"protogen.{match.group(2)}"
            module = full.split(".")[0]
            allowed = module in stdlib or module in local or module == "__future__"
            if module == "protogen":
                allowed = full.startswith(runtime)
            assert allowed, f"{path.name} imports {match.group(0).strip()}"
