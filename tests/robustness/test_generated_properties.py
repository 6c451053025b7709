"""`protogen build --with-tests` emits a property-test module for a user's own spec
that passes under pytest, and honours PROTOGEN_FUZZ_EXAMPLES (what `make fuzz`
relies on)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# A user spec exercising what the generated strategies must cope with: a magic, an
# enum, an allowed set, a little-endian field, a field-sized body field, a rest
# field and a CRC-32 trailer.
USER_SPEC = """
protocol telemetry
transport tcp
max_frame 4 KiB

enum Kind : u8 { reading = 1, alarm = 2, heartbeat = 3 }

frame Packet {
    framing length(size) counts frame
    header big {
        magic: u16 = 0x7E7E
        version: u8 in {1, 2}
        kind: Kind
        device: u32 le
        name_length: u8
        size: u16
    }
    body {
        name: bytes[name_length]
        data: bytes[rest]
    }
    trailer little { crc: u32 = crc32[0:-4] }
}
"""


@pytest.fixture(scope="module")
def built_with_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("with-tests")
    spec = directory / "telemetry.proto.dsl"
    spec.write_text(USER_SPEC)
    out = directory / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "protogen",
            "build",
            str(spec),
            "-o",
            str(out),
            "--with-tests",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "test_telemetry_properties.py").exists(), result.stdout
    return out


def run_pytest(
    directory: Path, examples: int, *extra: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *extra,
            str(directory),
        ],
        cwd=directory,
        env=dict(os.environ, PROTOGEN_FUZZ_EXAMPLES=str(examples)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_with_tests_module_passes_for_a_user_spec(built_with_tests: Path) -> None:
    result = run_pytest(built_with_tests, 40)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 5, result.stdout  # 5 properties per frame


def test_generated_properties_honour_protogen_fuzz_examples(
    built_with_tests: Path,
) -> None:
    counts = {}
    for examples in (7, 31):
        result = run_pytest(
            built_with_tests,
            examples,
            "--hypothesis-show-statistics",
            "-k",
            "garbage_raises_only_protocol_errors",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        found = re.findall(r"(\d+) passing", result.stdout)
        assert found, result.stdout
        counts[examples] = int(found[0])
    assert counts == {7: 7, 31: 31}, counts


def test_codegen_property_tests_honour_protogen_fuzz_examples() -> None:
    """`make fuzz` runs tests/codegen -k property with PROTOGEN_FUZZ_EXAMPLES; the
    settings those property tests use must take it up."""
    codegen = Path(__file__).resolve().parents[1] / "codegen"
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import codec_helpers as a, test_codec_roundtrip as b;"
        "print(a.PROPERTY_SETTINGS.max_examples, b.SETTINGS.max_examples)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(codegen)],
        env=dict(os.environ, PROTOGEN_FUZZ_EXAMPLES="123457"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["123457", "123457"]
