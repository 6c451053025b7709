"""View models of plug-in types whose bytes a value array describes
(`extern DomainName: str = "dns_names:domain_name" from Label[until ...]`).

The codec gets one decode and one encode function per such type
(templates/_codec_value_array.j2): a single loop over the union's elements
that keeps each as a plain value (bytes, or an int), then the plug-in's
`resolve`; on encode the plug-in's `compress`, then the loop in reverse. The
rest of the codec calls them exactly as it calls a plug-in's decode/encode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import expressions as ex
from . import models as ir
from .context_fields import extern_const
from .render import snake_case


@dataclass
class ValueArmView:
    tag: int
    is_bytes: bool
    size: int = 0  # integer arms: its bytes
    bits: int = 0  # 8 * size
    read: str = ""  # the integer at `pos`
    type: str = ""  # `u8`
    max: int = 0  # the largest value (the other bits, then the integer)
    write: str = ""  # integer arms: the bytes of `item` after the tag


@dataclass
class WireExternView:
    name: str
    const: str
    decode: str
    encode: str
    python: str
    target: str  # module:object
    union: str
    tag: str
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


def wire_extern_view(spec: ir.ProtocolSpec, extern: ir.ExternDef) -> WireExternView:
    assert extern.wire is not None
    union = spec.union(extern.wire.union)
    head = union.head
    total = 8 * head.size
    tag_var, other_var = f"it_{union.tag}", f"it_{union.other}"

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
        decode=f"_decode_{snake}",
        encode=f"_encode_{snake}",
        python=extern.python_type,
        target=f"{extern.module}:{extern.attribute}",
        union=union.name,
        tag=union.tag,
        head_size=head.size,
        head_read=_read(head.size, head.order),
        tag_var=tag_var,
        tag_expr=_bits("head", union.tag_shift, union.tag_bits, total),
        other_var=other_var,
        other_expr=_bits("head", union.other_shift, union.other_bits, total),
        other_max=(1 << union.other_bits) - 1,
        until=ex.python(extern.wire.until, var),
        until_source=ex.source(extern.wire.until),
        until_names={var(ref) for ref in ex.refs(extern.wire.until)},
    )
    for arm in union.arms:
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
        view.arms.append(arm_view)
    return view


def wire_extern_views(spec: ir.ProtocolSpec) -> list[WireExternView]:
    return [wire_extern_view(spec, e) for e in spec.externs if e.wire is not None]


__all__ = ["WireExternView", "wire_extern_views"]
