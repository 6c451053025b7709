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


@dataclass(frozen=True)
class TypeRef:
    """`u16 le`, `bytes[4]`, `bytes[key_length]`, `bytes[rest]`, `Opcode`."""

    name: Ident
    arg: IntLit | Ident | RestArg | None
    order: Ident | None
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


@dataclass(frozen=True)
class BitsBlock:
    members: tuple[BitDecl, ...]
    span: Span


@dataclass(frozen=True)
class FieldDecl:
    name: Ident
    type: TypeRef
    value: FieldValue | None
    span: Span
    bits: BitsBlock | None = None  # `u8 bits { ... }`: the field is a carrier


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
    field: Ident
    options: tuple[LengthOption, ...]
    span: Span


@dataclass(frozen=True)
class VarintFramingDecl:
    style: Ident | None
    span: Span


@dataclass(frozen=True)
class DecimalFramingDecl:
    separator: StrLit | None
    terminator: StrLit | None
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


FrameItem = Union[FramingStmt, MaxFrameStmt, BlockDecl, DispatchStmt]


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


TopItem = Union[
    ProtocolStmt, TransportStmt, MaxFrameStmt, ServerStmt, BaseStmt, EnumDecl, FrameDecl
]


@dataclass(frozen=True)
class SpecAst:
    filename: str
    items: tuple[TopItem, ...] = field(default_factory=tuple)
