"""Spec errors in a compiler's style: `file:line:col: error: message`.

Every problem found in a spec becomes a `Diagnostic`; the parser and the
validator collect them in a `DiagnosticBag` so that one run reports all of
them, then raise a single `SpecError`. Rendering shows the offending source
line and a caret (with tildes under the rest of the token) below it:

    echo.proto.dsl:4:20: error: unknown field 'nosuch'
        framing length(nosuch)
                       ^~~~~~
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from .models import Location


@dataclass(frozen=True)
class Diagnostic:
    """One error at one place. `length` is how many characters to underline."""

    location: Location
    message: str
    source_line: str | None = None
    length: int = 1

    def render(self) -> str:
        text = f"{self.location}: error: {self.message}"
        if self.source_line is None:
            return text
        return f"{text}\n{self.source_line}\n{self._caret_line()}"

    def _caret_line(self) -> str:
        line = self.source_line or ""
        start = max(self.location.column - 1, 0)
        # Keep tabs as tabs so the caret lines up whatever the tab width.
        indent = "".join("\t" if char == "\t" else " " for char in line[:start])
        width = max(1, min(self.length, len(line) - start))
        return indent + "^" + "~" * (width - 1)

    def __str__(self) -> str:
        return self.render()


class SpecError(Exception):
    """A spec that cannot be parsed or does not validate; carries every problem."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("SpecError needs at least one diagnostic")
        self.diagnostics: list[Diagnostic] = sorted(
            diagnostics, key=lambda d: (d.location.line, d.location.column)
        )
        super().__init__(self.render())

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[Diagnostic]]]:
        # Rebuild from the diagnostics (e.g. across a process pool).
        return (SpecError, (self.diagnostics,))

    def render(self) -> str:
        return "\n".join(diagnostic.render() for diagnostic in self.diagnostics)

    def __str__(self) -> str:
        return self.render()

    @property
    def messages(self) -> list[str]:
        return [diagnostic.message for diagnostic in self.diagnostics]


class DiagnosticBag:
    """Collects diagnostics for one spec file and knows its source lines."""

    def __init__(self, filename: str, text: str) -> None:
        self.filename = filename
        self._lines = text.splitlines()
        self.diagnostics: list[Diagnostic] = []

    def location(self, line: int, column: int) -> Location:
        return Location(self.filename, line, column)

    def source_line(self, line: int) -> str | None:
        if 1 <= line <= len(self._lines):
            return self._lines[line - 1]
        return None

    def error(self, location: Location, message: str, length: int = 1) -> None:
        self.diagnostics.append(
            Diagnostic(location, message, self.source_line(location.line), length)
        )

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(diagnostics)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise SpecError(self._unique())

    def _unique(self) -> list[Diagnostic]:
        # A cascade can report the same problem twice; say it once.
        seen: set[tuple[Location, str]] = set()
        unique = []
        for diagnostic in self.diagnostics:
            key = (diagnostic.location, diagnostic.message)
            if key not in seen:
                seen.add(key)
                unique.append(diagnostic)
        return unique

    def __bool__(self) -> bool:
        return bool(self.diagnostics)


__all__ = ["Diagnostic", "SpecError", "DiagnosticBag"]
