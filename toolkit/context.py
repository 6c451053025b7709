"""Build the template context: the IR plus everything derived from it.

Templates stay declarative: every offset, struct format, local variable name
and argument order is computed here, once, and documented in docs/templates.md.
"""

from __future__ import annotations

import builtins
import keyword
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from . import expressions as ex
from . import models as ir
from . import typeinfo
from ._version import __version__
from .context_fields import annotation as field_annotation
from .context_fields import (
    Consts,
    EscapeView,
    Locals,
    MemberView,
    SequenceBuilder,
    SequenceView,
    SpecViews,
    extern_const,
)
from .context_phases import phase_views
from .context_strategies import StrategyBuilder
from .context_unions import wire_extern_views
from .render import camel_case, py_literal, snake_case

# Locals the generated decode/encode functions use themselves; a field with one
# of these names gets a trailing underscore as its local variable.
_RESERVED_LOCALS = frozenset(
    (
        "data start end self frame out buf base body_end frame_len "
        "length_value header trailer value limit match struct zlib wire enum "
        "re exc size declared region count varint available content_end scan_from "
        "head body "
        # the generated handler's decode loop, which expands the codec's framing
        "pos budget handle dispatch unknown action conn err unpack_length max_length "
    ).split()
)

CHECKSUM_FUNCTIONS = {
    "crc32": "zlib.crc32",
    "adler32": "zlib.adler32",
    "crc16_ccitt": "wire.crc16_ccitt",
}

SYNTHETIC_PAYLOAD = "payload"


def local_name(name: str) -> str:
    if name in _RESERVED_LOCALS or keyword.iskeyword(name) or hasattr(builtins, name):
        return name + "_"
    return name


@dataclass
class EnumView:
    name: str
    base: ir.ScalarType
    members: list[tuple[str, int]]
    by_value: str  # module constant mapping wire values to members


