"""The property tests `--with-tests` generates for whole-message specs pass.

The full MQTT 3.1.1, DNS (with name compression, through the DomainName
plug-in) and WebSocket specs exercise structures, arrays, unions, conditions,
regions, escapes and masking; their generated strategies draw frames the
encoder accepts, and the generated properties check round trips under any
chunking, garbage raising only ProtocolError, and more. PROTOGEN_FUZZ_EXAMPLES
sets the examples per property (a few here; `make fuzz` runs many).
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
SPECS = [
    REPO / "examples" / "mqtt" / "mqtt.proto.dsl",
    REPO / "bench" / "specs" / "websocket_any.proto.dsl",
    REPO / "examples" / "websocket" / "websocket.proto.dsl",
    REPO / "examples" / "dns" / "dns.proto.dsl",
]
EXAMPLES = os.environ.get("PROTOGEN_FUZZ_EXAMPLES", "15")


@pytest.mark.parametrize("spec_path", SPECS, ids=[p.stem.split(".")[0] for p in SPECS])
def test_generated_property_tests_pass(spec_path: Path, tmp_path: Path) -> None:
    spec = load_spec(spec_path)
    write_outputs(generate(spec, with_tests=True), tmp_path)
    module = tmp_path / f"test_{spec.name}_properties.py"
    env = dict(
        os.environ,
        PROTOGEN_FUZZ_EXAMPLES=EXAMPLES,
        # the spec's own directory: its plug-in types (dns_names) beside it
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(spec_path.parent)]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
