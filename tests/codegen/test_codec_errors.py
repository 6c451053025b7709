"""Typed protocol errors: fail-fast size limits, checksums, magic/enum/allowed, malformed input."""

from __future__ import annotations

import struct

import pytest

from codec_specs import (
    AFTER,
    ECHO,
    FIXED,
    HTTPISH,
    KEPT,
    LINES,
    MEMCACHE_TEXT,
    MEMCACHED,
    MQTT,
    NETSTRING,
    ODD,
    VARINT,
)
from protogen.errors import (
    ChecksumMismatch,
    FrameTooLarge,
    InvalidValue,
    MalformedFrame,
)

# --- FrameTooLarge before the frame is buffered -----------------------------------


def test_length_frame_too_large_from_the_header_alone(codec):
    module = codec(ECHO)
    decoder = module.MessageDecoder(max_frame=1000)
    with pytest.raises(FrameTooLarge) as info:
        decoder.decode(struct.pack(">I", 997))  # 4 + 997 > 1000; no payload sent yet
    assert (info.value.size, info.value.limit) == (1001, 1000)
    frame, end = decoder.decode(struct.pack(">I", 996) + b"x" * 10)
    assert (frame, end) == (None, 0)  # exactly at the limit: waits for more


def test_varint_frame_too_large_from_the_varint_alone(codec):
    module = codec(VARINT)
    with pytest.raises(FrameTooLarge):
        module.MessageDecoder(max_frame=100).decode(bytes([0x80 | 100, 0x00 | 1]))


def test_decimal_frame_too_large_before_the_payload(codec):
    module = codec(NETSTRING)
    decoder = module.NetstringDecoder(max_frame=1000)
    with pytest.raises(FrameTooLarge):
        decoder.decode(b"1001:")
    with pytest.raises(FrameTooLarge):
        decoder.decode(b"10000")  # five digits can only exceed 1000: no need for ':'
    assert decoder.decode(b"1000") == (None, 0)


@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n"])
def test_delimited_frame_too_large_while_scanning(codec, delimiter):
    module = codec(LINES)  # max_frame 64
    decoder = module.LineDecoder()
    assert decoder.decode(b"x" * 64 + b"\r") == (None, 0)  # may still end in "\r\n"
    with pytest.raises(FrameTooLarge):
        decoder.decode(b"x" * 66)
    decoder.reset()
    line, end = decoder.decode(b"y" * 64 + delimiter)
    assert line.line == b"y" * 64 and end == 64 + len(delimiter)
    with pytest.raises(FrameTooLarge):
        module.LineDecoder().decode(b"z" * 65 + delimiter)


def test_composite_head_and_total_size_limits(codec):
    module = codec(HTTPISH)  # max_frame 2048
    with pytest.raises(FrameTooLarge):
        module.HttpRequestDecoder().decode(b"G" * 2100)
    with pytest.raises(FrameTooLarge):  # the declared body alone exceeds the limit
        module.HttpRequestDecoder().decode(
            b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
        )


# --- checksums ------------------------------------------------------------------------


def _odd_packet(module):
    return module.Packet(
        x=7, y=-3, z=0.5, w=1.5, tag=b"tag", version=2, fixed=b"ab", payload=b"payload"
    )


def test_crc32_trailer_detects_a_flipped_body_byte(codec):
    module = codec(ODD)
    wire = bytearray(_odd_packet(module).encode())
    decoded, _ = module.PacketDecoder().decode(bytes(wire))
    assert decoded == _odd_packet(module)
    wire[-6] ^= 0x01
    with pytest.raises(ChecksumMismatch) as info:
        module.PacketDecoder().decode(bytes(wire))
    assert info.value.field == "Packet.crc"


def test_crc16_header_checksum_and_adler32_trailer(codec):
    after = codec(AFTER)
    wire = bytearray(after.encode_chunk(after.Chunk(kind=1, data=b"123456789")))
    # crc16/CCITT-FALSE of "123456789" is 0x29B1, stored big-endian at offset 3
    assert wire[3:5] == b"\x29\xb1"
    wire[-1] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        after.ChunkDecoder().decode(bytes(wire))
    mqtt = codec(MQTT)
    wire = bytearray(mqtt.encode_packet(mqtt.Packet(type_flags=0x30, payload=b"hi")))
    wire[3] ^= 0x20
    with pytest.raises(ChecksumMismatch):
        mqtt.PacketDecoder().decode(bytes(wire))


