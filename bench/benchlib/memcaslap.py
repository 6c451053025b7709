"""memcached binary-protocol load with memcaslap (libmemcached-tools): 90 % gets,
10 % sets of 64-byte values, closed loop, one client thread on the client CPU."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from .pinning import pinned


def run_memcaslap(
    port: int, concurrency: int, duration: float, cpu: int | None = 1
) -> dict[str, Any]:
    if shutil.which("memcaslap") is None:
        return {"errors": 1, "first_error": "memcaslap is not installed"}
    cmd = pinned(
        [
            "memcaslap", "-s", f"127.0.0.1:{port}", "-B", "-T", "1",
            "-c", str(concurrency), "-t", f"{max(1, round(duration))}s", "-X", "64",
        ],
        cpu,
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    output = proc.stdout + proc.stderr
    match = re.search(r"Run time: [\d.]+s Ops: (\d+) TPS: (\d+)", output)
    if proc.returncode != 0 or match is None:
        tail = output.strip().splitlines()[-2:]
        return {"errors": 1, "first_error": f"memcaslap failed: {' | '.join(tail)}"}
    result: dict[str, Any] = {"rps": float(match.group(2)), "errors": 0}
    misses = re.search(r"get_misses: (\d+)", output)
    if misses:
        result["get_misses"] = int(misses.group(1))
    return result