@dataclass
class FieldView:
    """One attribute of a generated frame class."""

    name: str
    var: str  # local variable name in generated functions
    section: str  # "header" | "body" | "trailer"
    annotation: str  # type annotation in the generated class
    role: str  # "user" | "const" | "length" | "size" | "checksum" | "bits"
    default: str | None = None  # __init__ default (literal) for non-user fields
    # header / trailer fields
    offset: int = 0
    size: int = 0
    struct_code: str = ""  # code inside the group's Struct ("I", "3s", "4s")
    # "" when the Struct carries the value itself; "int" or "float" when it
    # carries `size` raw bytes converted after unpacking (odd widths, other order)
    carry: str = ""
    own_struct: str = ""  # per-field Struct (float carry; checksum pack_into)
    own_format: str = ""
    struct_order: str = "big"  # byte order of the header's Struct
    signed: bool = False
    order: str = "big"
    enum: EnumView | None = None
    # `dispatch on F allow_unknown`: values naming no member stay ints
    enum_open: bool = False
    const: int | bytes | None = None
    allowed: tuple[int, ...] | None = None
    checksum: ir.Checksum | None = None
    checksum_function: str = ""
    is_bytes: bool = False
    # body fields
    size_field: str | None = None  # var of the header field holding our size
    fixed_size: int | None = None
    rest: bool = False
    sizes_body: str | None = None  # for role "size": var of the body field measured
    # bit fields: `bits` wide at `shift` in the carrier (var `carrier`); a carrier
    # (role "bits") lists them in `bit_fields`, most significant first
    bits: int = 0
    shift: int = 0
    mask: int = 0
    carrier: str = ""
    bit_fields: list["FieldView"] = field(default_factory=list)
    derived: ir.Derived | None = None  # computed by the encoder (sizes, counts, flags)
    escape_code: str = ""  # escape-coded: the variable holding the code written here
    # A typed body's enum: the member goes here, `var` keeps the integer (cheaper
    # to compare in unions and constraints than an enum member).
    member_var: str = ""
    where: str | None = None  # python constraint, checked on decode and encode
    where_source: str = ""
    path: str = ""  # `Frame.field` in messages

    @property
    def user(self) -> bool:
        return self.role == "user"

    @property
    def value_var(self) -> str:
        """The variable holding the decoded value (an enum's member)."""
        return self.member_var or self.var

    @property
    def struct_order_prefix(self) -> str:
        return ">" if self.struct_order == "big" else "<"

    @property
    def validated(self) -> bool:
        if self.bits and self.const is not None:
            return False  # see const_bits: checked with the others of its carrier
        return (
            self.const is not None or self.allowed is not None or self.enum is not None
        )

    @property
    def const_bits(self) -> tuple[str, str] | None:
        """A carrier with constant bits: (mask, value) to test them in one go."""
        consts = [b for b in self.bit_fields if b.const is not None]
        if not consts:
            return None
        mask = sum(b.mask << b.shift for b in consts)
        value = sum(b.const << b.shift for b in consts)  # type: ignore[operator]
        return hex(mask), hex(value)

    def const_bit_checks(self) -> list[tuple[str, str, str]]:
        """(path, value expression, constant) of each constant bit, for the error."""
        out = []
        for b in self.bit_fields:
            if b.const is not None:
                expr = self.var + (f" >> {b.shift}" if b.shift else "") + f" & {hex(b.mask)}"
                out.append((b.path, expr, py_literal(b.const)))
        return out

    def pack_expr(self) -> str:
        """Expression packed into the Struct for this field on encode."""
        if self.role == "const":
            return py_literal(self._raw_const())
        if self.role == "checksum":
            return py_literal(bytes(self.size)) if self.carry else "0"
        if self.role == "bits":
            expr = self._join_bits()
        elif self.role == "derived" and self.derived is not None and self.derived.kind == "region":
            # A body field is patched once its region is written; a header or a
            # trailer is packed after the body, with the region's size at hand.
            expr = "0" if self.section == "body" else self.var
        elif self.role == "length":
            expr = "length_value"
        elif self.escape_code:
            expr = self.escape_code
        elif self.role == "size":
            expr = f"len({self.sizes_body})"
        else:
            expr = self.var
        if self.carry == "int":
            return (
                f'({expr}).to_bytes({self.size}, "{self.order}", signed={self.signed})'
            )
        if self.carry == "float":
            return f"{self.own_struct}.pack({expr})"
        return expr

    def _join_bits(self) -> str:
        """A carrier's value on encode: its bit fields shifted and or-ed together."""
        constant = sum(
            b.const << b.shift for b in self.bit_fields if b.role == "const"  # type: ignore[operator]
        )
        terms = []
        for b in self.bit_fields:
            if b.role in ("user", "derived"):
                var = b.escape_code or b.var
                terms.append(f"{var} << {b.shift}" if b.shift else var)
        if constant or not terms:
            terms.append(hex(constant))
        return " | ".join(terms)

    def unpack_bits(self) -> str:
        """Statement extracting a bit field from its (already unpacked) carrier;
        a constant bit gets its value (its carrier checks all constants at once)."""
        if self.bits and self.const is not None:
            return ""  # its `var` is the literal: nothing to extract
        expr = self.carrier
        if self.shift:
            expr += f" >> {self.shift}"
        if self.shift + self.bits < 8 * self.size:  # bits above ours: mask them off
            expr += f" & {hex(self.mask)}"
        return f"{self.var} = {expr}"

    def unpack_post(self) -> str | None:
        """Statement converting the raw Struct value, or None."""
        if self.carry == "int":
            return f'{self.var} = int.from_bytes({self.var}, "{self.order}", signed={self.signed})'
        if self.carry == "float":
            return f"({self.var},) = {self.own_struct}.unpack({self.var})"
        return None

    def _raw_const(self) -> int | bytes:
        assert self.const is not None
        if self.carry == "int" and isinstance(self.const, int):
            return self.const.to_bytes(self.size, self.order, signed=self.signed)
        return self.const


@dataclass
class StructGroup:
    """The one precompiled struct.Struct of a header (or trailer)."""

    name: str
    format: str
    size: int
    fields: list[FieldView]

    @property
    def targets(self) -> str:
        names = [f.var for f in self.fields]
        return f"({names[0]},)" if len(names) == 1 else ", ".join(names)

    @property
    def single_byte(self) -> bool:
        """One unsigned byte: read as data[i], cheaper than a Struct call."""
        return self.format[1:] == "B"

    @property
    def byte_reads(self) -> list[tuple[str, int]]:
        """Up to three unsigned bytes and nothing else: (variable, offset) of each,
        read as data[i] (cheaper than a Struct call and its tuple); else []."""
        if not 1 <= len(self.fields) <= 3 or self.format[1:] != "B" * len(self.fields):
            return []
        return [(f.var, f.offset) for f in self.fields]


@dataclass
class BodySlice:
    field: FieldView
    begin: str
    end: str


