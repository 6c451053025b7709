"""Static facts about IR types: wire sizes, and which structures recurse.

Shared by the validator (is an array element ever empty? how small can a
frame be?) and the view models (the fixed-size runs of a sequence, the
bounds the decoder checks before it loops).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from . import models as ir


def fixed_size(ftype: ir.ValueType) -> int | None:
    """The wire size of a type that always has the same size, else None."""
    if isinstance(ftype, (ir.ScalarType, ir.BytesType)):
        return ftype.size
    if isinstance(ftype, ir.EnumType):
        return ftype.base.size
    if isinstance(ftype, ir.BlobType) and not ftype.text:
        extent = ftype.extent
        if extent.kind == "count" and isinstance(extent.count, ir.Const):
            return None if extent.nullable else extent.count.value
    return None


def field_fixed_size(field: ir.Field) -> int | None:
    """A field that always takes the same bytes: no condition, region or escape."""
    if field.condition is not None or field.region is not None or field.escape:
        return None
    if any(bit.escape for bit in field.bits):
        return None
    return fixed_size(field.type)


def min_size(
    ftype: ir.ValueType,
    structs: Mapping[str, ir.StructDef],
    _active: frozenset[str] = frozenset(),
) -> int:
    """The fewest bytes a value of `ftype` can take on the wire."""
    size = fixed_size(ftype)
    if size is not None:
        return size
    if isinstance(ftype, ir.VarintType):
        return 1
    if isinstance(ftype, ir.BlobType):
        return _extent_min(ftype.extent, 0)
    if isinstance(ftype, ir.ArrayType):
        element = min_size(ftype.element, structs, _active)
        extent = ftype.extent
        if extent.kind == "count" and isinstance(extent.count, ir.Const):
            return 0 if extent.nullable else element * extent.count.value
        if extent.kind == "until":
            return element  # at least the terminating element
        return _extent_min(extent, 0)
    if isinstance(ftype, ir.StructRef):
        if ftype.name in _active or ftype.name not in structs:
            return 0
        return sequence_min_size(structs[ftype.name].fields, structs, _active | {ftype.name})
    if isinstance(ftype, ir.UnionType):
        return min(min_size(t, structs, _active) for t in ftype.types)
    return 0  # extern: unknown


def _extent_min(extent: ir.Extent, per_count: int) -> int:
    if extent.kind == "prefix":
        assert extent.prefix is not None
        return extent.prefix.size if isinstance(extent.prefix, ir.ScalarType) else 1
    if extent.kind == "terminator":
        assert extent.terminator is not None
        return len(extent.terminator)
    return per_count


def field_min_size(
    field: ir.Field,
    structs: Mapping[str, ir.StructDef],
    _active: frozenset[str] = frozenset(),
) -> int:
    if field.condition is not None:
        return 0
    if field.region is not None:
        return _extent_min(field.region, 0) + (
            field.region.count.value
            if isinstance(field.region.count, ir.Const)
            else 0
        )
    return min_size(field.type, structs, _active)


def sequence_min_size(
    fields: tuple[ir.Field, ...] | list[ir.Field],
    structs: Mapping[str, ir.StructDef],
    _active: frozenset[str] = frozenset(),
) -> int:
    return sum(field_min_size(f, structs, _active) for f in fields)


def referenced_structs(ftype: ir.ValueType) -> Iterator[str]:
    """Names of the structures a type uses directly (through arrays and unions too)."""
    if isinstance(ftype, ir.StructRef):
        yield ftype.name
    elif isinstance(ftype, ir.ArrayType):
        yield from referenced_structs(ftype.element)
    elif isinstance(ftype, ir.UnionType):
        for arm_type in ftype.types:
            yield from referenced_structs(arm_type)


def recursive_structs(structs: Mapping[str, ir.StructDef]) -> set[str]:
    """Structures that contain themselves, directly or through others."""
    graph = {
        name: {n for f in s.fields for n in referenced_structs(f.type) if n in structs}
        for name, s in structs.items()
    }
    recursive: set[str] = set()
    for start in graph:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            name = stack.pop()
            if name == start:
                recursive.add(start)
                break
            if name not in seen:
                seen.add(name)
                stack.extend(graph[name])
    return recursive


def uses_externs(
    ftype: ir.ValueType, structs: Mapping[str, ir.StructDef], _seen: frozenset[str] = frozenset()
) -> bool:
    """True when decoding `ftype` may call a plug-in field type."""
    if isinstance(ftype, ir.ExternRef):
        return True
    if isinstance(ftype, ir.ArrayType):
        return uses_externs(ftype.element, structs, _seen)
    if isinstance(ftype, ir.UnionType):
        return any(uses_externs(t, structs, _seen) for t in ftype.types)
    if isinstance(ftype, ir.StructRef) and ftype.name not in _seen and ftype.name in structs:
        return any(
            uses_externs(f.type, structs, _seen | {ftype.name})
            for f in structs[ftype.name].fields
        )
    return False


__all__ = [
    "fixed_size",
    "field_fixed_size",
    "min_size",
    "field_min_size",
    "sequence_min_size",
    "referenced_structs",
    "recursive_structs",
    "uses_externs",
]
