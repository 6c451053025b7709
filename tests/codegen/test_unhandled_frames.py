"""A frame whose callback the handler does not override is not dropped
silently: one WARNING per callback (bounded, whatever the peer sends)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from handler_helpers import FakeConn, build

SPEC = """protocol ops
transport tcp

enum Op : u8 {
    get = 1
    put = 2
}

frame Request {
    framing fixed 2
    header big {
        op: Op
        arg: u8
    }
    dispatch on op allow_unknown
}
"""


def test_each_unhandled_callback_is_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    modules = build(SPEC, tmp_path)
    handled: list[int] = []

    class OnlyGets(modules["handler"].OpsHandler):  # type: ignore[name-defined, misc]
        def on_get(self, conn: object, frame: object) -> None:
            handled.append(frame.arg)  # type: ignore[attr-defined]

    handler = OnlyGets()
    wire = b"".join(struct.pack("BB", op, n) for n in range(3) for op in (1, 2, 9, 77))
    with caplog.at_level(logging.WARNING, logger="protogen.handler"):
        handler.on_traffic(FakeConn(wire))
    assert handled == [0, 1, 2]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings  # on_put once, on_unknown_op once
    assert "OnlyGets: a Request with op=<Op.put: 2> arrived but neither on_put" in warnings[0]
    assert "on_unknown_op" in warnings[1] and "op=9" in warnings[1]
