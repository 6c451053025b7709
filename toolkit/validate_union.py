"""Value unions (`union Label : u8 bits {...} switch kind {...}`) and the plug-in
types whose bytes they describe (`extern DomainName: str = "..." from Label[until ...]`).

A value union is the smallest union the language has: a head integer of two
bit fields, one of them the tag that chooses the arm, and arms that are either
the bytes the other bits size or an unsigned integer continuing them. Its
elements decode as plain values (bytes, int) in one generated loop, which is
what makes DNS names as cheap as the hand-written plug-in they replace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import models as ir
from . import spec_ast as ast
from .models import ByteOrder
from .validate_fields import ELEMENT, ExprResolver, Symbol

if TYPE_CHECKING:
    from .validate import SpecBuilder
    from .validate_fields import SpecTypes

_ARM_FORMS = (
    "`bytes[{other}]` (the bytes the other bits size) or an unsigned integer "
    "(`u8`: the other bits, then it, as one int)"
)


def build_union(builder: SpecBuilder, decl: ast.UnionDecl) -> ir.ValueUnionDef | None:
    """The IR of a value union, or None (reported)."""
    name = decl.name.text
    head = builder.types.scalar(decl.head, ByteOrder.BIG)
    if head is None or head.kind != "uint" or decl.head.arg is not None:
        builder.error(
            decl.head.span,
            f"union '{name}': the head is an unsigned integer (u8...u64) carrying "
            "two bit fields",
        )
        return None
    members = decl.bits.members
    if len(members) != 2 or any(
        m.name.text == "_" or m.enum is not None or m.value is not None or m.escape
        for m in members
    ):
        builder.error(
            decl.bits.span,
            f"union '{name}': the head has exactly two plain bit fields, the tag "
            "and the other bits (`bits { kind: 2, length: 6 }`)",
        )
        return None
    widths = [m.width.value for m in members]
    if min(widths) < 1 or sum(widths) != 8 * head.size:
        builder.error(
            decl.bits.span,
            f"union '{name}': bit widths {' + '.join(map(str, widths))} must add up "
            f"to the head's {8 * head.size} bits",
        )
        return None
    names = [m.name.text for m in members]
    if names[0] == names[1]:
        builder.error(members[1].name.span, f"duplicate bit field '{names[1]}'")
        return None
    if decl.tag.text not in names:
        builder.error(
            decl.tag.span,
            f"union '{name}' switches on one of its head's bits "
            f"({names[0]}, {names[1]}), not '{decl.tag.text}'",
        )
        return None
    tag_index = names.index(decl.tag.text)
    other_index = 1 - tag_index
    shifts = (widths[1], 0)
    tag_bits, other = widths[tag_index], names[other_index]
    arms: list[ir.ValueArm] = []
    seen: dict[int, ast.Span] = {}
    ok = True
    for arm in decl.arms:
        if len(arm.labels) != 1 or not isinstance(arm.labels[0], ast.IntLit):
            builder.error(
                arm.span,
                f"union '{name}': each arm has one integer tag (the encoder writes it)",
            )
            ok = False
            continue
        label = arm.labels[0]
        tag = label.value
        if not 0 <= tag < 1 << tag_bits:
            builder.error(
                label.span,
                f"tag {tag} does not fit the {tag_bits}-bit '{decl.tag.text}'",
            )
            ok = False
            continue
        if tag in seen:
            builder.error(
                label.span,
                f"tag {tag} is given twice (first at {builder.where(seen[tag])})",
            )
            ok = False
            continue
        seen[tag] = label.span
        scalar = _arm_type(builder, arm.type, other)
        if isinstance(scalar, bool):
            builder.error(
                arm.type.span,
                f"union '{name}': an arm is {_ARM_FORMS.format(other=other)}",
            )
            ok = False
            continue
        arms.append(ir.ValueArm(tag, scalar))
    if not ok:
        return None
    if not arms:
        builder.error(decl.span, f"union '{name}' has no arms")
        return None
    if sum(arm.scalar is None for arm in arms) > 1 or sum(
        arm.scalar is not None for arm in arms
    ) > 1:
        builder.error(
            decl.span,
            f"union '{name}' has at most one bytes arm and one integer arm: the "
            "encoder tells them apart by the value's type",
        )
        return None
    return ir.ValueUnionDef(
        name=name,
        head=head,
        tag=decl.tag.text,
        tag_shift=shifts[tag_index],
        tag_bits=tag_bits,
        other=other,
        other_shift=shifts[other_index],
        other_bits=widths[other_index],
        arms=tuple(arms),
        location=decl.span.location,
    )


def _arm_type(
    builder: SpecBuilder, ref: ast.TypeRef | ast.SwitchType, other: str
) -> ir.ScalarType | None | bool:
    """None: the bytes arm; a scalar: the integer arm; False: neither (the
    caller reports it)."""
    if not isinstance(ref, ast.TypeRef) or ref.args is not None or ref.array_arg:
        return False
    if ref.name.text == "bytes":
        arg = ref.arg
        if isinstance(arg, ast.Ident) and arg.text == other and ref.order is None:
            return None
        return False
    if ref.arg is not None or not ref.name.text.startswith("u"):
        return False
    scalar = builder.types.scalar(ref, ByteOrder.BIG)
    if scalar is None or scalar.kind != "uint":
        return False
    return scalar


def resolve_wire(
    builder: SpecBuilder, types: SpecTypes, decl: ast.ExternDecl
) -> ir.ValueArray | None:
    """`from Label[until EXPR]`: the value array a plug-in type's bytes are."""
    ref = decl.wire
    assert ref is not None
    name = ref.name.text
    if name not in types.unions:
        if name not in types.poisoned:
            builder.error(
                ref.name.span,
                f"plug-in type '{decl.name.text}' is read from an array of a value "
                f"union (`from Label[until ...]`); '{name}' is not a union",
            )
        return None
    if not isinstance(ref.arg, ast.UntilArg) or ref.array_arg or ref.order or ref.args:
        builder.error(
            ref.span,
            f"a value array ends at an element: write '{name}[until EXPR]' over "
            "`it` (`it.TAG`, `it.OTHER` are its head's bits)",
        )
        return None
    scope = {ELEMENT: Symbol(ELEMENT, "struct", ref.arg.span, struct=name)}
    resolver = ExprResolver(types, scope)
    until = resolver.resolve(
        ref.arg.expr, f"the end condition of plug-in type '{decl.name.text}'"
    )
    if until is None:
        return None
    return ir.ValueArray(name, until)


__all__ = ["build_union", "resolve_wire"]
