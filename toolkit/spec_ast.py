"""The syntax tree of a spec file, as written (before any validation).

`parser.py` builds it from Lark's parse tree; `validate.py` checks it and turns
it into the IR of `models.py`. Every node keeps the `Span` of the text it came
from, so that each diagnostic can point at the exact token at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .models import Location


@dataclass(frozen=True)
class Span:
    location: Location
    length: int = 1


@dataclass(frozen=True)
class Ident:
    text: str
    span: Span


@dataclass(frozen=True)
class IntLit:
    value: int
    span: Span


@dataclass(frozen=True)
class StrLit:
    value: bytes
    span: Span


@dataclass(frozen=True)
class SizeLit:
    """`16 MiB`: a number and an optional unit."""

    number: IntLit
    unit: Ident | None
    span: Span


@dataclass(frozen=True)
class RestArg:
    """The `rest` in `bytes[rest]`."""

    span: Span


# --- expressions ------------------------------------------------------------------


@dataclass(frozen=True)
class NameExpr:
    """`qos`, `hdr.flags`, `it.length`, `PacketType.publish`."""

    parts: tuple[Ident, ...]
    span: Span

    @property
    def text(self) -> str:
        return ".".join(part.text for part in self.parts)


@dataclass(frozen=True)
class IntExpr:
    value: int
    span: Span


@dataclass(frozen=True)
class UnaryExpr:
    op: str  # "-", "~", "not"
    operand: Expr
    span: Span


@dataclass(frozen=True)
class BinaryExpr:
    op: str  # arithmetic, bitwise, comparison, "and", "or"
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class InExpr:
    operand: Expr
    values: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class CallExpr:
    """`len(topic)`: the only function."""

    function: Ident
    argument: Expr
    span: Span


Expr = Union[NameExpr, IntExpr, UnaryExpr, BinaryExpr, InExpr, CallExpr]


# --- types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CountArg:
    """`[n - 1]`, `[u16]`, `[u16 le]`: a count or size expression, or a prefix type."""

    expr: Expr
    order: Ident | None
    span: Span


@dataclass(frozen=True)
class TerminatorArg:
    """`[until "\\0"]`: bytes up to (not including) a terminator, which is consumed."""

    value: StrLit
    span: Span


@dataclass(frozen=True)
class UntilArg:
    """`[until it.length == 0]`: elements up to and including the first that matches."""

    expr: Expr
    span: Span


TypeArg = Union[IntLit, Ident, RestArg, CountArg, TerminatorArg, UntilArg]


@dataclass(frozen=True)
class TypeRef:
    """`u16 le`, `bytes[4]`, `bytes[key_length]`, `bytes[rest]`, `Opcode`, `Publish(qos)`.

    A bare integer or name in brackets stays an IntLit / Ident (`bytes[4]`,
    `bytes[n]`); anything else is a CountArg, TerminatorArg or UntilArg.
    """

    name: Ident
    arg: TypeArg | None
    order: Ident | None
    span: Span
    args: tuple[Expr, ...] | None = None  # `Publish(qos)`: struct arguments
    array_arg: TypeArg | None = None  # `string[u16][rest]`: the array's extent


@dataclass(frozen=True)
class DefaultLabel:
    span: Span


@dataclass(frozen=True)
class SwitchArm:
    labels: tuple[IntLit | NameExpr | DefaultLabel, ...]
    type: TypeRef | SwitchType
    span: Span


@dataclass(frozen=True)
class SwitchType:
    """`switch rtype { 1 => bytes[4], 5, 12 => Name, default => bytes[rest] }`."""

    discriminant: Expr
    arms: tuple[SwitchArm, ...]
    span: Span


AnyType = Union[TypeRef, SwitchType]


@dataclass(frozen=True)
class EscapeArm:
    code: IntLit
    type: TypeRef
    span: Span


@dataclass(frozen=True)
class EscapeBlock:
    """`escape {126: u16, 127: u64}`."""

    arms: tuple[EscapeArm, ...]
    span: Span


@dataclass(frozen=True)
class FieldAttr:
    """`if EXPR`, `where EXPR`, `xor EXPR`, `as TYPE` after a field's type."""

    kind: str  # "if" | "where" | "xor" | "as"
    value: Expr | AnyType
    span: Span


@dataclass(frozen=True)
class ConstValue:
    value: IntLit | StrLit
    span: Span


@dataclass(frozen=True)
class ChecksumValue:
    algorithm: Ident
    start: IntLit | None
    end: IntLit | None
    span: Span


@dataclass(frozen=True)
class AllowedValues:
    values: tuple[IntLit, ...]
    span: Span


FieldValue = Union[ConstValue, ChecksumValue, AllowedValues]


@dataclass(frozen=True)
class BitDecl:
    """`type: PacketType 4`, `flags: 4 = 2`, `_: 3` (padding) inside `bits { }`."""

    name: Ident
    enum: Ident | None
    width: IntLit
    value: FieldValue | None
    span: Span
    escape: EscapeBlock | None = None


@dataclass(frozen=True)
class BitsBlock:
    members: tuple[BitDecl, ...]
    span: Span


@dataclass(frozen=True)
class FieldDecl:
    name: Ident
    type: AnyType
    value: FieldValue | None
    span: Span
    bits: BitsBlock | None = None  # `u8 bits { ... }`: the field is a carrier
    escape: EscapeBlock | None = None
    nullable: Span | None = None  # `or null`
    attrs: tuple[FieldAttr, ...] = ()

    def attr(self, kind: str) -> FieldAttr | None:
        return next((a for a in self.attrs if a.kind == kind), None)


