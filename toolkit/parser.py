"""Spec text → Lark parse tree → syntax tree (`spec_ast`) → validated IR.

    spec = load_spec("examples/echo.proto.dsl")

The grammar (`grammars/protogen.lark`) is parsed with Lark's LALR(1) parser and
contextual lexer; the Lark object is built once per process. Lark's exceptions
never escape: syntax errors become a `SpecError` whose diagnostics name the
file, line and column, show the source line with a caret, and list what was
expected in the spec's own words ("'}', 'header' or a name"), not Lark's
terminal names. Semantic checks live in `validate.py`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import re
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.lexer import PatternStr

from . import spec_ast as ast
from .diagnostics import DiagnosticBag, SpecError
from .models import Location, ProtocolSpec
from .validate import build_spec

GRAMMAR_FILE = "protogen.lark"

# How the grammar's regex terminals read in "expected one of: ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "STRING": "a string",
    "$END": "end of file",
}

_ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"'}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)?", re.DOTALL)


@functools.lru_cache(maxsize=None)
def _lark() -> Lark:
    """The Lark parser; building it takes a while, so once per process."""
    grammar = importlib.resources.files("protogen.grammars").joinpath(GRAMMAR_FILE)
    return Lark(
        grammar.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
    )


@functools.lru_cache(maxsize=None)
def _terminal_display() -> dict[str, str]:
    names = dict(_TERMINAL_NAMES)
    for terminal in _lark().terminals:
        if isinstance(terminal.pattern, PatternStr):
            names[terminal.name] = f"'{terminal.pattern.value}'"
    return names


# --- public API ------------------------------------------------------------------


def parse_spec(text: str, filename: str = "<spec>") -> ProtocolSpec:
    """Parse and validate a spec; raise SpecError listing every problem found."""
    bag = DiagnosticBag(filename, text)
    tree = _parse_tree(text, bag)
    try:
        spec_ast = _ToAst(bag).transform(tree)
    except VisitError as error:  # a bug of ours, not a bad spec: show it plainly
        raise error.orig_exc from None
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    spec = build_spec(spec_ast, bag, sha256)
    bag.raise_if_any()
    assert spec is not None
    return spec


def load_spec(path: str | os.PathLike[str]) -> ProtocolSpec:
    """Read a spec file (UTF-8) and parse it; unreadable files raise SpecError too."""
    filename = os.fspath(path)
    bag = DiagnosticBag(filename, "")
    try:
        with open(filename, "rb") as spec_file:
            raw = spec_file.read()
    except OSError as error:
        bag.error(Location(filename, 1, 1), f"cannot read spec: {error.strerror}")
        bag.raise_if_any()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        bag.error(Location(filename, line, column), "spec is not valid UTF-8")
        bag.raise_if_any()
    return parse_spec(text, filename)


# --- syntax errors -------------------------------------------------------------------


def _parse_tree(text: str, bag: DiagnosticBag) -> Any:
    try:
        return _lark().parse(text)
    except UnexpectedInput as error:
        _report_syntax_error(error, text, bag)
        bag.raise_if_any()
        raise AssertionError("unreachable")  # pragma: no cover


def _report_syntax_error(error: UnexpectedInput, text: str, bag: DiagnosticBag) -> None:
    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END":
            location, length = _end_of_file(text, bag), 1
            found = "end of file"
        else:
            location, length = bag.location(token.line, token.column), len(token)
            found = _describe_token(token)
        bag.error(location, f"unexpected {found}; {_expected(error.expected)}", length)
    elif isinstance(error, UnexpectedCharacters):
        location = bag.location(error.line, error.column)
        if error.char == '"':
            bag.error(location, "unterminated string (strings end on the same line)")
        else:
            allowed = error.allowed or set()
            message = f"unexpected character {error.char!r}"
            if allowed:
                message += f"; {_expected(allowed)}"
            bag.error(location, message)
    else:  # UnexpectedEOF: not raised by LALR, but never let it escape raw
        bag.error(_end_of_file(text, bag), "unexpected end of file")


def _end_of_file(text: str, bag: DiagnosticBag) -> Location:
    lines = text.split("\n")
    # Point just after the last non-blank character, where the text stopped.
    for index in range(len(lines) - 1, -1, -1):
        stripped = lines[index].split("#", 1)[0].rstrip()
        if stripped:
            return bag.location(index + 1, len(stripped) + 1)
    return bag.location(1, 1)


def _describe_token(token: Token) -> str:
    if token.type == "NAME":
        return f"name '{token}'"
    if token.type == "INT":
        return f"integer {token}"
    if token.type == "STRING":
        return f"string {token}"
    return f"'{token}'"


def _expected(terminals: set[str] | frozenset[str]) -> str:
    display = _terminal_display()
    names = sorted(
        {display.get(name, name) for name in terminals},
        key=lambda shown: (shown.startswith("'"), shown),
    )
    if len(names) == 1:
        return f"expected {names[0]}"
    return "expected one of: " + ", ".join(names)


# --- parse tree → syntax tree -----------------------------------------------------------


class _Order:
    """Marks the byte-order word of a type or block (vs a `bytes[NAME]` argument)."""

    def __init__(self, ident: ast.Ident) -> None:
        self.ident = ident


class _Mode:
    def __init__(self, ident: ast.Ident) -> None:
        self.ident = ident


def _token_span(bag: DiagnosticBag, token: Token) -> ast.Span:
    return ast.Span(bag.location(token.line, token.column), max(len(token), 1))


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds `spec_ast` nodes; literal errors (bad escapes...) go to the bag."""

    def __init__(self, bag: DiagnosticBag) -> None:
        super().__init__(visit_tokens=True)
        self.bag = bag

    def _span(self, meta: Any) -> ast.Span:
        if getattr(meta, "empty", True):
            return ast.Span(self.bag.location(1, 1))
        return ast.Span(
            self.bag.location(meta.line, meta.column), meta.end_pos - meta.start_pos
        )

    # Terminals (visit_tokens): called with the token only, not meta.
    @v_args(inline=False, meta=False)
    def NAME(self, token: Token) -> ast.Ident:
        return ast.Ident(str(token), _token_span(self.bag, token))

    @v_args(inline=False, meta=False)
    def INT(self, token: Token) -> ast.IntLit:
        span = _token_span(self.bag, token)
        text = str(token)
        try:
            value = int(text, 0)
        except ValueError:
            try:
                value = int(text, 10)  # "007": Python's base 0 refuses leading zeros
            except ValueError:
                self.bag.error(
                    span.location, f"malformed integer {text!r}", span.length
                )
                value = 0
        return ast.IntLit(value, span)

    @v_args(inline=False, meta=False)
    def STRING(self, token: Token) -> ast.StrLit:
        return ast.StrLit(self._unescape(token), _token_span(self.bag, token))

    @v_args(inline=False, meta=False)
    def REST(self, token: Token) -> ast.RestArg:
        return ast.RestArg(_token_span(self.bag, token))

    def _unescape(self, token: Token) -> bytes:
        body = str(token)[1:-1]
        out = bytearray()
        position = 0
        for match in _ESCAPE_RE.finditer(body):
            out += body[position : match.start()].encode("utf-8")
            position = match.end()
            escape = match.group(1)
            if escape is not None and escape.startswith("x") and len(escape) == 3:
                out.append(int(escape[1:], 16))
            elif escape is not None and escape in _ESCAPES:
                out += _ESCAPES[escape]
            else:
                out += match.group(0).encode(
                    "utf-8"
                )  # keep it: avoids "empty" cascades
                column = token.column + 1 + match.start()
                shown = "\\" + (escape or "")
                hint = (
                    "\\xNN needs two hex digits"
                    if escape == "x"
                    else ('use \\r \\n \\t \\0 \\\\ \\" or \\xNN')
                )
                self.bag.error(
                    self.bag.location(token.line, column),
                    f"bad escape '{shown}' in string ({hint})",
                    len(shown),
                )
        out += body[position:].encode("utf-8")
        return bytes(out)

    # Top level.
    def start(self, meta: Any, items: list[Any]) -> ast.SpecAst:
        return ast.SpecAst(self.bag.filename, tuple(items))

    def protocol_stmt(self, meta: Any, children: list[Any]) -> ast.ProtocolStmt:
        return ast.ProtocolStmt(children[0], self._span(meta))

    def transport_stmt(self, meta: Any, children: list[Any]) -> ast.TransportStmt:
        return ast.TransportStmt(tuple(children), self._span(meta))

    def max_frame_stmt(self, meta: Any, children: list[Any]) -> ast.MaxFrameStmt:
        return ast.MaxFrameStmt(children[0], self._span(meta))

    def server_stmt(self, meta: Any, children: list[Any]) -> ast.ServerStmt:
        decodes, encodes = children
        return ast.ServerStmt(decodes, encodes, self._span(meta))

    def handler_base_stmt(self, meta: Any, children: list[Any]) -> ast.BaseStmt:
        return ast.BaseStmt("handler_base", children[0], self._span(meta))

    def frame_base_stmt(self, meta: Any, children: list[Any]) -> ast.BaseStmt:
        return ast.BaseStmt("frame_base", children[0], self._span(meta))

    def size(self, meta: Any, children: list[Any]) -> ast.SizeLit:
        number, unit = children
        return ast.SizeLit(number, unit, self._span(meta))

    # Enums.
    def enum_def(self, meta: Any, children: list[Any]) -> ast.EnumDecl:
        name, base, *members = children
        return ast.EnumDecl(name, base, tuple(members), self._span(meta))

    def enum_member(self, meta: Any, children: list[Any]) -> ast.EnumMemberDecl:
        name, value = children
        return ast.EnumMemberDecl(name, value, self._span(meta))

    # Frames.
    def frame_def(self, meta: Any, children: list[Any]) -> ast.FrameDecl:
        name, *items = children
        return ast.FrameDecl(name, tuple(items), self._span(meta))

    def dispatch_stmt(self, meta: Any, children: list[Any]) -> ast.DispatchStmt:
        return ast.DispatchStmt(
            children[0], self._span(meta), allow_unknown=children[1] is not None
        )

    def framing_stmt(self, meta: Any, children: list[Any]) -> ast.FramingStmt:
        return ast.FramingStmt(children[0], self._span(meta))

    def length_framing(self, meta: Any, children: list[Any]) -> ast.LengthFramingDecl:
        expr, *options = children
        if isinstance(expr, ast.NameExpr) and len(expr.parts) == 1:
            return ast.LengthFramingDecl(expr.parts[0], tuple(options), self._span(meta))
        return ast.LengthFramingDecl(None, tuple(options), self._span(meta), expr)

    def counts_option(self, meta: Any, children: list[Any]) -> ast.LengthOption:
        return ast.LengthOption("counts", children[0], self._span(meta))

    def adjust_option(self, meta: Any, children: list[Any]) -> ast.LengthOption:
        return ast.LengthOption("adjust", children[0], self._span(meta))

    def strip_option(self, meta: Any, children: list[Any]) -> ast.LengthOption:
        return ast.LengthOption("strip", children[0], self._span(meta))

    def stream_only_option(self, meta: Any, children: list[Any]) -> ast.LengthOption:
        return ast.LengthOption("stream_only", None, self._span(meta))

    def varint_framing(self, meta: Any, children: list[Any]) -> ast.VarintFramingDecl:
        return ast.VarintFramingDecl(children[0], self._span(meta))

    def decimal_framing(self, meta: Any, children: list[Any]) -> ast.DecimalFramingDecl:
        separator, terminator, marker = children
        return ast.DecimalFramingDecl(separator, terminator, self._span(meta), marker)

    def array_framing(self, meta: Any, children: list[Any]) -> ast.ArrayFramingDecl:
        marker, separator, max_count, item_marker, item_separator, terminator = children
        return ast.ArrayFramingDecl(
            marker,
            separator,
            max_count,
            item_marker,
            item_separator,
            terminator,
            self._span(meta),
        )

    def array_max(self, meta: Any, children: list[Any]) -> Any:
        return children[0]

    def delimited_framing(
        self, meta: Any, children: list[Any]
    ) -> ast.DelimitedFramingDecl:
        mode = children[-1].ident if isinstance(children[-1], _Mode) else None
        delimiters = tuple(child for child in children if isinstance(child, ast.StrLit))
        return ast.DelimitedFramingDecl(delimiters, mode, self._span(meta))

    def delimiter_mode(self, meta: Any, children: list[Any]) -> _Mode:
        return _Mode(ast.Ident(str(children[0]), _token_span(self.bag, children[0])))

    def fixed_framing(self, meta: Any, children: list[Any]) -> ast.FixedFramingDecl:
        return ast.FixedFramingDecl(children[0], self._span(meta))

    def composite_framing(
        self, meta: Any, children: list[Any]
    ) -> ast.CompositeFramingDecl:
        head, (kind, value, commands), body_trailer = children
        return ast.CompositeFramingDecl(
            head=head,
            length_header=value if kind == "header" else None,
            length_token=value if kind == "token" else None,
            commands=commands,
            body_trailer=body_trailer,
            span=self._span(meta),
        )

    def by_header(self, meta: Any, children: list[Any]) -> tuple[str, Any, None]:
        return ("header", children[0], None)

    def by_token(self, meta: Any, children: list[Any]) -> tuple[str, Any, Any]:
        position, *rest = children
        commands = tuple(child for child in rest if child is not None)
        return ("token", position, commands or None)

    # Blocks and fields.
    def _block(self, kind: str, meta: Any, children: list[Any]) -> ast.BlockDecl:
        order, *fields = children
        return ast.BlockDecl(
            kind, order.ident if order else None, tuple(fields), self._span(meta)
        )

    def header_block(self, meta: Any, children: list[Any]) -> ast.BlockDecl:
        return self._block("header", meta, children)

    def body_block(self, meta: Any, children: list[Any]) -> ast.BlockDecl:
        return self._block("body", meta, children)

    def trailer_block(self, meta: Any, children: list[Any]) -> ast.BlockDecl:
        return self._block("trailer", meta, children)

    def order(self, meta: Any, children: list[Any]) -> _Order:
        return _Order(ast.Ident(str(children[0]), _token_span(self.bag, children[0])))

    def field(self, meta: Any, children: list[Any]) -> ast.FieldDecl:
        name, type_ref, bits, escape, nullable, *rest = children
        values = [c for c in rest if c is not None and not isinstance(c, ast.FieldAttr)]
        attrs = tuple(c for c in rest if isinstance(c, ast.FieldAttr))
        return ast.FieldDecl(
            name,
            type_ref,
            values[0] if values else None,
            self._span(meta),
            bits,
            escape=escape,
            nullable=nullable,
            attrs=attrs,
        )

    def nullable(self, meta: Any, children: list[Any]) -> ast.Span:
        return self._span(meta)

    def _attr(self, kind: str, meta: Any, children: list[Any]) -> ast.FieldAttr:
        return ast.FieldAttr(kind, children[0], self._span(meta))

    def if_attr(self, meta: Any, children: list[Any]) -> ast.FieldAttr:
        return self._attr("if", meta, children)

    def where_attr(self, meta: Any, children: list[Any]) -> ast.FieldAttr:
        return self._attr("where", meta, children)

    def xor_attr(self, meta: Any, children: list[Any]) -> ast.FieldAttr:
        return self._attr("xor", meta, children)

    def as_attr(self, meta: Any, children: list[Any]) -> ast.FieldAttr:
        return self._attr("as", meta, children)

    def escape_block(self, meta: Any, children: list[Any]) -> ast.EscapeBlock:
        arms = tuple(child for child in children if child is not None)
        return ast.EscapeBlock(arms, self._span(meta))

    def escape_arm(self, meta: Any, children: list[Any]) -> ast.EscapeArm:
        code, type_ref = children
        return ast.EscapeArm(code, type_ref, self._span(meta))

    def bits_block(self, meta: Any, children: list[Any]) -> ast.BitsBlock:
        return ast.BitsBlock(tuple(children), self._span(meta))

    def bit_member(self, meta: Any, children: list[Any]) -> ast.BitDecl:
        name, enum, width, escape, *value = children
        values = [c for c in value if c is not None]
        return ast.BitDecl(
            name,
            enum,
            width,
            values[0] if values else None,
            self._span(meta),
            escape=escape,
        )

    def type_ref(self, meta: Any, children: list[Any]) -> ast.TypeRef:
        name, args, arg, array_arg, order = children
        return ast.TypeRef(
            name,
            arg,
            order.ident if order is not None else None,
            self._span(meta),
            args=args,
            array_arg=array_arg,
        )

    def type_args(self, meta: Any, children: list[Any]) -> tuple[ast.Expr, ...]:
        return tuple(child for child in children if child is not None)

    def count_extent(self, meta: Any, children: list[Any]) -> ast.TypeArg:
        expr, order = children
        if order is None and isinstance(expr, ast.IntExpr):
            return ast.IntLit(expr.value, expr.span)  # `bytes[4]`
        if order is None and isinstance(expr, ast.NameExpr) and len(expr.parts) == 1:
            return expr.parts[0]  # `bytes[n]`
        return ast.CountArg(
            expr, order.ident if order is not None else None, self._span(meta)
        )

    def rest_extent(self, meta: Any, children: list[Any]) -> ast.RestArg:
        return children[0]

    def terminator_extent(self, meta: Any, children: list[Any]) -> ast.TerminatorArg:
        return ast.TerminatorArg(children[0], self._span(meta))

    def until_extent(self, meta: Any, children: list[Any]) -> ast.UntilArg:
        return ast.UntilArg(children[0], self._span(meta))

    def switch_type(self, meta: Any, children: list[Any]) -> ast.SwitchType:
        discriminant, *arms = children
        return ast.SwitchType(discriminant, tuple(arms), self._span(meta))

    def switch_arm(self, meta: Any, children: list[Any]) -> ast.SwitchArm:
        *labels, type_ref = children
        return ast.SwitchArm(
            tuple(label for label in labels if label is not None),
            type_ref,
            self._span(meta),
        )

    def switch_label(
        self, meta: Any, children: list[Any]
    ) -> ast.IntLit | ast.NameExpr | ast.DefaultLabel:
        label = children[0]
        if isinstance(label, Token):  # DEFAULT
            return ast.DefaultLabel(_token_span(self.bag, label))
        return label

    # Structures and plug-in types.
    def struct_def(self, meta: Any, children: list[Any]) -> ast.StructDecl:
        name, params, *fields = children
        return ast.StructDecl(name, params or (), tuple(fields), self._span(meta))

    def struct_params(self, meta: Any, children: list[Any]) -> tuple[ast.ParamDecl, ...]:
        return tuple(child for child in children if child is not None)

    def struct_param(self, meta: Any, children: list[Any]) -> ast.ParamDecl:
        name, type_ref = children
        return ast.ParamDecl(name, type_ref, self._span(meta))

    def extern_def(self, meta: Any, children: list[Any]) -> ast.ExternDecl:
        name, python_type, target, wire = children
        return ast.ExternDecl(name, python_type, target, self._span(meta), wire)

    def wire_ref(self, meta: Any, children: list[Any]) -> ast.TypeRef:
        name, arg = children
        return ast.TypeRef(name, arg, None, name.span)

    def union_head(self, meta: Any, children: list[Any]) -> ast.TypeRef:
        name, order = children
        return ast.TypeRef(
            name, None, order.ident if order is not None else None, self._span(meta)
        )

    def union_bits(self, meta: Any, children: list[Any]) -> ast.BitsBlock:
        return ast.BitsBlock(tuple(children), self._span(meta))

    def union_def(self, meta: Any, children: list[Any]) -> ast.UnionDecl:
        name, head, bits, tag, *arms = children
        return ast.UnionDecl(name, head, bits, tag, tuple(arms), self._span(meta))

    # Phases.
    def phase_def(self, meta: Any, children: list[Any]) -> ast.PhaseDecl:
        start, name, *arms = children
        return ast.PhaseDecl(name, start is not None, tuple(arms), self._span(meta))

    def phase_arm(self, meta: Any, children: list[Any]) -> ast.PhaseArmDecl:
        *labels, frame, then = children
        prefixes = tuple(label for label in labels if isinstance(label, ast.StrLit))
        return ast.PhaseArmDecl(prefixes, frame, then, self._span(meta))

    def phase_label(self, meta: Any, children: list[Any]) -> Any:
        return children[0]

    def then_clause(self, meta: Any, children: list[Any]) -> ast.Ident:
        return children[0]

    def where_stmt(self, meta: Any, children: list[Any]) -> ast.WhereStmt:
        return ast.WhereStmt(children[0], self._span(meta))

    # Expressions.
    def int_atom(self, meta: Any, children: list[Any]) -> ast.IntExpr:
        literal = children[0]
        return ast.IntExpr(literal.value, literal.span)

    def dotted_name(self, meta: Any, children: list[Any]) -> ast.NameExpr:
        return ast.NameExpr(tuple(children), self._span(meta))

    def call(self, meta: Any, children: list[Any]) -> ast.CallExpr:
        function, argument = children
        return ast.CallExpr(function, argument, self._span(meta))

    def binary(self, meta: Any, children: list[Any]) -> ast.BinaryExpr:
        left, op, right = children
        return ast.BinaryExpr(str(op), left, right, self._span(meta))

    def compare(self, meta: Any, children: list[Any]) -> ast.BinaryExpr:
        return self.binary(meta, children)

    def or_op(self, meta: Any, children: list[Any]) -> ast.BinaryExpr:
        left, right = children
        return ast.BinaryExpr("or", left, right, self._span(meta))

    def and_op(self, meta: Any, children: list[Any]) -> ast.BinaryExpr:
        left, right = children
        return ast.BinaryExpr("and", left, right, self._span(meta))

    def not_op(self, meta: Any, children: list[Any]) -> ast.UnaryExpr:
        return ast.UnaryExpr("not", children[0], self._span(meta))

    def unary_op(self, meta: Any, children: list[Any]) -> ast.UnaryExpr:
        op, operand = children
        return ast.UnaryExpr(str(op), operand, self._span(meta))

    def not_in_set(self, meta: Any, children: list[Any]) -> ast.UnaryExpr:
        return ast.UnaryExpr("not", self.in_set(meta, children), self._span(meta))

    def in_set(self, meta: Any, children: list[Any]) -> ast.InExpr:
        operand, *values = children
        return ast.InExpr(
            operand, tuple(v for v in values if v is not None), self._span(meta)
        )

    def const_value(self, meta: Any, children: list[Any]) -> ast.ConstValue:
        return ast.ConstValue(children[0], self._span(meta))

    def checksum_value(self, meta: Any, children: list[Any]) -> ast.ChecksumValue:
        algorithm, start, end = children
        return ast.ChecksumValue(algorithm, start, end, self._span(meta))

    def allowed_values(self, meta: Any, children: list[Any]) -> ast.AllowedValues:
        values = tuple(child for child in children if child is not None)
        return ast.AllowedValues(values, self._span(meta))


__all__ = ["parse_spec", "load_spec", "SpecError"]
