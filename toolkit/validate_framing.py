"""Validation of a frame's `framing` statement (mixed into FrameBuilder).

Each framing kind has its rules here; they read the already-built header,
body and trailer of the frame and return the IR framing, or None after
reporting what is wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from . import spec_ast as ast
from . import typeinfo
from .expressions import Unsolvable, solve
from .models import (
    Field,
    CompositeFraming,
    Const,
    Derived,
    Expr,
    ArrayFraming,
    DecimalFraming,
    DelimitedFraming,
    FixedFraming,
    Framing,
    HeaderField,
    LengthFraming,
    ScalarType,
    VarintFraming,
)
from .validate import Checker, describe_type, suggestion
from .validate_fields import ExprResolver, Scope

LENGTH_WIDTHS = (1, 2, 3, 4, 8)
LENGTH_COUNTS = ("body", "frame", "after_field")
VARINT_STYLES = ("leb128", "mqtt")


class FramingRules(Checker):
    """The framing half of FrameBuilder; needs the attributes declared below."""

    declared: dict[str, tuple[str, ast.FieldDecl]]
    declared_bits: dict[str, tuple[str, ast.BitDecl]]
    poisoned: set[str]

    _bit_field_misuse: Callable[[ast.Ident, str], bool]  # from BitRules

    header: list[HeaderField]
    header_size: int
    body: list[Field]
    trailer_size: int
    scope: Scope
    spec: Any  # the SpecBuilder: field_types, struct_defs

    def _framing(self, decl: ast.FramingDecl) -> Framing | None:
        if isinstance(decl, ast.LengthFramingDecl):
            return self._length_framing(decl)
        if isinstance(decl, ast.VarintFramingDecl):
            style = decl.style.text if decl.style else "leb128"
            if style not in VARINT_STYLES:
                assert decl.style is not None
                self.error(
                    decl.style.span,
                    f"unknown varint style '{style}' (expected leb128 or mqtt)",
                )
                return None
            return VarintFraming(style=style, offset=self.header_size)  # type: ignore[arg-type]
        if isinstance(decl, ast.DecimalFramingDecl):
            return self._decimal_framing(decl)
        if isinstance(decl, ast.ArrayFramingDecl):
            return self._array_framing(decl)
        if isinstance(decl, ast.DelimitedFramingDecl):
            delimiters = self._delimiters(decl.delimiters)
            strip = decl.mode is None or decl.mode.text == "strip"
            return (
                DelimitedFraming(delimiters=delimiters, strip=strip)
                if delimiters
                else None
            )
        if isinstance(decl, ast.FixedFramingDecl):
            return self._fixed_framing(decl)
        return self._composite_framing(decl)

    def _length_framing(self, decl: ast.LengthFramingDecl) -> LengthFraming | None:
        expr = None
        if decl.field is not None:
            ref = decl.field
        else:
            assert decl.expr is not None
            found = self._length_expr(decl.expr)
            if found is None:
                return None
            ref, expr = found
        field = self._length_field(ref)
        options: dict[str, ast.LengthOption] = {}
        for option in decl.options:
            if option.name in options:
                self.error(option.span, f"duplicate length option '{option.name}'")
            else:
                options[option.name] = option
        counts = "body"
        if "counts" in options:
            value = options["counts"].value
            shown = value.text if isinstance(value, ast.Ident) else str(value.value)
            if shown not in LENGTH_COUNTS:
                self.error(
                    value.span,
                    f"unknown length count '{shown}' (expected body, frame or after_field)",
                )
                return None
            counts = shown
        adjustment = options["adjust"].value.value if "adjust" in options else 0  # type: ignore[union-attr]
        strip = 0
        if "strip" in options:
            literal = options["strip"].value
            assert isinstance(literal, ast.IntLit)
            strip = literal.value
            if strip < 0:
                self.error(literal.span, f"strip must not be negative, not {strip}")
                return None
            if strip > self.header_size:
                self.error(
                    literal.span,
                    f"strip {strip} is larger than the header ({self.header_size} bytes)",
                )
                return None
        if field is None:
            return None
        stream_only = "stream_only" in options
        # Over UDP a stream_only frame is the frame without its leading length
        # field (DNS: a 2-byte prefix on TCP, none in a datagram).
        if stream_only and field.offset != 0:
            self.error(
                options["stream_only"].span,
                f"stream_only needs the length field first in the header;"
                f" '{field.name}' is at offset {field.offset}",
            )
            return None
        if stream_only and strip:
            self.error(
                options["stream_only"].span, "stream_only cannot be combined with strip"
            )
            return None
        index = self.header.index(field)
        if ref.text == field.name:
            self.header[index] = dataclasses.replace(field, computed_length=True)
        else:  # a bit field of `field` carries the length
            bits = tuple(
                dataclasses.replace(bit, derived=Derived("length"))
                if bit.name == ref.text
                else bit
                for bit in field.bits
            )
            self.header[index] = dataclasses.replace(field, bits=bits)
        self.scope[ref.text].is_length = True
        assert isinstance(field.type, ScalarType)
        return LengthFraming(
            field=ref.text,
            offset=field.offset,
            size=field.size,
            order=field.type.order,
            adjustment=adjustment,
            counts=counts,  # type: ignore[arg-type]
            strip=strip,
            stream_only=stream_only,
            expr=expr,
        )

    def _length_expr(self, expr: ast.Expr) -> tuple[ast.Ident, Expr] | None:
        """`length(payload_length + 4 * masked)`: the expression, and the one
        header field in it the encoder computes (the others are known before)."""
        header_names = {f.name for f in self.header} | {
            bit.name for f in self.header for bit in f.bits
        }
        header_scope = {n: s for n, s in self.scope.items() if n in header_names}
        resolver = ExprResolver(self.spec.field_types, header_scope)
        resolved = resolver.resolve(expr, "the frame length")
        if resolved is None:
            return None
        unknown = []
        for name, span in resolver.used:
            symbol = header_scope[name]
            if symbol.derived is None and not symbol.const and name not in [u.text for u in unknown]:
                unknown.append(ast.Ident(name, span))
        if len(unknown) != 1:
            shown = ", ".join(f"'{u.text}'" for u in unknown) or "none"
            self.error(
                span_of(expr),
                "the frame length needs exactly one header field the encoder computes "
                f"from the body; this expression has {shown} (constants and fields "
                "computed from the body, like presence flags, do not count)",
            )
            return None
        try:
            solve(resolved, unknown[0].text, Const(0))
        except Unsolvable:
            self.error(
                span_of(expr),
                f"the frame length must be solvable for '{unknown[0].text}': use + and - "
                "of other fields, and * by a constant",
            )
            return None
        return unknown[0], resolved

    def _length_field(self, ref: ast.Ident) -> HeaderField | None:
        """The header field holding the length, or the carrier of the bit that does."""
        name = ref.text
        if name in self.declared_bits and name not in self.poisoned:
            carrier_name = self.declared_bits[name][0]
            carrier = next((f for f in self.header if f.name == carrier_name), None)
            if carrier is None:
                self.error(
                    ref.span, f"length field '{name}' must be in the header"
                )
                return None
            bit = next((b for b in carrier.bits if b.name == name), None)
            if bit is None:
                return None
            if bit.enum is not None or bit.const is not None or bit.allowed is not None:
                self.error(
                    ref.span,
                    f"length field '{name}' is computed on encode; it cannot also be "
                    "an enum, a constant or an allowed set",
                )
                return None
            return carrier
        if name in self.poisoned:
            return None
        if name not in self.declared:
            self.error(
                ref.span, f"unknown field '{name}'" + suggestion(name, self.declared)
            )
            return None
        block = self.declared[name][0]
        if block != "header":
            self.error(
                ref.span,
                f"length field '{name}' must be in the header, not the {block}",
            )
            return None
        field = next(field for field in self.header if field.name == name)
        if field.bits:
            self.error(ref.span, f"length field '{name}' cannot carry bit fields")
            return None
        shown = describe_type(field.type, field.enum)
        if (
            field.enum
            or not isinstance(field.type, ScalarType)
            or field.type.kind == "float"
        ):
            self.error(
                ref.span, f"length field '{name}' must be an integer, not {shown}"
            )
            return None
        if field.size not in LENGTH_WIDTHS:
            self.error(
                ref.span,
                f"width not allowed: length field '{name}' is {field.size} bytes ({shown}); "
                "length fields are 1, 2, 3, 4 or 8 bytes",
            )
            return None
        if (
            field.const is not None
            or field.allowed is not None
            or field.checksum is not None
        ):
            self.error(
                ref.span,
                f"length field '{name}' is computed on encode; it cannot also be "
                "a constant, an allowed set or a checksum",
            )
            return None
        return field

    def _decimal_framing(self, decl: ast.DecimalFramingDecl) -> DecimalFraming | None:
        marker = decl.marker.value if decl.marker is not None else b""
        if decl.marker is not None and not marker:
            self.error(decl.marker.span, "empty marker")
            return None
        if any(char in b"0123456789" for char in marker):
            assert decl.marker is not None
            self.error(decl.marker.span, "the marker must not contain digits")
            return None
        if decl.separator is None or decl.terminator is None:
            return DecimalFraming(marker=marker)
        if not decl.separator.value:
            self.error(decl.separator.span, "empty separator")
            return None
        if any(char in b"0123456789" for char in decl.separator.value):
            self.error(decl.separator.span, "the separator must not contain digits")
            return None
        return DecimalFraming(
            separator=decl.separator.value,
            terminator=decl.terminator.value,
            marker=marker,
        )

    def _array_framing(self, decl: ast.ArrayFramingDecl) -> ArrayFraming | None:
        ok = True
        for literal, what, may_be_empty in (
            (decl.marker, "marker", False),
            (decl.separator, "separator", False),
            (decl.item_marker, "marker", False),
            (decl.item_separator, "separator", False),
            (decl.item_terminator, "terminator", True),
        ):
            if literal is None:
                continue
            if not literal.value and not may_be_empty:
                self.error(literal.span, f"empty {what}")
                ok = False
            elif what != "terminator" and any(c in b"0123456789" for c in literal.value):
                self.error(literal.span, f"the {what} must not contain digits")
                ok = False
        max_count = None
        if decl.max_count is not None:
            max_count = decl.max_count.value
            if max_count < 1:
                self.error(decl.max_count.span, "the max count must be positive")
                ok = False
        if not ok:
            return None
        return ArrayFraming(
            marker=decl.marker.value if decl.marker is not None else b"",
            separator=decl.separator.value,
            max_count=max_count,
            item_marker=decl.item_marker.value if decl.item_marker is not None else b"",
            item_separator=decl.item_separator.value,
            item_terminator=decl.item_terminator.value,
        )

    def _delimiters(self, literals: tuple[ast.StrLit, ...]) -> tuple[bytes, ...]:
        delimiters: list[bytes] = []
        for literal in literals:
            if not literal.value:
                self.error(literal.span, "empty delimiter")
            elif literal.value in delimiters:
                self.error(literal.span, f"duplicate delimiter {literal.value!r}")
            else:
                delimiters.append(literal.value)
        return tuple(delimiters) if len(delimiters) == len(literals) else ()

    def _fixed_framing(self, decl: ast.FixedFramingDecl) -> FixedFraming | None:
        sizes = [typeinfo.field_fixed_size(field) for field in self.body]
        fixed_body = sum(size or 0 for size in sizes)
        needed = self.header_size + fixed_body + self.trailer_size
        has_rest = any(size is None for size in sizes)
        if decl.size is None:
            if has_rest:
                what = (
                    "a bytes[rest] field"
                    if any(field.rest for field in self.body)
                    else "fields of varying size"
                )
                self.error(
                    decl.span,
                    f"fixed framing with {what} needs a size: `framing fixed N`",
                )
                return None
            return FixedFraming(size=needed)
        size = self.size_value(decl.size, "fixed size")
        if size is None:
            return None
        if size < needed:
            parts = "the header" if needed == self.header_size else "its fields"
            self.error(
                decl.size.span,
                f"fixed size {size} is smaller than {parts} ({needed} bytes)",
            )
            return None
        if size > needed and not has_rest:
            self.error(
                decl.size.span,
                f"fixed size {size} leaves {size - needed} bytes without a field; "
                "add a bytes[rest] body field",
            )
            return None
        return FixedFraming(size=size)

    def _composite_framing(
        self, decl: ast.CompositeFramingDecl
    ) -> CompositeFraming | None:
        ok = True
        if not decl.head.value:
            self.error(decl.head.span, "empty delimiter")
            ok = False
        if decl.length_header is not None:
            name = decl.length_header.value
            if not name or any(char in b": \t\r\n" for char in name):
                self.error(
                    decl.length_header.span,
                    "a header name is non-empty, without ':' or spaces",
                )
                ok = False
        if decl.length_token is not None and decl.length_token.value < 0:
            self.error(decl.length_token.span, "token positions count from 0")
            ok = False
        for command in decl.commands or ():
            if not command.value or any(char in b" \t\r\n" for char in command.value):
                self.error(command.span, "a command is a non-empty word")
                ok = False
        if not ok:
            return None
        return CompositeFraming(
            head_delimiter=decl.head.value,
            length_header=(
                decl.length_header.value.decode("latin-1")
                if decl.length_header
                else None
            ),
            length_token=decl.length_token.value if decl.length_token else None,
            token_commands=(
                tuple(c.value for c in decl.commands) if decl.commands else None
            ),
            body_trailer=decl.body_trailer.value if decl.body_trailer else b"",
        )


def span_at(location: object) -> ast.Span:
    return ast.Span(location)  # type: ignore[arg-type]


def span_of(expr: ast.Expr) -> ast.Span:
    return expr.span