# --- magic, allowed sets, enums ----------------------------------------------------


def _memcached_request(module, **changes):
    fields = dict(
        opcode=module.Opcode.set,
        data_type=0,
        status=0,
        opaque=9,
        cas=1,
        extras=b"\x00" * 8,
        key=b"key",
        value=b"value",
    )
    fields.update(changes)
    return module.Request(**fields)


def test_magic_enum_and_allowed_values_are_checked_on_decode(codec):
    module = codec(MEMCACHED)
    wire = _memcached_request(module).encode()
    assert wire[0] == 0x80
    with pytest.raises(InvalidValue) as info:
        module.RequestDecoder().decode(b"\x81" + wire[1:])  # a response's magic
    assert info.value.field == "Request.magic"
    with pytest.raises(InvalidValue) as info:
        module.RequestDecoder().decode(wire[:1] + b"\x07" + wire[2:])
    assert info.value.field == "Request.opcode" and info.value.value == 7
    with pytest.raises(InvalidValue) as info:
        module.RequestDecoder().decode(wire[:5] + b"\x01" + wire[6:])
    assert info.value.field == "Request.data_type"
    # the response codec accepts 0x81 and rejects 0x80
    response = module.Response(
        **{
            k: getattr(_memcached_request(module), k)
            for k in (
                "opcode",
                "data_type",
                "status",
                "opaque",
                "cas",
                "extras",
                "key",
                "value",
            )
        }
    )
    assert module.encode_response(response)[0] == 0x81
    with pytest.raises(InvalidValue):
        module.ResponseDecoder().decode(wire)


def test_decoded_enum_fields_are_enum_members(codec):
    module = codec(MEMCACHED)
    frame, _ = module.RequestDecoder().decode(
        _memcached_request(module, opcode=4).encode()
    )
    assert frame.opcode is module.Opcode.delete
    assert (frame.key_length, frame.extras_length, frame.total_body_length) == (
        3,
        8,
        16,
    )
    assert module.DISPATCH_FIELD == "opcode" and module.DISPATCH_ENUM is module.Opcode


def test_fixed_frame_magic_and_allowed(codec):
    module = codec(FIXED)
    reading = module.Reading(
        version=1, kind=module.Opcode.get, sensor=5, delta=-1, value=0.25
    )
    wire = reading.encode()
    assert len(wire) == 16 and wire[4:8] == (5).to_bytes(4, "little")
    with pytest.raises(InvalidValue):
        module.ReadingDecoder().decode(b"XX" + wire[2:])
    with pytest.raises(InvalidValue):
        module.ReadingDecoder().decode(wire[:2] + b"\x03" + wire[3:])


# --- malformed input ---------------------------------------------------------------


def test_body_fields_longer_than_the_frame_are_malformed(codec):
    module = codec(MEMCACHED)
    wire = bytearray(_memcached_request(module).encode())
    wire[2:4] = (200).to_bytes(2, "big")  # key_length beyond the body
    with pytest.raises(MalformedFrame):
        module.RequestDecoder().decode(bytes(wire))


def test_length_shorter_than_the_header_is_malformed(codec):
    module = codec(AFTER)
    with pytest.raises(MalformedFrame):
        module.ChunkDecoder().decode(b"\x01\x00\x01\x00\x00")  # frame_len = 2 < 5


@pytest.mark.parametrize(
    "wire",
    [
        bytes([0x80] * 10) + b"\x01",  # 11-byte LEB128
        b"\x81\x00",  # non-minimal
        bytes([0xFF] * 9) + b"\x02",  # beyond 64 bits
    ],
)
def test_bad_leb128_varints(codec, wire):
    module = codec(VARINT)
    with pytest.raises((MalformedFrame, FrameTooLarge)) as info:
        module.MessageDecoder(max_frame=1 << 70).decode(wire)
    assert isinstance(info.value, MalformedFrame)