@dataclass
class FrameView:
    ir: ir.FrameDef
    name: str
    snake: str
    upper: str
    kind: str
    framing: Any
    max_frame: int
    max_const: str
    decoder: str
    reader: str
    encode: str
    encode_into: str
    header_size: int
    trailer_size: int
    header: list[FieldView] = field(default_factory=list)
    body: list[FieldView] = field(default_factory=list)
    trailer: list[FieldView] = field(default_factory=list)
    header_struct: StructGroup | None = None
    trailer_struct: StructGroup | None = None
    dispatch: FieldView | None = None
    # length framing
    length_var: str = ""
    length_base: int = 0  # frame_len = value + length_base
    length_signed: bool = False
    # composite framing: attributes are fixed (head, body)
    composite: bool = False
    length_header_line: bytes = b""  # b"\n" + the length header's name, lowercased
    # A body of typed fields (or any feature beyond byte strings): decoded and
    # encoded by the sequence templates (_decode_value.j2, _encode_value.j2).
    general: bool = False
    body_seq: SequenceView | None = None
    header_escape: EscapeView | None = None  # the last header field's wider integer
    frame_len: str = ""  # decode: python for the frame length
    frame_len_check: str | None = None  # decode: the smallest valid frame length
    length_assign: str = ""  # encode: statement giving the length field its value
    length_remainder: str | None = None  # encode: must be 0 (`length(n * 4)`)
    header_derived: list[Any] = field(default_factory=list)  # encode: DerivedSteps
    wheres: list[tuple[str, str]] = field(default_factory=list)  # (python, source)
    origin: str = ""  # decode: offset of the message start (plug-in offsets)
    encode_origin: str = ""  # encode: message offset of the body buffer's start
    prefix_size: int = 0  # stream_only: the length field absent from datagrams
    body_end: str = "end"  # decode: the variable where the body ends
    # The handler's inline fast path (a length-only header, one `rest` field):
    # _codec_inline.j2 expands its framing; `length_prefix` names its Struct.
    inline_length: bool = False
    length_prefix: str = ""

    @property
    def fields(self) -> list[Any]:
        return self.header + self.body + self.trailer

    @property
    def user_fields(self) -> list[Any]:
        return [f for f in self.fields if f.user]

    @property
    def computed_fields(self) -> list[Any]:
        return [f for f in self.fields if not f.user]

    @property
    def init_order(self) -> list[Any]:
        """__init__ parameter order: required user fields, optional ones (default
        None), then computed ones (defaulted)."""
        required = [f for f in self.user_fields if f.default is None]
        optional = [f for f in self.user_fields if f.default is not None]
        return required + optional + self.computed_fields

    @property
    def has_bits(self) -> bool:
        """True when a header or trailer field carries bit fields."""
        return any(f.bit_fields for f in self.header + self.trailer)

    @property
    def checksums(self) -> list[FieldView]:
        return [f for f in self.header + self.trailer if f.checksum is not None]

    @property
    def validated_header(self) -> list[FieldView]:
        return [f for f in self.header if f.validated]

    @property
    def header_wheres(self) -> list[FieldView]:
        return [f for f in self.header + self.trailer if f.where]

    @property
    def validated_trailer(self) -> list[FieldView]:
        return [f for f in self.trailer if f.validated]

    @property
    def fixed_body_size(self) -> int:
        if self.general:
            return 0  # not used: sequences check each field
        return sum(f.fixed_size or 0 for f in self.body)

    @property
    def has_rest(self) -> bool:
        return any(f.rest for f in self.body)

    @property
    def min_size(self) -> int:
        """Smallest possible region: header, fixed body fields, trailer."""
        return self.header_size + self.fixed_body_size + self.trailer_size

    @property
    def body_is_single_rest(self) -> bool:
        return len(self.body) == 1 and self.body[0].rest

    def body_slices(self, body_start: str, body_end: str) -> list[BodySlice]:
        """Begin/end expressions of every body field, in wire order."""
        slices = []
        begin = body_start
        for body_field in self.body:
            if body_field.rest:
                end = body_end
            elif body_field.size_field is not None:
                end = f"{begin} + {body_field.size_field}"
            else:
                end = f"{begin} + {body_field.fixed_size}"
            slices.append(BodySlice(body_field, begin, end))
            begin = end
        return slices

    def declared_body_size(self) -> str:
        """Expression: bytes the body fields (except `rest`) need."""
        terms = [f.size_field for f in self.body if f.size_field is not None]
        if self.fixed_body_size or not terms:
            terms.append(str(self.fixed_body_size))
        return " + ".join(terms)

    @property
    def body_size_check(self) -> str | None:
        """'!=' or '>' when the decoder must compare declared and available body bytes."""
        if not self.body or self.body_is_single_rest:
            return None
        if all(f.fixed_size is not None for f in self.body) and self.kind == "fixed":
            return None  # the frame size fixes the body size
        return ">" if self.has_rest else "!="


def _field_annotation(header_field: ir.HeaderField) -> str:
    if header_field.enum:
        return header_field.enum
    return header_field.type.python_type


