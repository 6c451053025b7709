"""View models of field sequences: what the generated decoder and encoder do.

A frame body or a structure becomes a list of steps in wire order. A *run* is
consecutive always-present fixed-size fields read with one precompiled
`struct.Struct` (one bounds check, one `unpack_from`); every other field is a
*field step* holding a *value view* (scalar, varint, byte string, structure,
plug-in, array, union), optionally wrapped by a condition, a byte region
(`bytes[n] as T`) or an escape (a wider integer after the field).

Every Python fragment the templates print is computed here: local variable
names (unique per generated function), expressions, error messages with the
field path (`Publish.topic: 300-byte string overruns the frame`), the Struct
constants. Templates only choose the statements for each kind of view
(`_decode_value.j2`, `_encode_value.j2`).
"""

from __future__ import annotations

import builtins
import itertools
import keyword
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import expressions as ex
from . import models as ir
from . import typeinfo
from .render import py_literal, snake_case

# Names every generated decode/encode function uses for itself.
FUNCTION_LOCALS = frozenset(
    "data pos end start origin state out obj frame self struct wire re zlib enum "
    "body body_end header trailer value exc match".split()
)

_CODE_TOKENS = {
    "B": "U8",
    "b": "I8",
    "H": "U16",
    "h": "I16",
    "I": "U32",
    "i": "I32",
    "Q": "U64",
    "q": "I64",
    "f": "F32",
    "d": "F64",
}
_STRUCT_CODES = {
    ("uint", 1): "B",
    ("int", 1): "b",
    ("uint", 2): "H",
    ("int", 2): "h",
    ("uint", 4): "I",
    ("int", 4): "i",
    ("uint", 8): "Q",
    ("int", 8): "q",
    ("float", 4): "f",
    ("float", 8): "d",
}


# --- names ------------------------------------------------------------------------


class Locals:
    """The local variable names of one generated function, all distinct."""

    def __init__(self, taken: Iterable[str] = FUNCTION_LOCALS) -> None:
        self.taken = set(taken)

    def claim(self, name: str) -> str:
        base = name
        if keyword.iskeyword(base) or hasattr(builtins, base) or base in self.taken:
            base = name + "_"
        candidate = base
        number = 2
        while candidate in self.taken:
            candidate = f"{base}{number}"
            number += 1
        self.taken.add(candidate)
        return candidate

    def temp(self, base: str) -> str:
        return self.claim(base)


class Consts:
    """Module-level constants of the codec, shared by every frame and structure."""

    def __init__(self) -> None:
        self.structs: dict[str, str] = {}  # format -> constant name
        self.regexes: dict[bytes, str] = {}
        self.uses_wire = False
        self.uses_struct_module = False  # struct.unpack_from with a runtime format
        self.uses_regex = False

    def struct(self, fmt: str, owner: str = "", first: str = "") -> str:
        if fmt in self.structs:
            return self.structs[fmt]
        codes = fmt[1:]
        tokens = _format_tokens(codes)
        order = "BE" if fmt[0] == ">" else "LE"
        if tokens is not None and len(tokens) <= 4:
            name = f"_{order}_{'_'.join(tokens)}" if tokens else f"_{order}_EMPTY"
        else:
            name = f"_{snake_case(owner).upper()}_{first.upper()}_{order}"
        taken = set(self.structs.values())
        candidate, number = name, 2
        while candidate in taken:
            candidate = f"{name}_{number}"
            number += 1
        self.structs[fmt] = candidate
        return candidate

    def regex(self, literal: bytes) -> str:
        self.uses_regex = True
        if literal not in self.regexes:
            self.regexes[literal] = f"_TERMINATOR_{len(self.regexes) + 1}"
        return self.regexes[literal]


def _format_tokens(codes: str) -> list[str] | None:
    tokens: list[str] = []
    number = ""
    for char in codes:
        if char.isdigit():
            number += char
        elif char == "s":
            tokens.append(f"B{number or 1}")
            number = ""
        elif char == "x":
            tokens.append(f"PAD{number or 1}")
            number = ""
        elif char in _CODE_TOKENS and not number:
            tokens.append(_CODE_TOKENS[char])
        else:
            return None
    return tokens


def scalar_format(scalar: ir.ScalarType) -> str | None:
    code = _STRUCT_CODES.get((scalar.kind, scalar.size))
    return None if code is None else scalar.order.struct_prefix + code


# --- value views --------------------------------------------------------------------
#
# Each view decodes one value into `target` (reading data[pos:end], advancing
# pos) and encodes the value held by `source` (appending to `out`).


class ValueEnd:
    """What every value view may be asked after decoding (set by the builder)."""

    last = False  # the frame body's last value, read to its end: no `pos = end`
    end_check = ""  # a frame's last union arm: the message when bytes are left
    # A fixed-size byte string that is all of its region: (region size variable,
    # message) - one comparison instead of two bounds checks.
    exact_region: tuple[str, str] | None = None


@dataclass
class EnumRef:
    name: str
    by_value: str  # module dict: wire value -> member
    open: bool = False  # values naming no member stay ints


