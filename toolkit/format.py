"""Format generated source with black; make template bugs diagnosable.

A template that emits invalid Python must not surface as black's terse
"Cannot parse" message: `GeneratedCodeError` names the output file, the line
and shows the offending generated lines with their numbers.
"""

from __future__ import annotations

import re

import black

BLACK_MODE = black.Mode(target_versions={black.TargetVersion.PY311}, line_length=88)

_CONTEXT_LINES = 3


class GeneratedCodeError(Exception):
    """Rendered source is not valid Python (a template bug)."""

    def __init__(
        self, filename: str, line: int | None, reason: str, source: str
    ) -> None:
        self.filename = filename
        self.line = line
        self.reason = reason
        self.source = source
        location = f"{filename}:{line}" if line else filename
        super().__init__(
            f"{location}: generated code is invalid: {reason}\n{excerpt(source, line)}"
        )


def excerpt(source: str, line: int | None) -> str:
    """The lines around `line` (1-based), numbered, the culprit marked with '>'."""
    lines = source.splitlines()
    if not line or not lines:
        return "\n".join(f"  {n:5d} | {text}" for n, text in enumerate(lines[:20], 1))
    first = max(1, line - _CONTEXT_LINES)
    last = min(len(lines), line + _CONTEXT_LINES)
    return "\n".join(
        f"{'>' if n == line else ' '} {n:5d} | {lines[n - 1]}"
        for n in range(first, last + 1)
    )


def format_source(source: str, filename: str = "<generated>") -> str:
    """Return `source` formatted by black; raise GeneratedCodeError if it is not Python."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise GeneratedCodeError(filename, exc.lineno, exc.msg, source) from None
    try:
        return black.format_str(source, mode=BLACK_MODE)
    except (
        Exception
    ) as exc:  # black raises several types (InvalidInput, ASTSafetyError...)
        match = re.search(r"(\d+):(\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise GeneratedCodeError(filename, line, str(exc), source) from None


def is_formatted(source: str) -> bool:
    """True when black would leave `source` unchanged."""
    try:
        return black.format_str(source, mode=BLACK_MODE) == source
    except Exception:
        return False
