"""`dispatch on FIELD`: one handler method per enum member, a fallback, replies
of the server-encodes frame, and a configurable handler base class."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from handler_helpers import FakeConn, build
from protogen.errors import ChecksumMismatch, InvalidValue
from protogen.runtime import Action, EventHandler

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

KV = """
protocol kv
transport tcp
enum Opcode : u8 { get = 0x00, set = 0x01, delete = 0x04 }
frame Request {
    framing length(length)
    header big {
        magic: u8 = 0x80
        opcode: Opcode
        key_length: u16
        length: u32
        crc: u32 = crc32[12:]
    }
    body {
        key: bytes[key_length]
        value: bytes[rest]
    }
    dispatch on opcode
}
frame Response {
    framing length(length)
    header big {
        magic: u8 = 0x81
        status: u16
        length: u32
    }
    body { value: bytes[rest] }
}
server decodes Request encodes Response
"""

BASED = """
protocol based
transport tcp
handler_base "handler_bases:CountingBase"
frame Ping {
    framing fixed 2
    header big { seq: u16 }
}
"""

BASES = '''
from protogen.runtime import EventHandler

class CountingBase(EventHandler):
    """A user base class: counts on_traffic calls."""
    def __init__(self):
        super().__init__()
        self.created = True
'''


@pytest.fixture(scope="module")
def kv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    root = tmp_path_factory.mktemp("kv")
    yield build(KV, root)
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def sensors(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, ModuleType]]:
    root = tmp_path_factory.mktemp("sensors")
    yield build((EXAMPLES / "fixed.proto.dsl").read_text(), root)
    sys.path.remove(str(root))


class Store:
    """A tiny key-value server written against the generated KvHandler."""

    def __init__(self, modules: dict[str, ModuleType]) -> None:
        codec = modules["codec"]
        calls: list[str] = []
        self.calls = calls
        data: dict[bytes, bytes] = {}

        class StoreHandler(modules["handler"].KvHandler):  # type: ignore[misc, name-defined]
            def on_get(self, conn: Any, frame: Any) -> None:
                calls.append("get")
                value = data.get(bytes(frame.key))
                self.send(
                    conn,
                    codec.Response(
                        status=0 if value is not None else 1, value=value or b""
                    ),
                )

            def on_set(self, conn: Any, frame: Any) -> None:
                calls.append("set")
                data[bytes(frame.key)] = bytes(frame.value)
                self.send(conn, codec.Response(status=0, value=b""))

            def on_request(
                self, conn: Any, frame: Any
            ) -> None:  # delete: not overridden
                calls.append(f"fallback:{frame.opcode.name}")
                self.send(conn, codec.Response(status=2, value=b""))

        self.handler = StoreHandler()
        self.codec = codec

    def request(self, opcode: str, key: bytes, value: bytes = b"") -> bytes:
        frame = self.codec.Request(
            opcode=getattr(self.codec.Opcode, opcode), key=key, value=value
        )
        return frame.encode()


def test_one_method_per_enum_member_plus_generic_fallback(
    kv: dict[str, ModuleType],
) -> None:
    store = Store(kv)
    wire = (
        store.request("set", b"k", b"v1")
        + store.request("get", b"k")
        + store.request("delete", b"k")
        + store.request("get", b"missing")
    )
    conn = FakeConn(wire)
    assert not store.handler.on_traffic(conn)  # None or Action.NONE: keep going
    assert store.calls == ["set", "get", "fallback:delete", "get"]
    replies, consumed = kv["codec"].ResponseDecoder().decode_all(b"".join(conn.written))
    assert consumed == len(b"".join(conn.written))
    assert [(r.status, r.value) for r in replies] == [
        (0, b""),
        (0, b"v1"),
        (2, b""),
        (1, b""),
    ]
    assert conn.discards == [len(wire)]


def test_every_member_has_a_method_and_the_codec_names_the_field(
    kv: dict[str, ModuleType],
) -> None:
    handler_class = kv["handler"].KvHandler
    for member in kv["codec"].Opcode:
        assert callable(getattr(handler_class, f"on_{member.name}"))
    assert callable(handler_class.on_unknown_opcode)
    assert kv["codec"].DISPATCH_FIELD == "opcode"


def test_checksum_errors_propagate_after_good_frames(kv: dict[str, ModuleType]) -> None:
    store = Store(kv)
    good = store.request("set", b"a", b"1")
    bad = bytearray(store.request("set", b"b", b"2"))
    bad[-1] ^= 0xFF  # corrupt the value: the crc no longer matches
    conn = FakeConn(good + bytes(bad))
    with pytest.raises(ChecksumMismatch):
        store.handler.on_traffic(conn)
    assert store.calls == ["set"]
    assert conn.discards == [len(good)]


def test_echo_handler_of_a_two_frame_spec_echoes_the_decoded_frame(
    kv: dict[str, ModuleType],
) -> None:
    store = Store(kv)
    wire = store.request("get", b"key")
    conn = FakeConn(wire)
    kv["handler"].EchoKvHandler().on_traffic(conn)
    assert conn.written == [wire]


def test_sensor_readings_dispatch_on_kind_over_streams_and_datagrams(
    sensors: dict[str, ModuleType],
) -> None:
    codec = sensors["codec"]
    seen: list[tuple[str, int]] = []

    class Sensors(sensors["handler"].SensorsHandler):  # type: ignore[misc, name-defined]
        def on_temperature(self, conn: Any, frame: Any) -> None:
            seen.append(("temperature", frame.sensor_id))

        def on_reading(self, conn: Any, frame: Any) -> None:
            seen.append(("other", frame.sensor_id))

    def reading(kind: str, sensor_id: int) -> bytes:
        return codec.Reading(
            version=1, kind=codec.Kind[kind], sensor_id=sensor_id, delta=-3, value=21.5
        ).encode()

    handler = Sensors()
    stream = FakeConn(
        reading("temperature", 1)
        + reading("humidity", 2)
        + reading("temperature", 3)[:5]
    )
    handler.on_traffic(stream)
    datagram = FakeConn(
        reading("pressure", 4) + reading("temperature", 5), datagram=True
    )
    handler.on_traffic(datagram)
    assert seen == [("temperature", 1), ("other", 2), ("other", 4), ("temperature", 5)]
    assert stream.discards == [32]


def test_an_enum_value_outside_the_enum_is_an_invalid_value(
    sensors: dict[str, ModuleType],
) -> None:
    codec = sensors["codec"]
    wire = bytearray(
        codec.Reading(
            version=1, kind=codec.Kind.humidity, sensor_id=9, delta=0, value=0.0
        ).encode()
    )
    wire[3] = 99  # kind
    with pytest.raises(InvalidValue):
        sensors["handler"].SensorsHandler().on_traffic(FakeConn(bytes(wire)))


def test_handler_base_from_the_spec(tmp_path: Path) -> None:
    (tmp_path / "handler_bases.py").write_text(textwrap.dedent(BASES))
    sys.path.insert(0, str(tmp_path))
    try:
        modules = build(BASED, tmp_path)
        base = sys.modules["handler_bases"].CountingBase
        handler = modules["handler"].BasedHandler()
        assert isinstance(handler, base) and isinstance(handler, EventHandler)
        assert handler.created
        conn = FakeConn(b"\x00\x07\x00\x08")
        modules["handler"].EchoBasedHandler().on_traffic(conn)
        assert conn.written == [b"\x00\x07", b"\x00\x08"]
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("handler_bases", None)


CLASH = """
protocol clash
transport tcp
enum Op : u8 { open = 1, close = 2, get = 3, message = 4 }
frame Message {
    framing fixed 2
    header big { op: Op  arg: u8 }
    dispatch on op
}
"""


def test_members_named_like_runtime_callbacks_get_prefixed_methods(
    tmp_path: Path,
) -> None:
    modules = build(CLASH, tmp_path)
    try:
        handler_class = modules["handler"].ClashHandler
        # on_open / on_close stay the runtime's callbacks; on_message the generic one.
        assert handler_class.on_open is EventHandler.on_open
        assert handler_class.on_close is EventHandler.on_close
        calls: list[str] = []

        class Clash(handler_class):  # type: ignore[misc, valid-type]
            def on_op_open(self, conn: Any, frame: Any) -> None:
                calls.append("op_open")

            def on_get(self, conn: Any, frame: Any) -> None:
                calls.append("get")

            def on_message(self, conn: Any, frame: Any) -> None:
                calls.append(f"generic:{frame.op.name}")

        Clash().on_traffic(FakeConn(b"\x01\x00\x03\x00\x02\x00\x04\x00"))
        assert calls == ["op_open", "get", "generic:close", "generic:message"]
    finally:
        sys.path.remove(str(tmp_path))