@dataclass
class ScalarValue(ValueEnd):
    kind: str = field(default="scalar", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    size: int = 0
    read: str = ""  # expression reading the value at data[pos]
    write: str = ""  # expression of the bytes for `source`
    python: str = "int"
    enum: EnumRef | None = None
    raw: str = ""  # enums: the integer before it is looked up
    packer: str = ""  # "NAME.pack({})" or "{}.to_bytes(...)": write_expr fills it

    def write_expr(self, expr: str) -> str:
        return self.packer.replace("{}", f"({expr})")


@dataclass
class VarintValue(ValueEnd):
    kind: str = field(default="varint", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    style: str = "varint"
    max_bytes: int = 10
    python: str = "int"


@dataclass
class PrefixView:
    """A length (or count) prefix before a value."""

    varint: bool
    style: str = "varint"
    max_bytes: int = 10
    struct: str = ""
    size: int = 0
    signed: bool = False
    max_value: int = 0


@dataclass
class SizeView:
    """How a byte string, string, array or region knows its extent.

    kind: "count" (`expr`), "prefix", "rest", "terminator", "until".
    On encode: `derived` when the count is computed from this value (no check);
    otherwise `expr` is checked against the value's length.
    """

    kind: str
    var: str = ""  # the decoded count
    expr: str = ""
    expr_source: str = ""  # as the spec wrote it
    prefix: PrefixView | None = None
    nullable: bool = False
    terminator: bytes = b""
    regex: str = ""
    until: str = ""  # arrays: python expression over the element
    until_source: str = ""
    derived: bool = False
    signed: bool = True  # the count may be negative: the decoder checks it
    constant: bool = False  # a literal count: `var` is the number itself
    preread: bool = False  # the prefix was read by the run before the field


@dataclass
class BlobValue(ValueEnd):
    kind: str = field(default="blob", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    text: bool = False
    size: SizeView = field(default_factory=lambda: SizeView("rest"))
    stop: str = ""  # temp: end of the value
    encoded: str = ""  # temp (encode): the bytes of a text
    xor: str | None = None  # var of the key
    xor_optional: bool = False  # the key may be None (no masking)
    xor_size: str = ""  # temp: the masked bytes' count
    noun: str = "byte string"
    const: str | None = None  # a constant's literal (bytes or str)
    fixed_struct: str = ""  # a fixed-size byte string: read by one `Ns` unpack

    @property
    def python(self) -> str:
        return "str" if self.text else "bytes"


@dataclass
class StructValue(ValueEnd):
    kind: str = field(default="struct", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    name: str = ""
    decode: str = ""
    encode: str = ""
    args: list[str] = field(default_factory=list)
    context: bool = False  # passes origin (and state on encode): plug-ins inside

    @property
    def python(self) -> str:
        return self.name


@dataclass
class InlineStructValue(ValueEnd):
    """A structure decoded and encoded in place (see SpecViews.inlined)."""

    kind: str = field(default="inline", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    name: str = ""
    seq: Any = None  # SequenceView of its fields, with this function's names
    construct: str = ""  # the class call
    loads: list[tuple[str, str]] = field(default_factory=list)  # encode: (var, attribute)
    stores: list[tuple[str, str]] = field(default_factory=list)  # encode: computed ones

    @property
    def python(self) -> str:
        return self.name


@dataclass
class ExternValue(ValueEnd):
    kind: str = field(default="extern", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    const: str = ""
    python: str = ""
    wire: Any = None  # from a value array: a WireExternView, decoded inline


@dataclass
class ArrayValue(ValueEnd):
    kind: str = field(default="array", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    element: Any = None  # a value view decoding into `item`
    item: str = ""
    size: SizeView = field(default_factory=lambda: SizeView("rest"))
    min_element: int = 1
    bulk: str = ""  # fixed-size scalar elements: "u8" or a struct code
    list_call: str = ""  # structure elements: the function decoding them all
    bulk_order: str = ">"
    bulk_size: int = 0
    guard: bool = False  # elements that may take no bytes: check progress
    before: str = ""  # temp for the guard

    @property
    def python(self) -> str:
        return f"list[{self.element.python}]"


@dataclass
class UnionArmView:
    values: tuple[int, ...]
    value: Any
    condition: str  # python test of the discriminant
    check: str  # python type for isinstance on encode


@dataclass
class UnionValue(ValueEnd):
    kind: str = field(default="union", init=False)
    target: str = ""
    source: str = ""
    path: str = ""
    end: str = "end"
    discriminant: str = ""
    discriminant_source: str = ""
    arms: list[UnionArmView] = field(default_factory=list)
    default: Any = None
    default_check: str = ""
    expected: str = ""  # the arm values, for the error message
    python: str = ""
    exhaustive: bool = False  # the arms cover every value the discriminant can hold


@dataclass
class EscapeView:
    """`escape {126: u16, 127: u64}`: codes, each followed by a wider integer."""

    var: str
    path: str
    first_code: int
    arms: list[tuple[int, str, int, int]]  # code, struct, size, max value
    ext: str = ""  # temp (encode): the extension bytes
    code: str = ""  # temp (encode): the value written in place


# --- steps of a sequence ----------------------------------------------------------------


@dataclass
class RunMember:
    """A field (or bit field) read by a run: its variable and checks."""

    name: str
    var: str
    path: str
    const: str | None = None
    allowed: str | None = None
    allowed_text: str = ""
    enum: EnumRef | None = None
    where: str | None = None
    where_source: str = ""
    is_bytes: bool = False
    size: int = 0
    text: bool = False  # a fixed-size string: decoded after unpacking
    text_size: int = 0
    bits: int = 0
    shift: int = 0
    mask: int = 0
    user: bool = True  # encode: checked before packing
    carrier: bool = False  # carries bit fields (its value is their join)


@dataclass
class RunStep:
    kind: str = field(default="run", init=False)
    struct: str = ""
    size: int = 0
    targets: str = ""  # unpacking target list
    path: str = ""
    overrun: str = ""  # the message when the frame ends inside the run
    in_bounds: bool = False  # the frame length already guarantees its bytes
    format: str = ""  # the struct format of `struct`
    names: list[str] = field(default_factory=list)  # the variables it unpacks
    # Bytes after the run read along with it: the leading run of the union right
    # after it (see SequenceBuilder._merge_union_run). Checked and unpacked here.
    extra: int = 0
    preread: bool = False  # the run before the union unpacked this one's bytes
    byte_reads: list[tuple[str, int]] = field(default_factory=list)  # u8s: data[pos + i]
    end: str = "end"
    converts: list[str] = field(default_factory=list)  # statements after unpacking
    members: list[RunMember] = field(default_factory=list)
    pack: list[str] = field(default_factory=list)  # encode: one expression per code
    encode_struct: str = ""  # encode: without a length prefix read along on decode
    carriers: list[Any] = field(default_factory=list)  # FieldViews with constant bits
    patches: list[tuple[str, int]] = field(default_factory=list)  # (at var, offset)


@dataclass
class FieldStep:
    kind: str = field(default="field", init=False)
    name: str = ""
    var: str = ""
    path: str = ""
    end: str = "end"  # the sequence's end (a region has its own)
    annotation: str = ""
    nullable: bool = False
    value: Any = None
    condition: str | None = None
    condition_source: str = ""
    where: str | None = None
    where_source: str = ""
    const: str | None = None  # scalar constants checked after decoding
    allowed: str | None = None
    allowed_text: str = ""
    region: SizeView | None = None
    region_end: str = ""
    region_start: str = ""  # encode
    region_patch: tuple[str, str, str] | None = None  # (struct, at var, value expr)
    region_local: tuple[str, str] | None = None  # (var, value expr): a header field
    region_prefix_at: str = ""  # encode: where an anonymous prefix goes
    region_checked: bool = False  # decode: the union's arms check the region's end
    escape: EscapeView | None = None
    carrier_bits: list[RunMember] = field(default_factory=list)
    carrier_join: str = ""
    carrier_write: str = ""  # encode: the carrier's bytes


@dataclass
class DerivedStep:
    """Encode: a value computed before the fields are written."""

    var: str
    expr: str
    checks: list[tuple[str, str]] = field(default_factory=list)  # (condition, message)


@dataclass
class SequenceView:
    """The steps of a frame body or a structure."""

    steps: list[Any]
    derived: list[DerivedStep]
    fields: list[Any]  # MemberView: attributes of the class
    end: str
    origin: bool  # uses plug-ins (needs origin / state)
    ends_at_end: bool = False  # the last field always reads up to the end
    packs: bool = False  # encode: struct packing that may overflow


@dataclass
class MemberView:
    """An attribute of a generated class."""

    name: str
    var: str
    annotation: str  # without `| None`: templates add it when default is None
    role: str  # "user" | "optional" | "const" | "derived" | "carrier" (of bits)
    default: str | None = None

    @property
    def user(self) -> bool:
        """An __init__ argument (optional ones default to None)."""
        return self.role in ("user", "optional")

    @property
    def value_var(self) -> str:
        return self.var


# --- the builder ----------------------------------------------------------------------


@dataclass
class SpecViews:
    """What building any sequence of a spec needs."""

    spec: ir.ProtocolSpec
    enums: Mapping[str, Any]  # name -> context.EnumView
    consts: Consts
    recursive: set[str]
    uses: dict[str, int] = field(default_factory=dict)  # structure -> references
    # Structures decoded as the elements of counted arrays: one call per array.
    listed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        sequences = [f.body for f in self.spec.frames]
        sequences += [s.fields for s in self.spec.structs]
        for fields in sequences:
            for f in fields:
                for name in typeinfo.referenced_structs(f.type):
                    self.uses[name] = self.uses.get(name, 0) + 1
                for array in _arrays_in(f.type):
                    element = array.element
                    if isinstance(element, ir.StructRef) and array.extent.kind in (
                        "count",
                        "prefix",
                    ):
                        self.listed.add(element.name)
        self.listed = {name for name in self.listed if not self.inlined(name)}

    def inlined(self, name: str) -> bool:
        """A structure used in one place: decoded and encoded there, without a call
        (its functions remain, for `Struct.decode` / `.encode`)."""
        return self.uses.get(name) == 1 and name not in self.recursive

    def struct_def(self, name: str) -> ir.StructDef:
        return self.spec.struct(name)

    def structs(self) -> dict[str, ir.StructDef]:
        return {s.name: s for s in self.spec.structs}

    def needs_origin(self, ftype: ir.ValueType) -> bool:
        return typeinfo.uses_externs(ftype, self.structs())


class SequenceBuilder:
    """Builds the view of one sequence (`fields`) for one generated function.

    `names` maps names visible before the first field (header fields, or
    structure parameters) to their local variables; `owner` prefixes paths.
    """

    def __init__(
        self,
        views: SpecViews,
        owner: str,
        locals_: Locals,
        names: dict[str, str],
        *,
        end: str = "end",
        header_derived: Mapping[str, ir.Derived] | None = None,
        outer_fields: Mapping[str, Any] | None = None,
        unsigned: Iterable[str] | None = None,
        enum_values: Mapping[str, set[int]] | None = None,
        frame_body: bool = False,
        later: Iterable[str] | None = None,
    ) -> None:
        self.views = views
        self.owner = owner
        self.locals = locals_
        self.names = names
        self.end = end
        self.header_derived = dict(header_derived or {})
        self.outer_fields = dict(outer_fields or {})  # header fields by name
        self.fields_by_name: dict[str, ir.Field] = {}
        self.preread = ""  # the length prefix the last run read, for the next field
        # A frame body: nothing reads `pos` after it, and a union at its end checks
        # the end of the frame in each arm (no check after the rest of the frame).
        self.frame_body = frame_body
        self.patch_targets: dict[str, tuple[str, str]] = {}  # size var -> (struct, at)
        self.unsigned: set[str] = set(unsigned or ())  # names that are never negative
        # Names the encoder knows only after the body (the frame's length field):
        # sizes using them are checked by the decoder only.
        self.later: set[str] = set(later or ())
        # names holding a member of a closed enum (decoded strictly): its values
        self.enum_values: dict[str, set[int]] = dict(enum_values or {})

    # Names --------------------------------------------------------------------------

    def var(self, ref: ir.Ref) -> str:
        base = self.names[ref.name]
        return base + "".join(f".{part}" for part in ref.path[1:])

    def py(self, expr: ir.Expr, names: Callable[[ir.Ref], str] | None = None) -> str:
        return ex.python(expr, names or self.var)

    def path(self, name: str) -> str:
        return f"{self.owner}.{name}"

    # The sequence -------------------------------------------------------------------

    def build(self, fields: tuple[ir.Field, ...]) -> SequenceView:
        for f in fields:
            self.names[f.name] = self.locals.claim(f.name)
            for bit in f.bits:
                if bit.const is not None and self._runnable(f):
                    # read by a run: a constant bit is its value, no variable
                    self.names[bit.name] = py_literal(bit.const)
                else:
                    self.names[bit.name] = self.locals.claim(bit.name)
                self.unsigned.add(bit.name)
            self.fields_by_name[f.name] = f
            ftype = f.type
            if (isinstance(ftype, ir.ScalarType) and ftype.kind == "uint") or (
                isinstance(ftype, ir.VarintType) and ftype.style != "zigzag"
            ):
                self.unsigned.add(f.name)
            if f.enum is not None:
                self.enum_values[f.name] = {v for _, v in self.views.enums[f.enum].members}
            for bit in f.bits:
                if bit.enum is not None:
                    self.enum_values[bit.name] = {
                        v for _, v in self.views.enums[bit.enum].members
                    }
        steps: list[Any] = []
        run: list[ir.Field] = []
        for f in fields:
            if self._runnable(f):
                run.append(f)
                continue
            prefix = _mergeable_prefix(f)
            if run and prefix is not None:
                # The length prefix right after a run is read with it (decode).
                size_var = self.locals.temp(f"{self.names[f.name]}_size")
                steps.append(self._run(run, (f, prefix, size_var)))
                run = []
                steps.append(self._field_step(f, size_var))
                continue
            if run:
                steps.append(self._run(run))
                run = []
            steps.append(self._field_step(f))
        if run:
            steps.append(self._run(run))
        for before, after in itertools.pairwise(steps):
            if isinstance(before, RunStep) and isinstance(after, FieldStep):
                self._merge_union_run(before, after)
        derived = self._derived_steps(fields)
        members = self._members(fields)
        origin = any(self.views.needs_origin(f.type) for f in fields)
        last = fields[-1] if fields else None
        ends = last is not None and last.condition is None and _takes_rest(last)
        if self.frame_body and last is not None and steps and isinstance(steps[-1], FieldStep):
            step = steps[-1]
            value = step.value
            if ends and step.region is None and value.kind in ("blob", "array"):
                value.last = True  # no `pos = end`: nothing reads it
            if (
                value.kind == "union"
                and last.condition is None
                and last.region is None
                and step.escape is None
                and not step.where
            ):
                self._check_arm_ends(value)
                ends = True
        packs = any(not isinstance(f.type, (ir.StructRef, ir.ExternRef)) for f in fields)
        return SequenceView(steps, derived, members, self.end, origin, ends, packs)

    def _merge_union_run(self, run: RunStep, step: FieldStep) -> None:
        """A union right after a run: the run also unpacks the leading run of one
        arm (the default, else the first that starts with one), in one struct call
        and one bounds check. The union's choice only needs the discriminant's
        value, known after that unpack; the chosen arm then only converts and
        checks its pre-read fields, and the other arms' leading runs need no
        bounds check. Done only when every arm reads at least those bytes first,
        so the merged check refuses no frame that a separate one would accept.
        DNS: a record's type, class, TTL and RDATA length in one unpack."""
        union = step.value
        if (
            union.kind != "union"
            or step.condition is not None
            or step.region is not None
            or step.escape is not None
            or step.carrier_bits
            or run.byte_reads
        ):
            return
        values = [arm.value for arm in union.arms]
        if union.default is not None:
            values.insert(0, union.default)

        def leading(value: Any) -> RunStep | None:
            if value.kind != "inline" or not value.seq.steps:
                return None
            first = value.seq.steps[0]
            if not isinstance(first, RunStep) or first.byte_reads or first.end != run.end:
                return None
            return first

        chosen = next((r for r in map(leading, values) if r is not None), None)
        if chosen is None or chosen.format[:1] != run.format[:1]:
            return
        runs = [leading(value) for value in values]
        if any(r is None or r.size < chosen.size for r in runs):
            return
        run.format += chosen.format[1:]
        run.struct = self.views.consts.struct(run.format, self.owner, run.names[0])
        run.names = run.names + chosen.names
        run.targets = ", ".join(run.names)
        run.extra = chosen.size
        run.path = f"{run.path}, {step.path}"
        run.overrun = f"{run.path}: {run.size + run.extra}-byte fields overrun the frame"
        chosen.preread = True
        for other in runs:
            assert other is not None
            if other is not chosen and other.size <= chosen.size:
                other.in_bounds = True

    def _check_arm_ends(self, union: Any) -> None:
        """Each arm of a frame's last union checks the frame's end itself, unless
        it always reads up to it (a `rest` field): one compare less on that path."""
        message = f"{self.owner}: {{{self.end} - pos}} bytes after the last field"
        arms = [arm.value for arm in union.arms]
        if union.default is not None:
            arms.append(union.default)
        for value in arms:
            value.end_check = "" if _reads_to_end(value) else message

    def _runnable(self, f: ir.Field) -> bool:
        if f.condition is not None or f.region is not None or f.escape or f.xor:
            return False
        if any(bit.escape for bit in f.bits):
            return False
        ftype = f.type
        if isinstance(ftype, ir.ScalarType):
            return True
        if isinstance(ftype, ir.BlobType):
            extent = ftype.extent
            return (
                extent.kind == "count"
                and isinstance(extent.count, ir.Const)
                and not extent.nullable
            )
        return False

    # Runs ------------------------------------------------------------------------------

    def _run(
        self,
        fields: list[ir.Field],
        tail: tuple[ir.Field, ir.ScalarType, str] | None = None,
    ) -> RunStep:
        """A run of fixed-size fields; `tail` (field, prefix type, variable) is the
        length prefix of the field after it, read along on decode."""
        from .context import run_views  # the header machinery, shared

        step = RunStep(end=self.end)
        headers = []
        offset = 0
        for f in fields:
            ftype = f.type
            if isinstance(ftype, ir.BlobType):
                assert isinstance(ftype.extent.count, ir.Const)
                size = ftype.extent.count.value
                hf_type: ir.FieldType = ir.BytesType(size)
            else:
                assert isinstance(ftype, ir.ScalarType)
                hf_type = ftype
            headers.append(
                ir.HeaderField(
                    f.name,
                    hf_type,
                    offset,
                    f.location,
                    enum=f.enum,
                    const=f.const if not isinstance(f.const, str) else f.const.encode(),
                    allowed=f.allowed,
                    bits=f.bits,
                    derived=f.derived or self.header_derived.get(f.name),
                )
            )
            offset += hf_type.size
        encode_group, _ = run_views(
            headers, self.views.enums, self.names, self.views.consts, self.owner
        )
        path = ", ".join(self.path(f.name) for f in fields)
        if tail is not None:
            tail_field, prefix, size_var = tail
            pseudo = f"\0{tail_field.name}"  # never a field name
            self.names[pseudo] = size_var
            headers.append(ir.HeaderField(pseudo, prefix, offset, tail_field.location))
            path += f", {self.path(tail_field.name)} (its length)"
        group, views = run_views(
            headers, self.views.enums, self.names, self.views.consts, self.owner
        )
        views = [v for v in views if not v.name.startswith("\0")]
        step.struct = group.name
        step.encode_struct = encode_group.name
        step.size = group.size
        step.targets = group.targets
        step.format = group.format
        step.names = [fv.var for fv in group.fields]
        step.byte_reads = group.byte_reads
        step.path = path
        noun = "field overruns" if len(headers) == 1 else "fields overrun"
        step.overrun = f"{step.path}: {step.size}-byte {noun} the frame"
        group_fields = [v for v in group.fields if not v.name.startswith("\0")]
        step.converts = [fv.unpack_post() for fv in group.fields if fv.unpack_post()]
        for fv in group_fields:
            step.converts += [b.unpack_bits() for b in fv.bit_fields if b.unpack_bits()]
            if fv.const_bits:
                step.carriers.append(fv)
        by_name = {f.name: f for f in fields}
        for fv in views:
            source = by_name.get(fv.name)
            text = (
                source is not None
                and isinstance(source.type, ir.BlobType)
                and source.type.text
            )
            where = source.where if source is not None else None
            checked_const = fv.const is not None and not (fv.bits and fv.const is not None)
            member = RunMember(
                name=fv.name,
                var=fv.var,
                path=self.path(fv.name),
                const=py_literal(fv.const) if checked_const else None,
                allowed=_set_literal(fv.allowed),
                allowed_text=_allowed_text(fv.allowed),
                enum=_enum_ref(fv.enum, fv.enum_open) if fv.enum else None,
                where=self.py(where) if where is not None else None,
                where_source=ex.source(where) if where is not None else "",
                is_bytes=fv.is_bytes and not text,
                size=fv.size,
                text=text,
                text_size=fv.size if text else 0,
                carrier=bool(fv.bit_fields),
                bits=fv.bits,
                shift=fv.shift,
                mask=fv.mask,
                user=fv.role == "user",
            )
            if text and source is not None and source.const is not None:
                member.const = py_literal(source.const)
            step.members.append(member)
        step.pack = []
        for fv in encode_group.fields:
            expr = fv.pack_expr()
            if fv.is_bytes and by_name.get(fv.name) is not None:
                source = by_name[fv.name]
                if isinstance(source.type, ir.BlobType) and source.type.text:
                    expr = f"{fv.var}.encode()" if fv.role == "user" else expr
            step.pack.append(expr)
            derived = fv.derived
            if derived is not None and derived.kind == "region":
                at = self.locals.temp(f"{fv.var}_at")
                step.patches.append((at, fv.offset))
                fmt = fv.struct_order_prefix + fv.struct_code
                self.patch_targets[fv.name] = (self.views.consts.struct(fmt), at)
        return step

    # Field steps ------------------------------------------------------------------------

    def _field_step(self, f: ir.Field, preread: str = "") -> FieldStep:
        """One field; `preread` is the variable of its length prefix, when the run
        before it read it."""
        self.preread = preread
        var = self.names[f.name]
        path = self.path(f.name)
        step = FieldStep(
            name=f.name,
            var=var,
            path=path,
            end=self.end,
            annotation=self._annotation(f),
            nullable=_nullable(f),
        )
        end = self.end
        if f.region is not None:
            step.region = self._size(f.region, var, path, derived=self._derives(f.name))
            step.region_end = self.locals.temp(f"{var}_end")
            step.region_start = self.locals.temp(f"{var}_start")
            end = step.region_end
            self._region_encode(step, f)
        step.value = self.value(f.type, var, var, path, end, enum=f.enum, field=f)
        if step.region is not None and step.value.kind == "union":
            self._region_arms(step)
        if f.condition is not None:
            step.condition = self.py(f.condition)
            step.condition_source = ex.source(f.condition)
        if f.where is not None:
            step.where = self.py(f.where)
            step.where_source = ex.source(f.where)
        if f.const is not None:
            step.const = py_literal(f.const)
        if f.allowed:
            step.allowed = _set_literal(f.allowed)
            step.allowed_text = _allowed_text(f.allowed)
        if f.escape:
            assert isinstance(f.type, ir.ScalarType)
            step.escape = self._escape(var, path, f.escape, f.type.max_value)
        if f.bits:
            self._carrier_step(step, f)
        return step

    def _region_arms(self, step: FieldStep) -> None:
        """A union filling a region: each arm checks the region's end itself (a
        fixed-size byte string by comparing the region's size once)."""
        assert step.region is not None
        union = step.value
        arms = [arm.value for arm in union.arms]
        if union.default is not None:
            arms.append(union.default)
        leftover = f"{step.path}: {{{step.region_end} - pos}} bytes left over in its region"
        for value in arms:
            if value.kind == "blob" and value.size.constant and not value.text and not value.xor:
                value.exact_region = (
                    step.region.var,
                    f"{step.path}: a {{{step.region.var}}}-byte region for {value.size.var} bytes",
                )
            elif not _reads_to_end(value):
                value.end_check = leftover
        step.region_checked = True

    def _carrier_step(self, step: FieldStep, f: ir.Field) -> None:
        """A carrier read on its own (conditional, or one of its bits escapes)."""
        for bit in f.bits:
            var = self.names[bit.name]
            member = RunMember(
                name=bit.name,
                var=var,
                path=self.path(bit.name),
                const=py_literal(bit.const) if bit.const is not None else None,
                allowed=_set_literal(bit.allowed),
                allowed_text=_allowed_text(bit.allowed),
                enum=_enum_ref(self.views.enums[bit.enum], False) if bit.enum else None,
                bits=bit.bits,
                shift=bit.shift,
                mask=bit.mask,
                user=bit.is_user_supplied,
            )
            step.carrier_bits.append(member)
            if bit.escape:
                step.escape = self._escape(var, self.path(bit.name), bit.escape, bit.mask)
        terms = []
        constant = 0
        for bit in f.bits:
            if bit.const is not None:
                constant |= bit.const << bit.shift
            else:
                var = step.escape.code if step.escape and bit.escape else self.names[bit.name]
                terms.append(f"{var} << {bit.shift}" if bit.shift else var)
        if constant or not terms:
            terms.append(hex(constant))
        step.carrier_join = " | ".join(terms)
        step.carrier_write = step.value.write_expr(step.carrier_join)

    def _escape(
        self, var: str, path: str, arms: tuple[ir.EscapeArm, ...], max_value: int
    ) -> EscapeView:
        del max_value
        view_arms = []
        for arm in arms:
            fmt = scalar_format(arm.type)
            assert fmt is not None, "escape integers are u16, u32 or u64"
            view_arms.append(
                (arm.code, self.views.consts.struct(fmt), arm.type.size, arm.type.max_value)
            )
        return EscapeView(
            var=var,
            path=path,
            first_code=arms[0].code,
            arms=view_arms,
            ext=self.locals.temp(f"{var}_ext"),
            code=self.locals.temp(f"{var}_code"),
        )

    def _region_encode(self, step: FieldStep, f: ir.Field) -> None:
        """How the encoder fills the region's size once the value is written."""
        region = f.region
        assert region is not None
        size = f"len(out) - {step.region_start}"
        if region.kind == "prefix":
            step.region_prefix_at = self.locals.temp(f"{step.var}_at")
            return
        if region.kind != "count" or region.count is None:
            return
        target = self._derived_target(region.count, f.name)
        if target is None:
            return
        name, value = target
        value_expr = value.replace("__SIZE__", size)
        if name in self.patch_targets:
            struct_name, at = self.patch_targets[name]
            step.region_patch = (struct_name, at, value_expr)
        else:
            step.region_local = (self.names[name], value_expr)

    def _derives(self, name: str) -> bool:
        """True when a size/count/region field is computed from field `name`."""
        for f in self.fields_by_name.values():
            if f.derived is not None and name in f.derived.of and f.derived.kind != "presence":
                return True
            for bit in f.bits:
                if bit.derived is not None and name in bit.derived.of and bit.derived.kind != "presence":
                    return True
        return any(
            d.kind != "presence" and name in d.of for d in self.header_derived.values()
        )

    def _derived_target(self, count: ir.Expr, of: str) -> tuple[str, str] | None:
        """(field computed from `of`'s size, its value with __SIZE__ for the size)."""
        refs = [r for r in ex.refs(count) if len(r.path) == 1]
        if len(refs) != 1:
            return None
        name = refs[0].name
        derived = self._derivation(name)
        if derived is None or of not in derived.of:
            return None
        value, remainder = ex.solve(count, name, ir.Ref(("__SIZE__",)))
        names = dict(self.names)
        names["__SIZE__"] = "__SIZE__"
        del remainder  # region sizes come from the encoder itself: always exact
        return name, ex.python(value, lambda r: names[r.name])

    def _derivation(self, name: str) -> ir.Derived | None:
        if name in self.header_derived:
            return self.header_derived[name]
        f = self.fields_by_name.get(name)
        if f is not None:
            return f.derived
        for f in self.fields_by_name.values():
            for bit in f.bits:
                if bit.name == name:
                    return bit.derived
        return None

    # Values -----------------------------------------------------------------------------

    def value(
        self,
        ftype: ir.ValueType,
        target: str,
        source: str,
        path: str,
        end: str,
        *,
        enum: str | None = None,
        field: ir.Field | None = None,
    ) -> Any:
        if isinstance(ftype, ir.EnumType):
            return self.value(ftype.base, target, source, path, end, enum=ftype.name)
        if isinstance(ftype, ir.ScalarType):
            return self._scalar(ftype, target, source, path, end, enum)
        if isinstance(ftype, ir.BytesType):
            blob = ir.BlobType(False, ir.Extent("count", count=ir.Const(ftype.size)))
            return self.value(blob, target, source, path, end)
        if isinstance(ftype, ir.VarintType):
            self.views.consts.uses_wire = True
            return VarintValue(
                target=target,
                source=source,
                path=path,
                end=end,
                style=ftype.style,
                max_bytes=ftype.max_bytes,
            )
        if isinstance(ftype, ir.BlobType):
            return self._blob(ftype, target, source, path, end, field)
        if isinstance(ftype, ir.StructRef) and self.views.inlined(ftype.name):
            return self._inline(ftype, target, source, path, end)
        if isinstance(ftype, ir.StructRef):
            struct_def = self.views.struct_def(ftype.name)
            snake = snake_case(ftype.name)
            return StructValue(
                target=target,
                source=source,
                path=path,
                end=end,
                name=ftype.name,
                decode=f"_decode_{snake}",
                encode=f"_encode_{snake}",
                args=[self.py(arg) for arg in ftype.args],
                context=self.views.needs_origin(ftype),
            ) if struct_def is not None else None
        if isinstance(ftype, ir.ExternRef):
            from .context_unions import wire_extern_view  # it imports this module

            extern = self.views.spec.extern(ftype.name)
            return ExternValue(
                target=target,
                source=source,
                path=path,
                end=end,
                const=extern_const(ftype.name),
                python=extern.python_type,
                wire=wire_extern_view(
                    self.views.spec, extern, self.locals.temp, f"{target}_"
                )
                if extern.wire is not None
                else None,
            )
        if isinstance(ftype, ir.ArrayType):
            return self._array(ftype, target, source, path, end, field)
        assert isinstance(ftype, ir.UnionType)
        return self._union(ftype, target, source, path, end)

    def _inline(
        self, ref: ir.StructRef, target: str, source: str, path: str, end: str
    ) -> InlineStructValue:
        struct_def = self.views.struct_def(ref.name)
        names: dict[str, str] = {}
        for param, arg in zip(struct_def.params, ref.args):
            rendered = self.py(arg)
            names[param.name] = rendered if rendered.isidentifier() else f"({rendered})"
        inner = SequenceBuilder(self.views, ref.name, self.locals, names, end=end)
        seq = inner.build(struct_def.fields)
        order = _init_order(seq.fields)
        view = InlineStructValue(
            target=target,
            source=source,
            path=path,
            end=end,
            name=ref.name,
            seq=seq,
            construct=f"{ref.name}({', '.join(m.var for m in order)})",
            loads=[(m.var, m.name) for m in seq.fields if m.user],
            stores=[(m.var, m.name) for m in seq.fields if m.role == "derived"],
        )
        return view

    def _scalar(
        self,
        scalar: ir.ScalarType,
        target: str,
        source: str,
        path: str,
        end: str,
        enum: str | None,
    ) -> ScalarValue:
        fmt = scalar_format(scalar)
        signed = scalar.kind == "int"
        if fmt is not None:
            name = self.views.consts.struct(fmt)
            read = "data[pos]" if fmt[1:] == "B" else f"{name}.unpack_from(data, pos)[0]"
            write = f"{name}.pack({source})"
            packer = f"{name}.pack({{}})"
        else:
            order = scalar.order.value
            read = (
                f'int.from_bytes(data[pos : pos + {scalar.size}], "{order}", '
                f"signed={signed})"
            )
            write = f'{source}.to_bytes({scalar.size}, "{order}", signed={signed})'
            packer = f'{{}}.to_bytes({scalar.size}, "{order}", signed={signed})'
        enum_ref = None
        raw = ""
        if enum is not None:
            enum_ref = _enum_ref(self.views.enums[enum], False)
            raw = self.locals.temp(f"{target}_raw")
        return ScalarValue(
            raw=raw,
            packer=packer,
            target=target,
            source=source,
            path=path,
            end=end,
            size=scalar.size,
            read=read,
            write=write,
            python=enum if enum else scalar.python_type,
            enum=enum_ref,
        )

    def _size(
        self, extent: ir.Extent, var: str, path: str, *, derived: bool
    ) -> SizeView:
        view = SizeView(extent.kind, nullable=extent.nullable, derived=derived)
        if extent.kind == "prefix" and self.preread:
            view.var = self.preread
            view.preread = True
            self.preread = ""  # the field's own prefix only
        else:
            view.var = self.locals.temp(
                f"{var}_size" if extent.kind != "until" else f"{var}_n"
            )
        if extent.kind == "count":
            assert extent.count is not None
            view.expr = self.py(extent.count)
            view.expr_source = ex.source(extent.count)
            count = extent.count
            if ex.names(count) & self.later:
                view.derived = True  # not checked on encode: see `later`
            if isinstance(count, ir.Const) and not extent.nullable:
                view.constant = True
                view.var = str(count.value)
            view.signed = not (
                (isinstance(count, ir.Const) and count.value >= 0)
                or (ex.is_plain_ref(count) and count.name in self.unsigned)  # type: ignore[union-attr]
            )
        elif extent.kind == "prefix":
            assert extent.prefix is not None
            view.prefix = self._prefix(extent.prefix)
            view.signed = isinstance(extent.prefix, ir.ScalarType) and extent.prefix.kind == "int"
        elif extent.kind == "terminator":
            assert extent.terminator is not None
            view.terminator = extent.terminator
            view.regex = self.views.consts.regex(extent.terminator)
        return view

    def _prefix(self, prefix: ir.PrefixType) -> PrefixView:
        if isinstance(prefix, ir.VarintType):
            self.views.consts.uses_wire = True
            return PrefixView(True, style=prefix.style, max_bytes=prefix.max_bytes)
        fmt = scalar_format(prefix)
        assert fmt is not None, "length prefixes are 1, 2, 4 or 8 bytes"
        return PrefixView(
            False,
            struct=self.views.consts.struct(fmt),
            size=prefix.size,
            signed=prefix.kind == "int",
            max_value=prefix.max_value,
        )

    def _blob(
        self,
        blob: ir.BlobType,
        target: str,
        source: str,
        path: str,
        end: str,
        f: ir.Field | None,
    ) -> BlobValue:
        name = f.name if f is not None else ""
        derived = bool(name) and self._derives(name)
        view = BlobValue(
            target=target,
            source=source,
            path=path,
            end=end,
            text=blob.text,
            size=self._size(blob.extent, target, path, derived=derived),
            stop=self.locals.temp(f"{target}_stop"),
            encoded=self.locals.temp(f"{target}_bytes") if blob.text else source,
            xor=self.names[f.xor.name] if f is not None and isinstance(f.xor, ir.Ref) else None,
            noun="string" if blob.text else "byte string",
        )
        if f is not None and f.const is not None:
            const = f.const.encode() if isinstance(f.const, str) else f.const
            view.const = py_literal(const)
        if view.size.constant and not blob.text and view.xor is None:
            # A struct `Ns` code makes the bytes in one call: cheaper than a
            # memoryview slice and bytes() of it.
            view.fixed_struct = self.views.consts.struct(f">{view.size.var}s")
        if view.xor is not None and f is not None and isinstance(f.xor, ir.Ref):
            self.views.consts.uses_wire = True
            view.xor_size = self.locals.temp(f"{target}_masked")
            key = self.fields_by_name.get(f.xor.name)
            view.xor_optional = key is not None and (
                key.condition is not None or _nullable(key)
            )
        return view

    def _array(
        self,
        array: ir.ArrayType,
        target: str,
        source: str,
        path: str,
        end: str,
        f: ir.Field | None,
    ) -> ArrayValue:
        item = self.locals.temp(f"{target}_item")
        element = self.value(array.element, item, item, f"{path}[]", end)
        name = f.name if f is not None else ""
        view = ArrayValue(
            target=target,
            source=source,
            path=path,
            end=end,
            element=element,
            item=item,
            size=self._size(array.extent, target, path, derived=bool(name) and self._derives(name)),
            min_element=max(typeinfo.min_size(array.element, self.views.structs()), 0),
        )
        if array.extent.kind == "until":
            assert array.extent.until is not None

            def element_var(ref: ir.Ref) -> str:
                if ref.name == "it":
                    return item + "".join(f".{part}" for part in ref.path[1:])
                return self.var(ref)

            view.size.until = self.py(array.extent.until, element_var)
            view.size.until_source = ex.source(array.extent.until)
        element_type = array.element
        if isinstance(element_type, ir.ScalarType) and view.size.kind in ("count", "prefix", "rest"):
            fmt = scalar_format(element_type)
            if fmt is not None:
                self.views.consts.uses_struct_module = fmt[1:] != "B"
                view.bulk = "u8" if fmt[1:] == "B" else fmt[1:]
                view.bulk_order = fmt[0]
                view.bulk_size = element_type.size
        if (
            isinstance(array.element, ir.StructRef)
            and array.element.name in self.views.listed
            and view.size.kind in ("count", "prefix")
        ):
            view.list_call = f"_decode_{snake_case(array.element.name)}_list"
        if view.min_element == 0:
            view.guard = True
            view.min_element = 0
            view.before = self.locals.temp(f"{target}_before")
        return view

    def _union(
        self, union: ir.UnionType, target: str, source: str, path: str, end: str
    ) -> UnionValue:
        discriminant = self.py(union.discriminant)
        if not ex.is_plain_ref(union.discriminant):
            variable = self.locals.temp(f"{target}_kind")
            view_disc = variable
        else:
            variable = ""
            view_disc = discriminant
        view = UnionValue(
            target=target,
            source=source,
            path=path,
            end=end,
            discriminant=view_disc,
            discriminant_source=ex.source(union.discriminant),
        )
        view.discriminant_expr = discriminant  # type: ignore[attr-defined]
        view.discriminant_var = variable  # type: ignore[attr-defined]
        pythons: list[str] = []
        for arm in union.arms:
            value = self.value(arm.type, target, source, path, end)
            if len(arm.values) == 1:
                condition = f"{view_disc} == {arm.values[0]}"
            else:
                condition = f"{view_disc} in {_set_literal(arm.values)}"
            view.arms.append(UnionArmView(arm.values, value, condition, _isinstance_type(value)))
            pythons.append(value.python)
        if union.default is not None:
            view.default = self.value(union.default, target, source, path, end)
            view.default_check = _isinstance_type(view.default)
            pythons.append(view.default.python)
        values = sorted(v for arm in union.arms for v in arm.values)
        view.expected = "one of " + ", ".join(map(str, values))
        if union.default is None and ex.is_plain_ref(union.discriminant):
            assert isinstance(union.discriminant, ir.Ref)
            possible = self.enum_values.get(union.discriminant.name)
            view.exhaustive = possible is not None and possible <= set(values)
        view.python = " | ".join(dict.fromkeys(pythons))
        return view

    # Encoding: what is computed before the fields ------------------------------------------

    def _derived_steps(self, fields: tuple[ir.Field, ...]) -> list[DerivedStep]:
        out = []
        holders: list[tuple[str, ir.Derived]] = []
        for f in fields:
            if f.derived is not None:
                holders.append((f.name, f.derived))
            for bit in f.bits:
                if bit.derived is not None:
                    holders.append((bit.name, bit.derived))
        for name, derived in holders:
            step = self.derived_step(name, derived)
            if step is not None:
                out.append(step)
        return out

    def derived_step(self, name: str, derived: ir.Derived) -> DerivedStep | None:
        """The statement computing a size, count or presence flag (None: later)."""
        var = self.names[name]
        if derived.kind == "presence":
            first = self.names[derived.of[0]]
            step = DerivedStep(var, f"int({first} is not None)")
            for other in derived.of[1:]:
                other_var = self.names[other]
                step.checks.append(
                    (
                        f"({other_var} is not None) != ({first} is not None)",
                        f"{self.path(other)}: present only with {derived.of[0]} "
                        f"(both or neither)",
                    )
                )
            return step
        if derived.kind not in ("size", "count"):
            return None  # regions are patched after writing; the length comes last
        of = derived.of[0]
        target_field = self.fields_by_name.get(of)
        if target_field is None:
            return None
        extent = (
            target_field.type.extent
            if isinstance(target_field.type, (ir.BlobType, ir.ArrayType))
            else None
        )
        assert extent is not None and extent.count is not None
        value, remainder = ex.solve(extent.count, name, ir.Ref(("__SIZE__",)))
        of_var = self.names[of]
        text = isinstance(target_field.type, ir.BlobType) and target_field.type.text
        measured = f"len({of_var}.encode())" if text else f"len({of_var})"
        names = dict(self.names)
        names["__SIZE__"] = measured
        expr = ex.python(value, lambda r: names[r.name] + "".join(f".{p}" for p in r.path[1:]))
        if extent.nullable:
            expr = f"-1 if {of_var} is None else {expr}"
        step = DerivedStep(var, expr)
        if remainder is not None:
            check = ex.python(remainder, lambda r: names[r.name])
            step.checks.append(
                (
                    f"{check} != 0" if not extent.nullable else f"{of_var} is not None and {check} != 0",
                    f"{self.path(of)}: its size does not fit `{ex.source(extent.count)}`",
                )
            )
        return step

    # Class attributes ---------------------------------------------------------------

    def _members(self, fields: tuple[ir.Field, ...]) -> list[MemberView]:
        out = []
        for f in fields:
            annotation = self._annotation(f)
            var = self.names[f.name]
            if f.bits:
                out.append(MemberView(f.name, var, "int", "carrier", "None"))
                for bit in f.bits:
                    bit_annotation = bit.enum or "int"
                    if bit.const is not None:
                        out.append(
                            MemberView(bit.name, self.names[bit.name], bit_annotation, "const", py_literal(bit.const))
                        )
                    elif bit.derived is not None:
                        out.append(
                            MemberView(bit.name, self.names[bit.name], bit_annotation, "derived", "None")
                        )
                    else:
                        out.append(MemberView(bit.name, self.names[bit.name], bit_annotation, "user"))
                continue
            if f.const is not None:
                out.append(MemberView(f.name, var, annotation, "const", py_literal(f.const)))
            elif f.derived is not None:
                out.append(MemberView(f.name, var, annotation, "derived", "None"))
            elif f.condition is not None or _nullable(f):
                out.append(MemberView(f.name, var, annotation, "optional", "None"))
            else:
                out.append(MemberView(f.name, var, annotation, "user"))
        return out

    def _annotation(self, f: ir.Field) -> str:
        return annotation(self.views, f.type, f.enum)


def annotation(views: SpecViews, ftype: ir.ValueType, enum: str | None = None) -> str:
    """The Python type of values of `ftype`."""
    if enum is not None:
        return enum
    if isinstance(ftype, ir.EnumType):
        return ftype.name
    if isinstance(ftype, (ir.ScalarType, ir.VarintType)):
        return ftype.python_type
    if isinstance(ftype, ir.BytesType):
        return "bytes"
    if isinstance(ftype, ir.BlobType):
        return ftype.python_type
    if isinstance(ftype, ir.StructRef):
        return ftype.name
    if isinstance(ftype, ir.ExternRef):
        return views.spec.extern(ftype.name).python_type
    if isinstance(ftype, ir.ArrayType):
        return f"list[{annotation(views, ftype.element)}]"
    assert isinstance(ftype, ir.UnionType)
    return " | ".join(dict.fromkeys(annotation(views, t) for t in ftype.types))


def _arrays_in(ftype: ir.ValueType) -> list[ir.ArrayType]:
    if isinstance(ftype, ir.ArrayType):
        return [ftype, *_arrays_in(ftype.element)]
    if isinstance(ftype, ir.UnionType):
        return [a for t in ftype.types for a in _arrays_in(t)]
    return []


def _reads_to_end(value: Any) -> bool:
    """A decoded value that always stops at its `end` (so no check is needed)."""
    if value.kind in ("blob", "array"):
        return value.size.kind == "rest"
    if value.kind == "inline":
        return bool(value.seq.ends_at_end)
    return False


def _mergeable_prefix(f: ir.Field) -> ir.ScalarType | None:
    """The length prefix a run may read along with its own fields, if any."""
    if f.condition is not None or f.escape or any(b.escape for b in f.bits):
        return None
    extent = f.region
    if extent is None and isinstance(f.type, (ir.BlobType, ir.ArrayType)):
        extent = f.type.extent
    if extent is None or extent.kind != "prefix":
        return None
    prefix = extent.prefix
    if isinstance(prefix, ir.ScalarType) and scalar_format(prefix) is not None:
        return prefix
    return None


def _init_order(members: list[MemberView]) -> list[MemberView]:
    """__init__ order: required user fields, optional ones, then computed ones."""
    users = [m for m in members if m.user]
    required = [m for m in users if m.default is None]
    optional = [m for m in users if m.default is not None]
    return required + optional + [m for m in members if not m.user]


def _takes_rest(f: ir.Field) -> bool:
    if f.region is not None:
        return f.region.kind == "rest"
    return isinstance(f.type, (ir.BlobType, ir.ArrayType)) and f.type.extent.kind == "rest"


def extern_const(name: str) -> str:
    return f"_{snake_case(name).upper()}"


def _nullable(f: ir.Field) -> bool:
    if f.region is not None:
        return f.region.nullable
    ftype = f.type
    return isinstance(ftype, (ir.BlobType, ir.ArrayType)) and ftype.extent.nullable


def _enum_ref(enum_view: Any, open_: bool) -> EnumRef:
    return EnumRef(enum_view.name, enum_view.by_value, open_)


def _set_literal(values: Iterable[int] | None) -> str | None:
    if not values:
        return None
    return "{" + ", ".join(py_literal(v) for v in sorted(values)) + "}"


def _allowed_text(values: Iterable[int] | None) -> str:
    if not values:
        return ""
    return "one of " + ", ".join(py_literal(v) for v in values)


def _isinstance_type(value: Any) -> str:
    python = value.python
    if python.startswith("list["):
        return "list"
    if value.kind == "scalar" and value.enum is not None:
        return "int"
    return python


__all__ = [
    "Locals",
    "Consts",
    "SpecViews",
    "SequenceBuilder",
    "SequenceView",
    "MemberView",
    "annotation",
    "extern_const",
]
