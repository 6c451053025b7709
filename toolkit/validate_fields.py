"""Validation of field sequences: frame bodies and structures.

A sequence is decoded in order, so each field may use the fields before it
(and, in a frame body, the header; in a structure, its parameters): sizes,
counts, conditions, constraints and union discriminants are expressions over
them. This module resolves types and names, checks every rule with its own
diagnostic, and works out which integers the encoder computes (`Derived`):
sizes, counts, region sizes and presence flags.
"""

from __future__ import annotations

import dataclasses
import keyword
from dataclasses import dataclass
from typing import Callable, Iterable

from . import expressions as ex
from . import models as ir
from . import spec_ast as ast
from .diagnostics import DiagnosticBag
from .validate import (
    BUILTIN_TYPE_NAMES,
    Checker,
    TypeResolver,
    describe_type,
    suggestion,
)

VARINT_TYPES = {"varint", "zigzag", "mqtt_varint"}
BLOB_TYPES = {"bytes", "string"}
ALL_TYPE_NAMES = BUILTIN_TYPE_NAMES + sorted(VARINT_TYPES) + ["string"]
ELEMENT = "it"  # the array element in `until` expressions
PADDING = "_"


# --- symbols: what an expression may name -----------------------------------------


@dataclass
class Symbol:
    """A name an expression can use, and what kind of value it holds.

    kind: "int", "float", "bytes", "str", "struct", "array", "union", "extern".
    `derivable`: an unconditional integer the encoder may compute (a whole field
    or a bit field, not a constant or a parameter). `derive` records it.
    """

    name: str
    kind: str
    span: ast.Span
    optional: bool = False
    struct: str | None = None  # kind "struct", or the element of an "array"
    enum: str | None = None
    derivable: bool = False
    whole: bool = False  # a whole fixed-size integer field (not a bit, not a varint)
    derived: ir.Derived | None = None
    is_length: bool = False  # the framing length field
    const: bool = False
    shown: str = ""  # the type as messages show it (`f32`, `enum E`)
    one_bit: bool = False  # a 1-bit bit field: a presence flag when used as `if flag`
    carrier: bool = False  # carries bit fields
    checksum: bool = False


Scope = dict[str, Symbol]


@dataclass
class SpecTypes:
    """What every sequence builder of a spec shares."""

    bag: DiagnosticBag
    types: TypeResolver  # scalars and enums
    structs: dict[str, ast.StructDecl]
    externs: dict[str, ir.ExternDef]
    poisoned: set[str]  # type names whose declaration failed
    unions: dict[str, ir.ValueUnionDef] = dataclasses.field(default_factory=dict)

    @property
    def enums(self) -> dict[str, ir.EnumDef]:
        return self.types.enums


def _member_symbols(
    spec: SpecTypes, decl: ast.StructDecl
) -> dict[str, tuple[str, str | None]]:
    """A structure's field names -> (kind, struct) from its declaration alone."""
    out: dict[str, tuple[str, str | None]] = {}
    for field in decl.fields:
        kind, struct = ast_kind(spec, field.type)
        out[field.name.text] = (kind, struct)
        if field.bits is not None:
            for member in field.bits.members:
                if member.name.text != PADDING:
                    out[member.name.text] = ("int", None)
    return out


def ast_kind(spec: SpecTypes, ref: ast.AnyType) -> tuple[str, str | None]:
    """The symbol kind a declared type will have (before it is validated)."""
    if isinstance(ref, ast.SwitchType):
        return "union", None
    name = ref.name.text
    has_extent = ref.arg is not None and name not in BLOB_TYPES
    if has_extent:
        return "array", name if name in spec.structs else None
    if name in BLOB_TYPES:
        return ("str" if name == "string" else "bytes"), None
    if name in ("f32", "f64"):
        return "float", None
    if name in spec.structs:
        return "struct", name
    if name in spec.externs:
        return "extern", None
    return "int", None


# --- expressions -------------------------------------------------------------------


