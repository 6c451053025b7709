"""HTTP plaintext load with wrk (pipelined via `bench/peers/pipeline.lua`)."""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
from typing import Any, Sequence

from .paths import PEERS
from .pinning import pinned

_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def check_plaintext(port: int, tls: ssl.SSLContext | None = None) -> str | None:
    """One real request before the load: wrk counts responses, it does not read
    bodies, so a wrong answer would otherwise go unnoticed. None if correct.
    `tls`: over https, verifying the server with this client context."""
    conn = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=tls)
        if tls is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    )
    try:
        conn.request("GET", "/plaintext")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or body != b"Hello, World!":
            return f"/plaintext answered {response.status} {body[:60]!r}"
        missing = [h for h in ("Date", "Server") if response.getheader(h) is None]
        if missing:
            return f"/plaintext lacks headers {missing}"
        return None
    except (OSError, http.client.HTTPException) as exc:
        return f"/plaintext request failed: {exc}"
    finally:
        conn.close()


def _micros(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0


def parse_wrk(output: str) -> dict[str, Any]:
    result: dict[str, Any] = {"rps": 0.0, "p50_us": None, "p99_us": None, "errors": 0}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(match.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        if match := re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M):
            # wrk sometimes prints "99%  0.00us" under pipelining: unknown, not zero
            result[key] = _micros(match.group(1)) or None
    if match := re.search(r"(\d+) requests in", output):
        result["requests"] = int(match.group(1))
    errors = 0
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(g) for g in match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    result["errors"] = errors
    if errors:
        result["first_error"] = " ".join(
            line.strip()
            for line in output.splitlines()
            if "errors" in line or "Non-2xx" in line
        )
    return result


def wrk_command(
    port: int,
    conns: int,
    pipeline: int,
    duration: float,
    cpu: int | None = 1,
    script: str = "pipeline.lua",
    scheme: str = "http",
    headers: Sequence[str] = (),
) -> list[str]:
    """The wrk command line of `run_wrk` (pinned to `cpu`)."""
    return pinned(
        [
            "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
            "-s", str(PEERS / script), *(f"-H{h}" for h in headers),
            f"{scheme}://127.0.0.1:{port}/plaintext", "--", str(pipeline),
        ],
        cpu,
    )  # fmt: skip


def run_wrk(
    port: int,
    conns: int,
    pipeline: int,
    duration: float,
    cpu: int | None = 1,
    script: str = "pipeline.lua",
    scheme: str = "http",
    headers: Sequence[str] = (),
) -> dict[str, Any]:
    """`scheme` "https": wrk does the TLS itself (it does not verify certificates);
    `headers` are `-H` lines added to every request."""
    cmd = wrk_command(port, conns, pipeline, duration, cpu, script, scheme, headers)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    result = parse_wrk(proc.stdout)
    if proc.returncode != 0:
        result["errors"] = result.get("errors", 0) + 1
        result["first_error"] = proc.stderr.strip()[-300:]
    return result
