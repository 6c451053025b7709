"""CPU pinning with `taskset`: server on CPU 0, client on CPU 1, so that neither
steals the other's core and runs compare like with like."""

from __future__ import annotations

import os
import shutil

SERVER_CPU = 0
CLIENT_CPU = 1

_enabled = bool(shutil.which("taskset")) and (os.cpu_count() or 1) >= 2


def set_pinning(enabled: bool) -> None:
    global _enabled
    _enabled = enabled and bool(shutil.which("taskset"))


def pinning_enabled() -> bool:
    return _enabled


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """`cmd` prefixed with `taskset -c CPU` (taskset execs, so the PID stays the
    program's own and its RSS can be read from /proc)."""
    if cpu is None or not _enabled:
        return cmd
    return ["taskset", "-c", str(cpu), *cmd]
