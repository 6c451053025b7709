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


# --- expressions ----------------------------------------------------------------
#
# Sizes, counts, conditions and constraints are small integer expressions over
# the fields decoded before them (and a structure's parameters). Names are
# resolved by the validator: a `Ref` path is a field (`qos`), a field of a
# structure-typed field (`hdr.flags`) or of an array element (`it.length`).


@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Ref:
    path: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path[0]


@dataclass(frozen=True)
class Member:
    """`PacketType.publish`: an enum member, as its integer value."""

    enum: str
    member: str
    value: int


@dataclass(frozen=True)
class Unary:
    op: Literal["-", "~", "not"]
    operand: Expr


@dataclass(frozen=True)
class Binary:
    """Arithmetic (`/` is integer division), bitwise, comparison, `and`, `or`."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class InSet:
    operand: Expr
    values: tuple[Expr, ...]


@dataclass(frozen=True)
class Length:
    """`len(x)`: the length of a bytes, string or array field."""

    operand: Ref


Expr = Union[Const, Ref, Member, Unary, Binary, InSet, Length]


# --- body and structure types ----------------------------------------------------


@dataclass(frozen=True)
class VarintType:
    """`varint` (LEB128, at most 10 bytes, below 2**64), `zigzag` (LEB128 of the
    zigzag-coded signed value, protobuf's sint64) or `mqtt_varint` (at most 4 bytes)."""

    style: Literal["varint", "zigzag", "mqtt_varint"]

    @property
    def python_type(self) -> str:
        return "int"

    @property
    def max_bytes(self) -> int:
        return 4 if self.style == "mqtt_varint" else 10


PrefixType = Union[ScalarType, VarintType]


@dataclass(frozen=True)
class Extent:
    """How far a byte string, a text or an array extends.

    - "count": `count` bytes (byte strings, texts) or elements (arrays)
    - "prefix": an integer of type `prefix` just before the value holds that count
    - "rest": up to the end of the enclosing frame body, structure or region
    - "terminator": bytes up to `terminator` (consumed, not part of the value)
    - "until": array elements up to and including the first for which `until`
      (over the element, named `it`) holds

    `nullable` ("count" and "prefix"): a count of -1 means the value is None.
    """

    kind: Literal["count", "prefix", "rest", "terminator", "until"]
    count: Expr | None = None
    prefix: PrefixType | None = None
    terminator: bytes | None = None
    until: Expr | None = None
    nullable: bool = False


@dataclass(frozen=True)
class BlobType:
    """`bytes[...]` (Python bytes) or `string[...]` (UTF-8 text, Python str)."""

    text: bool
    extent: Extent

    @property
    def python_type(self) -> str:
        return "str" if self.text else "bytes"


@dataclass(frozen=True)
class EnumType:
    """An enum as an array element or a union arm (fields carry `enum` instead)."""

    name: str
    base: ScalarType


@dataclass(frozen=True)
class StructRef:
    name: str
    args: tuple[Expr, ...] = ()


@dataclass(frozen=True)
class ExternRef:
    name: str


@dataclass(frozen=True)
class ArrayType:
    element: ValueType
    extent: Extent


@dataclass(frozen=True)
class UnionArm:
    values: tuple[int, ...]  # discriminant values choosing this arm
    type: ValueType


@dataclass(frozen=True)
class UnionType:
    """`switch EXPR { V1, V2 => T, ..., default => D }`; without a default, other
    values are an InvalidValue."""

    discriminant: Expr
    arms: tuple[UnionArm, ...]
    default: ValueType | None = None

    @property
    def types(self) -> tuple[ValueType, ...]:
        arms = tuple(arm.type for arm in self.arms)
        return arms + ((self.default,) if self.default is not None else ())


ValueType = Union[
    ScalarType,
    BytesType,
    VarintType,
    BlobType,
    EnumType,
    StructRef,
    ExternRef,
    ArrayType,
    UnionType,
]


@dataclass(frozen=True)
class EscapeArm:
    """`126: u16` in `escape {126: u16, 127: u64}`: the code, and the wider
    integer that follows the field (or its carrier) and holds the value."""

    code: int
    type: ScalarType


DerivedKind = Literal["length", "size", "count", "region", "presence"]


@dataclass(frozen=True)
class Derived:
    """A field the encoder computes from other values (never an __init__ argument).

    - "length": the framing length (also `HeaderField.computed_length`)
    - "size": the byte size of field `of[0]` (`bytes[n]`, `string[n]`)
    - "count": the number of elements of array `of[0]`
    - "region": the encoded size of `of[0]` (`bytes[n] as T`)
    - "presence": 1 when the fields `of` are present (`x: T if flag`), else 0
    """

    kind: DerivedKind
    of: tuple[str, ...] = ()


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
    escape: tuple[EscapeArm, ...] = ()  # the wider integers after the carrier
    derived: Derived | None = None  # e.g. a presence flag the encoder sets

    @property
    def mask(self) -> int:
        return (1 << self.bits) - 1

    @property
    def max_value(self) -> int:
        return self.mask

    @property
    def is_user_supplied(self) -> bool:
        return self.const is None and self.derived is None


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
    escape: tuple[EscapeArm, ...] = ()  # the last header field only
    derived: Derived | None = None  # sizes, counts, presence flags, the length
    where: Expr | None = None  # checked on decode and encode

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
            and self.derived is None
        )


