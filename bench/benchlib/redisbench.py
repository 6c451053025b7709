"""Redis load with redis-benchmark (Debian redis-tools): SET then GET of one key
(`key:__rand_int__`, 3-byte values), pipelined, closed loop, on the client CPU.
One run measures both tests; each becomes its own row (`redis-set-...`,
`redis-get-...`)."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
from typing import Any

from .pinning import pinned

TESTS = ("set", "get")


def check_redis(port: int, timeout: float = 5.0) -> str:
    """'' if the server answers SET and GET as Redis does, else what went wrong
    (so that a server answering errors fast is not measured as fast)."""
    request = (
        b"*3\r\n$3\r\nSET\r\n$5\r\nbench\r\n$2\r\nok\r\n"
        b"*2\r\n$3\r\nGET\r\n$5\r\nbench\r\n"
    )
    wanted = b"+OK\r\n$2\r\nok\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            got = b""
            while len(got) < len(wanted):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                got += chunk
    except OSError as exc:
        return f"SET/GET check failed: {exc}"
    return "" if got == wanted else f"SET/GET check: got {got[:80]!r}"


def run_redis_benchmark(
    port: int, requests: int, conns: int, pipeline: int, cpu: int | None = 1
) -> dict[str, dict[str, Any]]:
    """{"set": report, "get": report}; a report has `rps`, `p50_us`, `p99_us` and
    `errors` (redis-benchmark prints `Error from server` for error replies)."""
    if shutil.which("redis-benchmark") is None:
        failed = {"errors": 1, "first_error": "redis-benchmark is not installed"}
        return {test: failed for test in TESTS}
    cmd = pinned(
        [
            "redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
            "-P", str(pipeline), "-c", str(conns), "-n", str(requests),
            "-t", ",".join(TESTS), "-q", "--csv",
        ],
        cpu,
    )  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = {
        row["test"].lower(): row
        for row in csv.DictReader(proc.stdout.splitlines())
        if row.get("test") and row.get("rps")
    }
    problem = next(
        (
            line.strip()
            for line in (proc.stdout + proc.stderr).splitlines()
            if "error" in line.lower()
        ),
        "",
    )
    reports: dict[str, dict[str, Any]] = {}
    for test in TESTS:
        row = rows.get(test)
        if proc.returncode != 0 or row is None or problem:
            why = problem or (proc.stderr.strip().splitlines() or ["no result"])[-1]
            reports[test] = {"errors": 1, "first_error": f"redis-benchmark: {why}"}
            continue
        reports[test] = {
            "rps": float(row["rps"]),
            "p50_us": float(row["p50_latency_ms"]) * 1000,
            "p99_us": float(row["p99_latency_ms"]) * 1000,
            "errors": 0,
            "requests": requests,
        }
    return reports
