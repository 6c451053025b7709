"""CPU instructions of one command under valgrind's callgrind: the exact measure
the bench/*_hotpath.py and decode scripts use, since a shared machine's wall clock
is noise."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Instructions `argv` executes, start to exit (hash seed fixed for repeatability)."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "0", **(os.environ if env is None else env)},
    )
    found = _COLLECTED.findall(done.stderr)
    if not found:
        raise RuntimeError(f"callgrind printed no total: {done.stderr[-500:]}")
    return int(found[-1])
