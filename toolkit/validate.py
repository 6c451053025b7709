"""Syntax tree → validated IR: resolve names and types, lay out offsets, check.

Every problem is reported to the `DiagnosticBag` and building goes on, so one
run lists all the semantic errors of a spec. Names whose declaration already
failed are "poisoned": later references to them stay silent instead of
cascading into "unknown field" noise. Frame-level rules live in
`validate_frame.py`; this module holds the spec-level rules and the helpers
both share.
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import re
from typing import Iterable

from . import spec_ast as ast
from .diagnostics import DiagnosticBag
from .models import (
    DEFAULT_MAX_FRAME,
    ByteOrder,
    BytesType,
    EnumDef,
    EnumMember,
    ExternDef,
    FieldType,
    FrameDef,
    ProtocolSpec,
    ScalarType,
    StructDef,
    Transport,
)

SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
ORDERS = {
    "big": ByteOrder.BIG,
    "be": ByteOrder.BIG,
    "little": ByteOrder.LITTLE,
    "le": ByteOrder.LITTLE,
}
TRANSPORTS = {"tcp": ("tcp",), "udp": ("udp",), "both": ("tcp", "udp")}
BUILTIN_TYPE_NAMES = (
    [f"u{8 * n}" for n in range(1, 9)]
    + [f"i{8 * n}" for n in range(1, 9)]
    + ["f32", "f64", "bytes"]
)
# Type names of body and structure fields only.
SEQUENCE_TYPE_NAMES = ["string", "varint", "zigzag", "mqtt_varint"]
_NUMERIC_TYPE_RE = re.compile(r"([uif])([0-9]+)$")
_IMPORT_PATH_RE = re.compile(
    r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$"
)


class Checker:
    """Shared by the spec and frame builders: reporting and name lookups."""

    def __init__(self, bag: DiagnosticBag) -> None:
        self.bag = bag

    def error(self, span: ast.Span, message: str) -> None:
        self.bag.error(span.location, message, span.length)

    def where(self, span: ast.Span) -> str:
        return f"{span.location.line}:{span.location.column}"

    def check_identifier(self, ident: ast.Ident, what: str) -> bool:
        """Names become Python attributes, classes and methods."""
        if keyword.iskeyword(ident.text):
            self.error(ident.span, f"{what} '{ident.text}' is a Python keyword")
            return False
        if ident.text.startswith("__"):
            self.error(
                ident.span,
                f"{what} '{ident.text}' starts with '__', which Python reserves",
            )
            return False
        return True

    def size_value(self, size: ast.SizeLit, what: str) -> int | None:
        """Bytes in `16 MiB`; None (reported) for bad units or non-positive sizes."""
        multiplier = 1
        if size.unit is not None:
            if size.unit.text not in SIZE_UNITS:
                self.error(
                    size.unit.span,
                    f"unknown size unit '{size.unit.text}' (use B, KiB, MiB or GiB)",
                )
                return None
            multiplier = SIZE_UNITS[size.unit.text]
        value = size.number.value * multiplier
        if value <= 0:
            self.error(size.span, f"{what} must be positive, not {value}")
            return None
        return value


def suggestion(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def byte_order(order: ast.Ident | None, default: ByteOrder) -> ByteOrder:
    return ORDERS[order.text] if order is not None else default


def describe_type(field_type: FieldType, enum: str | None = None) -> str:
    if enum is not None:
        return f"enum {enum}"
    if isinstance(field_type, BytesType):
        return f"bytes[{field_type.size}]"
    prefix = {"uint": "u", "int": "i", "float": "f"}[field_type.kind]
    return f"{prefix}{8 * field_type.size}"


class TypeResolver(Checker):
    """Resolves `TypeRef`s of fixed-size fields (header, trailer, enum bases)."""

    def __init__(self, bag: DiagnosticBag, enums: dict[str, EnumDef]) -> None:
        super().__init__(bag)
        self.enums = enums
        self.poisoned_enums: set[str] = set()
        # Enums declared with an explicit order (`enum Op : u16 le`) keep it.
        self.enum_orders: set[str] = set()

    def scalar(self, ref: ast.TypeRef, default_order: ByteOrder) -> ScalarType | None:
        """`u8`...`u64`, `i8`...`i64`, `f32`, `f64`; None (reported) otherwise."""
        name = ref.name.text
        match = _NUMERIC_TYPE_RE.match(name)
        if match is None:
            return None
        letter, bits = match.group(1), int(match.group(2))
        order = byte_order(ref.order, default_order)
        if letter == "f":
            if bits not in (32, 64):
                self.error(
                    ref.name.span,
                    f"width not allowed: '{name}' (floats are f32 or f64)",
                )
                return None
            scalar = ScalarType("float", bits // 8, order)
        else:
            if bits % 8 or not 8 <= bits <= 64:
                self.error(
                    ref.name.span,
                    f"width not allowed: '{name}' (integers are {letter}8, {letter}16, "
                    f"{letter}24, ... {letter}64: 1 to 8 whole bytes)",
                )
                return None
            scalar = ScalarType("uint" if letter == "u" else "int", bits // 8, order)
        if ref.arg is not None:
            self.error(ref.span, f"'{name}' takes no size in brackets")
            return None
        return scalar

    def fixed(
        self, ref: ast.TypeRef, default_order: ByteOrder, where: str
    ) -> tuple[FieldType, str | None] | None:
        """The type of a header/trailer field and its enum name, or None (reported)."""
        name = ref.name.text
        if _NUMERIC_TYPE_RE.match(name):
            scalar = self.scalar(ref, default_order)
            return (scalar, None) if scalar is not None else None
        if name == "bytes":
            return self._fixed_bytes(ref, where)
        if name in self.enums:
            enum_def = self.enums[name]
            if ref.arg is not None:
                self.error(ref.span, f"enum '{name}' takes no size in brackets")
                return None
            base = enum_def.base
            order = byte_order(
                ref.order, base.order if self._enum_has_order(name) else default_order
            )
            return ScalarType(base.kind, base.size, order), name
        if name not in self.poisoned_enums:
            self.error(
                ref.name.span,
                f"unknown type '{name}'"
                + suggestion(name, BUILTIN_TYPE_NAMES + list(self.enums)),
            )
        return None

    def _fixed_bytes(
        self, ref: ast.TypeRef, where: str
    ) -> tuple[FieldType, None] | None:
        if ref.order is not None:
            self.error(ref.order.span, "bytes fields have no byte order")
        if ref.arg is None:
            self.error(ref.span, "bytes needs a size: bytes[N]")
            return None
        if not isinstance(ref.arg, ast.IntLit):
            shown = "rest" if isinstance(ref.arg, ast.RestArg) else ref.arg.text
            self.error(
                ref.arg.span,
                f"{where} fields have a fixed size; bytes[{shown}] belongs in the body",
            )
            return None
        if ref.arg.value <= 0:
            self.error(
                ref.arg.span, f"bytes size must be positive, not {ref.arg.value}"
            )
            return None
        return BytesType(ref.arg.value), None

    def _enum_has_order(self, name: str) -> bool:
        return name in self.enum_orders


# --- spec level ------------------------------------------------------------------


class SpecBuilder(Checker):
    def __init__(self, tree: ast.SpecAst, bag: DiagnosticBag, sha256: str) -> None:
        super().__init__(bag)
        self.tree = tree
        self.sha256 = sha256
        self.singles: dict[str, ast.TopItem] = {}
        self.names: dict[str, ast.Span] = {}  # enums and frames share a namespace
        self.types = TypeResolver(bag, {})

    def build(self) -> ProtocolSpec | None:
        # circular imports: these use the helpers of this module
        from .validate_fields import SpecTypes
        from .validate_frame import FrameBuilder
        from .validate_phases import build_phases
        from .validate_struct import StructBuilder, check_spec_types
        from .validate_union import build_union, resolve_wire

        items = self.tree.items
        for item in items:
            self._note_single(item)
        protocol = self.singles.get("protocol")
        if protocol is None:
            self.bag.error(self.bag.location(1, 1), "missing `protocol NAME` statement")
        else:
            assert isinstance(protocol, ast.ProtocolStmt)
            self.check_identifier(protocol.name, "protocol name")
        transports = self._transports()
        default_max = self._max_frame()
        enums = [self._enum(item) for item in items if isinstance(item, ast.EnumDecl)]
        unions = [
            build_union(self, item)
            for item in items
            if isinstance(item, ast.UnionDecl) and self._claim_name(item.name, "union")
        ]
        extern_decls = [item for item in items if isinstance(item, ast.ExternDecl)]
        externs = [self._extern(item) for item in extern_decls]
        struct_decls = [item for item in items if isinstance(item, ast.StructDecl)]
        claimed = [d for d in struct_decls if self._claim_name(d.name, "structure")]
        self.field_types = SpecTypes(
            self.bag,
            self.types,
            {d.name.text: d for d in claimed},
            {e.name: e for e in externs if e is not None},
            {d.name.text for d in struct_decls if d not in claimed}
            | self.types.poisoned_enums
            | {
                item.name.text
                for item, union in zip(
                    [i for i in items if isinstance(i, ast.UnionDecl)], unions
                )
                if union is None
            },
            {u.name: u for u in unions if u is not None},
        )
        for index, (decl, extern) in enumerate(zip(extern_decls, externs)):
            if decl.wire is not None and extern is not None:
                wire = resolve_wire(self, self.field_types, decl)
                externs[index] = dataclasses.replace(extern, wire=wire) if wire else None
        self.struct_defs: dict[str, StructDef] = {}
        for decl in claimed:
            struct_def = StructBuilder(self, decl).build()
            if struct_def is not None:
                self.struct_defs[struct_def.name] = struct_def
            else:
                self.field_types.poisoned.add(decl.name.text)
        frame_decls = [item for item in items if isinstance(item, ast.FrameDecl)]
        frames: list[FrameDef] = []
        for decl in frame_decls:
            if not self._claim_name(decl.name, "frame"):
                continue
            frame = FrameBuilder(self, decl, default_max).build()
            if frame is not None:
                frames.append(frame)
        check_spec_types(self, frames, claimed)
        if not frame_decls:
            span = protocol.span if protocol else ast.Span(self.bag.location(1, 1))
            self.error(span, "spec defines no frames")
        decodes, encodes = self._server([decl.name.text for decl in frame_decls])
        phases = build_phases(
            self,
            [item for item in items if isinstance(item, ast.PhaseDecl)],
            [decl.name.text for decl in frame_decls],
            transports,
        )
        handler_base = self._base("handler_base")
        frame_base = self._base("frame_base")
        if self.bag:
            return None
        assert isinstance(protocol, ast.ProtocolStmt)
        return ProtocolSpec(
            name=protocol.name.text,
            source_file=self.tree.filename,
            source_sha256=self.sha256,
            frames=tuple(frames),
            enums=tuple(enum for enum in enums if enum is not None),
            structs=tuple(self.struct_defs.values()),
            externs=tuple(e for e in externs if e is not None),
            unions=tuple(u for u in unions if u is not None),
            transports=transports,
            server_decodes=decodes,
            server_encodes=encodes,
            handler_base=handler_base,
            frame_base=frame_base,
            phases=phases,
        )

    # Statements that may appear once.
    _SINGLE_KEYS = {
        ast.ProtocolStmt: "protocol",
        ast.TransportStmt: "transport",
        ast.MaxFrameStmt: "max_frame",
        ast.ServerStmt: "server",
    }

    def _note_single(self, item: ast.TopItem) -> None:
        key = (
            item.kind
            if isinstance(item, ast.BaseStmt)
            else self._SINGLE_KEYS.get(type(item))
        )
        if key is None:
            return
        first = self.singles.get(key)
        if first is not None:
            self.error(
                item.span,
                f"duplicate `{key}` statement (first at {self.where(first.span)})",
            )
            return
        self.singles[key] = item

    def _claim_name(self, name: ast.Ident, what: str) -> bool:
        first = self.names.get(name.text)
        if first is not None:
            self.error(
                name.span,
                f"duplicate name '{name.text}' (first at {self.where(first)})",
            )
            return False
        if (
            name.text in BUILTIN_TYPE_NAMES
            or name.text in SEQUENCE_TYPE_NAMES
            or _NUMERIC_TYPE_RE.match(name.text)
        ):
            self.error(name.span, f"{what} name '{name.text}' is a type name")
            return False
        if not self.check_identifier(name, f"{what} name"):
            return False
        self.names[name.text] = name.span
        return True

    def _transports(self) -> tuple[Transport, ...]:
        stmt = self.singles.get("transport")
        if stmt is None:
            return ("tcp",)
        assert isinstance(stmt, ast.TransportStmt)
        chosen: list[Transport] = []
        for name in stmt.names:
            if name.text not in TRANSPORTS:
                self.error(
                    name.span,
                    f"unknown transport '{name.text}' (expected tcp, udp or both)",
                )
                continue
            for transport in TRANSPORTS[name.text]:
                if transport in chosen:
                    self.error(name.span, f"transport '{transport}' listed twice")
                else:
                    chosen.append(transport)  # type: ignore[arg-type]
        return tuple(sorted(chosen)) or ("tcp",)  # type: ignore[return-value]

    def _max_frame(self) -> int:
        stmt = self.singles.get("max_frame")
        if stmt is None:
            return DEFAULT_MAX_FRAME
        assert isinstance(stmt, ast.MaxFrameStmt)
        return self.size_value(stmt.size, "max_frame") or DEFAULT_MAX_FRAME

    def _server(self, frame_names: list[str]) -> tuple[str, str]:
        stmt = self.singles.get("server")
        if stmt is None:
            if len(frame_names) == 1:
                return frame_names[0], frame_names[0]
            if len(frame_names) > 1:
                self.bag.error(
                    self.bag.location(1, 1),
                    "several frames: say which one the server decodes and which one "
                    "it encodes (`server decodes REQUEST encodes RESPONSE`)",
                )
            return "", ""
        assert isinstance(stmt, ast.ServerStmt)
        decodes = self._frame_ref(stmt.decodes, frame_names)
        encodes = (
            self._frame_ref(stmt.encodes, frame_names) if stmt.encodes else decodes
        )
        return decodes, encodes

    def _frame_ref(self, name: ast.Ident, frame_names: list[str]) -> str:
        if name.text not in frame_names:
            self.error(
                name.span,
                f"unknown frame '{name.text}'" + suggestion(name.text, frame_names),
            )
        return name.text

    def _base(self, kind: str) -> str | None:
        stmt = self.singles.get(kind)
        if stmt is None:
            return None
        assert isinstance(stmt, ast.BaseStmt)
        try:
            value = stmt.value.value.decode("ascii")
        except UnicodeDecodeError:
            value = ""
        if not _IMPORT_PATH_RE.match(value):
            self.error(stmt.value.span, f'{kind} must look like "package.module:Class"')
            return None
        return value

    # Plug-in types.
    def _extern(self, decl: ast.ExternDecl) -> ExternDef | None:
        claimed = self._claim_name(decl.name, "plug-in type")
        try:
            target = decl.target.value.decode("ascii")
        except UnicodeDecodeError:
            target = ""
        if not _IMPORT_PATH_RE.match(target):
            self.error(
                decl.target.span,
                'a plug-in type names its implementation as "package.module:object"',
            )
            return None
        if isinstance(decl.python_type, ast.StrLit):
            python_type = decl.python_type.value.decode("utf-8", "replace")
        else:
            python_type = decl.python_type.text
        if not python_type.strip():
            self.error(decl.python_type.span, "a plug-in type needs its Python type")
            return None
        if not claimed:
            return None
        module, _, attribute = target.partition(":")
        return ExternDef(
            decl.name.text, python_type, module, attribute, decl.span.location
        )

    # Enums.
    def _enum(self, decl: ast.EnumDecl) -> EnumDef | None:
        claimed = self._claim_name(decl.name, "enum")
        base = self.types.scalar(decl.base, ByteOrder.BIG)
        if base is None or base.kind == "float":
            if base is not None or not _NUMERIC_TYPE_RE.match(decl.base.name.text):
                self.error(
                    decl.base.name.span,
                    f"enum base must be an integer type (u8...u64, i8...i64), "
                    f"not '{decl.base.name.text}'",
                )
            self.types.poisoned_enums.add(decl.name.text)
            return None
        if not decl.members:
            self.error(decl.name.span, f"enum '{decl.name.text}' has no members")
        members: list[EnumMember] = []
        by_name: dict[str, ast.EnumMemberDecl] = {}
        by_value: dict[int, ast.EnumMemberDecl] = {}
        for member in decl.members:
            name, value = member.name.text, member.value.value
            if name in by_name:
                first = by_name[name]
                self.error(
                    member.name.span,
                    f"duplicate enum member '{name}' (first at {self.where(first.span)})",
                )
                continue
            by_name[name] = member
            self.check_identifier(member.name, "enum member")
            if not base.min_value <= value <= base.max_value:
                self.error(
                    member.value.span,
                    f"enum value {value} out of range for "
                    f"{describe_type(base)} ({base.min_value}..{base.max_value})",
                )
                continue
            if value in by_value:
                self.error(
                    member.value.span,
                    f"duplicate enum value {value} (also '{by_value[value].name.text}')",
                )
                continue
            by_value[value] = member
            members.append(EnumMember(name, value, member.name.span.location))
        if not claimed:
            return None
        enum_def = EnumDef(decl.name.text, base, tuple(members), decl.span.location)
        self.types.enums[enum_def.name] = enum_def
        if decl.base.order is not None:
            self.types.enum_orders.add(enum_def.name)
        return enum_def


def build_spec(
    tree: ast.SpecAst, bag: DiagnosticBag, sha256: str
) -> ProtocolSpec | None:
    """Validate `tree`; report problems to `bag`. None when there were any."""
    return SpecBuilder(tree, bag, sha256).build()


__all__ = ["build_spec", "SIZE_UNITS"]
