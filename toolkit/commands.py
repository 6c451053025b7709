"""Implementations of the CLI commands (filled in by the generator work)."""

from __future__ import annotations

import argparse


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    parser.error(f"command {args.command!r} is not available yet")
    return 2
