"""Helpers for codec tests: IR builders, build+import, hypothesis strategies."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protogen import models as ir
from protogen.generator import generate, write_outputs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXAMPLES = REPO / "examples"
FUZZ_EXAMPLES = int(os.environ.get("PROTOGEN_FUZZ_EXAMPLES", "200"))
PROPERTY_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

_counter = itertools.count()
LOC = ir.Location("test.proto.dsl", 1, 1)


def u(size: int, order: str = "big") -> ir.ScalarType:
    return ir.ScalarType("uint", size, ir.ByteOrder(order))


def i(size: int, order: str = "big") -> ir.ScalarType:
    return ir.ScalarType("int", size, ir.ByteOrder(order))


def f(size: int, order: str = "big") -> ir.ScalarType:
    return ir.ScalarType("float", size, ir.ByteOrder(order))


def header(*specs: tuple) -> tuple[tuple[ir.HeaderField, ...], int]:
    """header(("name", type, {options}), ...) -> (fields with offsets, total size)."""
    fields = []
    offset = 0
    for spec in specs:
        name, ftype = spec[0], spec[1]
        options = spec[2] if len(spec) > 2 else {}
        fields.append(ir.HeaderField(name, ftype, offset, LOC, **options))
        offset += ftype.size
    return tuple(fields), offset


def frame(
    name: str, framing: ir.Framing, *, hdr=((), 0), body=(), trl=((), 0), **kw
) -> ir.FrameDef:
    return ir.FrameDef(
        name=name,
        framing=framing,
        location=LOC,
        header=hdr[0],
        header_size=hdr[1],
        body=tuple(body),
        trailer=trl[0],
        trailer_size=trl[1],
        **kw,
    )


def rest(name: str = "payload") -> ir.BodyField:
    return ir.BodyField(name, LOC, rest=True)


def spec(name: str, *frames: ir.FrameDef, enums=(), **kw) -> ir.ProtocolSpec:
    text = repr((name, frames, enums, kw)).encode()
    return ir.ProtocolSpec(
        name=name,
        source_file=f"/somewhere/{name}.proto.dsl",
        source_sha256=hashlib.sha256(text).hexdigest(),
        frames=tuple(frames),
        enums=tuple(enums),
        **kw,
    )


def import_codec(protocol: ir.ProtocolSpec, directory: Path, **options) -> ModuleType:
    """Generate `protocol` into `directory` and import its codec under a unique name."""
    outputs = generate(protocol, **options)
    write_outputs(outputs, directory)
    filename = f"{protocol.name}_codec.py"
    module_name = f"_protogen_test_{protocol.name}_{next(_counter)}"
    module_spec = importlib.util.spec_from_file_location(
        module_name, directory / filename
    )
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    return module


# --- hypothesis strategies derived from the IR ------------------------------------


MAX_BLOB = 120


def _scalar_strategy(ftype: ir.ScalarType) -> st.SearchStrategy:
    if ftype.kind == "float":
        return st.floats(width=32 if ftype.size == 4 else 64, allow_nan=False)
    return st.integers(ftype.min_value, ftype.max_value)


def _header_value(field: ir.HeaderField, protocol: ir.ProtocolSpec, module: ModuleType):
    if field.enum:
        enum_class = getattr(module, field.enum)
        return st.sampled_from(list(enum_class))
    if field.allowed:
        return st.sampled_from(field.allowed)
    if isinstance(field.type, ir.BytesType):
        return st.binary(min_size=field.type.size, max_size=field.type.size)
    return _scalar_strategy(field.type)


def _bit_value(bit: ir.BitField, module: ModuleType) -> st.SearchStrategy:
    if bit.enum:
        return st.sampled_from(list(getattr(module, bit.enum)))
    if bit.allowed:
        return st.sampled_from(bit.allowed)
    return st.integers(0, bit.mask)


def _payload(frame_def: ir.FrameDef, max_size: int) -> st.SearchStrategy:
    framing = frame_def.framing
    blob = st.binary(max_size=max_size)
    if framing.kind != "delimited":
        return blob
    forbidden = bytes(sorted({b for d in framing.delimiters for b in d}))
    clean = blob.map(lambda b: b.translate(None, delete=forbidden))
    if framing.strip:
        return clean
    return clean.map(lambda b: b + framing.delimiters[0])


def _composite_frames(frame_def: ir.FrameDef, frame_class: type) -> st.SearchStrategy:
    framing = frame_def.framing
    body = st.binary(max_size=MAX_BLOB)
    if framing.length_header:
        name = framing.length_header.encode()
        with_body = body.map(
            lambda b: frame_class(
                head=b"POST /p HTTP/1.1\r\nHost: x\r\n"
                + name.lower()
                + b": %d" % len(b),
                body=b,
            )
        )
        no_body = st.just(frame_class(head=b"GET / HTTP/1.1\r\nHost: x", body=b""))
    else:
        commands = framing.token_commands or (b"set",)
        filler = [b"k%d" % n for n in range(framing.length_token - 1)]
        with_body = st.tuples(st.sampled_from(commands), body).map(
            lambda cb: frame_class(
                head=b" ".join([cb[0], *filler, b"%d" % len(cb[1])]), body=cb[1]
            )
        )
        no_body = st.just(frame_class(head=b"get somekey", body=b""))
    return st.one_of(with_body, no_body)


def frames_strategy(
    protocol: ir.ProtocolSpec, frame_name: str, module: ModuleType
) -> st.SearchStrategy:
    """Random valid frames of `frame_name` (objects of the generated class)."""
    frame_def = protocol.frame(frame_name)
    frame_class = getattr(module, frame_name)
    if frame_def.framing.kind == "composite":
        return _composite_frames(frame_def, frame_class)
    size_fields = {b.size_field for b in frame_def.body if b.size_field}
    fields: dict[str, st.SearchStrategy] = {}
    for hf in frame_def.header + frame_def.trailer:
        if hf.is_user_supplied and hf.name not in size_fields:
            fields[hf.name] = _header_value(hf, protocol, module)
        for bit in hf.bits:
            if bit.is_user_supplied:
                fields[bit.name] = _bit_value(bit, module)
    body = list(frame_def.body)
    if not body and frame_def.framing.kind in ("delimited", "decimal"):
        body = [rest("payload")]
    for bf in body:
        if bf.size is not None:
            fields[bf.name] = st.binary(min_size=bf.size, max_size=bf.size)
        elif bf.size_field:
            limit = protocol.frame(frame_name).field(bf.size_field).type.max_value
            fields[bf.name] = st.binary(max_size=min(limit, 40))
        else:
            fields[bf.name] = _payload(frame_def, MAX_BLOB)
    return st.fixed_dictionaries(fields).map(lambda kw: frame_class(**kw))


def encodable(frames: st.SearchStrategy, encode) -> st.SearchStrategy:
    """Frames the encoder accepts (drops e.g. delimiter collisions, field overflow)."""

    def ok(frame) -> bool:
        try:
            encode(frame)
        except ValueError:
            return False
        return True

    return frames.filter(ok)


def split_points(data_length: int) -> st.SearchStrategy:
    return st.lists(st.integers(0, data_length), max_size=12).map(sorted)


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


def decode_stream_reader(
    module: ModuleType, frame_name: str, pieces: list[bytes]
) -> list:
    """Feed pieces to the generated Reader (bytearray buffer, compacted)."""
    reader = getattr(module, f"{frame_name}Reader")()
    out = []
    for piece in pieces:
        out.extend(reader.feed(piece))
    assert reader.buffered == 0
    return out


def decode_stream_views(
    module: ModuleType, frame_name: str, pieces: list[bytes]
) -> list:
    """Handler style: memoryview of a growing buffer, advancing start offsets."""
    decoder = getattr(module, f"{frame_name}Decoder")()
    buffer = bytearray()
    start = 0
    out = []
    for piece in pieces:
        buffer += piece
        with memoryview(buffer) as view:
            frames, start = decoder.decode_all(view, start)
        out.extend(frames)
    assert start == len(buffer)
    return out


def check_roundtrip_split_anywhere(
    module: ModuleType, protocol: ir.ProtocolSpec, frame_name: str
) -> None:
    """Encode random frames, split the stream anywhere, decode the same frames."""
    from protogen.render import snake_case

    encode = getattr(module, f"encode_{snake_case(frame_name)}")
    frames = st.lists(
        encodable(frames_strategy(protocol, frame_name, module), encode), max_size=6
    )

    @PROPERTY_SETTINGS
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        sent = data.draw(frames)
        stream = b"".join(encode(frame) for frame in sent)
        pieces = chunks(stream, data.draw(split_points(len(stream))))
        assert decode_stream_reader(module, frame_name, pieces) == sent
        assert decode_stream_views(module, frame_name, pieces) == sent

    check()


def check_garbage_raises_only_protocol_errors(
    module: ModuleType, frame_name: str
) -> None:
    """Random bytes fed in random pieces: frames or ProtocolError, nothing else."""
    from protogen.errors import ProtocolError

    reader_class = getattr(module, f"{frame_name}Reader")

    @PROPERTY_SETTINGS
    @given(
        garbage=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=6)
    )
    def check(garbage: bytes, cuts: list[int]) -> None:
        reader = reader_class()
        try:
            for piece in chunks(garbage, sorted(c for c in cuts if c <= len(garbage))):
                reader.feed(piece)
        except ProtocolError:
            pass

    check()