@dataclass(frozen=True)
class Field:
    """A field of a frame body or a structure, in wire order.

    `type` says how it travels; `enum` (an integer field whose values are the
    enum's members), `const`, `allowed` and `where` restrict its values;
    `condition` makes it present only when the expression holds (else None);
    `bits` makes it a carrier of bit fields; `escape` lets an integer say that a
    wider one follows; `region` (`bytes[n] as T`) decodes `type` within that
    many bytes; `xor` unmasks a byte string with a key (WebSocket masking).
    """

    name: str
    type: ValueType
    location: Location
    enum: str | None = None
    const: int | bytes | str | None = None
    allowed: tuple[int, ...] | None = None
    where: Expr | None = None
    condition: Expr | None = None
    bits: tuple[BitField, ...] = ()
    escape: tuple[EscapeArm, ...] = ()
    region: Extent | None = None
    xor: Expr | None = None
    derived: Derived | None = None

    # The body fields of earlier versions: byte strings only.
    @property
    def size_field(self) -> str | None:
        """The field holding this byte string's size (`bytes[n]`), if any."""
        ftype = self.type
        if isinstance(ftype, BlobType) and not ftype.text and self.region is None:
            count = ftype.extent.count
            if isinstance(count, Ref) and len(count.path) == 1:
                return count.name
        return None

    @property
    def size(self) -> int | None:
        """A constant byte size (`bytes[4]`), if any."""
        ftype = self.type
        if isinstance(ftype, BlobType) and not ftype.text and self.region is None:
            count = ftype.extent.count
            if isinstance(count, Const) and not ftype.extent.nullable:
                return count.value
        return None

    @property
    def rest(self) -> bool:
        """True for `bytes[rest]`."""
        ftype = self.type
        return (
            isinstance(ftype, BlobType)
            and not ftype.text
            and self.region is None
            and ftype.extent.kind == "rest"
        )

    @property
    def is_plain_bytes(self) -> bool:
        """A byte string sized by a constant, a field or `rest`, with nothing else."""
        return (
            (self.size_field is not None or self.size is not None or self.rest)
            and isinstance(self.type, BlobType)
            and not self.type.extent.nullable
            and self.condition is None
            and self.where is None
            and self.xor is None
            and self.const is None
        )

    @property
    def is_user_supplied(self) -> bool:
        return self.const is None and self.derived is None and not self.bits


def BodyField(  # noqa: N802 - the constructor of earlier versions
    name: str,
    location: Location,
    size_field: str | None = None,
    size: int | None = None,
    rest: bool = False,
) -> Field:
    """A byte string body field: sized by field `size_field`, `size` bytes, or `rest`."""
    if size_field is not None:
        extent = Extent("count", count=Ref((size_field,)))
    elif size is not None:
        extent = Extent("count", count=Const(size))
    else:
        assert rest, "a body field needs size_field, size or rest"
        extent = Extent("rest")
    return Field(name, BlobType(False, extent), location)


@dataclass(frozen=True)
class Param:
    """A structure parameter: `struct Publish(qos: u8)`."""

    name: str
    type: ScalarType
    location: Location
    enum: str | None = None


@dataclass(frozen=True)
class StructDef:
    """A named sequence of fields, usable as a field type anywhere."""

    name: str
    fields: tuple[Field, ...]
    location: Location
    params: tuple[Param, ...] = ()

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class ValueArm:
    """`0 => bytes[length]` or `3 => u8` in a value union, chosen by `tag`.

    `scalar` None: the value is the bytes the other bits size. Else an
    unsigned integer follows the head, and the value is the head's other bits
    then that integer's, as one int (a DNS pointer's 14-bit offset).
    """

    tag: int
    scalar: ScalarType | None = None