def test_mqtt_varint_is_at_most_four_bytes(codec):
    module = codec(MQTT)
    with pytest.raises(MalformedFrame):
        module.PacketDecoder(max_frame=1 << 40).decode(b"\x30\xff\xff\xff\xff\x01")
    assert module.PacketDecoder().decode(b"\x30\xff\xff") == (None, 0)  # incomplete
    with pytest.raises(ValueError):
        module.encode_packet(module.Packet(type_flags=0, payload=b"x" * 268_435_456))


@pytest.mark.parametrize(
    "wire", [b":", b"05:hello,", b"5;hello,", b"5:hello;", b"x", b"3:a"[:0] + b"-1:"]
)
def test_bad_netstrings(codec, wire):
    module = codec(NETSTRING)
    with pytest.raises(MalformedFrame):
        module.NetstringDecoder().decode(wire)


def test_netstring_incomplete_is_not_an_error(codec):
    module = codec(NETSTRING)
    for prefix in (b"", b"5", b"5:", b"5:hel", b"5:hello"):
        assert module.NetstringDecoder().decode(prefix) == (None, 0)


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nContent-Length: abc",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
        b"POST / HTTP/1.1\r\nContent-Length: -1",
    ],
)
def test_bad_content_length(codec, head):
    module = codec(HTTPISH)
    with pytest.raises(MalformedFrame):
        module.HttpRequestDecoder().decode(head + b"\r\n\r\n")


def test_memcached_text_body_trailer_and_missing_length(codec):
    module = codec(MEMCACHE_TEXT)
    with pytest.raises(MalformedFrame):
        module.CommandDecoder().decode(b"set k 0 0 5\r\nhelloXX")
    with pytest.raises(MalformedFrame):
        module.CommandDecoder().decode(b"set k 0\r\n")
    frame, end = module.CommandDecoder().decode(b"delete k 0 0 5\r\n")
    assert (frame.head, frame.body, end) == (b"delete k 0 0 5", b"", 16)


# --- encoder validation ---------------------------------------------------------------


def test_encoders_reject_bad_values_with_value_error(codec):
    memcached = codec(MEMCACHED)
    with pytest.raises(ValueError, match="opcode"):
        _memcached_request(memcached, opcode=9).encode()
    with pytest.raises(ValueError, match="data_type"):
        _memcached_request(memcached, data_type=1).encode()
    with pytest.raises(ValueError):
        _memcached_request(memcached, opaque=1 << 32).encode()
    with pytest.raises(ValueError):
        _memcached_request(memcached, key=b"k" * 70000).encode()
    odd = codec(ODD)
    with pytest.raises(ValueError, match="tag"):
        odd.Packet(
            x=1, y=1, z=0.0, w=0.0, tag=b"toolong", version=1, fixed=b"ab", payload=b""
        ).encode()
    with pytest.raises(ValueError):
        odd.Packet(
            x=1,
            y=1 << 40,
            z=0.0,
            w=0.0,
            tag=b"abc",
            version=1,
            fixed=b"ab",
            payload=b"",
        ).encode()
    with pytest.raises(ValueError, match="fixed"):
        odd.Packet(
            x=1, y=1, z=0.0, w=0.0, tag=b"abc", version=1, fixed=b"a", payload=b""
        ).encode()
    lines = codec(LINES)
    with pytest.raises(ValueError, match="delimiter"):
        lines.encode_line(lines.Line(b"two\nlines"))
    kept = codec(KEPT)
    with pytest.raises(ValueError):
        kept.encode_record(kept.Record(b"no delimiter"))
    assert kept.encode_record(kept.Record(b"done|")) == b"done|"
    http = codec(HTTPISH)
    with pytest.raises(ValueError):
        http.encode_http_request(
            http.HttpRequest(b"GET / HTTP/1.1", b"unexpected body")
        )
    with pytest.raises(ValueError):
        http.encode_http_request(
            http.HttpRequest(b"POST / HTTP/1.1\r\nContent-Length: 3", b"x")
        )