def _primary_order(fields: tuple[ir.HeaderField, ...]) -> str:
    """The byte order of most multi-byte struct-able fields (ties: the first one's)."""
    counts: dict[str, int] = {}
    for hf in fields:
        ftype = hf.type
        if isinstance(ftype, ir.ScalarType) and ftype.size > 1 and ftype.struct_code:
            counts[ftype.order.value] = counts.get(ftype.order.value, 0) + 1
    if not counts:
        return "big"
    return max(counts, key=lambda order: (counts[order], -list(counts).index(order)))


def _header_views(
    fields: tuple[ir.HeaderField, ...],
    enums: dict[str, EnumView],
    size_of: dict[str, str],
    section: str,
    prefix: str,
) -> list[FieldView]:
    """Views of header (or trailer) fields; all of them travel in one Struct.

    Fields the Struct cannot carry in its byte order (3/5/6/7-byte ints, fields
    of the other byte order) travel as `Ns` bytes and are converted after
    unpacking (int.from_bytes, or a per-field Struct for floats).
    """
    primary = _primary_order(fields)
    views = []
    for hf in fields:
        ftype = hf.type
        is_bytes = isinstance(ftype, ir.BytesType)
        if hf.bits:
            role, default = "bits", "None"
        elif hf.computed_length:
            role, default = "length", "None"
        elif hf.derived is not None and hf.name not in size_of:
            role, default = "derived", "None"
        elif hf.checksum is not None:
            role, default = "checksum", "None"
        elif hf.const is not None:
            role, default = "const", py_literal(hf.const)
        elif hf.name in size_of:
            role, default = "size", "None"
        else:
            role, default = "user", None
        view = FieldView(
            name=hf.name,
            var=local_name(hf.name),
            section=section,
            annotation=_field_annotation(hf),
            role=role,
            default=default,
            offset=hf.offset,
            size=hf.size,
            enum=enums.get(hf.enum) if hf.enum else None,
            const=hf.const,
            allowed=hf.allowed,
            checksum=hf.checksum,
            is_bytes=is_bytes,
            sizes_body=size_of.get(hf.name),
            struct_order=primary,
            derived=hf.derived,
        )
        own_struct = f"{prefix}_{hf.name.upper()}"
        if is_bytes:
            view.struct_code = f"{hf.size}s"
        else:
            assert isinstance(ftype, ir.ScalarType)
            view.order = ftype.order.value
            view.signed = ftype.kind == "int"
            code = ftype.struct_code
            fits = code is not None and (hf.size == 1 or view.order == primary)
            if fits:
                view.struct_code = code
            else:
                view.struct_code = f"{hf.size}s"
                if ftype.kind == "float":
                    view.carry = "float"
                    view.own_struct = own_struct
                    view.own_format = (">" if view.order == "big" else "<") + str(code)
                else:
                    view.carry = "int"
        if hf.checksum is not None:
            view.checksum_function = CHECKSUM_FUNCTIONS[hf.checksum.algorithm]
            if view.carry == "":
                view.own_struct = own_struct
                view.own_format = (
                    ">" if view.order == "big" else "<"
                ) + view.struct_code
        views.append(view)
        view.bit_fields = [_bit_view(bit, view, enums, section) for bit in hf.bits]
        views.extend(view.bit_fields)
    return views


def _bit_view(
    bit: ir.BitField, carrier: FieldView, enums: dict[str, EnumView], section: str
) -> FieldView:
    """A bit field: an attribute of its own, decoded from and encoded into its carrier."""
    if bit.const is not None:
        role, default = "const", py_literal(bit.const)
    elif bit.derived is not None:
        role, default = "derived", "None"
    else:
        role, default = "user", None
    return FieldView(
        name=bit.name,
        var=local_name(bit.name),
        section=section,
        annotation=bit.enum or "int",
        role=role,
        default=default,
        derived=bit.derived,
        offset=carrier.offset,
        size=carrier.size,
        enum=enums.get(bit.enum) if bit.enum else None,
        const=bit.const,
        allowed=bit.allowed,
        bits=bit.bits,
        shift=bit.shift,
        mask=bit.mask,
        carrier=carrier.var,
    )


def _struct_group(views: list[FieldView], name: str) -> StructGroup | None:
    """One precompiled Struct for the whole header (or trailer), 'x' over gaps."""
    if not views:
        return None
    fmt = ">" if views[0].struct_order == "big" else "<"
    position = 0
    members = sorted(views, key=lambda v: v.offset)
    for member in members:
        if member.offset > position:
            fmt += f"{member.offset - position}x"
        fmt += member.struct_code
        position = member.offset + member.size
    return StructGroup(name, fmt, position, members)


