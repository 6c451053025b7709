"""Validation of `struct` declarations, and the checks that need the whole spec.

A structure is a named field sequence with optional parameters (values its
user passes in, `Publish(qos)`); its fields follow the rules of a frame body
(validate_fields.py). Once every structure and frame is built, arrays are
checked for elements that could be empty and structures for recursion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import models as ir
from . import spec_ast as ast
from . import typeinfo
from .validate_bits import BitRules
from .validate_fields import Scope, SequenceBuilder, Symbol
from .validate_frame import RESERVED_FIELD_NAMES
from .validate_framing import span_at

if TYPE_CHECKING:
    from .validate import SpecBuilder

# Methods of generated structure classes.
RESERVED_STRUCT_FIELDS = RESERVED_FIELD_NAMES | {"decode"}


class StructBuilder(BitRules):
    def __init__(self, spec: SpecBuilder, decl: ast.StructDecl) -> None:
        super().__init__(spec.bag)
        self.spec = spec
        self.types = spec.types
        self.decl = decl
        self.declared: dict[str, tuple[str, ast.FieldDecl]] = {}
        self.declared_bits: dict[str, tuple[str, ast.BitDecl]] = {}
        self.poisoned: set[str] = set()

    def build(self) -> ir.StructDef | None:
        errors = len(self.bag.diagnostics)
        scope: Scope = {}
        params = self._params(scope)
        for field in self.decl.fields:
            self._declare(field)
        builder = SequenceBuilder(
            self.spec.field_types,
            self.decl.name.text,
            scope,
            bit_builder=self._bits,
            skip=lambda decl: self.declared.get(decl.name.text) != ("field", decl),
            poisoned=self.poisoned,
        )
        fields = builder.build(self.decl.fields)
        if len(self.bag.diagnostics) > errors:
            return None
        return ir.StructDef(
            self.decl.name.text, tuple(fields), self.decl.span.location, params
        )

    def _params(self, scope: Scope) -> tuple[ir.Param, ...]:
        params = []
        for param in self.decl.params:
            name = param.name.text
            if name in scope:
                self.error(param.name.span, f"duplicate parameter '{name}'")
                continue
            if not self.check_identifier(param.name, "parameter name"):
                continue
            resolved = self.types.fixed(param.type, ir.ByteOrder.BIG, "parameter")
            if resolved is None:
                continue
            scalar, enum = resolved
            if not isinstance(scalar, ir.ScalarType) or scalar.kind == "float":
                self.error(
                    param.type.span,
                    f"parameter '{name}' is an integer or an enum, "
                    f"not '{param.type.name.text}'",
                )
                continue
            params.append(ir.Param(name, scalar, param.name.span.location, enum))
            scope[name] = Symbol(name, "int", param.name.span, enum=enum, shown=name)
        return tuple(params)

    def _declare(self, field: ast.FieldDecl) -> None:
        name = field.name.text
        first = self._first_declaration(name)
        if first is not None:
            self.error(
                field.name.span, f"duplicate field '{name}' (first at {self.where(first)})"
            )
            return
        if any(p.name.text == name for p in self.decl.params):
            self.error(field.name.span, f"field '{name}' repeats a parameter name")
            return
        self.declared[name] = ("field", field)
        if not self.check_identifier(field.name, "field name"):
            self.poisoned.add(name)
        elif name in RESERVED_STRUCT_FIELDS:
            self.error(
                field.name.span,
                f"field name '{name}' is reserved: generated structure classes have "
                "a method of that name",
            )
            self.poisoned.add(name)
        if field.bits is not None:
            self._declare_bits(field, RESERVED_STRUCT_FIELDS)

    def _bits(
        self, decl: ast.FieldDecl, name: str, ftype: ir.ScalarType
    ) -> tuple[ir.BitField, ...] | None:
        carrier = ir.HeaderField(name, ftype, 0, decl.name.span.location)
        return self._carrier(carrier, decl, ftype.order).bits or None


# --- checks over the whole spec --------------------------------------------------------


def check_spec_types(
    spec: SpecBuilder, frames: list[ir.FrameDef], decls: list[ast.StructDecl]
) -> None:
    structs = spec.struct_defs
    for name in sorted(typeinfo.recursive_structs(structs)):
        struct_def = structs[name]
        spec.error(
            span_at(struct_def.location),
            f"structure '{name}' contains itself; recursive structures are not "
            "supported (a nesting depth is not bounded by anything but the frame)",
        )
    sequences: list[tuple[str, tuple[ir.Field, ...]]] = [
        (s.name, s.fields) for s in structs.values()
    ]
    sequences += [(f.name, f.body) for f in frames]
    for owner, fields in sequences:
        for field in fields:
            for array in _arrays(field.type):
                element = typeinfo.min_size(array.element, structs)
                if element == 0 and not isinstance(array.element, ir.ExternRef):
                    spec.error(
                        span_at(field.location),
                        f"the elements of array '{owner}.{field.name}' can take 0 bytes; "
                        "an array needs elements of at least 1 byte (else a count "
                        "could loop without reading)",
                    )


def _arrays(ftype: ir.ValueType) -> Iterator[ir.ArrayType]:
    if isinstance(ftype, ir.ArrayType):
        yield ftype
        yield from _arrays(ftype.element)
    elif isinstance(ftype, ir.UnionType):
        for arm_type in ftype.types:
            yield from _arrays(arm_type)


__all__ = ["StructBuilder", "check_spec_types"]
