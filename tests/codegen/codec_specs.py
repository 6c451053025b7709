"""Hand-built IR specs covering every framing kind and field feature."""

from __future__ import annotations

from codec_helpers import LOC, frame, header, i, f, rest, spec, u
from protogen import models as ir

OPCODE = ir.EnumDef(
    "Opcode",
    ir.ScalarType("uint", 1),
    (
        ir.EnumMember("get", 0x00, LOC),
        ir.EnumMember("set", 0x01, LOC),
        ir.EnumMember("delete", 0x04, LOC),
    ),
    LOC,
)

ECHO = spec(
    "echo",
    frame(
        "Message",
        ir.LengthFraming(field="length", offset=0, size=4),
        hdr=header(("length", u(4), {"computed_length": True})),
        body=[rest()],
    ),
    server_decodes="Message",
    server_encodes="Message",
)


def _memcached_header(magic: int):
    return header(
        ("magic", u(1), {"const": magic}),
        ("opcode", u(1), {"enum": "Opcode"}),
        ("key_length", u(2)),
        ("extras_length", u(1)),
        ("data_type", u(1), {"allowed": (0,)}),
        ("status", u(2)),
        ("total_body_length", u(4), {"computed_length": True}),
        ("opaque", u(4)),
        ("cas", u(8)),
    )


_BODY = [
    ir.BodyField("extras", LOC, size_field="extras_length"),
    ir.BodyField("key", LOC, size_field="key_length"),
    rest("value"),
]

MEMCACHED = spec(
    "memcached",
    frame(
        "Request",
        ir.LengthFraming(field="total_body_length", offset=8, size=4),
        hdr=_memcached_header(0x80),
        body=_BODY,
        dispatch="opcode",
    ),
    frame(
        "Response",
        ir.LengthFraming(field="total_body_length", offset=8, size=4),
        hdr=_memcached_header(0x81),
        body=_BODY,
    ),
    enums=[OPCODE],
    server_decodes="Request",
    server_encodes="Response",
)

# Netty-style: 2-byte magic, 3-byte little-endian length counting the whole
# frame minus 2 (adjustment), odd-width and mixed-order fields, a crc32 trailer.
ODD = spec(
    "odd",
    frame(
        "Packet",
        ir.LengthFraming(
            field="len",
            offset=2,
            size=3,
            order=ir.ByteOrder.LITTLE,
            counts="frame",
            adjustment=2,
        ),
        hdr=header(
            ("magic", ir.BytesType(2), {"const": b"OD"}),
            ("len", u(3, "little"), {"computed_length": True}),
            ("x", u(2, "little")),
            ("y", i(5)),
            ("z", f(8, "little")),
            ("w", f(4)),
            ("tag", ir.BytesType(3)),
            ("version", i(1), {"allowed": (-1, 1, 2)}),
        ),
        body=[ir.BodyField("fixed", LOC, size=2), rest()],
        trl=header(("crc", u(4), {"checksum": ir.Checksum("crc32", 0, -4)})),
        max_frame=4096,
    ),
)

# "after_field" counting with a header checksum (crc16) over the body.
AFTER = spec(
    "after",
    frame(
        "Chunk",
        ir.LengthFraming(
            field="size", offset=1, size=2, counts="after_field", adjustment=-2
        ),
        hdr=header(
            ("kind", u(1)),
            ("size", u(2), {"computed_length": True}),
            ("crc", u(2), {"checksum": ir.Checksum("crc16_ccitt", 5, None)}),
        ),
        body=[rest("data")],
    ),
)

VARINT = spec(
    "vint",
    frame(
        "Message",
        ir.VarintFraming(style="leb128"),
        body=[rest("message")],
        max_frame=1 << 16,
    ),
)

MQTT = spec(
    "mqttish",
    frame(
        "Packet",
        ir.VarintFraming(style="mqtt", offset=1),
        hdr=header(("type_flags", u(1))),
        body=[rest()],
        trl=header(("check", u(4), {"checksum": ir.Checksum("adler32", 0, -4)})),
    ),
)

