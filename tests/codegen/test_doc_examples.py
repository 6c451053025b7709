"""The constructs docs/dsl.md shows with real protocols parse, and decode as it says."""

from __future__ import annotations

import struct

import pytest

from protogen.errors import MalformedFrame
from protogen.parser import parse_spec

# One frame per protocol the documentation quotes.
SPEC = r"""
protocol docs
server decodes Ssh

frame Ssh {                              # SSH binary packet (RFC 4253 6)
    framing length(packet_length) counts after_field
    header { packet_length: u32 }
    body {
        padding_length: u8
        payload: bytes[packet_length - padding_length - 1]
        padding: bytes[padding_length]
    }
}

frame Kafka {                            # a request header (v1)
    framing length(size) counts after_field
    header { size: i32 }
    body {
        api_key: i16
        api_version: i16
        correlation_id: i32
        client_id: string[i16] or null
        body: bytes[rest]
    }
}

frame DataRow {                          # PostgreSQL DataRow ('D')
    framing length(length) counts frame adjust 1   # the length counts itself
    header { kind: u8 = 0x44 length: u32 }
    body { columns: Column[i16] }
}
struct Column { value: bytes[i32] or null }

frame Tx {                               # Bitcoin: CompactSize counts
    framing length(n)
    header { n: u32 le }
    body {
        count: u8 escape { 0xFD: u16 le, 0xFE: u32 le, 0xFF: u64 le }
        scripts: bytes[u8][count]
    }
}

frame Proto {                            # protobuf-ish varints
    framing varint leb128
    body { id: varint delta: zigzag data: bytes[varint] name: string[until "\0"] }
}

frame Tls {                              # TLS extensions, by byte size
    framing length(n)
    header { n: u16 }
    body { extensions: bytes[u16] as Extension[rest] }
}
struct Extension { kind: u16 data: bytes[u16] }
"""


@pytest.fixture(scope="module")
def m(codec):
    return codec(parse_spec(SPEC, "docs.proto.dsl"))


def test_ssh_payload_sized_by_an_expression_of_the_length(m) -> None:
    packet = m.Ssh(padding_length=4, payload=b"\x15hello", padding=b"\0" * 4)
    wire = packet.encode()
    assert wire == struct.pack(">IB", 1 + 6 + 4, 4) + b"\x15hello" + b"\0" * 4
    assert m.SshDecoder().decode(wire)[0] == packet


def test_kafka_nullable_client_id(m) -> None:
    request = m.Kafka(api_key=3, api_version=1, correlation_id=7, client_id=None, body=b"")
    wire = request.encode()
    assert wire[-2:] == b"\xff\xff"
    assert m.KafkaDecoder().decode(wire)[0].client_id is None
    with pytest.raises(MalformedFrame, match="Kafka.client_id: negative size -2"):
        m.KafkaDecoder().decode(wire[:-2] + b"\xff\xfe")


def test_postgres_null_columns(m) -> None:
    row = m.DataRow(columns=[m.Column(b"1"), m.Column(None)])
    wire = row.encode()
    assert wire == b"D" + struct.pack(">Ih", 4 + 2 + 5 + 4, 2) + b"\x00\x00\x00\x011" + b"\xff" * 4
    assert m.DataRowDecoder().decode(wire)[0] == row


def test_bitcoin_compact_size_uses_the_shortest_form(m) -> None:
    for count, form in [(3, b"\x03"), (300, b"\xfd\x2c\x01")]:
        tx = m.Tx(count=count, scripts=[b"x"] * count)
        wire = tx.encode()
        assert wire[4 : 4 + len(form)] == form
        assert m.TxDecoder().decode(wire)[0] == tx
    with pytest.raises(MalformedFrame, match="shortest form"):
        m.TxDecoder().decode(struct.pack("<I", 3) + b"\xfd\x00\x00")


def test_varints_and_terminated_text(m) -> None:
    proto = m.Proto(id=300, delta=-3, data=b"ab", name="x")
    assert proto.encode() == b"\x08" + b"\xac\x02" + b"\x05" + b"\x02ab" + b"x\x00"
    assert m.ProtoDecoder().decode(proto.encode())[0] == proto


def test_tls_extensions_by_byte_size(m) -> None:
    tls = m.Tls(extensions=[m.Extension(0, b"host"), m.Extension(43, b"\x03\x04")])
    wire = tls.encode()
    assert wire[2:4] == struct.pack(">H", (2 + 2 + 4) + (2 + 2 + 2))
    assert m.TlsDecoder().decode(wire)[0] == tls