def _enum_views(spec: ir.ProtocolSpec) -> dict[str, EnumView]:
    return {
        e.name: EnumView(
            name=e.name,
            base=e.base,
            members=[(m.name, m.value) for m in e.members],
            by_value=f"_{snake_case(e.name).upper()}_BY_VALUE",
        )
        for e in spec.enums
    }


def is_general(frame: ir.FrameDef) -> bool:
    """True when the frame needs the sequence templates (anything beyond byte
    strings in the body, escapes, constraints, expression lengths)."""
    if frame.where or any(not f.is_plain_bytes for f in frame.body):
        return True
    if isinstance(frame.framing, ir.LengthFraming) and frame.framing.expr is not None:
        return True
    for hf in frame.header + frame.trailer:
        if hf.escape or hf.where or (hf.derived is not None and hf.derived.kind != "size"):
            return True
        if any(bit.escape or bit.derived is not None for bit in hf.bits):
            return True
    return False


def frame_view(
    frame: ir.FrameDef, enums: dict[str, EnumView], views: SpecViews | None = None
) -> FrameView:
    name = frame.name
    snake = snake_case(name)
    upper = snake.upper()
    framing = frame.framing
    view = FrameView(
        ir=frame,
        name=name,
        snake=snake,
        upper=upper,
        kind=framing.kind,
        framing=framing,
        max_frame=frame.max_frame,
        max_const=f"MAX_FRAME_{upper}",
        decoder=f"{name}Decoder",
        reader=f"{name}Reader",
        encode=f"encode_{snake}",
        encode_into=f"encode_{snake}_into",
        header_size=frame.header_size,
        trailer_size=frame.trailer_size,
    )
    if framing.kind == "composite":
        view.composite = True
        if framing.length_header:
            view.length_header_line = b"\n" + framing.length_header.lower().encode(
                "ascii"
            )
        view.body = [
            FieldView("head", "head", "body", "bytes", "user"),
            FieldView("body", "body", "body", "bytes", "user"),
        ]
        return view
    view.general = views is not None and is_general(frame)
    size_of = (
        {}
        if view.general
        else {b.size_field: local_name(b.name) for b in frame.body if b.size_field}
    )
    view.header = _header_views(frame.header, enums, size_of, "header", f"_{upper}")
    view.trailer = _header_views(frame.trailer, enums, size_of, "trailer", f"_{upper}")
    for fv in view.header + view.trailer:
        fv.path = f"{name}.{fv.name}"
        if fv.bits and fv.const is not None:
            fv.var = py_literal(fv.const)  # a constant bit: its value, no variable
    view.header_struct = _struct_group(
        [v for v in view.header if not v.bits], f"_{upper}_HEADER"
    )
    view.trailer_struct = _struct_group(
        [v for v in view.trailer if not v.bits], f"_{upper}_TRAILER"
    )
    by_name = {hv.name: hv for hv in view.header + view.trailer}
    if view.general:
        assert views is not None
        _general_body(view, frame, views)
    else:
        _plain_body(view, frame, by_name)
    if framing.kind == "length":
        length_field = by_name[framing.field]
        view.length_var = length_field.var
        view.length_signed = length_field.signed
        base = {
            "body": frame.header_size,
            "frame": 0,
            "after_field": framing.offset + framing.size,
        }[framing.counts]
        view.length_base = framing.adjustment + base
        if view.general:
            _general_length(view, frame, framing)
        view.inline_length = (
            not view.general
            and framing.strip == 0
            and framing.counts == "body"
            and framing.adjustment == 0
            and len(frame.header) == 1
            and frame.header[0].computed_length
            and isinstance(frame.header[0].type, ir.ScalarType)
            and frame.header[0].type.kind == "uint"
            and frame.header[0].type.struct_code is not None
            and not frame.trailer
            and len(frame.body) == 1
            and frame.body[0].rest
        )
        if view.inline_length:
            view.length_prefix = f"{upper}_LENGTH_PREFIX"
    if frame.dispatch:
        view.dispatch = by_name[frame.dispatch]
        if frame.dispatch_allows_unknown:
            view.dispatch.enum_open = True
            view.dispatch.annotation += " | int"
    return view


def _plain_body(
    view: FrameView, frame: ir.FrameDef, by_name: dict[str, FieldView]
) -> None:
    """Byte-string body fields: sliced out once the frame is complete."""
    body = list(frame.body)
    if not body and frame.framing.kind in ("delimited", "decimal"):
        body = [ir.BodyField(SYNTHETIC_PAYLOAD, frame.location, rest=True)]
    for bf in body:
        view.body.append(
            FieldView(
                name=bf.name,
                var=local_name(bf.name),
                section="body",
                # An array frame's one field is its elements.
                annotation="list[bytes]" if frame.framing.kind == "array" else "bytes",
                role="user",
                size_field=by_name[bf.size_field].var if bf.size_field else None,
                fixed_size=bf.size,
                rest=bf.rest,
            )
        )


