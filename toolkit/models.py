"""The intermediate representation (IR) between the DSL parser and the renderer.

`parser.py` turns a spec into these validated, immutable dataclasses; `render.py`
hands them to the Jinja2 templates. Nothing here knows about Lark or Jinja2.

All offsets are byte offsets from the start of the frame on the wire.
"""

from __future__ import annotations

import enum
import dataclasses
from dataclasses import dataclass
from typing import Literal, Union


class ByteOrder(str, enum.Enum):
    BIG = "big"
    LITTLE = "little"

    @property
    def struct_prefix(self) -> str:
        return ">" if self is ByteOrder.BIG else "<"


@dataclass(frozen=True)
class Location:
    """Where a construct stands in its spec file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


_STRUCT_CODES = {
    ("uint", 1): "B",
    ("uint", 2): "H",
    ("uint", 4): "I",
    ("uint", 8): "Q",
    ("int", 1): "b",
    ("int", 2): "h",
    ("int", 4): "i",
    ("int", 8): "q",
    ("float", 4): "f",
    ("float", 8): "d",
}


@dataclass(frozen=True)
class ScalarType:
    """An integer (1-8 bytes, any width) or a float (4 or 8 bytes)."""

    kind: Literal["uint", "int", "float"]
    size: int
    order: ByteOrder = ByteOrder.BIG

    @property
    def struct_code(self) -> str | None:
        """The `struct` code, or None for widths struct lacks (3, 5, 6, 7 bytes)."""
        return _STRUCT_CODES.get((self.kind, self.size))

    @property
    def python_type(self) -> str:
        return "float" if self.kind == "float" else "int"

    @property
    def min_value(self) -> int:
        return -(1 << (8 * self.size - 1)) if self.kind == "int" else 0

    @property
    def max_value(self) -> int:
        bits = 8 * self.size
        return (1 << (bits - 1)) - 1 if self.kind == "int" else (1 << bits) - 1


@dataclass(frozen=True)
class BytesType:
    """A fixed-size byte string inside a header."""

    size: int

    @property
    def python_type(self) -> str:
        return "bytes"


FieldType = Union[ScalarType, BytesType]


@dataclass(frozen=True)
class EnumMember:
    name: str
    value: int
    location: Location


@dataclass(frozen=True)
class EnumDef:
    name: str
    base: ScalarType
    members: tuple[EnumMember, ...]
    location: Location


ChecksumAlgorithm = Literal["crc32", "crc16_ccitt", "adler32"]


@dataclass(frozen=True)
class Checksum:
    """A checksum over frame bytes [start, end).

    `end` may be negative (relative to the end of the frame, as in Python slices)
    or None (the end of the frame). The checksum field itself must lie outside
    the range.
    """

    algorithm: ChecksumAlgorithm
    start: int
    end: int | None


@dataclass(frozen=True)
class BitField:
    """A sub-field of an unsigned integer header field (its carrier).

    Bits are declared most significant first; `shift` is the position of the
    lowest bit (value = carrier >> shift & (2**bits - 1)). `enum` names an
    EnumDef whose values all fit in `bits`; `const` and `allowed` work as on
    header fields. Padding (`_: N`) is not a BitField: its bits are zero on
    encode and ignored on decode.
    """

    name: str
    bits: int
    shift: int
    location: Location
    enum: str | None = None
    const: int | None = None
    allowed: tuple[int, ...] | None = None

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    @property
    def max_value(self) -> int:
        return self.mask

    @property
    def is_user_supplied(self) -> bool:
        return self.const is None


@dataclass(frozen=True)
class HeaderField:
    """A fixed-size field of the header (or trailer).

    `const` makes it a magic value checked on decode and filled on encode;
    `allowed` restricts it to a set; `enum` names an EnumDef whose base type is
    `type`; `checksum` makes it computed on encode and verified on decode;
    `computed_length` marks the field that carries the frame's length (filled on
    encode, never passed by the user). `size_of` names the body field whose
    length this field holds (`key: bytes[key_length]`); the encoder may compute
    it from that field (`is_user_supplied` does not consider it).
    """

    name: str
    type: FieldType
    offset: int
    location: Location
    enum: str | None = None
    const: int | bytes | None = None
    allowed: tuple[int, ...] | None = None
    checksum: Checksum | None = None
    computed_length: bool = False
    size_of: str | None = None  # the body field whose length this field carries
    bits: tuple[BitField, ...] = ()  # sub-fields, most significant first

    @property
    def size(self) -> int:
        return self.type.size

    @property
    def is_user_supplied(self) -> bool:
        """False for fields the encoder fills itself (const, length, checksum, bits)."""
        return (
            self.const is None
            and self.checksum is None
            and not self.computed_length
            and not self.bits
        )


@dataclass(frozen=True)
class BodyField:
    """A variable-size byte field of the body, in wire order.

    Exactly one of: `size_field` (a header field holds its length), `size` (a
    constant), `rest` (everything up to the trailer; at most one, and last).
    """

    name: str
    location: Location
    size_field: str | None = None
    size: int | None = None
    rest: bool = False


# --- framing kinds -----------------------------------------------------------

LengthCounts = Literal["body", "frame", "after_field"]


@dataclass(frozen=True)
class LengthFraming:
    """Netty's LengthFieldBasedFrameDecoder, in full.

    The length field is the header field `field` (its offset, size and byte
    order come from it). frame_length = value + adjustment + base, where base is
    the header size ("body": the value counts the bytes after the header),
    0 ("frame": the value counts the whole frame), or the end offset of the
    length field ("after_field": Netty's raw semantics). `strip` leading bytes
    are dropped from the delivered frame's raw bytes. `stream_only`: the length
    field (then the header's first field) exists only on stream transports; a
    datagram holds the frame without it (DNS over TCP and UDP).
    """

    kind: Literal["length"] = dataclasses.field(default="length", init=False)
    field: str = ""
    offset: int = 0
    size: int = 4
    order: ByteOrder = ByteOrder.BIG
    adjustment: int = 0
    counts: LengthCounts = "body"
    strip: int = 0
    stream_only: bool = False


@dataclass(frozen=True)
class VarintFraming:
    """A varint length at `offset` (right after the fixed header fields).

    "leb128": protobuf's base-128, at most 10 bytes. "mqtt": MQTT's remaining
    length, at most 4 bytes. The value counts the bytes after the varint.
    """

    kind: Literal["varint"] = dataclasses.field(default="varint", init=False)
    style: Literal["leb128", "mqtt"] = "leb128"
    offset: int = 0

    @property
    def max_bytes(self) -> int:
        return 4 if self.style == "mqtt" else 10


@dataclass(frozen=True)
class DecimalFraming:
    """An ASCII-decimal length, a separator, the payload, a terminator (netstrings)."""

    kind: Literal["decimal"] = dataclasses.field(default="decimal", init=False)
    separator: bytes = b":"
    terminator: bytes = b","


@dataclass(frozen=True)
class DelimitedFraming:
    """Frames end at any of `delimiters`; the shortest frame wins."""

    kind: Literal["delimited"] = dataclasses.field(default="delimited", init=False)
    delimiters: tuple[bytes, ...] = (b"\n",)
    strip: bool = True


@dataclass(frozen=True)
class FixedFraming:
    kind: Literal["fixed"] = dataclasses.field(default="fixed", init=False)
    size: int = 0


@dataclass(frozen=True)
class CompositeFraming:
    """A delimited head, then a body whose length the head gives.

    The length comes from a header line `length_header: N` (matched
    case-insensitively, as HTTP's Content-Length) or from the whitespace-separated
    token `length_token` (0-based) of the head's first line (memcached text
    protocol), the latter optionally only when the first token is one of
    `token_commands`. A head without the field has no body. `body_trailer`
    follows the body on the wire (memcached's "\\r\\n") and is checked, not
    delivered.
    """

    kind: Literal["composite"] = dataclasses.field(default="composite", init=False)
    head_delimiter: bytes = b"\r\n\r\n"
    length_header: str | None = None
    length_token: int | None = None
    token_commands: tuple[bytes, ...] | None = None
    body_trailer: bytes = b""


Framing = Union[
    LengthFraming,
    VarintFraming,
    DecimalFraming,
    DelimitedFraming,
    FixedFraming,
    CompositeFraming,
]

DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB


@dataclass(frozen=True)
class FrameDef:
    """One frame codec: framing, typed header, body fields, optional trailer."""

    name: str
    framing: Framing
    location: Location
    header: tuple[HeaderField, ...] = ()
    header_size: int = 0
    body: tuple[BodyField, ...] = ()
    trailer: tuple[HeaderField, ...] = ()  # offsets relative to the trailer start
    trailer_size: int = 0
    max_frame: int = DEFAULT_MAX_FRAME
    dispatch: str | None = None  # name of an enum-typed header field or bit field
    # `dispatch on F allow_unknown`: values naming no member decode as plain ints
    # (routed to the handler's on_unknown_F) instead of raising InvalidValue.
    dispatch_allows_unknown: bool = False

    def field(self, name: str) -> HeaderField | None:
        for header_field in self.header + self.trailer:
            if header_field.name == name:
                return header_field
        return None

    def bit_field(self, name: str) -> BitField | None:
        """The bit field `name` of any carrier in the header or trailer."""
        for header_field in self.header + self.trailer:
            for bit_field in header_field.bits:
                if bit_field.name == name:
                    return bit_field
        return None

    def dispatch_field(self) -> HeaderField | BitField | None:
        """The enum-typed header field or bit field `dispatch on` names."""
        if self.dispatch is None:
            return None
        return self.field(self.dispatch) or self.bit_field(self.dispatch)


Transport = Literal["tcp", "udp"]


@dataclass(frozen=True)
class ProtocolSpec:
    """A whole validated spec file."""

    name: str
    source_file: str
    source_sha256: str
    frames: tuple[FrameDef, ...]
    enums: tuple[EnumDef, ...] = ()
    transports: tuple[Transport, ...] = ("tcp",)
    server_decodes: str = ""  # frame name the server decodes (requests)
    server_encodes: str = ""  # frame name the server encodes (responses)
    handler_base: str | None = None  # "module:Class" or None for the default
    frame_base: str | None = None

    def frame(self, name: str) -> FrameDef:
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise KeyError(name)

    def enum(self, name: str) -> EnumDef:
        for enum_def in self.enums:
            if enum_def.name == name:
                return enum_def
        raise KeyError(name)
