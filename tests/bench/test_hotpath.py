"""bench/hotpath.py runs the workloads its docs and docs/benchmarks.md cite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HOTPATH = Path(__file__).resolve().parents[2] / "bench" / "hotpath.py"


def _hotpath(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(HOTPATH), "--events", "400", "--rounds", "1", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        env=dict(os.environ, PROTOGEN_COMPILED="0"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_uvloop_typed_peer_runs_on_the_scripted_reads() -> None:
    out = _hotpath("--handler", "uvloop-typed", "--depth", "16", "--conns", "4")
    assert out.startswith("uvloop-typed handler, depth 16, 64 B, 4 conns: ")
    assert "ns per read event" in out


def test_a_request_larger_than_the_read_buffer_arrives_over_several_reads() -> None:
    # 16 frames of 4 KiB are more than the loop's 64 KiB shared buffer: the
    # scripted socket used to fail with BufferError here.
    out = _hotpath(
        "--handler", "typed", "--depth", "16", "--size", "4096", "--conns", "2"
    )
    assert "ns per read event" in out