def _frame_locals(view: FrameView) -> Locals:
    taken = set(_RESERVED_LOCALS) | {"pos", "origin", "state", "header_end"}
    taken |= {fv.var for fv in view.header + view.trailer}
    return Locals(taken | {"data", "start", "end", "out", "frame", "self"})


def _general_body(view: FrameView, frame: ir.FrameDef, views: SpecViews) -> None:
    names = {fv.name: fv.var for fv in view.header + view.trailer}
    header_derived: dict[str, ir.Derived] = {}
    for hf in frame.header:
        if hf.derived is not None:
            header_derived[hf.name] = hf.derived
        for bit in hf.bits:
            if bit.derived is not None:
                header_derived[bit.name] = bit.derived
    unsigned = {
        hf.name
        for hf in frame.header + frame.trailer
        if isinstance(hf.type, ir.ScalarType) and hf.type.kind == "uint"
    }
    unsigned |= {bit.name for hf in frame.header + frame.trailer for bit in hf.bits}
    # Header enums decoded strictly (a union on one needs no "else").
    enum_values = {
        fv.name: {value for _, value in fv.enum.members}
        for fv in view.header + view.trailer
        if fv.enum is not None and not fv.enum_open
    }
    view.body_end = "body_end" if frame.trailer_size else "end"
    locals_ = _frame_locals(view)
    for fv in view.header + view.trailer:
        if fv.enum is not None and not (fv.bits and fv.const is not None):
            fv.member_var = locals_.claim(f"{fv.name}_member")
    builder = SequenceBuilder(
        views,
        frame.name,
        locals_,
        names,
        end=view.body_end,
        header_derived=header_derived,
        unsigned=unsigned,
        enum_values=enum_values,
        frame_body=True,
        later={frame.framing.field} if isinstance(frame.framing, ir.LengthFraming) else (),
    )
    view.body_seq = builder.build(frame.body)
    view.body = view.body_seq.fields  # type: ignore[assignment]
    for hname, derived in header_derived.items():
        if derived.kind in ("size", "count", "presence"):
            step = builder.derived_step(hname, derived)
            if step is not None:
                view.header_derived.append(step)
    for fv in view.header + view.trailer:
        hf = frame.field(fv.name)
        if hf is not None and hf.where is not None:
            fv.where = builder.py(hf.where)
            fv.where_source = ex.source(hf.where)
    view.wheres = [(builder.py(w), ex.source(w)) for w in frame.where]
    prefix = (
        frame.framing.size
        if isinstance(frame.framing, ir.LengthFraming) and frame.framing.stream_only
        else 0
    )
    view.prefix_size = prefix
    view.origin = f"start + {prefix}" if prefix else "start"
    view.encode_origin = str(-(frame.header_size - prefix))
    last = frame.header[-1] if frame.header else None
    if last is not None:
        escaped: tuple[str, tuple[ir.EscapeArm, ...], int] | None = None
        if last.escape:
            assert isinstance(last.type, ir.ScalarType)
            escaped = (last.name, last.escape, last.type.max_value)
        elif last.bits and last.bits[-1].escape:
            escaped = (last.bits[-1].name, last.bits[-1].escape, last.bits[-1].mask)
        if escaped is not None:
            escape_name, arms, max_value = escaped
            view.header_escape = builder._escape(
                names[escape_name], f"{frame.name}.{escape_name}", arms, max_value
            )
            for fv in view.header:
                if fv.name == escape_name:
                    fv.escape_code = view.header_escape.code