@dataclass(frozen=True)
class ValueUnionDef:
    """`union Label : u8 bits { kind: 2, length: 6 } switch kind { ... }`.

    A tiny union whose elements decode as plain values (bytes or int), not
    objects: a head integer of two bit fields, the tag (`kind`) choosing the arm
    and the other bits (`length`), then the arm. Used as the element of an
    `[until ...]` array, where `it.kind` and `it.length` name the head's bits.
    """

    name: str
    head: ScalarType
    tag: str
    tag_shift: int
    tag_bits: int
    other: str
    other_shift: int
    other_bits: int
    arms: tuple[ValueArm, ...]
    location: Location

    @property
    def bytes_arm(self) -> ValueArm | None:
        return next((arm for arm in self.arms if arm.scalar is None), None)

    @property
    def int_arm(self) -> ValueArm | None:
        return next((arm for arm in self.arms if arm.scalar is not None), None)


@dataclass(frozen=True)
class ValueArray:
    """`Label[until it.kind == 3 or it.length == 0]` over a value union: a list
    of bytes and ints, up to and including the first element matching `until`
    (over `it`; `it.TAG`, `it.OTHER` are the element's head bits)."""

    union: str
    until: Expr


@dataclass(frozen=True)
class ExternDef:
    """A hand-written field type: `extern DomainName: str = "dns_names:domain_name"`.

    `module:attribute` names an object with `decode(data, pos, end, origin) ->
    (value, pos)`, `encode(value, out, origin, state) -> None` and
    `strategy() -> hypothesis strategy` (docs/dsl.md, "Plug-in field types").

    With `wire` (`... from Label[until ...]`) the spec describes the bytes: the
    generated codec decodes the value array and the object's `resolve(items,
    offset, state)` makes the value of it; on encode its `compress(value,
    offset, state)` gives the items the codec writes.
    """

    name: str
    python_type: str
    module: str
    attribute: str
    location: Location
    wire: ValueArray | None = None


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
    # `length(payload_length + 4 * masked)`: the value is this expression of
    # header fields; `field` is the one the encoder solves it for.
    expr: Expr | None = None


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
    marker: bytes = b""  # before the length (RESP's `$`)