@dataclass(frozen=True)
class BlockDecl:
    kind: str  # "header" | "body" | "trailer"
    order: Ident | None
    fields: tuple[FieldDecl, ...]
    span: Span


# --- framing ------------------------------------------------------------------


@dataclass(frozen=True)
class LengthOption:
    name: str  # "counts" | "adjust" | "strip" | "stream_only"
    value: IntLit | Ident | None  # None for the flag `stream_only`
    span: Span


@dataclass(frozen=True)
class LengthFramingDecl:
    field: Ident | None  # `length(n)`; None when the length is an expression
    options: tuple[LengthOption, ...]
    span: Span
    expr: Expr | None = None  # `length(payload_length + 4 * masked)`


@dataclass(frozen=True)
class VarintFramingDecl:
    style: Ident | None
    span: Span


@dataclass(frozen=True)
class DecimalFramingDecl:
    separator: StrLit | None
    terminator: StrLit | None
    span: Span
    marker: StrLit | None = None


@dataclass(frozen=True)
class ArrayFramingDecl:
    """`array "*" decimal "\\r\\n" [max N] of "$" decimal "\\r\\n" bytes "\\r\\n"`."""

    marker: StrLit | None
    separator: StrLit
    max_count: IntLit | None
    item_marker: StrLit | None
    item_separator: StrLit
    item_terminator: StrLit
    span: Span


@dataclass(frozen=True)
class DelimitedFramingDecl:
    delimiters: tuple[StrLit, ...]
    mode: Ident | None  # "keep" | "strip"
    span: Span


@dataclass(frozen=True)
class FixedFramingDecl:
    size: SizeLit | None
    span: Span


@dataclass(frozen=True)
class CompositeFramingDecl:
    head: StrLit
    length_header: StrLit | None
    length_token: IntLit | None
    commands: tuple[StrLit, ...] | None
    body_trailer: StrLit | None
    span: Span


FramingDecl = Union[
    LengthFramingDecl,
    VarintFramingDecl,
    DecimalFramingDecl,
    ArrayFramingDecl,
    DelimitedFramingDecl,
    FixedFramingDecl,
    CompositeFramingDecl,
]


# --- statements ------------------------------------------------------------------


@dataclass(frozen=True)
class FramingStmt:
    framing: FramingDecl
    span: Span


@dataclass(frozen=True)
class MaxFrameStmt:
    size: SizeLit
    span: Span


@dataclass(frozen=True)
class DispatchStmt:
    field: Ident
    span: Span
    allow_unknown: bool = False  # `dispatch on F allow_unknown`


@dataclass(frozen=True)
class WhereStmt:
    """`where EXPR` in a frame: checked once every field is decoded."""

    expr: Expr
    span: Span


FrameItem = Union[FramingStmt, MaxFrameStmt, BlockDecl, DispatchStmt, WhereStmt]


@dataclass(frozen=True)
class FrameDecl:
    name: Ident
    items: tuple[FrameItem, ...]
    span: Span


@dataclass(frozen=True)
class EnumMemberDecl:
    name: Ident
    value: IntLit
    span: Span


@dataclass(frozen=True)
class EnumDecl:
    name: Ident
    base: TypeRef
    members: tuple[EnumMemberDecl, ...]
    span: Span


@dataclass(frozen=True)
class ProtocolStmt:
    name: Ident
    span: Span


@dataclass(frozen=True)
class TransportStmt:
    names: tuple[Ident, ...]
    span: Span


@dataclass(frozen=True)
class ServerStmt:
    decodes: Ident
    encodes: Ident | None
    span: Span


@dataclass(frozen=True)
class BaseStmt:
    kind: str  # "handler_base" | "frame_base"
    value: StrLit
    span: Span


@dataclass(frozen=True)
class ParamDecl:
    name: Ident
    type: TypeRef
    span: Span


@dataclass(frozen=True)
class StructDecl:
    name: Ident
    params: tuple[ParamDecl, ...]
    fields: tuple[FieldDecl, ...]
    span: Span


@dataclass(frozen=True)
class ExternDecl:
    """`extern DomainName: str = "dns_names:domain_name"`."""

    name: Ident
    python_type: Ident | StrLit
    target: StrLit
    span: Span
    wire: TypeRef | None = None  # `from Label[until ...]`


@dataclass(frozen=True)
class UnionDecl:
    """`union Label : u8 bits { kind: 2, length: 6 } switch kind { ARMS }`."""

    name: Ident
    head: TypeRef
    bits: BitsBlock
    tag: Ident
    arms: tuple[SwitchArm, ...]
    span: Span


@dataclass(frozen=True)
class PhaseArmDecl:
    """`"*" => RespArray then Session`: a frame a phase accepts."""

    prefixes: tuple[StrLit, ...]  # none: the default frame (`default =>` or no label)
    frame: Ident
    then: Ident | None
    span: Span


@dataclass(frozen=True)
class PhaseDecl:
    """`[start] phase NAME { ARMS }`: a state of a connection."""

    name: Ident
    start: bool
    arms: tuple[PhaseArmDecl, ...]
    span: Span


TopItem = Union[
    ProtocolStmt,
    TransportStmt,
    MaxFrameStmt,
    ServerStmt,
    BaseStmt,
    EnumDecl,
    FrameDecl,
    StructDecl,
    ExternDecl,
    UnionDecl,
    PhaseDecl,
]


@dataclass(frozen=True)
class SpecAst:
    filename: str
    items: tuple[TopItem, ...] = field(default_factory=tuple)
