"""Shared start-up for the bench peers: argument parsing and fd limits."""

from __future__ import annotations

import argparse
import resource
import struct

#: The length prefix of the echo protocol: 4-byte big-endian unsigned.
LENGTH = struct.Struct(">I")


def raise_nofile_limit() -> None:
    """Lift the soft open-file limit to the hard one: 15 000 connections need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(description: str, loops: tuple[str, ...] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--backlog", type=int, default=4096)
    if loops:
        parser.add_argument("--loop", choices=loops, default=loops[0])
    return parser.parse_args()