class ExprResolver(Checker):
    """ast expressions -> IR expressions, with names resolved in a scope."""

    def __init__(self, spec: SpecTypes, scope: Scope) -> None:
        super().__init__(spec.bag)
        self.spec = spec
        self.scope = scope
        self.used: list[tuple[str, ast.Span]] = []  # first segments, as written

    def resolve(self, expr: ast.Expr, what: str) -> ir.Expr | None:
        """An integer-valued expression; None (reported) when it is wrong."""
        try:
            return self._expr(expr, what)
        except _Poisoned:
            return None

    def _expr(self, expr: ast.Expr, what: str) -> ir.Expr:
        if isinstance(expr, ast.IntExpr):
            return ir.Const(expr.value)
        if isinstance(expr, ast.NameExpr):
            return self._name(expr, what)
        if isinstance(expr, ast.UnaryExpr):
            return ir.Unary(expr.op, self._expr(expr.operand, what))  # type: ignore[arg-type]
        if isinstance(expr, ast.BinaryExpr):
            left = self._expr(expr.left, what)
            right = self._expr(expr.right, what)
            if (
                expr.op in ("/", "%")
                and isinstance(right, ir.Const)
                and not right.value
            ):
                self.error(expr.right.span, f"{what}: division by zero")
                raise _Poisoned
            return ir.Binary(expr.op, left, right)
        if isinstance(expr, ast.InExpr):
            operand = self._expr(expr.operand, what)
            return ir.InSet(operand, tuple(self._expr(v, what) for v in expr.values))
        assert isinstance(expr, ast.CallExpr)
        if expr.function.text != "len":
            self.error(
                expr.function.span,
                f"unknown function '{expr.function.text}' (expressions know only len)",
            )
            raise _Poisoned
        if not isinstance(expr.argument, ast.NameExpr) or len(expr.argument.parts) != 1:
            self.error(expr.argument.span, "len() takes the name of a field")
            raise _Poisoned
        symbol = self._lookup(expr.argument.parts[0], what)
        if symbol.kind not in ("bytes", "str", "array"):
            self.error(
                expr.argument.span,
                f"len() needs a bytes, string or array field; "
                f"'{symbol.name}' is {_kind_text(symbol)}",
            )
            raise _Poisoned
        self._check_present(symbol, expr.argument.span, what)
        return ir.Length(ir.Ref((symbol.name,)))

    def _lookup(self, ident: ast.Ident, what: str) -> Symbol:
        symbol = self.scope.get(ident.text)
        if symbol is None:
            if ident.text in self.spec.poisoned:
                raise _Poisoned
            self.error(
                ident.span,
                f"unknown field '{ident.text}' in {what}"
                + suggestion(ident.text, self.scope),
            )
            raise _Poisoned
        if symbol.checksum:
            self.error(
                ident.span,
                f"checksum field '{ident.text}' is computed over the frame; "
                f"{what} cannot use it",
            )
            raise _Poisoned
        self.used.append((ident.text, ident.span))
        return symbol

    def _name(self, expr: ast.NameExpr, what: str) -> ir.Expr:
        first = expr.parts[0]
        if first.text in self.spec.enums and first.text not in self.scope:
            return self._member(expr, what)
        symbol = self._lookup(first, what)
        if len(expr.parts) == 1:
            if symbol.kind != "int":
                self.error(
                    expr.span,
                    f"{what} needs an integer; '{symbol.name}' is {_kind_text(symbol)}"
                    + (
                        " (use len())"
                        if symbol.kind in ("bytes", "str", "array")
                        else ""
                    ),
                )
                raise _Poisoned
            self._check_present(symbol, expr.span, what)
            return ir.Ref((symbol.name,))
        if symbol.kind != "struct" or symbol.struct is None:
            self.error(
                expr.span,
                f"'{symbol.name}' is {_kind_text(symbol)}, not a structure: "
                f"it has no field '{expr.parts[1].text}'",
            )
            raise _Poisoned
        self._check_present(symbol, expr.span, what)
        if len(expr.parts) > 2:
            self.error(expr.span, f"{what}: one level of `.` only ('{expr.text}')")
            raise _Poisoned
        union = self.spec.unions.get(symbol.struct)
        if union is not None:  # `it.kind`: a value union's head bits
            members = {union.tag: ("int", None), union.other: ("int", None)}
        else:
            members = _member_symbols(self.spec, self.spec.structs[symbol.struct])
        member = expr.parts[1].text
        if member not in members:
            self.error(
                expr.parts[1].span,
                f"{'union' if union else 'structure'} '{symbol.struct}' has no field '{member}'"
                + suggestion(member, members),
            )
            raise _Poisoned
        if members[member][0] != "int":
            self.error(
                expr.span,
                f"{what} needs an integer; '{expr.text}' is not one",
            )
            raise _Poisoned
        return ir.Ref((symbol.name, member))

    def _member(self, expr: ast.NameExpr, what: str) -> ir.Expr:
        enum_def = self.spec.enums[expr.parts[0].text]
        if len(expr.parts) != 2:
            self.error(expr.span, f"name a member: '{enum_def.name}.MEMBER'")
            raise _Poisoned
        name = expr.parts[1].text
        member = next((m for m in enum_def.members if m.name == name), None)
        if member is None:
            self.error(
                expr.parts[1].span,
                f"enum '{enum_def.name}' has no member '{name}'"
                + suggestion(name, [m.name for m in enum_def.members]),
            )
            raise _Poisoned
        return ir.Member(enum_def.name, name, member.value)

    def _check_present(self, symbol: Symbol, span: ast.Span, what: str) -> None:
        if symbol.optional:
            self.error(
                span,
                f"{what} uses '{symbol.name}', which may be absent (None); "
                "only fields that are always present can be used",
            )
            raise _Poisoned


class _Poisoned(Exception):
    """An expression already reported as wrong: stop resolving it."""


def _kind_text(symbol: Symbol) -> str:
    return {
        "int": "an integer",
        "float": "a float",
        "bytes": "a byte string",
        "str": "a string",
        "struct": f"a structure ({symbol.struct})",
        "array": "an array",
        "union": "a union",
        "extern": "a plug-in value",
    }[symbol.kind]


# --- sequences -----------------------------------------------------------------------


@dataclass
class _Pending:
    """A field built but not final: derivations may still mark earlier fields."""

    field: ir.Field
    decl: ast.FieldDecl