def _general_length(
    view: FrameView, frame: ir.FrameDef, framing: ir.LengthFraming
) -> None:
    """The frame length from the header (decode) and the length field (encode)."""
    names = {fv.name: fv.var for fv in view.header}

    def var(ref: ir.Ref) -> str:
        return names.get(ref.name, ref.name)

    expr = framing.expr if framing.expr is not None else ir.Ref((framing.field,))
    value = ex.python(expr, var)
    escape = view.header_escape is not None
    header = "(header_end - start)" if escape else str(frame.header_size)
    base = {
        "body": header,
        "frame": "0",
        "after_field": header if escape else str(framing.offset + framing.size),
    }[framing.counts]
    terms = [f"({value})" if " " in value else value]
    if base != "0":
        terms.append(base)
    if framing.adjustment:
        terms.append(str(framing.adjustment))
    view.frame_len = " + ".join(terms)
    smallest = f"{header} + {frame.trailer_size}" if frame.trailer_size else header
    unsigned = {fv.name for fv in view.header if not fv.signed and not fv.is_bytes}
    # The body is at least this long: a first run that fits needs no bounds check.
    floor = _lower_bound(expr, unsigned)
    if framing.counts == "body" and floor is not None and view.body_seq is not None:
        steps = view.body_seq.steps
        if steps and steps[0].kind == "run" and steps[0].size <= floor + framing.adjustment:
            steps[0].in_bounds = True
    view.frame_len_check = (
        None
        if framing.adjustment >= 0 and frame.trailer_size == 0 and _non_negative(expr, unsigned)
        else smallest
    )
    # Encode: the bytes the expression counts, then solve it for the length field.
    before = {
        "body": 0,
        "frame": frame.header_size,
        "after_field": frame.header_size - framing.offset - framing.size,
    }[framing.counts]
    counted = "len(out)"
    if before + frame.trailer_size:
        counted += f" + {before + frame.trailer_size}"
    if framing.adjustment:
        counted += f" - {framing.adjustment}" if framing.adjustment > 0 else f" + {-framing.adjustment}"
    solved, remainder = ex.solve(expr, framing.field, ir.Ref(("__COUNTED__",)))

    def solved_var(ref: ir.Ref) -> str:
        if ref.name == "__COUNTED__":
            return f"({counted})" if " " in counted else counted
        return var(ref)

    for fv in view.header:
        if fv.name == framing.field and fv.role == "length":
            fv.role = "derived"  # packed from its variable, like a computed bit
            fv.derived = ir.Derived("length")
    view.length_assign = f"{names[framing.field]} = {ex.python(solved, solved_var)}"
    if remainder is not None:
        view.length_remainder = ex.python(remainder, solved_var)


def _lower_bound(expr: ir.Expr, unsigned: set[str]) -> int | None:
    """The least value of `expr` over unsigned fields (0 each), if it has one."""
    if isinstance(expr, ir.Const):
        return expr.value
    if isinstance(expr, ir.Ref):
        return 0 if expr.name in unsigned else None
    if isinstance(expr, ir.Binary) and expr.op == "+":
        left, right = _lower_bound(expr.left, unsigned), _lower_bound(expr.right, unsigned)
        return None if left is None or right is None else left + right
    if isinstance(expr, ir.Binary) and expr.op == "*" and _non_negative(expr, unsigned):
        return 0
    return None


def _non_negative(expr: ir.Expr, unsigned: set[str]) -> bool:
    """True when `expr` cannot be negative (sums and products of unsigned fields)."""
    if isinstance(expr, ir.Const):
        return expr.value >= 0
    if isinstance(expr, ir.Ref):
        return expr.name in unsigned
    if isinstance(expr, ir.Binary) and expr.op in ("+", "*"):
        return _non_negative(expr.left, unsigned) and _non_negative(expr.right, unsigned)
    return False


def run_views(
    headers: list[ir.HeaderField],
    enums: dict[str, EnumView],
    names: dict[str, str],
    consts: Consts,
    owner: str,
) -> tuple[StructGroup, list[FieldView]]:
    """A run of fixed-size body fields: the header machinery, with our names."""
    views = _header_views(tuple(headers), enums, {}, "body", f"_{snake_case(owner).upper()}")
    for fv in views:
        fv.var = names[fv.name]
        fv.path = f"{owner}.{fv.name}"
    for fv in views:
        for bit in fv.bit_fields:
            bit.carrier = fv.var
        if fv.own_struct:
            fv.own_struct = consts.struct(fv.own_format)
    group = _struct_group([v for v in views if not v.bits], "")
    assert group is not None
    group.name = consts.struct(group.format, owner, headers[0].name)
    return group, views


@dataclass
class StructView:
    """A `struct` of the spec: its class and its decode / encode functions."""

    ir: ir.StructDef
    name: str
    snake: str
    decode: str
    encode: str
    params: list[tuple[str, str, str]]  # (name, local variable, annotation)
    seq: SequenceView
    # Decoding many in a row (counted arrays): the function, and its locals
    list_decode: str = ""
    list_locals: tuple[str, str, str] = ("", "", "")  # count, items, append

    @property
    def context(self) -> bool:
        """Decoding passes `origin` (and encoding `state`): plug-in types inside."""
        return self.seq.origin

    @property
    def fields(self) -> list[MemberView]:
        return self.seq.fields

    @property
    def user_fields(self) -> list[MemberView]:
        return [f for f in self.fields if f.user]

    @property
    def init_order(self) -> list[MemberView]:
        required = [f for f in self.user_fields if f.default is None]
        optional = [f for f in self.user_fields if f.default is not None]
        return required + optional + [f for f in self.fields if not f.user]