@dataclass(frozen=True)
class ArrayFraming:
    """A counted array as one frame: the marker, an ASCII-decimal count, the
    separator; then `count` elements, each its marker, an ASCII-decimal length,
    its separator, that many bytes, its terminator (a RESP array of bulk
    strings). The frame ends where the last element ends."""

    kind: Literal["array"] = dataclasses.field(default="array", init=False)
    marker: bytes = b"*"
    separator: bytes = b"\r\n"
    max_count: int | None = None
    item_marker: bytes = b"$"
    item_separator: bytes = b"\r\n"
    item_terminator: bytes = b"\r\n"

    @property
    def min_item(self) -> int:
        """The bytes of the shortest element (empty: one digit, no bytes)."""
        return (
            len(self.item_marker)
            + 1
            + len(self.item_separator)
            + len(self.item_terminator)
        )

    @property
    def next_head(self) -> bytes:
        """A bytes regex: an element's terminator, then the next element's marker,
        length (group 1, no leading zeros) and separator."""
        import re

        return (
            re.escape(self.item_terminator + self.item_marker)
            + rb"([1-9][0-9]*|0)"
            + re.escape(self.item_separator)
        )

    @property
    def short_item(self) -> bytes:
        """A bytes regex of one element whose value holds no byte of the
        terminator's first: its length (group 1) and its value (group 2)."""
        import re

        first = re.escape(self.item_terminator[:1])
        return (
            re.escape(self.item_marker)
            + rb"([1-9][0-9]*|0)"
            + re.escape(self.item_separator)
            + rb"([^"
            + first
            + rb"]*)"
            + re.escape(self.item_terminator)
        )

    def short_frame(self, count: int) -> bytes:
        """A bytes regex of a whole frame of `count` (one digit) short elements."""
        import re

        return (
            re.escape(self.marker)
            + b"%d" % count
            + re.escape(self.separator)
            + self.short_item * count
        )

    @property
    def checked_item(self) -> bytes:
        """A bytes regex of one element of at most 99 bytes, none the terminator's
        first, whose length the regex itself checks: after each length's digits
        and separator, a lookahead that exactly that many such bytes follow, then
        that first byte. Its value is group 1 (its length, not captured, needs no
        conversion or comparison after the match).

        The lengths are a trie (a digit, then the separator or a second digit) so
        that the regex engine, which skips an alternative whose first literal does
        not match, tries at most 21 of them. The separator holds no digit, so
        the alternatives exclude each other and nothing backtracks."""
        import re

        first = re.escape(self.item_terminator[:1])
        separator = re.escape(self.item_separator)

        def exactly(length: int) -> bytes:
            return separator + b"(?=[^" + first + b"]{%d}" % length + first + b")"

        lengths = [b"0" + exactly(0)]
        for tens in range(1, 10):
            ones = [exactly(tens)] + [
                b"%d" % one + exactly(10 * tens + one) for one in range(10)
            ]
            lengths.append(b"%d(?:" % tens + b"|".join(ones) + b")")
        return (
            re.escape(self.item_marker)
            + b"(?:"
            + b"|".join(lengths)
            + b")([^"
            + first
            + b"]*+)"
            + re.escape(self.item_terminator)
        )

    def checked_frame(self, count: int) -> bytes:
        """A bytes regex of a whole frame of `count` (one digit) elements that
        `checked_item` matches: its groups are the frame's values."""
        import re

        return (
            re.escape(self.marker)
            + b"%d" % count
            + re.escape(self.separator)
            + self.checked_item * count
        )

    @property
    def item_format(self) -> bytes:
        """A %-format of one element (its length, its bytes)."""

        def escaped(text: bytes) -> bytes:
            return text.replace(b"%", b"%%")

        return (
            escaped(self.item_marker)
            + b"%d"
            + escaped(self.item_separator)
            + b"%s"
            + escaped(self.item_terminator)
        )


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
    ArrayFraming,
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
    header_size: int = 0  # the fixed part; an escape-coded last field adds more
    body: tuple[Field, ...] = ()
    trailer: tuple[HeaderField, ...] = ()  # offsets relative to the trailer start
    trailer_size: int = 0
    max_frame: int = DEFAULT_MAX_FRAME
    dispatch: str | None = None  # name of an enum-typed header field or bit field
    # `dispatch on F allow_unknown`: values naming no member decode as plain ints
    # (routed to the handler's on_unknown_F) instead of raising InvalidValue.
    dispatch_allows_unknown: bool = False
    where: tuple[Expr, ...] = ()  # `where EXPR` statements, checked after decoding

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


@dataclass(frozen=True)
class PhaseArm:
    """A frame a phase accepts: chosen when the unread bytes start with one of
    `prefixes` (none: the phase's default frame); then the connection moves to
    `then`."""

    frame: str
    prefixes: tuple[bytes, ...] = ()
    then: str | None = None


@dataclass(frozen=True)
class Phase:
    """A state of a connection: the frames it accepts, prefixed ones first."""

    name: str
    arms: tuple[PhaseArm, ...]
    location: Location

    @property
    def default(self) -> PhaseArm | None:
        return next((arm for arm in self.arms if not arm.prefixes), None)

    @property
    def prefixed(self) -> tuple[PhaseArm, ...]:
        return tuple(arm for arm in self.arms if arm.prefixes)


Transport = Literal["tcp", "udp"]


@dataclass(frozen=True)
class ProtocolSpec:
    """A whole validated spec file."""

    name: str
    source_file: str
    source_sha256: str
    frames: tuple[FrameDef, ...]
    enums: tuple[EnumDef, ...] = ()
    structs: tuple[StructDef, ...] = ()
    externs: tuple[ExternDef, ...] = ()
    unions: tuple[ValueUnionDef, ...] = ()
    transports: tuple[Transport, ...] = ("tcp",)
    server_decodes: str = ""  # frame name the server decodes (requests)
    server_encodes: str = ""  # frame name the server encodes (responses)
    handler_base: str | None = None  # "module:Class" or None for the default
    frame_base: str | None = None
    # The phases of a connection, the one it starts in first; none: every
    # connection decodes `server_decodes` from start to end.
    phases: tuple[Phase, ...] = ()

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

    def struct(self, name: str) -> StructDef:
        for struct_def in self.structs:
            if struct_def.name == name:
                return struct_def
        raise KeyError(name)

    def union(self, name: str) -> ValueUnionDef:
        for union_def in self.unions:
            if union_def.name == name:
                return union_def
        raise KeyError(name)

    def extern(self, name: str) -> ExternDef:
        for extern_def in self.externs:
            if extern_def.name == name:
                return extern_def
        raise KeyError(name)
