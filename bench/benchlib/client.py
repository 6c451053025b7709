"""Compiling and driving the native load client (`bench/loadclient.c`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import BIN, LOADCLIENT_SOURCE
from .pinning import pinned


class ClientError(RuntimeError):
    """The load client could not be built or gave no usable report."""


def ensure_loadclient(source: Path = LOADCLIENT_SOURCE, out_dir: Path = BIN) -> Path:
    """Compile the client with `cc -O2` unless the binary is newer than the source."""
    binary = out_dir / "loadclient"
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise ClientError("no C compiler (cc) found: install gcc to run the benchmarks")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_suffix(".tmp")
    proc = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise ClientError(f"compiling {source.name} failed:\n{proc.stderr}")
    tmp.replace(binary)  # atomic: a concurrent run never sees half a binary
    return binary


@dataclass
class Target:
    """Where the client connects: TCP host/port or a unix socket path."""

    port: int = 0
    host: str = "127.0.0.1"
    unix: str | None = None

    def args(self) -> list[str]:
        if self.unix:
            return ["--unix", self.unix]
        return ["--host", self.host, "--port", str(self.port)]


@dataclass
class LoadSpec:
    """One closed-loop run: see `loadclient --help` for the meaning of each field."""

    conns: int = 50
    depth: int = 1
    size: int = 64
    max_size: int | None = None  # set: random sizes in [size, max_size]
    duration: float = 5.0
    warmup: float = 1.0
    churn: int = 0
    proto: str = "echo"
    drain: float = 5.0
    extra: list[str] = field(default_factory=list)

    def args(self) -> list[str]:
        sizes = ["--size", str(self.size)]
        if self.max_size is not None:
            sizes = ["--min-size", str(self.size), "--max-size", str(self.max_size)]
        return [
            "--proto", self.proto,
            "--conns", str(self.conns),
            "--depth", str(self.depth),
            *sizes,
            "--duration", str(self.duration),
            "--warmup", str(self.warmup),
            "--drain", str(self.drain),
            "--churn", str(self.churn),
            *self.extra,
        ]  # fmt: skip


def _parse_report(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ClientError(f"load client printed no report: {stdout[-500:]!r}")


def load_command(
    binary: Path, target: Target, spec: LoadSpec, cpu: int | None = 1
) -> list[str]:
    return pinned([str(binary), *target.args(), "--mode", "load", *spec.args()], cpu)


def load_budget(spec: LoadSpec) -> float:
    """How long a run may take before it is declared hung."""
    return spec.warmup + spec.duration + spec.drain + 30


def finish_load(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait for a client started with `load_command`; returns its JSON report."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise ClientError(f"load client did not finish within {timeout:.0f} s") from exc
    if proc.returncode not in (0, 1):
        raise ClientError(f"load client failed ({proc.returncode}): {err.strip()}")
    return _parse_report(out)


def run_load(
    binary: Path, target: Target, spec: LoadSpec, cpu: int | None = 1
) -> dict[str, Any]:
    """Run one closed-loop measurement; returns the client's JSON report."""
    proc = subprocess.Popen(
        load_command(binary, target, spec, cpu),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return finish_load(proc, load_budget(spec))


class HeldConnections:
    """`loadclient --mode hold`: open `count` connections, echo once on each, hold.

    Use as a context manager: entering waits for READY; `release()` makes the client
    echo once more on every connection and returns its final report."""

    def __init__(
        self,
        binary: Path,
        target: Target,
        count: int,
        cpu: int | None = 1,
        connect_timeout: float = 120.0,
        size: int = 64,
    ) -> None:
        self.cmd = pinned(
            [
                str(binary), *target.args(), "--mode", "hold",
                "--conns", str(count), "--size", str(size),
                "--connect-timeout", str(connect_timeout),
            ],
            cpu,
        )  # fmt: skip
        self.timeout = connect_timeout + 10
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}

    def __enter__(self) -> "HeldConnections":
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + self.timeout
        assert self.proc.stdout is not None
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # the client's own timeout bounds this
            if not line or line.startswith("READY "):
                break
        if not line.startswith("READY "):
            report = self._finish()
            raise ClientError(f"connections were not all established: {report}")
        self.ready = json.loads(line[len("READY ") :])
        return self

    def release(self) -> dict[str, Any]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        try:
            return _parse_report(out)
        except ClientError:
            return {"errors": 1, "first_error": (err or out).strip()[-300:]}

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
