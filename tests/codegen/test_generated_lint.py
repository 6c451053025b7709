"""Generated code is clean: `ruff check` and `mypy --strict` find nothing.

Every example spec (examples/*.proto.dsl, examples/*/*.proto.dsl), every
bench spec (bench/specs/*.proto.dsl) and the test specs of generator features no
example shows (tests/codegen/specs/*.proto.dsl: phases) is built with its property tests into a
package of its own; ruff and mypy each run once over all of them, together
with a typed user handler subclass. Any finding fails the test and is shown.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from protogen.generator import generate, write_outputs
from protogen.parser import load_spec

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(
    [*REPO.glob("examples/*.proto.dsl"), *REPO.glob("examples/*/*.proto.dsl")]
    + list(REPO.glob("bench/specs/*.proto.dsl"))
    + list(REPO.glob("tests/codegen/specs/*.proto.dsl"))
)
PLUGINS = REPO / "examples" / "dns"  # dns_names: the DNS example's plug-in

# A user's handler, typed as the docs show: mypy checks it against the
# generated base class and the runtime's Conn.
USER_HANDLER = '''
from __future__ import annotations

from protogen.runtime import Action, Conn

from .echo_codec import Message
from .echo_handler import EchoHandler


class Shout(EchoHandler):
    def on_message(self, conn: Conn, frame: Message) -> Action | None:
        self.send(conn, Message(payload=bytes(frame.payload).upper()))
        return None
'''


def _link_tree(root: Path) -> Path:
    """`protogen` as mypy can import it: the repository maps toolkit/ and runtime/
    to the package (an editable install hides that behind an import hook)."""
    package = root / "protogen"
    package.mkdir(parents=True)
    for entry in (REPO / "toolkit").iterdir():
        (package / entry.name).symlink_to(entry)
    (package / "runtime").symlink_to(REPO / "runtime")
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    for index, spec_path in enumerate(SPECS):
        package = f"gen{index}_{spec_path.name.split('.')[0]}"
        out = root / package
        spec = load_spec(spec_path)
        write_outputs(generate(spec, package=package, with_tests=True), out)
        (out / "__init__.py").write_text("")
        if spec.name == "echo":
            (out / "shout.py").write_text(USER_HANDLER)
    return root


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_spec_is_covered(generated: Path) -> None:
    names = {path.name for path in SPECS}
    assert {"mqtt.proto.dsl", "dns.proto.dsl", "websocket.proto.dsl"} <= names
    assert "phased.proto.dsl" in names
    assert len(list(generated.glob("gen*/*_codec.py"))) == len(SPECS)


def test_ruff_finds_nothing(generated: Path) -> None:
    _run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache",
         "--target-version", "py311", "."],
        generated,
    )


def test_mypy_strict_finds_nothing(generated: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["MYPYPATH"] = os.pathsep.join(
        [str(_link_tree(tmp_path / "typed")), str(PLUGINS)]
    )
    # protogen itself is read for its types, not judged here.
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n\n[mypy-protogen.*]\nignore_errors = True\n")
    packages = sorted(p.name for p in generated.glob("gen*"))
    args = [sys.executable, "-m", "mypy", "--config-file", str(config),
            "--no-error-summary", "--cache-dir", str(tmp_path / "cache")]
    for package in packages:
        args += ["-p", package]
    _run(args, generated, env)
