"""Validation of one `frame` block: fields, offsets, framing, checksums, dispatch."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from . import models as ir
from . import spec_ast as ast
from . import typeinfo
from .models import (
    BodyField,
    ByteOrder,
    BytesType,
    Checksum,
    FixedFraming,
    FrameDef,
    Framing,
    HeaderField,
    ScalarType,
)
from .validate import byte_order, describe_type, suggestion
from .validate_bits import BitRules
from .validate_fields import (
    ExprResolver,
    Scope,
    SequenceBuilder,
    Symbol,
    bit_symbol,
    check_escape,
)
from .validate_framing import FramingRules

if TYPE_CHECKING:
    from .validate import SpecBuilder

# Methods of generated frame classes; a field of the same name would shadow one.
RESERVED_FIELD_NAMES = frozenset({"encode"})

CHECKSUM_WIDTHS = {"crc32": 4, "crc16_ccitt": 2, "adler32": 4}
# Framings whose frames are a single payload, with no typed header or trailer.
_HEADERLESS = {
    ast.DecimalFramingDecl: "decimal",
    ast.ArrayFramingDecl: "array",
    ast.DelimitedFramingDecl: "delimited",
    ast.CompositeFramingDecl: "composite",
}
_UNBOUNDED = 1 << 62  # "as long as you like" when reasoning about frame lengths
DEFAULT_BODY_FIELD = "payload"
DEFAULT_ARRAY_FIELD = "items"


class BodyBuilder(SequenceBuilder):
    """A frame body: messages say "body field"; trailer names get a hint."""

    trailer_names: set[str] = set()

    @property
    def what(self) -> str:
        return "body field"

    def _later(self, name: str) -> str:
        if name in self.trailer_names:
            return " (it is in the trailer, after the body)"
        return ""


class FrameBuilder(FramingRules, BitRules):
    def __init__(
        self, spec: SpecBuilder, decl: ast.FrameDecl, default_max: int
    ) -> None:
        super().__init__(spec.bag)
        self.spec = spec
        self.types = spec.types
        self.decl = decl
        self.default_max = default_max
        self.declared: dict[str, tuple[str, ast.FieldDecl]] = {}  # name -> block, decl
        self.declared_bits: dict[str, tuple[str, ast.BitDecl]] = {}  # -> carrier, decl
        self.poisoned: set[str] = set()  # declared but broken: references stay quiet
        self.header: list[HeaderField] = []
        self.trailer: list[HeaderField] = []
        self.body: list[ir.Field] = []
        self.header_size = 0
        self.trailer_size = 0
        self.scope: Scope = {}  # header fields and bits, then body fields

    def build(self) -> FrameDef | None:
        framing_stmt, max_stmt, blocks, dispatch_stmt, wheres = self._partition()
        for block in sorted(blocks.values(), key=lambda b: _position(b.span)):
            self._declare_fields(block)
        framing_decl = framing_stmt.framing if framing_stmt else None
        headerless = _HEADERLESS.get(type(framing_decl))
        for kind in ("header", "trailer"):
            block = blocks.get(kind)
            if block is not None and headerless:
                self.error(
                    block.span,
                    f"{headerless} framing has no {kind}; typed fields need length, "
                    "varint or fixed framing",
                )
        self.header, self.header_size = self._fixed_block(
            blocks.get("header"), "header"
        )
        self.trailer, self.trailer_size = self._fixed_block(
            blocks.get("trailer"), "trailer"
        )
        self._scope_fixed(self.header)
        if isinstance(framing_decl, ast.LengthFramingDecl) and framing_decl.field:
            symbol = self.scope.get(framing_decl.field.text)
            if symbol is not None:
                symbol.is_length = True
        self._body(blocks.get("body"), framing_decl)
        framing = self._framing(framing_decl) if framing_decl else None
        if framing_stmt is None:
            self.error(
                self.decl.name.span,
                f"frame '{self.decl.name.text}' has no `framing` statement",
            )
        self._apply_header_derivations()
        self._scope_fixed(self.trailer)
        where = self._wheres(wheres)
        max_frame = self._frame_max(max_stmt, framing)
        self._checksums(framing)
        dispatch = self._dispatch(dispatch_stmt)
        if framing is None or self.bag:
            return None
        return FrameDef(
            name=self.decl.name.text,
            framing=framing,
            location=self.decl.span.location,
            header=tuple(self.header),
            header_size=self.header_size,
            body=tuple(self.body),
            trailer=tuple(self.trailer),
            trailer_size=self.trailer_size,
            max_frame=max_frame,
            dispatch=dispatch,
            dispatch_allows_unknown=dispatch is not None
            and dispatch_stmt is not None
            and dispatch_stmt.allow_unknown,
            where=where,
        )

    # --- structure -----------------------------------------------------------------

    def _partition(
        self,
    ) -> tuple[
        ast.FramingStmt | None,
        ast.MaxFrameStmt | None,
        dict[str, ast.BlockDecl],
        ast.DispatchStmt | None,
        list[ast.WhereStmt],
    ]:
        firsts: dict[str, ast.FrameItem] = {}
        blocks: dict[str, ast.BlockDecl] = {}
        wheres: list[ast.WhereStmt] = []
        for item in self.decl.items:
            if isinstance(item, ast.WhereStmt):
                wheres.append(item)
                continue
            if isinstance(item, ast.BlockDecl):
                key = item.kind
            else:
                key = {
                    ast.FramingStmt: "framing",
                    ast.MaxFrameStmt: "max_frame",
                    ast.DispatchStmt: "dispatch",
                }[type(item)]
            if key in firsts:
                what = (
                    f"`{key}` block"
                    if isinstance(item, ast.BlockDecl)
                    else f"`{key}` statement"
                )
                self.error(
                    item.span,
                    f"duplicate {what} in frame '{self.decl.name.text}' "
                    f"(first at {self.where(firsts[key].span)})",
                )
                continue
            firsts[key] = item
            if isinstance(item, ast.BlockDecl):
                blocks[key] = item
        return (
            firsts.get("framing"),  # type: ignore[return-value]
            firsts.get("max_frame"),  # type: ignore[return-value]
            blocks,
            firsts.get("dispatch"),  # type: ignore[return-value]
            wheres,
        )

    def _declare_fields(self, block: ast.BlockDecl) -> None:
        for field in block.fields:
            name = field.name.text
            first = self._first_declaration(name)
            if first is not None:
                self.error(
                    field.name.span,
                    f"duplicate field '{name}' (first at {self.where(first)})",
                )
                continue
            self.declared[name] = (block.kind, field)
            if not self.check_identifier(field.name, "field name"):
                self.poisoned.add(name)
            elif name in RESERVED_FIELD_NAMES:
                self.error(
                    field.name.span,
                    f"field name '{name}' is reserved: generated frame classes "
                    "have a method of that name",
                )
                self.poisoned.add(name)
            if field.bits is not None:
                self._declare_bits(field, RESERVED_FIELD_NAMES)

    def _is_own(self, block: str, field: ast.FieldDecl) -> bool:
        """False for a repeated name: only its first declaration is built."""
        return self.declared.get(field.name.text) == (block, field)

    # --- header and trailer --------------------------------------------------------

    def _fixed_block(
        self, block: ast.BlockDecl | None, kind: str
    ) -> tuple[list[HeaderField], int]:
        if block is None:
            return [], 0
        order = byte_order(block.order, ByteOrder.BIG)
        fields: list[HeaderField] = []
        offset = 0
        for decl in block.fields:
            if not self._is_own(kind, decl):
                continue
            if not self._fixed_attrs_ok(decl, kind):
                self.poisoned.add(decl.name.text)
                if decl.bits is not None:
                    self._poison_bits(decl)
                continue
            assert isinstance(decl.type, ast.TypeRef)
            resolved = self.types.fixed(decl.type, order, kind)
            if resolved is None:
                self.poisoned.add(decl.name.text)
                if decl.bits is not None:
                    self._poison_bits(decl)
                continue
            field_type, enum = resolved
            field = HeaderField(
                name=decl.name.text,
                type=field_type,
                offset=offset,
                location=decl.name.span.location,
                enum=enum,
            )
            if decl.bits is not None:
                field = self._carrier(field, decl, order)
            else:
                field = self._field_value(field, decl)
            if decl.escape is not None:
                field = self._header_escape(field, decl, order)
            fields.append(field)
            offset += field_type.size
        self._escapes_last(fields, block, kind)
        return fields, offset

    def _fixed_attrs_ok(self, decl: ast.FieldDecl, kind: str) -> bool:
        if isinstance(decl.type, ast.SwitchType):
            self.error(
                decl.type.span,
                f"{kind} fields have a fixed size; a switch belongs in the body",
            )
            return False
        ok = True
        for attr in decl.attrs:
            if attr.kind != "where":
                self.error(
                    attr.span,
                    f"{kind} fields are always present and fixed: `{attr.kind}` "
                    "belongs on a body field",
                )
                ok = False
        if decl.nullable is not None:
            self.error(decl.nullable, f"{kind} fields are never null")
            ok = False
        return ok

    def _header_escape(
        self, field: HeaderField, decl: ast.FieldDecl, order: ByteOrder
    ) -> HeaderField:
        assert decl.escape is not None
        if (
            field.enum is not None
            or not isinstance(field.type, ScalarType)
            or field.type.kind != "uint"
        ):
            self.error(
                decl.escape.span,
                f"escape codes belong to an unsigned integer; '{field.name}' is "
                f"{describe_type(field.type, field.enum)}",
            )
            return field
        arms = check_escape(self, decl.escape, field.type.max_value, order)
        return dataclasses.replace(field, escape=arms) if arms else field

    def _escapes_last(
        self, fields: list[HeaderField], block: ast.BlockDecl, kind: str
    ) -> None:
        """The wider integer follows the fixed fields, so only the last may escape."""
        for index, field in enumerate(fields):
            escaping = [field.name] if field.escape else []
            escaping += [bit.name for bit in field.bits if bit.escape]
            for name in escaping:
                last = index == len(fields) - 1 and (
                    name == field.name or field.bits[-1].name == name
                )
                if kind != "header" or not last:
                    self.error(
                        self.declared[field.name][1].name.span
                        if name == field.name
                        else self.declared_bits[name][1].name.span,
                        f"escape-coded field '{name}' must end the header: the "
                        "wider integer follows it"
                        + (" (trailers have a fixed size)" if kind != "header" else ""),
                    )

    def _scope_fixed(self, fields: list[HeaderField]) -> None:
        """Header (or trailer) names as expressions see them."""
        for field in fields:
            decl = self.declared[field.name][1]
            plain = (
                field.const is None
                and field.allowed is None
                and field.enum is None
                and field.checksum is None
                and not field.bits
                and not field.escape
                and isinstance(field.type, ScalarType)
                and field.type.kind != "float"
            )
            kind = "int"
            if isinstance(field.type, BytesType):
                kind = "bytes"
            elif field.type.kind == "float":
                kind = "float"
            self.scope[field.name] = Symbol(
                field.name,
                kind,
                decl.name.span,
                enum=field.enum,
                derivable=plain,
                whole=plain,
                const=field.const is not None,
                shown=describe_type(field.type, field.enum),
                carrier=bool(field.bits),
                checksum=field.checksum is not None,
            )
            for bit in field.bits:
                self.scope[bit.name] = bit_symbol(bit, decl.name.span, False)
        for name in self.poisoned:
            self.scope.setdefault(name, Symbol(name, "int", self.decl.name.span, optional=True))

    def _field_value(self, field: HeaderField, decl: ast.FieldDecl) -> HeaderField:
        value = decl.value
        shown = describe_type(field.type, field.enum)
        if isinstance(value, ast.ConstValue):
            const = self._const(field, value.value, shown)
            return (
                dataclasses.replace(field, const=const) if const is not None else field
            )
        if isinstance(value, ast.AllowedValues):
            allowed = self._allowed(field, value, shown)
            return dataclasses.replace(field, allowed=allowed) if allowed else field
        if isinstance(value, ast.ChecksumValue):
            checksum = self._checksum_decl(field, value, shown)
            return dataclasses.replace(field, checksum=checksum) if checksum else field
        return field

    def _const(
        self, field: HeaderField, literal: ast.IntLit | ast.StrLit, shown: str
    ) -> int | bytes | None:
        if isinstance(field.type, BytesType):
            if not isinstance(literal, ast.StrLit):
                self.error(
                    literal.span,
                    f"field '{field.name}' is {shown}; its constant must be a string",
                )
                return None
            if len(literal.value) != field.type.size:
                self.error(
                    literal.span,
                    f"constant of {len(literal.value)} bytes for field '{field.name}' of {shown}",
                )
                return None
            return literal.value
        if field.type.kind == "float":
            self.error(literal.span, f"float field '{field.name}' cannot be a constant")
            return None
        if not isinstance(literal, ast.IntLit):
            self.error(
                literal.span,
                f"field '{field.name}' is {shown}; its constant must be an integer",
            )
            return None
        if self._in_range(field.type, literal, field.name, shown):
            return literal.value
        return None

    def _in_range(
        self, field_type: ScalarType, literal: ast.IntLit, name: str, shown: str
    ) -> bool:
        if field_type.min_value <= literal.value <= field_type.max_value:
            return True
        self.error(
            literal.span,
            f"value {literal.value} out of range for field '{name}' of {shown} "
            f"({field_type.min_value}..{field_type.max_value})",
        )
        return False

    def _allowed(
        self, field: HeaderField, value: ast.AllowedValues, shown: str
    ) -> tuple[int, ...] | None:
        if not isinstance(field.type, ScalarType) or field.type.kind == "float":
            self.error(
                value.span,
                f"an allowed set needs an integer field; '{field.name}' is {shown}",
            )
            return None
        allowed: list[int] = []
        for literal in value.values:
            if literal.value in allowed:
                self.error(literal.span, f"value {literal.value} listed twice")
            elif self._in_range(field.type, literal, field.name, shown):
                allowed.append(literal.value)
        return tuple(allowed)

    def _checksum_decl(
        self, field: HeaderField, value: ast.ChecksumValue, shown: str
    ) -> Checksum | None:
        algorithm = value.algorithm.text
        if algorithm not in CHECKSUM_WIDTHS:
            self.error(
                value.algorithm.span,
                f"unknown checksum algorithm '{algorithm}' (expected crc32, crc16_ccitt or adler32)",
            )
            return None
        width = CHECKSUM_WIDTHS[algorithm]
        if (
            field.enum
            or not isinstance(field.type, ScalarType)
            or field.type.kind != "uint"
            or field.size != width
        ):
            self.error(
                value.algorithm.span,
                f"{algorithm} needs a u{8 * width} field; '{field.name}' is {shown}",
            )
            return None
        start = value.start.value if value.start else 0
        end = value.end.value if value.end else None
        if start < 0:
            assert value.start is not None
            self.error(
                value.start.span,
                f"checksum range start must not be negative, not {start}",
            )
            return None
        if end is not None and 0 <= end <= start:
            self.error(value.span, f"empty checksum range [{start}:{end}]")
            return None
        return Checksum(algorithm, start, end)  # type: ignore[arg-type]

    # --- body -----------------------------------------------------------------------

    def _body(
        self, block: ast.BlockDecl | None, framing: ast.FramingDecl | None
    ) -> None:
        if isinstance(framing, ast.ArrayFramingDecl):
            self._array_body(block)
            return
        if block is None:
            if self._wants_default_body(framing):
                if DEFAULT_BODY_FIELD in self.declared:
                    self.error(
                        self.decl.name.span,
                        f"frame '{self.decl.name.text}' needs a `body` block: its "
                        f"default body field '{DEFAULT_BODY_FIELD}' would repeat a field name",
                    )
                    return
                self.body.append(
                    BodyField(DEFAULT_BODY_FIELD, self.decl.span.location, rest=True)
                )
            return
        if block.order is not None:
            self.error(
                block.order.span,
                "a body has no byte order of its own: give it to each field (`u16 le`)",
            )
        builder = BodyBuilder(
            self.spec.field_types,
            self.decl.name.text,
            self.scope,
            bit_builder=self._body_bits,
            skip=lambda decl: not self._is_own("body", decl),
            poisoned=self.poisoned,
        )
        builder.trailer_names = {
            name for name, (where, _) in self.declared.items() if where == "trailer"
        }
        self.body = builder.build(block.fields)
        headerless = _HEADERLESS.get(type(framing))
        if (
            headerless
            and not (len(self.body) == 1 and self.body[0].rest)
            and not self.poisoned
        ):
            self.error(
                block.span,
                f"the body of a {headerless}-framed frame is a single bytes[rest] field",
            )

    def _array_body(self, block: ast.BlockDecl | None) -> None:
        """An array frame's body names its elements: `args: bytes[rest][rest]`."""
        name = DEFAULT_ARRAY_FIELD
        location = self.decl.span.location
        if block is not None:
            fields = block.fields
            ftype = fields[0].type if len(fields) == 1 else None
            if not (
                isinstance(ftype, ast.TypeRef)
                and ftype.name.text == "bytes"
                and ftype.arg is not None
                and ftype.array_arg is not None
            ):
                self.error(
                    block.span,
                    "the body of an array-framed frame is a single `NAME: bytes[rest][rest]` field",
                )
                return
            name = fields[0].name.text
            location = fields[0].name.span.location
        self.body = [BodyField(name, location, rest=True)]

    def _body_bits(
        self, decl: ast.FieldDecl, name: str, ftype: ScalarType
    ) -> tuple[ir.BitField, ...] | None:
        carrier = HeaderField(name, ftype, 0, decl.name.span.location)
        built = self._carrier(carrier, decl, ftype.order)
        return built.bits or None

    def _wants_default_body(self, framing: ast.FramingDecl | None) -> bool:
        if not isinstance(framing, ast.FixedFramingDecl):
            return True
        # A fixed frame gets a payload only for the bytes its fields leave over.
        has_fields = any(block != "body" for block, _ in self.declared.values())
        if not has_fields:
            return True
        if framing.size is None:
            return False
        size = self.size_value(framing.size, "fixed size")
        return size is not None and size > self.header_size + self.trailer_size

    def _apply_header_derivations(self) -> None:
        """Header fields (and bits) the body's sizes, counts and flags compute."""
        for index, field in enumerate(self.header):
            symbol = self.scope.get(field.name)
            if symbol is not None and symbol.derived is not None:
                derived = symbol.derived
                field = dataclasses.replace(
                    field,
                    derived=derived,
                    size_of=derived.of[0] if derived.kind == "size" else None,
                )
            bits = []
            for bit in field.bits:
                bit_sym = self.scope.get(bit.name)
                if bit_sym is not None and bit_sym.derived is not None:
                    bit = dataclasses.replace(bit, derived=bit_sym.derived)
                bits.append(bit)
            self.header[index] = dataclasses.replace(field, bits=tuple(bits))

    def _wheres(self, stmts: list[ast.WhereStmt]) -> tuple[ir.Expr, ...]:
        """Frame constraints; header and trailer field constraints go on the field."""
        resolver = ExprResolver(self.spec.field_types, self.scope)
        for fields in (self.header, self.trailer):
            for index, field in enumerate(fields):
                decl = self.declared[field.name][1]
                attr = decl.attr("where")
                if attr is None:
                    continue
                assert not isinstance(attr.value, (ast.TypeRef, ast.SwitchType))
                expr = resolver.resolve(attr.value, f"the constraint of field '{field.name}'")
                if expr is not None:
                    fields[index] = dataclasses.replace(field, where=expr)
        out = []
        for stmt in stmts:
            expr = resolver.resolve(stmt.expr, f"the constraint of frame '{self.decl.name.text}'")
            if expr is not None:
                out.append(expr)
        return tuple(out)

    # --- limits, checksums, dispatch ---------------------------------------------------

    def _min_frame(self) -> int:
        body = typeinfo.sequence_min_size(self.body, self.spec.struct_defs)
        return self.header_size + body + self.trailer_size

    def _frame_max(self, stmt: ast.MaxFrameStmt | None, framing: Framing | None) -> int:
        max_frame = self.default_max
        if stmt is not None:
            max_frame = self.size_value(stmt.size, "max_frame") or self.default_max
        span = stmt.size.span if stmt else self.decl.name.span
        if isinstance(framing, FixedFraming) and framing.size > max_frame:
            self.error(span, f"fixed size {framing.size} exceeds max_frame {max_frame}")
        elif self._min_frame() > max_frame:
            self.error(
                span,
                f"max_frame {max_frame} is smaller than the smallest frame ({self._min_frame()} bytes)",
            )
        return max_frame

    def _checksums(self, framing: Framing | None) -> None:
        fixed = framing.size if isinstance(framing, FixedFraming) else None
        shortest = fixed if fixed is not None else self._min_frame()
        longest = fixed if fixed is not None else _UNBOUNDED
        for in_trailer, fields in ((False, self.header), (True, self.trailer)):
            for field in fields:
                if field.checksum is None:
                    continue
                decl = self.declared[field.name][1]
                assert isinstance(decl.value, ast.ChecksumValue)
                checksum = field.checksum
                shown = (
                    f"[{checksum.start}:{'' if checksum.end is None else checksum.end}]"
                )
                if (
                    fixed is not None
                    and checksum.end is not None
                    and checksum.end > fixed
                ):
                    self.error(
                        decl.value.span,
                        f"checksum range {shown} ends beyond the {fixed}-byte frame",
                    )
                    continue
                for length in _candidate_lengths(
                    checksum, field, in_trailer, self.trailer_size, shortest, longest
                ):
                    if _covers_itself(
                        checksum, field, in_trailer, self.trailer_size, length
                    ):
                        self.error(
                            decl.value.span,
                            f"checksum range {shown} includes the checksum field '{field.name}' itself",
                        )
                        break

    def _dispatch(self, stmt: ast.DispatchStmt | None) -> str | None:
        if stmt is None:
            return None
        name = stmt.field.text
        if name in self.poisoned:
            return None
        field = next((f for f in self.header + self.trailer if f.name == name), None)
        bit = self._find_bit(name, self.header + self.trailer)
        if bit is not None:
            if bit.enum is None:
                self.error(
                    stmt.field.span,
                    f"cannot dispatch on '{name}': it is not an enum field "
                    f"({bit.bits}-bit integer)",
                )
                return None
            return name
        if field is None:
            if name in self.declared:
                self.error(
                    stmt.field.span,
                    f"cannot dispatch on '{name}': it is a body field, not an enum field",
                )
            else:
                self.error(
                    stmt.field.span,
                    f"unknown field '{name}'" + suggestion(name, self.declared),
                )
            return None
        if field.enum is None:
            self.error(
                stmt.field.span,
                f"cannot dispatch on '{name}': it is not an enum field ({describe_type(field.type)})",
            )
            return None
        return name


