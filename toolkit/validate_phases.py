"""Checks of `phase` statements: the states of a connection and the frames each
accepts (docs/dsl.md, "Phases of a connection")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import spec_ast as ast
from .models import Phase, PhaseArm, Transport

if TYPE_CHECKING:
    from .validate import SpecBuilder


def build_phases(
    checker: SpecBuilder,
    decls: list[ast.PhaseDecl],
    frame_names: list[str],
    transports: tuple[Transport, ...],
) -> tuple[Phase, ...]:
    """The phases, the one connections start in first; errors go to the bag."""
    from .validate import suggestion

    if not decls:
        return ()
    if "udp" in transports:
        checker.error(
            decls[0].span,
            "phases need a byte stream: a spec with phases uses `transport tcp` only",
        )
    seen: dict[str, ast.PhaseDecl] = {}
    for decl in decls:
        first = seen.get(decl.name.text)
        if first is not None:
            checker.error(
                decl.name.span,
                f"duplicate phase '{decl.name.text}' (first at {checker.where(first.span)})",
            )
            continue
        if checker.check_identifier(decl.name, "phase name"):
            seen[decl.name.text] = decl
    starts = [decl for decl in decls if decl.start]
    for extra in starts[1:]:
        checker.error(
            extra.span,
            f"a second start phase: connections start in '{starts[0].name.text}'"
            f" (at {checker.where(starts[0].span)})",
        )
    start = starts[0] if starts else decls[0]
    phases = [
        _phase(checker, decl, frame_names, list(seen), suggestion) for decl in decls
    ]
    ordered = [start] + [decl for decl in decls if decl is not start]
    by_decl = dict(zip((id(d) for d in decls), phases))
    return tuple(by_decl[id(decl)] for decl in ordered)


def _phase(
    checker: SpecBuilder,
    decl: ast.PhaseDecl,
    frame_names: list[str],
    phase_names: list[str],
    suggestion: object,
) -> Phase:
    assert callable(suggestion)
    if not decl.arms:
        checker.error(decl.span, f"phase '{decl.name.text}' accepts no frame")
    arms: list[PhaseArm] = []
    defaults: list[ast.PhaseArmDecl] = []
    frames: dict[str, ast.PhaseArmDecl] = {}
    prefixes: dict[bytes, ast.Span] = {}
    for arm in decl.arms:
        if arm.frame.text not in frame_names:
            checker.error(
                arm.frame.span,
                f"unknown frame '{arm.frame.text}'"
                + suggestion(arm.frame.text, frame_names),
            )
        elif arm.frame.text in frames:
            checker.error(
                arm.frame.span,
                f"frame '{arm.frame.text}' is accepted twice in phase '{decl.name.text}'"
                f" (first at {checker.where(frames[arm.frame.text].span)})",
            )
        frames.setdefault(arm.frame.text, arm)
        if arm.then is not None and arm.then.text not in phase_names:
            checker.error(
                arm.then.span,
                f"unknown phase '{arm.then.text}'"
                + suggestion(arm.then.text, phase_names),
            )
        if not arm.prefixes:
            defaults.append(arm)
        for literal in arm.prefixes:
            prefix = literal.value
            if not prefix:
                checker.error(literal.span, "a frame's first bytes cannot be empty")
                continue
            for other, other_span in prefixes.items():
                if prefix.startswith(other) or other.startswith(prefix):
                    checker.error(
                        literal.span,
                        f"first bytes {prefix!r} overlap {other!r} (at"
                        f" {checker.where(other_span)}): a stream starting"
                        " with both would fit two frames",
                    )
            prefixes[prefix] = literal.span
        then = arm.then.text if arm.then is not None else None
        arms.append(
            PhaseArm(
                arm.frame.text, tuple(literal.value for literal in arm.prefixes), then
            )
        )
    for extra in defaults[1:]:
        checker.error(
            extra.span,
            f"phase '{decl.name.text}' has a default frame already (at"
            f" {checker.where(defaults[0].span)}): give this one its first bytes"
            ' (`"*" => Frame`)',
        )
    # Prefixed arms are tried first, the longest first; the default comes last.
    arms.sort(
        key=lambda arm: (not arm.prefixes, -max(map(len, arm.prefixes), default=0))
    )
    return Phase(decl.name.text, tuple(arms), decl.span.location)