class SequenceBuilder(Checker):
    """Builds the `Field`s of one frame body or structure.

    `scope` holds the names visible before the first field (header fields, or
    parameters) and grows with each field. `owner` names the frame or structure
    in messages. Names are declared (and duplicates reported) by the caller.
    """

    def __init__(
        self,
        spec: SpecTypes,
        owner: str,
        scope: Scope,
        *,
        default_order: ir.ByteOrder = ir.ByteOrder.BIG,
        bit_builder: Callable[
            [ast.FieldDecl, str, ir.ScalarType], tuple[ir.BitField, ...] | None
        ],
        skip: Callable[[ast.FieldDecl], bool] = lambda decl: False,
        poisoned: set[str],
    ) -> None:
        super().__init__(spec.bag)
        self.spec = spec
        self.owner = owner
        self.scope = scope
        self.order = default_order
        self.bit_builder = bit_builder
        self.skip = skip
        self.poisoned = poisoned
        self.pending: list[_Pending] = []

    # The sequence ---------------------------------------------------------------------

    def build(self, decls: Iterable[ast.FieldDecl]) -> list[ir.Field]:
        """The fields, with what the encoder computes marked (`Derived`).

        Derivations of names from outside the sequence (header fields) are left
        on their symbols in `scope` for the caller to apply.
        """
        rest: _Pending | None = None
        for decl in decls:
            if self.skip(decl):
                continue
            if rest is not None:
                self._rest_not_last(rest)
                rest = None  # say it once
            field = self._field(decl)
            if field is None:
                self._poison(decl)
                continue
            pending = _Pending(field, decl)
            if _takes_rest(field):
                if any(_takes_rest(p.field) for p in self.pending):
                    self.error(
                        decl.type.span, f"only one {self.what} can be bytes[rest]"
                    )
                    continue
                rest = pending
            self.pending.append(pending)
        self._derive()
        return self.finish()

    @property
    def what(self) -> str:
        """How messages call a field of this sequence."""
        return "field"

    def _rest_not_last(self, rest: _Pending) -> None:
        name = rest.field.name
        if rest.field.rest:
            message = f"bytes[rest] field '{name}' must be the last {self.what}"
        else:
            message = f"field '{name}' takes the rest of '{self.owner}'; it must be the last {self.what}"
        self.error(rest.decl.name.span, message)

    def _poison(self, decl: ast.FieldDecl) -> None:
        self.poisoned.add(decl.name.text)
        self.scope[decl.name.text] = Symbol(
            decl.name.text, "int", decl.name.span, optional=True
        )
        if decl.bits is not None:
            for member in decl.bits.members:
                self.poisoned.add(member.name.text)

    # One field ------------------------------------------------------------------------

    def _field(self, decl: ast.FieldDecl) -> ir.Field | None:
        self.current_span = decl.name.span
        self.current_name = name = decl.name.text
        where = f"field '{name}'"
        condition = None
        if_attr = decl.attr("if")
        attrs_ok = self._attrs_once(decl)
        if if_attr is not None:
            condition = self._expr(if_attr.value, f"the condition of {where}")
            if condition is None:
                return None
        region_attr = decl.attr("as")
        region: ir.Extent | None = None
        if region_attr is not None:
            region = self._region(decl)
            if region is None:
                return None
            assert isinstance(region_attr.value, (ast.TypeRef, ast.SwitchType))
            resolved = self.resolve_type(region_attr.value, where)
        else:
            resolved = self.resolve_type(decl.type, where)
        if resolved is None or not attrs_ok:
            return None
        ftype, enum = resolved
        field = ir.Field(
            name,
            ftype,
            decl.name.span.location,
            enum=enum,
            condition=condition,
            region=region,
        )
        if decl.nullable is not None:
            field = self._nullable(field, decl)
            if field is None:
                return None
        if decl.bits is not None:
            if not isinstance(ftype, ir.ScalarType) or enum is not None:
                self.error(
                    decl.type.span,
                    f"bits need an unsigned integer carrier (u8...u64); "
                    f"'{name}' is {_type_text(ftype, enum)}",
                )
                return None
            bits = self.bit_builder(decl, name, ftype)
            if bits is None:
                return None
            field = dataclasses.replace(field, bits=bits)
        if decl.escape is not None:
            escape = self.escape_arms(decl.escape, ftype, enum, where)
            if escape is None:
                return None
            field = dataclasses.replace(field, escape=escape)
        field = self._value(field, decl)
        if field is None:
            return None
        xor_attr = decl.attr("xor")
        if xor_attr is not None:
            key = self._xor_key(field, xor_attr)
            if key is None:
                return None
            field = dataclasses.replace(field, xor=key)
        self._declare(field, decl)
        where_attr = decl.attr("where")
        if where_attr is not None:
            if decl.nullable is not None:
                self.error(
                    where_attr.span,
                    f"{where} may be absent; put the constraint on a field that is "
                    "always present",
                )
                return None
            constraint = self._own_constraint(where_attr.value, where, field)
            if constraint is None:
                return None
            field = dataclasses.replace(field, where=constraint)
        return field

    def _attrs_once(self, decl: ast.FieldDecl) -> bool:
        seen: dict[str, ast.FieldAttr] = {}
        ok = True
        for attr in decl.attrs:
            if attr.kind in seen:
                self.error(
                    attr.span,
                    f"duplicate `{attr.kind}` on field '{decl.name.text}' "
                    f"(first at {self.where(seen[attr.kind].span)})",
                )
                ok = False
            seen[attr.kind] = attr
        return ok

    def _own_constraint(
        self, expr: object, where: str, field: ir.Field
    ) -> ir.Expr | None:
        """A field's `where`: the field is visible in it, present even when it has an
        `if` condition (the constraint is checked only where the field is on the wire).
        """
        own = [field.name, *(bit.name for bit in field.bits)]
        saved = {name: self.scope[name] for name in own}
        for name in own:
            self.scope[name] = dataclasses.replace(saved[name], optional=False)
        try:
            return self._expr(expr, f"the constraint of {where}")
        finally:
            self.scope.update(saved)

    def _expr(self, expr: object, what: str) -> ir.Expr | None:
        assert not isinstance(expr, (ast.TypeRef, ast.SwitchType))
        resolver = ExprResolver(self.spec, self.scope)
        return resolver.resolve(expr, what)  # type: ignore[arg-type]

    def _declare(self, field: ir.Field, decl: ast.FieldDecl) -> None:
        """Make `field` (and its bits) visible to the fields after it."""
        kind = _value_kind(field.type)
        struct = None
        if isinstance(field.type, ir.StructRef):
            struct = field.type.name
        elif isinstance(field.type, ir.ArrayType) and isinstance(
            field.type.element, ir.StructRef
        ):
            struct = field.type.element.name
        optional = field.condition is not None or _nullable(field)
        plain_int = (
            kind == "int"
            and not optional
            and field.const is None
            and field.allowed is None
            and field.enum is None
            and not field.bits
            and not field.escape
        )
        self.scope[field.name] = Symbol(
            field.name,
            kind,
            decl.name.span,
            optional=optional,
            struct=struct,
            enum=field.enum,
            derivable=plain_int,
            whole=plain_int and isinstance(field.type, ir.ScalarType),
            const=field.const is not None,
            shown=_type_text(field.type, field.enum),
            carrier=bool(field.bits),
        )
        for bit in field.bits:
            self.scope[bit.name] = bit_symbol(bit, decl.name.span, optional)

    # Values: constants, allowed sets ----------------------------------------------

    def _value(self, field: ir.Field, decl: ast.FieldDecl) -> ir.Field | None:
        value = decl.value
        if value is None:
            return field
        shown = _type_text(field.type, field.enum)
        if isinstance(value, ast.ChecksumValue):
            self.error(
                value.span,
                f"checksums belong in the header or trailer; '{field.name}' is a "
                f"field of '{self.owner}'",
            )
            return None
        if field.bits:
            self.error(
                value.span,
                f"bit-field carrier '{field.name}' cannot have a value; "
                "give values to its bits",
            )
            return None
        if field.condition is not None or _nullable(field):
            self.error(
                value.span,
                f"field '{field.name}' may be absent; it cannot be a constant",
            )
            return None
        ftype = field.type
        if isinstance(value, ast.AllowedValues):
            limits = _int_limits(ftype)
            if limits is None:
                self.error(
                    value.span,
                    f"an allowed set needs an integer field; '{field.name}' is {shown}",
                )
                return None
            allowed: list[int] = []
            for literal in value.values:
                if literal.value in allowed:
                    self.error(literal.span, f"value {literal.value} listed twice")
                elif self._in_limits(literal, limits, field.name, shown):
                    allowed.append(literal.value)
            return (
                dataclasses.replace(field, allowed=tuple(allowed)) if allowed else None
            )
        assert isinstance(value, ast.ConstValue)
        literal = value.value
        if isinstance(ftype, ir.BlobType):
            if not isinstance(literal, ast.StrLit):
                self.error(
                    literal.span,
                    f"field '{field.name}' is {shown}; its constant must be a string",
                )
                return None
            const: int | bytes | str = literal.value
            if ftype.text:
                try:
                    const = literal.value.decode("utf-8")
                except UnicodeDecodeError:
                    self.error(literal.span, "a string constant must be valid UTF-8")
                    return None
            count = ftype.extent.count
            if isinstance(count, ir.Const) and count.value != len(literal.value):
                self.error(
                    literal.span,
                    f"constant of {len(literal.value)} bytes for field '{field.name}' "
                    f"of {shown}",
                )
                return None
            return dataclasses.replace(field, const=const)
        limits = _int_limits(ftype)
        if limits is None:
            self.error(
                literal.span,
                f"field '{field.name}' is {shown}; it cannot be a constant",
            )
            return None
        if not isinstance(literal, ast.IntLit):
            self.error(
                literal.span,
                f"field '{field.name}' is {shown}; its constant must be an integer",
            )
            return None
        if not self._in_limits(literal, limits, field.name, shown):
            return None
        if field.enum is not None:
            values = {m.value for m in self.spec.enums[field.enum].members}
            if literal.value not in values:
                self.error(
                    literal.span,
                    f"value {literal.value} is not a member of enum '{field.enum}'",
                )
                return None
        return dataclasses.replace(field, const=literal.value)

    def _in_limits(
        self, literal: ast.IntLit, limits: tuple[int, int], name: str, shown: str
    ) -> bool:
        low, high = limits
        if low <= literal.value <= high:
            return True
        self.error(
            literal.span,
            f"value {literal.value} out of range for field '{name}' of {shown} "
            f"({low}..{high})",
        )
        return False

    def _nullable(self, field: ir.Field, decl: ast.FieldDecl) -> ir.Field | None:
        assert decl.nullable is not None
        ftype = field.type
        extent = (
            field.region
            if field.region is not None
            else (
                ftype.extent if isinstance(ftype, (ir.BlobType, ir.ArrayType)) else None
            )
        )
        if extent is None or extent.kind not in ("count", "prefix"):
            self.error(
                decl.nullable,
                f"`or null` needs a length: '{field.name}' must be a byte string, "
                "string or array with a length (`bytes[i32] or null`)",
            )
            return None
        if extent.kind == "prefix" and not (
            isinstance(extent.prefix, ir.ScalarType) and extent.prefix.kind == "int"
        ):
            self.error(
                decl.nullable,
                f"`or null` means a length of -1; the length of '{field.name}' is "
                "unsigned (use i8...i64)",
            )
            return None
        nullable = dataclasses.replace(extent, nullable=True)
        if field.region is not None:
            return dataclasses.replace(field, region=nullable)
        return dataclasses.replace(field, type=dataclasses.replace(ftype, extent=nullable))  # type: ignore[type-var]

    def _xor_key(self, field: ir.Field, attr: ast.FieldAttr) -> ir.Expr | None:
        value = attr.value
        if not isinstance(field.type, ir.BlobType) or field.region is not None:
            self.error(
                attr.span,
                f"xor masks a byte string or string; '{field.name}' is "
                f"{_type_text(field.type, field.enum)}",
            )
            return None
        if not isinstance(value, ast.NameExpr) or len(value.parts) != 1:
            self.error(attr.span, "xor takes the name of a byte string field (the key)")
            return None
        symbol = self.scope.get(value.parts[0].text)
        if symbol is None:
            if value.parts[0].text not in self.poisoned:
                self.error(
                    value.span,
                    f"unknown field '{value.text}' in the xor key of field "
                    f"'{field.name}'" + suggestion(value.text, self.scope),
                )
            return None
        if symbol.kind != "bytes":
            self.error(
                value.span,
                f"the xor key '{symbol.name}' must be a byte string, not {_kind_text(symbol)}",
            )
            return None
        return ir.Ref((symbol.name,))

    # `bytes[n] as T`: a region ----------------------------------------------------

    def _region(self, decl: ast.FieldDecl) -> ir.Extent | None:
        ref = decl.type
        if (
            not isinstance(ref, ast.TypeRef)
            or ref.name.text != "bytes"
            or ref.arg is None
            or ref.order is not None
        ):
            self.error(
                decl.type.span,
                f"`as` decodes a type within a byte region: write "
                f"'{decl.name.text}: bytes[SIZE] as TYPE'",
            )
            return None
        extent = self.extent(ref, f"field '{decl.name.text}'", blob=True)
        if extent is None:
            return None
        if extent.kind not in ("count", "prefix", "rest"):
            self.error(
                ref.span,
                "a region is sized by a count, a length prefix or rest (not a terminator)",
            )
            return None
        return extent

    # Types ---------------------------------------------------------------------------

    def resolve_type(
        self, ref: ast.AnyType, where: str
    ) -> tuple[ir.ValueType, str | None] | None:
        """The type of a field (and its enum), or None (reported)."""
        if isinstance(ref, ast.SwitchType):
            union = self._union(ref, where)
            return (union, None) if union is not None else None
        name = ref.name.text
        if ref.array_arg is not None:
            return self._blob_array(ref, where)
        if name in BLOB_TYPES:
            return self._blob(ref, where)
        element = self._element(ref, where)
        if element is None:
            return None
        if ref.arg is None:
            if isinstance(element, ir.EnumType):
                return element.base, element.name
            return element, None
        if isinstance(element, ir.UnionType):  # pragma: no cover - grammar forbids
            return None
        extent = self.extent(ref, where, blob=False)
        if extent is None:
            return None
        if extent.kind == "until":
            assert extent.until is None  # resolved below, with `it` in scope
            until = self._until(ref, element, where)
            if until is None:
                return None
            extent = dataclasses.replace(extent, until=until)
        return ir.ArrayType(element, extent), None

    def _element(self, ref: ast.TypeRef, where: str) -> ir.ValueType | None:
        """The type named by `ref` itself, without its brackets."""
        name = ref.name.text
        if name in VARINT_TYPES:
            if ref.order is not None and ref.arg is None:
                self.error(ref.order.span, f"{name} has no byte order")
                return None
            self._no_args(ref)
            return ir.VarintType(name)  # type: ignore[arg-type]
        if name in self.spec.structs:
            return self._struct_ref(ref, where)
        if name in self.spec.unions:
            self.error(
                ref.span,
                f"value union '{name}' is the wire form of a plug-in type: "
                f'`extern NAME: TYPE = "module:object" from {name}[until EXPR]`',
            )
            return None
        if name in self.spec.externs:
            self._no_args(ref)
            if ref.order is not None:
                self.error(ref.order.span, f"plug-in type '{name}' has no byte order")
                return None
            return ir.ExternRef(name)
        bare = dataclasses.replace(ref, arg=None)
        resolved = self.spec.types.fixed(bare, self.order, "body")
        if resolved is None:
            return None
        scalar, enum = resolved
        self._no_args(ref)
        if isinstance(scalar, ir.BytesType):  # pragma: no cover - bytes handled above
            return None
        if enum is not None:
            return ir.EnumType(enum, scalar)
        return scalar

    def _no_args(self, ref: ast.TypeRef) -> None:
        if ref.args is not None:
            self.error(ref.span, f"'{ref.name.text}' takes no arguments")

    def _struct_ref(self, ref: ast.TypeRef, where: str) -> ir.StructRef | None:
        name = ref.name.text
        decl = self.spec.structs[name]
        if ref.order is not None and ref.arg is None:
            self.error(ref.order.span, f"structure '{name}' has no byte order")
            return None
        args = ref.args or ()
        if len(args) != len(decl.params):
            wanted = ", ".join(p.name.text for p in decl.params) or "none"
            self.error(
                ref.span,
                f"structure '{name}' takes {len(decl.params)} argument(s) ({wanted}), "
                f"{where} gives {len(args)}",
            )
            return None
        resolved: list[ir.Expr] = []
        for param, arg in zip(decl.params, args):
            value = self._expr(arg, f"argument '{param.name.text}' of '{name}'")
            if value is None:
                return None
            resolved.append(value)
        return ir.StructRef(name, tuple(resolved))

    def _blob_array(
        self, ref: ast.TypeRef, where: str
    ) -> tuple[ir.ValueType, None] | None:
        """`string[u16][rest]`: an array whose elements are byte strings or strings."""
        if ref.name.text not in BLOB_TYPES:
            self.error(
                ref.span,
                f"only bytes and string take two brackets (`string[u16][rest]`); "
                f"write '{ref.name.text}[...]'",
            )
            return None
        element = self._blob(dataclasses.replace(ref, array_arg=None), where)
        if element is None:
            return None
        array_ref = dataclasses.replace(ref, arg=ref.array_arg, array_arg=None)
        extent = self.extent(array_ref, where, blob=False)
        if extent is None:
            return None
        if extent.kind == "until":
            until = self._until(array_ref, element[0], where)
            if until is None:
                return None
            extent = dataclasses.replace(extent, until=until)
        return ir.ArrayType(element[0], extent), None

    def _blob(self, ref: ast.TypeRef, where: str) -> tuple[ir.ValueType, None] | None:
        text = ref.name.text == "string"
        if ref.args is not None:
            self.error(ref.span, f"'{ref.name.text}' takes no arguments")
            return None
        if ref.order is not None:
            self.error(ref.order.span, f"{ref.name.text} fields have no byte order")
            return None
        if ref.arg is None:
            self.error(
                ref.span,
                f"{ref.name.text} needs a size: {ref.name.text}[N], [FIELD], [u16] "
                '(a length prefix), [rest] or [until "\\0"]',
            )
            return None
        extent = self.extent(ref, where, blob=True)
        if extent is None:
            return None
        return ir.BlobType(text, extent), None

    def extent(self, ref: ast.TypeRef, where: str, *, blob: bool) -> ir.Extent | None:
        arg = ref.arg
        assert arg is not None
        if isinstance(arg, ast.RestArg):
            return ir.Extent("rest")
        if isinstance(arg, ast.IntLit):
            if arg.value <= 0:
                what = "bytes size" if blob else "array count"
                self.error(arg.span, f"{what} must be positive, not {arg.value}")
                return None
            return ir.Extent("count", count=ir.Const(arg.value))
        if isinstance(arg, ast.TerminatorArg):
            if not blob:
                self.error(
                    arg.span,
                    "arrays end at an element: write [until EXPR] over `it`, "
                    "the element",
                )
                return None
            if not arg.value.value:
                self.error(arg.value.span, "empty terminator")
                return None
            return ir.Extent("terminator", terminator=arg.value.value)
        if isinstance(arg, ast.UntilArg):
            if blob:
                self.error(
                    arg.span,
                    f"{ref.name.text} ends at a terminator string: "
                    f'{ref.name.text}[until "\\0"]',
                )
                return None
            return ir.Extent("until")
        if isinstance(arg, ast.Ident):
            if not self._size_name_ok(arg, where):
                return None
            expr: ast.Expr = ast.NameExpr((arg,), arg.span)
            order = None
        else:
            assert isinstance(arg, ast.CountArg)
            expr, order = arg.expr, arg.order
        prefix = self._prefix(expr, order)
        if prefix is not None:
            return ir.Extent("prefix", prefix=prefix) if prefix else None
        if order is not None:
            self.error(
                order.span, "a byte order belongs to a length prefix type (`[u16 le]`)"
            )
            return None
        count = self._expr(expr, f"the size of {where}")
        if count is None:
            return None
        return ir.Extent("count", count=count)

    def _size_name_ok(self, arg: ast.Ident, where: str) -> bool:
        """`bytes[n]`: the messages of a bare size name (a prefix type is fine)."""
        name = arg.text
        symbol = self.scope.get(name)
        if symbol is None:
            if name in ALL_TYPE_NAMES or name in self.poisoned:
                return name not in self.poisoned
            self.error(
                arg.span,
                f"unknown field '{name}'"
                + suggestion(name, self.scope)
                + self._later(name),
            )
            return False
        sized = f"{self.what} '{self.current_name}'"
        if symbol.is_length:
            self.error(
                self.current_span,
                f"{sized} is sized by the length field '{name}'; use bytes[rest]",
            )
            return False
        if symbol.carrier:
            self.error(
                arg.span, f"{sized} is sized by '{name}', which carries bit fields"
            )
            return False
        if symbol.kind != "int" or symbol.enum is not None:
            self.error(
                arg.span,
                f"{sized} is sized by '{name}', which is not an integer ({symbol.shown})",
            )
            return False
        return True

    def _later(self, name: str) -> str:
        """A hint for names declared where the sequence cannot see them."""
        return ""

    def _prefix(
        self, expr: ast.Expr, order: ast.Ident | None
    ) -> ir.PrefixType | None | bool:
        """A length prefix type (`u16`, `varint`), False (reported), or None: not one."""
        if not isinstance(expr, ast.NameExpr) or len(expr.parts) != 1:
            return None
        name = expr.parts[0].text
        if name in self.scope:
            return None
        if name in VARINT_TYPES:
            if order is not None:
                self.error(order.span, f"{name} has no byte order")
                return False
            return ir.VarintType(name)  # type: ignore[arg-type]
        if name not in BUILTIN_TYPE_NAMES or name == "bytes":
            return None
        ref = ast.TypeRef(expr.parts[0], None, order, expr.span)
        scalar = self.spec.types.scalar(ref, self.order)
        if scalar is None or scalar.kind == "float":
            if scalar is not None:
                self.error(expr.span, f"a length prefix is an integer, not '{name}'")
            return False
        return scalar

    def _until(
        self, ref: ast.TypeRef, element: ir.ValueType, where: str
    ) -> ir.Expr | None:
        arg = ref.arg
        assert isinstance(arg, ast.UntilArg)
        kind = _value_kind(element)
        struct = element.name if isinstance(element, ir.StructRef) else None
        scope = dict(self.scope)
        scope[ELEMENT] = Symbol(ELEMENT, kind, arg.span, struct=struct)
        resolver = ExprResolver(self.spec, scope)
        return resolver.resolve(arg.expr, f"the end condition of {where}")

    def _union(self, ref: ast.SwitchType, where: str) -> ir.UnionType | None:
        resolver = ExprResolver(self.spec, self.scope)
        discriminant = resolver.resolve(ref.discriminant, f"the switch of {where}")
        if discriminant is None:
            return None
        enum = None
        if ex.is_plain_ref(discriminant):
            assert isinstance(discriminant, ir.Ref)
            enum = self.scope[discriminant.name].enum
        arms: list[ir.UnionArm] = []
        default: ir.ValueType | None = None
        seen: dict[int, ast.Span] = {}
        ok = True
        if not ref.arms:
            self.error(ref.span, f"switch of {where} has no arms")
            return None
        for arm in ref.arms:
            values: list[int] = []
            is_default = False
            for label in arm.labels:
                if isinstance(label, ast.DefaultLabel):
                    if default is not None or is_default:
                        self.error(label.span, "duplicate `default` arm")
                        ok = False
                    is_default = True
                    continue
                value = self._label(label, enum)
                if value is None:
                    ok = False
                    continue
                if value in seen:
                    self.error(
                        label.span,
                        f"switch value {value} already has an arm "
                        f"(at {self.where(seen[value])})",
                    )
                    ok = False
                    continue
                seen[value] = label.span
                values.append(value)
            resolved = self.resolve_type(arm.type, where)
            if resolved is None:
                ok = False
                continue
            arm_type, arm_enum = resolved
            if arm_enum is not None:
                arm_type = ir.EnumType(arm_enum, arm_type)  # type: ignore[arg-type]
            if is_default:
                if values:
                    self.error(arm.span, "`default` stands alone in its arm")
                    ok = False
                default = arm_type
            else:
                arms.append(ir.UnionArm(tuple(values), arm_type))
        if not ok:
            return None
        return ir.UnionType(discriminant, tuple(arms), default)

    def _label(self, label: ast.IntLit | ast.NameExpr, enum: str | None) -> int | None:
        if isinstance(label, ast.IntLit):
            return label.value
        if len(label.parts) == 1:
            if enum is None:
                self.error(
                    label.span,
                    f"switch label '{label.text}' names no value: the switch is not "
                    "on an enum field (write a number or ENUM.MEMBER)",
                )
                return None
            members = self.spec.enums[enum].members
            member = next((m for m in members if m.name == label.text), None)
            if member is None:
                self.error(
                    label.span,
                    f"enum '{enum}' has no member '{label.text}'"
                    + suggestion(label.text, [m.name for m in members]),
                )
                return None
            return member.value
        value = ExprResolver(self.spec, {}).resolve(label, "a switch label")
        if not isinstance(value, ir.Member):
            if value is not None:
                self.error(label.span, "a switch label is a number or an enum member")
            return None
        return value.value

    def escape_arms(
        self, block: ast.EscapeBlock, ftype: ir.ValueType, enum: str | None, where: str
    ) -> tuple[ir.EscapeArm, ...] | None:
        if (
            enum is not None
            or not isinstance(ftype, ir.ScalarType)
            or ftype.kind != "uint"
        ):
            self.error(
                block.span,
                f"escape codes belong to an unsigned integer; {where} is "
                f"{_type_text(ftype, enum)}",
            )
            return None
        return check_escape(self, block, ftype.max_value, self.order)

    # Derivations: what the encoder computes ------------------------------------------

    def _derive(self) -> None:
        """Mark the integers the encoder computes from the values after them."""
        for pending in self.pending:
            field = pending.field
            ftype = field.type
            if field.region is not None:
                self._derive_extent(field.region, "region", field.name)
            elif isinstance(ftype, ir.BlobType):
                self._derive_extent(ftype.extent, "size", field.name)
            elif isinstance(ftype, ir.ArrayType):
                self._derive_extent(ftype.extent, "count", field.name)
            if field.condition is not None and ex.is_plain_ref(field.condition):
                assert isinstance(field.condition, ir.Ref)
                self._mark(field.condition.name, "presence", field.name)

    def _derive_extent(self, extent: ir.Extent, kind: str, of: str) -> None:
        if extent.kind != "count" or extent.count is None:
            return
        names = [ref for ref in ex.refs(extent.count) if len(ref.path) == 1]
        if len(names) != 1 or len(list(ex.refs(extent.count))) != 1:
            return
        try:
            ex.solve(extent.count, names[0].name, ir.Const(0))
        except ex.Unsolvable:
            return
        self._mark(names[0].name, kind, of)

    def _mark(self, name: str, kind: str, of: str) -> None:
        symbol = self.scope.get(name)
        if symbol is None or not symbol.derivable or symbol.is_length:
            return
        if kind == "presence" and not symbol.one_bit:
            return  # a wider integer says more than "present": the user sets it
        if kind == "region" and not symbol.whole:
            return  # patched in place after the region: a whole integer field only
        if symbol.derived is not None:
            if symbol.derived.kind == "presence" and kind == "presence":
                symbol.derived = ir.Derived("presence", symbol.derived.of + (of,))
            return
        symbol.derived = ir.Derived(kind, (of,))  # type: ignore[arg-type]

    def finish(self) -> list[ir.Field]:
        """The fields with the derivations of their own symbols applied."""
        out = []
        for pending in self.pending:
            field = pending.field
            symbol = self.scope.get(field.name)
            if symbol is not None and symbol.derived is not None:
                field = dataclasses.replace(field, derived=symbol.derived)
            if field.bits:
                bits = []
                for bit in field.bits:
                    bit_symbol = self.scope.get(bit.name)
                    if bit_symbol is not None and bit_symbol.derived is not None:
                        bit = dataclasses.replace(bit, derived=bit_symbol.derived)
                    bits.append(bit)
                field = dataclasses.replace(field, bits=tuple(bits))
            out.append(field)
        return out


