"""View models of plug-in types whose bytes a value array describes
(`extern DomainName: str = "dns_names:domain_name" from Label[until ...]`).

Decoding is inline where the field is (templates/_decode_wire.j2): a single
loop over the union's elements that keeps each as a plain value (bytes, or an
int), then the plug-in's `resolve`: one call per name, as a whole-name
plug-in costs. Encoding is one function per type (templates/_codec_value_array.j2):
the plug-in's `compress`, then the loop in reverse; the codec calls it as it
calls a plug-in's encode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import expressions as ex
from . import models as ir
from .context_fields import extern_const
from .render import snake_case


@dataclass
class ValueArmView:
    tag: int
    is_bytes: bool
    ends: str = ""  # the end condition with this tag: "1" always, "0" never
    size: int = 0  # integer arms: its bytes
    bits: int = 0  # 8 * size
    read: str = ""  # the integer at `pos`
    type: str = ""  # `u8`
    max: int = 0  # the largest value (the other bits, then the integer)
    write: str = ""  # integer arms: the bytes of `item` after the tag


@dataclass
class WireExternView:
    """One plug-in type read from a value array, with the local variables of
    one place that decodes it (`items`, `start`, `head`, `stop`, and the head
    bits `tag_var`, `other_var`)."""

    name: str
    const: str
    encode: str
    python: str
    target: str  # module:object
    union: str
    tag: str
    items: str
    start: str
    head: str
    stop: str
    head_size: int
    head_read: str
    tag_var: str
    tag_expr: str
    other_var: str
    other_expr: str
    other_max: int
    until: str
    until_source: str
    until_names: set[str]  # head bits the end condition reads
    arms: list[ValueArmView] = field(default_factory=list)
    bytes_arm: ValueArmView | None = None
    int_arm: ValueArmView | None = None
    bytes_head: str = ""  # the head of a bytes element of `len(item)` bytes
    head_order: str = "big"


def _fold(expr: ir.Expr, name: str, value: int) -> ir.Expr:
    """`expr` with `it.NAME` replaced by `value`, constant parts computed: an
    arm's end condition, so that the loop tests only what the tag leaves open."""
    if isinstance(expr, ir.Ref):
        return ir.Const(value) if expr.path[-1] == name else expr
    if isinstance(expr, ir.Unary):
        expr = ir.Unary(expr.op, _fold(expr.operand, name, value))
    elif isinstance(expr, ir.InSet):
        expr = ir.InSet(
            _fold(expr.operand, name, value),
            tuple(_fold(v, name, value) for v in expr.values),
        )
    elif isinstance(expr, ir.Binary):
        left, right = _fold(expr.left, name, value), _fold(expr.right, name, value)
        if expr.op in ("and", "or"):
            for known, other in ((left, right), (right, left)):
                if isinstance(known, ir.Const):
                    if bool(known.value) == (expr.op == "or"):
                        return ir.Const(int(expr.op == "or"))
                    return other
        expr = ir.Binary(expr.op, left, right)
    if not any(True for _ in ex.refs(expr)):
        return ir.Const(ex.evaluate(expr, {}))
    return expr


def _read(size: int, order: ir.ByteOrder) -> str:
    if size == 1:
        return "data[pos]"
    return f'int.from_bytes(data[pos : pos + {size}], "{order.value}")'


def _bits(var: str, shift: int, bits: int, total: int) -> str:
    text = f"{var} >> {shift}" if shift else var
    if shift + bits < total:
        text += f" & {(1 << bits) - 1:#x}"
    return text


def _to_bytes(expr: str, size: int, order: ir.ByteOrder) -> str:
    return f'({expr}).to_bytes({size}, "{order.value}")'


def wire_extern_view(
    spec: ir.ProtocolSpec,
    extern: ir.ExternDef,
    claim: Callable[[str], str] | None = None,
    prefix: str = "",
) -> WireExternView:
    """The view of `extern`; `claim` gives the local names (`prefix` + a role)
    of an inline decode, else the encode function's own names."""
    assert extern.wire is not None
    union = spec.union(extern.wire.union)
    head = union.head
    total = 8 * head.size
    if claim is None:
        claim, prefix = (lambda name: name), "it_"
    tag_var, other_var = claim(prefix + union.tag), claim(prefix + union.other)
    head_var = claim(prefix + "head")

    def var(ref: ir.Ref) -> str:
        return tag_var if ref.path[-1] == union.tag else other_var

    def head_value(tag: int, other: str) -> str:
        parts = [f"{tag << union.tag_shift:#x}"] if tag << union.tag_shift else []
        parts.append(f"{other} << {union.other_shift}" if union.other_shift else other)
        return " | ".join(parts)

    snake = snake_case(extern.name)
    view = WireExternView(
        name=extern.name,
        const=extern_const(extern.name),
        encode=f"_encode_{snake}",
        python=extern.python_type,
        target=f"{extern.module}:{extern.attribute}",
        union=union.name,
        tag=union.tag,
        items=claim(prefix + "parts"),
        start=claim(prefix + "start"),
        head=head_var,
        stop=claim(prefix + "stop"),
        head_size=head.size,
        head_order=head.order.value,
        head_read=_read(head.size, head.order),
        tag_var=tag_var,
        tag_expr=_bits(head_var, union.tag_shift, union.tag_bits, total),
        other_var=other_var,
        other_expr=_bits(head_var, union.other_shift, union.other_bits, total),
        other_max=(1 << union.other_bits) - 1,
        until=ex.python(extern.wire.until, var),
        until_source=ex.source(extern.wire.until),
        until_names={var(ref) for ref in ex.refs(extern.wire.until)},
    )
    for arm in union.arms:
        folded = _fold(extern.wire.until, union.tag, arm.tag)
        if arm.scalar is None:
            arm_view = ValueArmView(arm.tag, True)
            view.bytes_arm = arm_view
            view.bytes_head = head_value(arm.tag, other_var)
        else:
            size = arm.scalar.size
            bits = 8 * size
            if head.order is arm.scalar.order is ir.ByteOrder.BIG and not union.other_shift:
                # The other bits and the integer are adjacent: one big-endian int.
                tag = arm.tag << union.tag_shift << bits
                write = _to_bytes(
                    f"{tag:#x} | item" if tag else "item", head.size + size, head.order
                )
            else:
                write = (
                    _to_bytes(head_value(arm.tag, f"(item >> {bits})"), head.size, head.order)
                    + " + "
                    + _to_bytes(f"item & {(1 << bits) - 1:#x}", size, arm.scalar.order)
                )
            arm_view = ValueArmView(
                arm.tag,
                False,
                size=size,
                bits=bits,
                read=_read(size, arm.scalar.order),
                type=f"u{bits}",
                max=(1 << (union.other_bits + bits)) - 1,
                write=write,
            )
            view.int_arm = arm_view
        arm_view.ends = (
            str(int(bool(folded.value)))
            if isinstance(folded, ir.Const)
            else ex.python(folded, var)
        )
        view.arms.append(arm_view)
    return view


def wire_extern_views(spec: ir.ProtocolSpec) -> list[WireExternView]:
    return [wire_extern_view(spec, e) for e in spec.externs if e.wire is not None]


__all__ = ["WireExternView", "wire_extern_view", "wire_extern_views"]
