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

from . import models as ir
from ._version import __version__
from .render import camel_case, py_literal, snake_case

# Locals the generated decode/encode functions use themselves; a field with one
# of these names gets a trailing underscore as its local variable.
_RESERVED_LOCALS = frozenset(
    (
        "data start end self frame out buf base body_end frame_len "
        "length_value header trailer value limit match struct zlib wire enum "
        "re exc size declared region count varint available content_end scan_from "
        "head body "
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

    @property
    def user(self) -> bool:
        return self.role == "user"

    @property
    def validated(self) -> bool:
        return (
            self.const is not None or self.allowed is not None or self.enum is not None
        )

    def pack_expr(self) -> str:
        """Expression packed into the Struct for this field on encode."""
        if self.role == "const":
            return py_literal(self._raw_const())
        if self.role == "checksum":
            return py_literal(bytes(self.size)) if self.carry else "0"
        if self.role == "bits":
            expr = self._join_bits()
        elif self.role == "length":
            expr = "length_value"
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
        terms = [
            f"{b.var} << {b.shift}" if b.shift else b.var
            for b in self.bit_fields
            if b.role == "user"
        ]
        if constant or not terms:
            terms.append(hex(constant))
        return " | ".join(terms)

    def unpack_bits(self) -> str:
        """Statement extracting a bit field from its (already unpacked) carrier."""
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

    @property
    def fields(self) -> list[FieldView]:
        return self.header + self.body + self.trailer

    @property
    def user_fields(self) -> list[FieldView]:
        return [f for f in self.fields if f.user]

    @property
    def computed_fields(self) -> list[FieldView]:
        return [f for f in self.fields if not f.user]

    @property
    def init_order(self) -> list[FieldView]:
        """__init__ parameter order: user fields, then computed ones (defaulted)."""
        return self.user_fields + self.computed_fields

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
    def validated_trailer(self) -> list[FieldView]:
        return [f for f in self.trailer if f.validated]

    @property
    def fixed_body_size(self) -> int:
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
    return FieldView(
        name=bit.name,
        var=local_name(bit.name),
        section=section,
        annotation=bit.enum or "int",
        role="const" if bit.const is not None else "user",
        default=py_literal(bit.const) if bit.const is not None else None,
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


def frame_view(frame: ir.FrameDef, enums: dict[str, EnumView]) -> FrameView:
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
    size_of = {b.size_field: local_name(b.name) for b in frame.body if b.size_field}
    view.header = _header_views(frame.header, enums, size_of, "header", f"_{upper}")
    view.trailer = _header_views(frame.trailer, enums, size_of, "trailer", f"_{upper}")
    view.header_struct = _struct_group(
        [v for v in view.header if not v.bits], f"_{upper}_HEADER"
    )
    view.trailer_struct = _struct_group(
        [v for v in view.trailer if not v.bits], f"_{upper}_TRAILER"
    )
    body = list(frame.body)
    if not body and framing.kind in ("delimited", "decimal"):
        body = [ir.BodyField(SYNTHETIC_PAYLOAD, frame.location, rest=True)]
    by_name = {hv.name: hv for hv in view.header + view.trailer}
    for bf in body:
        view.body.append(
            FieldView(
                name=bf.name,
                var=local_name(bf.name),
                section="body",
                annotation="bytes",
                role="user",
                size_field=by_name[bf.size_field].var if bf.size_field else None,
                fixed_size=bf.size,
                rest=bf.rest,
            )
        )
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
    if frame.dispatch:
        view.dispatch = by_name[frame.dispatch]
        if frame.dispatch_allows_unknown:
            view.dispatch.enum_open = True
            view.dispatch.annotation += " | int"
    return view


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
    frames = [frame_view(f, enums) for f in spec.frames]
    by_name = {f.name: f for f in frames}
    prefix = f"{package}." if package else ""
    modules = {
        kind: f"{spec.name}_{kind}" for kind in ("codec", "handler", "server", "client")
    }
    base_ref = frame_base if frame_base is not None else spec.frame_base
    base_module, _, base_class = (base_ref or "").partition(":")
    dispatch_frame = by_name.get(spec.server_decodes) if spec.server_decodes else None
    if dispatch_frame is None or dispatch_frame.dispatch is None:
        dispatch_frame = next((f for f in frames if f.dispatch is not None), None)
    spec_file = PurePath(spec.source_file).name
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
        "uses_checksums": any(f.checksums for f in frames),
        "uses_regex": any(
            f.kind in ("delimited", "decimal", "composite") for f in frames
        ),
        "uses_wire": any(
            f.kind == "varint"
            or any(c.checksum_function.startswith("wire.") for c in f.checksums)
            for f in frames
        ),
        "camel": camel_case,
    }