def bit_symbol(bit: ir.BitField, span: ast.Span, optional: bool) -> Symbol:
    return Symbol(
        bit.name,
        "int",
        span,
        optional=optional,
        enum=bit.enum,
        derivable=not optional
        and bit.const is None
        and bit.allowed is None
        and bit.enum is None
        and not bit.escape,
        shown=f"enum {bit.enum}" if bit.enum else f"{bit.bits}-bit integer",
        one_bit=bit.bits == 1 and bit.enum is None,
    )


def check_escape(
    checker: Checker, block: ast.EscapeBlock, max_value: int, order: ir.ByteOrder
) -> tuple[ir.EscapeArm, ...] | None:
    """Escape codes: the top values of the field, each with a wider integer."""
    arms: list[ir.EscapeArm] = []
    codes: set[int] = set()
    for arm in block.arms:
        code = arm.code.value
        if code in codes:
            checker.error(arm.code.span, f"escape code {code} listed twice")
            return None
        codes.add(code)
        name = arm.type.name.text
        scalar = None
        if name.startswith("u") and name[1:].isdigit():
            scalar = TypeResolver(checker.bag, {}).scalar(arm.type, order)
        if scalar is None or scalar.kind != "uint":
            checker.error(
                arm.type.span,
                f"an escape code is followed by an unsigned integer (u16, u32...), not '{name}'",
            )
            return None
        arms.append(ir.EscapeArm(code, scalar))
    arms.sort(key=lambda arm: arm.code)
    expected = list(range(max_value - len(arms) + 1, max_value + 1))
    if [arm.code for arm in arms] != expected:
        checker.error(
            block.span,
            f"escape codes are the top values of the field: {', '.join(map(str, expected))}",
        )
        return None
    first_direct_max = expected[0] - 1
    previous = first_direct_max
    for arm in arms:
        if arm.type.max_value <= previous:
            checker.error(
                block.span,
                f"the integer after escape code {arm.code} ({describe_type(arm.type)}) must "
                f"hold more than the forms before it (up to {previous})",
            )
            return None
        previous = arm.type.max_value
    return tuple(arms)