def _position(span: ast.Span) -> tuple[int, int]:
    return span.location.line, span.location.column


def _field_range(
    field: HeaderField, in_trailer: bool, trailer_size: int, length: int
) -> tuple[int, int]:
    start = length - trailer_size + field.offset if in_trailer else field.offset
    return start, start + field.size


def _range_end(checksum: Checksum, length: int) -> int:
    if checksum.end is None:
        return length
    return length + checksum.end if checksum.end < 0 else checksum.end


def _covers_itself(
    checksum: Checksum,
    field: HeaderField,
    in_trailer: bool,
    trailer_size: int,
    length: int,
) -> bool:
    field_start, field_end = _field_range(field, in_trailer, trailer_size, length)
    return checksum.start < field_end and _range_end(checksum, length) > field_start


def _candidate_lengths(
    checksum: Checksum,
    field: HeaderField,
    in_trailer: bool,
    trailer_size: int,
    shortest: int,
    longest: int,
) -> list[int]:
    """Frame lengths where overlap can first appear: both bounds and the breakpoints.

    Overlap conditions are linear in the frame length, so checking the ends of
    the allowed lengths and where each condition flips is enough.
    """
    candidates = {shortest, longest}
    if in_trailer:
        base = trailer_size - field.offset
        candidates.add(checksum.start + base - field.size + 1)
        if checksum.end is not None and checksum.end >= 0:
            candidates.add(checksum.end + base - 1)
    return sorted(min(max(length, shortest), longest) for length in candidates)
