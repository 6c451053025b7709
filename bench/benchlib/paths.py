"""Where the harness finds things: repository root, bench dir, build outputs."""

from __future__ import annotations

from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
BIN = BENCH / "bin"
RESULTS = BENCH / "results"
EXAMPLES = ROOT / "examples"
LOADCLIENT_SOURCE = BENCH / "loadclient.c"