# --- helpers ------------------------------------------------------------------------


def _takes_rest(field: ir.Field) -> bool:
    if field.region is not None:
        return field.region.kind == "rest"
    ftype = field.type
    if isinstance(ftype, (ir.BlobType, ir.ArrayType)):
        return ftype.extent.kind == "rest"
    return False


def _nullable(field: ir.Field) -> bool:
    if field.region is not None:
        return field.region.nullable
    ftype = field.type
    return isinstance(ftype, (ir.BlobType, ir.ArrayType)) and ftype.extent.nullable


def _value_kind(ftype: ir.ValueType) -> str:
    if isinstance(ftype, ir.ScalarType):
        return "float" if ftype.kind == "float" else "int"
    if isinstance(ftype, (ir.VarintType, ir.EnumType)):
        return "int"
    if isinstance(ftype, ir.BytesType):
        return "bytes"
    if isinstance(ftype, ir.BlobType):
        return "str" if ftype.text else "bytes"
    if isinstance(ftype, ir.StructRef):
        return "struct"
    if isinstance(ftype, ir.ExternRef):
        return "extern"
    if isinstance(ftype, ir.ArrayType):
        return "array"
    return "union"


def _int_limits(ftype: ir.ValueType) -> tuple[int, int] | None:
    if isinstance(ftype, ir.ScalarType) and ftype.kind != "float":
        return ftype.min_value, ftype.max_value
    if isinstance(ftype, ir.VarintType):
        if ftype.style == "zigzag":
            return -(1 << 63), (1 << 63) - 1
        return 0, (268_435_455 if ftype.style == "mqtt_varint" else (1 << 64) - 1)
    return None