NETSTRING = spec(
    "netstring",
    frame("Netstring", ir.DecimalFraming(), max_frame=1000),
)

LINES = spec(
    "lines",
    frame(
        "Line",
        ir.DelimitedFraming(delimiters=(b"\r\n", b"\n")),
        body=[rest("line")],
        max_frame=64,
    ),
)

KEPT = spec(
    "kept",
    frame("Record", ir.DelimitedFraming(delimiters=(b"\x00\xff", b"|"), strip=False)),
)

FIXED = spec(
    "fixed",
    frame(
        "Reading",
        ir.FixedFraming(size=16),
        hdr=header(
            ("magic", u(2), {"const": 0x5352}),
            ("version", u(1), {"allowed": (1, 2)}),
            ("kind", u(1), {"enum": "Opcode"}),
            ("sensor", u(4, "little")),
            ("delta", i(4)),
            ("value", f(4)),
        ),
        dispatch="kind",
    ),
    enums=[OPCODE],
)

HTTPISH = spec(
    "httpish",
    frame(
        "HttpRequest",
        ir.CompositeFraming(head_delimiter=b"\r\n\r\n", length_header="Content-Length"),
        max_frame=2048,
    ),
)

MEMCACHE_TEXT = spec(
    "mctext",
    frame(
        "Command",
        ir.CompositeFraming(
            head_delimiter=b"\r\n",
            length_token=4,
            token_commands=(b"set", b"add", b"cas"),
            body_trailer=b"\r\n",
        ),
        max_frame=2048,
    ),
)

# (spec, frame name) for every framing kind above
KIND = ir.EnumDef(
    "Kind",
    ir.ScalarType("uint", 1),
    (
        ir.EnumMember("ping", 1, LOC),
        ir.EnumMember("data", 3, LOC),
        ir.EnumMember("close", 15, LOC),
    ),
    LOC,
)


def bits(*specs: tuple) -> tuple[ir.BitField, ...]:
    """bits(("name", width, {options}) or ("_", width), ...), most significant first."""
    total = sum(spec[1] for spec in specs)
    fields = []
    for spec in specs:
        total -= spec[1]
        if spec[0] != "_":
            options = spec[2] if len(spec) > 2 else {}
            fields.append(ir.BitField(spec[0], spec[1], total, LOC, **options))
    return tuple(fields)


# Bit fields: an enum nibble and an allowed set in a u8, a constant and padding in a
# 3-byte little-endian carrier (converted with int.from_bytes), a u64 carrier, and
# a trailer carrier of the other byte order.
BITS = spec(
    "bitty",
    frame(
        "Packet",
        ir.VarintFraming(style="mqtt", offset=14),
        hdr=header(
            (
                "control",
                u(1),
                {
                    "bits": bits(
                        ("kind", 4, {"enum": "Kind"}),
                        ("flags", 4, {"allowed": (0, 2, 9)}),
                    )
                },
            ),
            (
                "wide",
                u(3, "little"),
                {"bits": bits(("version", 3, {"const": 5}), ("_", 2), ("channel", 19))},
            ),
            ("stamp", u(2, "little")),
            ("big", u(8, "little"), {"bits": bits(("hi", 1), ("mid", 62), ("lo", 1))}),
        ),
        body=[rest()],
        trl=header(("tail", u(2, "big"), {"bits": bits(("seq", 12), ("_", 4))})),
    ),
    enums=(KIND,),
)

ALL = [
    (ECHO, "Message"),
    (MEMCACHED, "Request"),
    (MEMCACHED, "Response"),
    (ODD, "Packet"),
    (AFTER, "Chunk"),
    (VARINT, "Message"),
    (MQTT, "Packet"),
    (BITS, "Packet"),
    (NETSTRING, "Netstring"),
    (LINES, "Line"),
    (KEPT, "Record"),
    (FIXED, "Reading"),
    (HTTPISH, "HttpRequest"),
    (MEMCACHE_TEXT, "Command"),
]