def struct_view(struct_def: ir.StructDef, views: SpecViews) -> StructView:
    locals_ = Locals()
    names: dict[str, str] = {}
    params = []
    unsigned = set()
    for param in struct_def.params:
        var = locals_.claim(param.name)
        names[param.name] = var
        params.append((param.name, var, param.enum or "int"))
        if param.type.kind == "uint":
            unsigned.add(param.name)
    listed = struct_def.name in views.listed
    list_locals = (
        (locals_.claim("count"), locals_.claim("items"), locals_.claim("append"))
        if listed
        else ("", "", "")
    )
    builder = SequenceBuilder(views, struct_def.name, locals_, names, unsigned=unsigned)
    seq = builder.build(struct_def.fields)
    snake = snake_case(struct_def.name)
    return StructView(
        list_decode=f"_decode_{snake}_list" if listed else "",
        list_locals=list_locals,
        ir=struct_def,
        name=struct_def.name,
        snake=snake,
        decode=f"_decode_{snake}",
        encode=f"_encode_{snake}",
        params=params,
        seq=seq,
    )


def field_structs(frame: FrameView) -> list[tuple[str, str]]:
    """(name, format) of per-field Structs: float carries and checksum packing."""
    return [
        (f.own_struct, f.own_format)
        for f in frame.header + frame.trailer
        if f.own_struct
    ]


def build_context(
    spec: ir.ProtocolSpec, *, package: str | None = None, frame_base: str | None = None
) -> dict[str, Any]:
    """The variables every module template receives (see docs/templates.md)."""
    enums = _enum_views(spec)
    views = SpecViews(
        spec, enums, Consts(), typeinfo.recursive_structs({s.name: s for s in spec.structs})
    )
    structs = [struct_view(s, views) for s in spec.structs]
    frames = [frame_view(f, enums, views) for f in spec.frames]
    consts = views.consts
    strategies = StrategyBuilder(
        spec, enums, lambda ftype: field_annotation(views, ftype)
    )
    struct_strategies = [strategies.struct(s) for s in spec.structs]
    frame_strategies = {
        f.name: strategies.frame(f.ir) for f in frames if f.general
    }
    by_name = {f.name: f for f in frames}
    prefix = f"{package}." if package else ""
    modules = {
        kind: f"{spec.name}_{kind}"
        for kind in ("codec", "handler", "server", "client", "aio")
    }
    base_ref = frame_base if frame_base is not None else spec.frame_base
    base_module, _, base_class = (base_ref or "").partition(":")
    dispatch_frame = by_name.get(spec.server_decodes) if spec.server_decodes else None
    if dispatch_frame is None or dispatch_frame.dispatch is None:
        dispatch_frame = next((f for f in frames if f.dispatch is not None), None)
    spec_file = PurePath(spec.source_file).name
    wire_externs = wire_extern_views(spec)
    return {
        "spec": spec,
        "protocol": spec.name,
        "spec_file": spec_file,
        "spec_sha256": spec.source_sha256,
        "version": __version__,
        "header_lines": [
            f"Generated by protogen {__version__} from {spec_file} - do not edit.",
            f"spec sha256: {spec.source_sha256}",
        ],
        "package": package,
        "modules": modules,
        "qualified": {kind: prefix + module for kind, module in modules.items()},
        "enums": list(enums.values()),
        "frames": frames,
        "frame_by_name": by_name,
        "server_decodes": by_name.get(spec.server_decodes),
        "server_encodes": by_name.get(spec.server_encodes),
        "dispatch_frame": dispatch_frame,
        "transports": list(spec.transports),
        "frame_base_module": base_module or None,
        "frame_base_class": base_class or None,
        "handler_base": spec.handler_base,
        "structs": structs,
        "struct_strategies": struct_strategies,
        "frame_strategies": frame_strategies,
        "externs": [
            (e.module, e.attribute, extern_const(e.name)) for e in spec.externs
        ],
        "wire_externs": wire_externs,
        "wire_by_const": {w.const: w for w in wire_externs},
        "struct_consts": [(name, fmt) for fmt, name in consts.structs.items()],
        "regex_consts": list(consts.regexes.items()),
        "uses_general": bool(structs) or any(f.general for f in frames),
        "uses_any": any(s.context for s in structs)
        or any(f.body_seq is not None and f.body_seq.origin for f in frames),
        "uses_checksums": any(f.checksums for f in frames),
        "uses_regex": consts.uses_regex
        or any(f.kind in ("delimited", "decimal", "array", "composite") for f in frames),
        "uses_wire": consts.uses_wire
        or any(
            f.kind == "varint"
            or any(c.checksum_function.startswith("wire.") for c in f.checksums)
            for f in frames
        ),
        "camel": camel_case,
        "phased": phase_views(spec),
    }