def _type_text(ftype: ir.ValueType, enum: str | None = None) -> str:
    if enum is not None:
        return f"enum {enum}"
    if isinstance(ftype, (ir.ScalarType, ir.BytesType)):
        return describe_type(ftype)
    if isinstance(ftype, ir.VarintType):
        return ftype.style
    if isinstance(ftype, ir.BlobType):
        return "a string" if ftype.text else "a byte string"
    if isinstance(ftype, ir.EnumType):
        return f"enum {ftype.name}"
    if isinstance(ftype, ir.StructRef):
        return f"structure {ftype.name}"
    if isinstance(ftype, ir.ExternRef):
        return f"plug-in type {ftype.name}"
    if isinstance(ftype, ir.ArrayType):
        return "an array"
    return "a union"


def check_name(checker: Checker, ident: ast.Ident, what: str) -> bool:
    """Names that become Python identifiers, and are not type names."""
    if keyword.iskeyword(ident.text):
        checker.error(ident.span, f"{what} '{ident.text}' is a Python keyword")
        return False
    return True


__all__ = [
    "SequenceBuilder",
    "SpecTypes",
    "Symbol",
    "Scope",
    "ExprResolver",
    "check_escape",
    "ast_kind",
    "VARINT_TYPES",
    "ALL_TYPE_NAMES",
]
