"""The generated handler's decode loop, driven through a fake connection.

The fake (handler_helpers.FakeConn) records what the handler did, so each test
can assert exactly how many frames reached the callbacks and how many bytes
were consumed.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handler_helpers import FakeConn, build
from protogen.errors import FrameTooLarge, MalformedFrame
from protogen.runtime import Action, EventHandler

ECHO = """
protocol echo
transport tcp
max_frame 16 MiB
frame Message {
    framing length(length)
    header big { length: u32 }
    body { payload: bytes[rest] }
}
"""

# Same framing plus a magic byte: the handler must use the decoder, not the inline loop.
TAGGED = """
protocol tagged
transport tcp
frame Message {
    framing length(length)
    max_frame 1 KiB
    header big {
        magic: u8 = 0x7e
        length: u16
    }
    body { payload: bytes[rest] }
}
"""

LINES = """
protocol lines
transport tcp, udp
frame Line {
    framing delimited "\\r\\n", "\\n"
    max_frame 64 B
    body { line: bytes[rest] }
}
"""


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, dict[str, ModuleType]]]:
    root = tmp_path_factory.mktemp("generated")
    yield {
        name: build(text, root)
        for name, text in (("echo", ECHO), ("tagged", TAGGED), ("lines", LINES))
    }
    sys.path.remove(str(root))


def recording(handler_class: type, callback: str) -> tuple[Any, list[bytes]]:
    """A handler subclass instance whose `callback` records each frame's first body field."""
    seen: list[Any] = []

    class Recorder(handler_class):  # type: ignore[misc, valid-type]
        pass

    def record(self: Any, conn: Any, frame: Any) -> None:
        seen.append(frame)

    setattr(Recorder, callback, record)
    return Recorder(), seen


def echo_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


# --- the inline length-prefix loop (echo) -------------------------------------------


def test_echo_handler_uses_the_inline_length_loop(generated: Any) -> None:
    source = Path(generated["echo"]["handler"].__file__).read_text()
    assert "unpack_length(data, pos)" in source
    assert "unpack_length = MESSAGE_LENGTH_PREFIX.unpack_from" in source
    assert "decode(data, pos)" not in source
    tagged = Path(generated["tagged"]["handler"].__file__).read_text()
    assert "decode(data, pos)" in tagged


def test_many_frames_in_one_read_are_consumed_with_one_discard(generated: Any) -> None:
    handler, seen = recording(generated["echo"]["handler"].EchoHandler, "on_message")
    payloads = [b"one", b"", b"three" * 100]
    conn = FakeConn(
        b"".join(echo_frame(p) for p in payloads) + echo_frame(b"partial")[:6]
    )
    assert not handler.on_traffic(conn)  # None or Action.NONE: keep going
    assert [bytes(frame.payload) for frame in seen] == payloads
    assert conn.discards == [sum(4 + len(p) for p in payloads)]
    assert bytes(conn.inbound) == echo_frame(b"partial")[:6]


def test_a_frame_dribbling_in_byte_by_byte_is_delivered_once_whole(
    generated: Any,
) -> None:
    handler, seen = recording(generated["echo"]["handler"].EchoHandler, "on_message")
    wire = echo_frame(b"hello") + echo_frame(b"world")
    conn = FakeConn()
    delivered_at = []
    for index, byte in enumerate(wire):
        conn.feed(bytes([byte]))
        handler.on_traffic(conn)
        if len(seen) > len(delivered_at):
            delivered_at.append(index + 1)
    assert [bytes(frame.payload) for frame in seen] == [b"hello", b"world"]
    assert delivered_at == [9, 18]
    assert conn.discards == [9, 9]
    assert not conn.inbound


def test_oversized_length_fails_fast_after_delivering_earlier_frames(
    generated: Any,
) -> None:
    seen: list[bytes] = []

    class Small(generated["echo"]["handler"].EchoHandler):  # type: ignore[misc, name-defined]
        def on_message(self, conn: Any, frame: Any) -> None:
            seen.append(bytes(frame.payload))

    handler = Small(max_frame=64)
    # Only the 4-byte header of the big frame is buffered: the limit is enforced anyway.
    conn = FakeConn(echo_frame(b"ok") + struct.pack(">I", 1000))
    with pytest.raises(FrameTooLarge) as excinfo:
        handler.on_traffic(conn)
    assert excinfo.value.size == 1004 and excinfo.value.limit == 64
    assert seen == [b"ok"]
    assert conn.discards == [6]


def test_on_protocol_error_hook_decides_the_action(generated: Any) -> None:
    Handler = generated["echo"]["handler"].EchoHandler
    errors: list[Exception] = []

    class Quiet(Handler):  # type: ignore[misc, valid-type]
        def on_protocol_error(self, conn: Any, err: Exception) -> Action:
            errors.append(err)
            conn.write(b"bye")
            return Action.CLOSE

    conn = FakeConn(struct.pack(">I", 2**31))
    assert Quiet(max_frame=1024).on_traffic(conn) == Action.CLOSE
    assert isinstance(errors[0], FrameTooLarge)
    assert conn.written == [b"bye"]


def test_echo_handler_sends_every_frame_back_reencoded(generated: Any) -> None:
    modules = generated["echo"]
    wire = b"".join(echo_frame(p) for p in (b"a", b"bc", b"x" * 70000))
    conn = FakeConn(wire)
    modules["handler"].EchoEchoHandler().on_traffic(conn)
    assert b"".join(conn.written) == wire
    assert modules["server"].DEFAULT_HANDLER is modules["handler"].EchoEchoHandler


def test_send_encodes_the_response_frame(generated: Any) -> None:
    modules = generated["echo"]

    class Upper(modules["handler"].EchoHandler):  # type: ignore[misc, name-defined]
        def on_message(self, conn: Any, frame: Any) -> None:
            self.send(
                conn, modules["codec"].Message(payload=bytes(frame.payload).upper())
            )

    conn = FakeConn(echo_frame(b"shout"))
    Upper().on_traffic(conn)
    assert conn.written == [echo_frame(b"SHOUT")]


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
)
def test_inline_loop_and_decoder_agree_on_any_split(
    payloads: list[bytes], cuts: list[int]
) -> None:
    modules = _echo_modules()
    handler, seen = recording(modules["handler"].EchoHandler, "on_message")
    wire = b"".join(echo_frame(p) for p in payloads)
    conn = FakeConn()
    previous = 0
    for cut in sorted(c for c in cuts if c <= len(wire)) + [len(wire)]:
        conn.feed(wire[previous:cut])
        previous = cut
        handler.on_traffic(conn)
    frames, _ = modules["codec"].MessageDecoder().decode_all(wire)
    assert [bytes(f.payload) for f in seen] == [f.payload for f in frames] == payloads
    assert not conn.inbound


_ECHO_CACHE: dict[str, ModuleType] = {}


def _echo_modules() -> dict[str, ModuleType]:
    # hypothesis tests cannot take function-scoped fixtures; build once per session.
    if not _ECHO_CACHE:
        import tempfile

        _ECHO_CACHE.update(build(ECHO, Path(tempfile.mkdtemp(prefix="protogen-echo-"))))
    return _ECHO_CACHE


# --- the decoder loop (other framings) -------------------------------------------------


def test_decoder_loop_handles_headers_with_constants(generated: Any) -> None:
    modules = generated["tagged"]
    handler, seen = recording(modules["handler"].TaggedHandler, "on_message")
    encode = modules["codec"].encode_message
    Message = modules["codec"].Message
    wire = encode(Message(payload=b"abc")) + encode(Message(payload=b"")) + b"\x7e\x00"
    conn = FakeConn(wire)
    handler.on_traffic(conn)
    assert [f.payload for f in seen] == [b"abc", b""]
    assert conn.discards == [len(wire) - 2]


def test_decoder_loop_lets_protocol_errors_reach_the_runtime(generated: Any) -> None:
    modules = generated["tagged"]
    handler, seen = recording(modules["handler"].TaggedHandler, "on_message")
    good = modules["codec"].encode_message(modules["codec"].Message(payload=b"fine"))
    conn = FakeConn(good + b"\x00\x00\x01junk")  # wrong magic byte
    with pytest.raises(Exception) as excinfo:
        handler.on_traffic(conn)
    assert type(excinfo.value).__name__ == "InvalidValue"
    assert [f.payload for f in seen] == [b"fine"]
    assert conn.discards == [len(good)]


def test_delimited_scan_resumes_per_connection(generated: Any) -> None:
    Handler = generated["lines"]["handler"].LinesHandler
    handler, seen = recording(Handler, "on_line")
    first, second = FakeConn(), FakeConn()
    line = b"x" * 60
    for byte in line:  # byte by byte on one connection, interleaved with another
        first.feed(bytes([byte]))
        handler.on_traffic(first)
        second.feed(b"y")
        handler.on_traffic(second)
    first.feed(b"\r\n")
    handler.on_traffic(first)
    second.feed(b"\n")
    handler.on_traffic(second)
    assert [f.line for f in seen] == [line, b"y" * 60]
    # Each byte was scanned a bounded number of times: linear, not quadratic.
    assert handler._decoders[first].scanned_bytes <= 3 * len(line) + 10
    handler.on_close(first, None)
    assert first not in handler._decoders and second in handler._decoders


def test_delimited_line_too_long_is_refused(generated: Any) -> None:
    handler, _ = recording(generated["lines"]["handler"].LinesHandler, "on_line")
    with pytest.raises(FrameTooLarge):
        handler.on_traffic(FakeConn(b"z" * 200))


def test_datagrams_are_decoded_whole_and_answered_one_by_one(generated: Any) -> None:
    modules = generated["lines"]
    conn = FakeConn(b"alpha\nbeta\r\n", datagram=True)
    modules["handler"].EchoLinesHandler().on_traffic(conn)
    assert conn.written == [b"alpha\r\n", b"beta\r\n"]
    assert not conn.inbound


def test_a_datagram_with_a_partial_frame_is_malformed(generated: Any) -> None:
    handler, seen = recording(generated["lines"]["handler"].LinesHandler, "on_line")
    conn = FakeConn(b"whole\npart", datagram=True)
    with pytest.raises(MalformedFrame, match="not a whole frame"):
        handler.on_traffic(conn)
    assert seen == []
    assert not conn.inbound  # the datagram is dropped either way


def test_generated_handlers_are_event_handlers(generated: Any) -> None:
    for name, modules in generated.items():
        handler_class = getattr(modules["handler"], f"{name.capitalize()}Handler")
        assert issubclass(handler_class, EventHandler)
        assert not handler_class().on_traffic(
            FakeConn()
        )  # None or Action.NONE: keep going


def test_an_unfinished_scan_does_not_leak_into_the_next_datagram(
    generated: Any,
) -> None:
    handler, seen = recording(generated["lines"]["handler"].LinesHandler, "on_line")
    with pytest.raises(MalformedFrame):
        handler.on_traffic(FakeConn(b"no newline in this datagram", datagram=True))
    with pytest.raises(FrameTooLarge):
        handler.on_traffic(FakeConn(b"y" * 100 + b"\n", datagram=True))
    handler.on_traffic(FakeConn(b"ok\r\n", datagram=True))
    assert [f.line for f in seen] == [b"ok"]


# --- callbacks that return an Action ----------------------------------------------


@pytest.mark.parametrize("kind", ["echo", "tagged"])
def test_a_callback_returning_close_stops_the_loop_after_its_frame(
    generated: Any, kind: str
) -> None:
    Handler = getattr(generated[kind]["handler"], f"{kind.title()}Handler")
    callback = "on_message"
    seen: list[Any] = []

    class Quitter(Handler):  # type: ignore[misc, valid-type]
        pass

    def quit_on_second(self: Any, conn: Any, frame: Any) -> Action | None:
        seen.append(frame)
        return Action.CLOSE if len(seen) == 2 else None

    setattr(Quitter, callback, quit_on_second)
    codec = generated[kind]["codec"]
    frames = [codec.Message(payload=b"frame %d" % i) for i in range(4)]
    wire = b"".join(frame.encode() for frame in frames)
    conn = FakeConn(wire)
    assert Quitter().on_traffic(conn) == Action.CLOSE
    assert len(seen) == 2
    # Only the two handled frames were consumed; the rest stays unread.
    assert bytes(conn.inbound) == b"".join(frame.encode() for frame in frames[2:])


def test_reset_decoder_forgets_a_connection_scan(generated: Any) -> None:
    handler, seen = recording(generated["lines"]["handler"].LinesHandler, "on_line")
    conn = FakeConn(b"partial")
    handler.on_traffic(conn)
    assert conn in handler._decoders
    handler.reset_decoder(conn)
    assert conn not in handler._decoders
    conn.feed(b" line\n")
    handler.on_traffic(conn)
    assert [f.line for f in seen] == [b"partial line"]


# --- the default echo handler's raw path -------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
)
def test_echo_writes_back_exactly_what_it_received_for_any_split(
    generated: Any, payloads: list[bytes], cuts: list[int]
) -> None:
    handler = generated["echo"]["handler"].EchoEchoHandler()
    wire = b"".join(echo_frame(p) for p in payloads)
    conn = FakeConn(frame_budget=1000)
    for start, end in zip([0, *sorted(cuts)], [*sorted(cuts), len(wire)]):
        conn.feed(wire[start:end])
        handler.on_traffic(conn)
    assert b"".join(conn.written) == wire
    assert bytes(conn.inbound) == b""


def test_echo_subclass_overriding_on_traffic_keeps_its_own(generated: Any) -> None:
    Handler = generated["echo"]["handler"].EchoEchoHandler

    class Own(Handler):  # type: ignore[misc, valid-type]
        def on_message(self, conn: Any, frame: Any) -> None:
            conn.write(b"typed")

        def on_traffic(self, conn: Any) -> Any:
            conn.write(b"own")
            conn.discard()

    conn = FakeConn(echo_frame(b"x"))
    Own().on_traffic(conn)
    assert conn.written == [b"own"]


def test_echo_enforces_max_frame_after_echoing_earlier_frames(
    generated: Any,
) -> None:
    handler = generated["echo"]["handler"].EchoEchoHandler(max_frame=64)
    conn = FakeConn(echo_frame(b"ok") + struct.pack(">I", 1000))
    with pytest.raises(FrameTooLarge) as excinfo:
        handler.on_traffic(conn)
    assert excinfo.value.size == 1004
    assert conn.written == [echo_frame(b"ok")]
    assert conn.discards == [6]


@pytest.mark.parametrize("spec", ["echo", "tagged"])
def test_a_callback_handles_at_most_its_frame_budget_then_yields(
    generated: Any, spec: str
) -> None:
    codec = generated[spec]["codec"]
    module = generated[spec]["handler"]
    base = module.EchoHandler if spec == "echo" else module.TaggedHandler
    handler, seen = recording(base, "on_message")
    frames = [codec.Message(payload=b"%d" % i).encode() for i in range(10)]
    conn = FakeConn(b"".join(frames), frame_budget=4)
    assert handler.on_traffic(conn) == Action.YIELD  # call again for the rest
    assert len(seen) == 4
    assert conn.discards == [sum(map(len, frames[:4]))]
    assert handler.on_traffic(conn) == Action.YIELD
    assert not handler.on_traffic(conn)  # the last two: nothing left after them
    assert [bytes(f.payload) for f in seen] == [b"%d" % i for i in range(10)]
    assert bytes(conn.inbound) == b""


def test_decoding_stops_as_soon_as_the_output_is_over_the_high_water_mark(
    generated: Any,
) -> None:
    Handler = generated["echo"]["handler"].EchoHandler
    seen: list[bytes] = []

    class Pausing(Handler):  # type: ignore[misc, valid-type]
        def on_message(self, conn: Any, frame: Any) -> None:
            seen.append(bytes(frame.payload))
            if len(seen) == 2:
                conn.write_paused = True  # what the runtime's write does at high water

    conn = FakeConn(b"".join(echo_frame(b"%d" % i) for i in range(5)))
    assert Pausing().on_traffic(conn) == Action.YIELD
    assert seen == [b"0", b"1"]
    assert bytes(conn.inbound) == b"".join(echo_frame(b"%d" % i) for i in (2, 3, 4))


def test_an_unfinished_frame_announces_its_size(generated: Any) -> None:
    handler = generated["echo"]["handler"].EchoEchoHandler()
    conn = FakeConn(echo_frame(b"done") + echo_frame(b"x" * 5000)[:100])
    handler.on_traffic(conn)
    assert conn.hints == [5004]  # the runtime sizes the frame's buffer once


def test_a_datagram_with_more_frames_than_the_cap_is_refused_whole(
    generated: Any,
) -> None:
    Handler = generated["lines"]["handler"].EchoLinesHandler
    handler = Handler()
    handler.max_frames_per_datagram = 3
    conn = FakeConn(b"a\nb\nc\n", datagram=True)
    handler.on_traffic(conn)
    assert conn.written == [b"a\r\n", b"b\r\n", b"c\r\n"]  # re-encoded
    conn = FakeConn(b"a\nb\nc\nd\n", datagram=True)
    with pytest.raises(MalformedFrame, match="more than 3 frames"):
        handler.on_traffic(conn)
    assert conn.written == []


# --- on the runtime's loop (a real Conn: the inline send path, backpressure) ------


def serve_pair(handler: Any, request: bytes, **options: Any) -> Any:
    """One EventLoop in a thread serving one socketpair, `request` written before
    it runs (one read). Returns (client socket, loop, thread)."""
    import socket
    import threading

    from protogen.runtime import Options
    from protogen.runtime.eventloop import EventLoop

    loop = EventLoop(handler, Options(install_signal_handlers=False, **options))
    server_end, client_end = socket.socketpair()
    client_end.settimeout(20.0)
    client_end.sendall(request)
    loop.enroll(server_end, ("pair", 1))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return client_end, loop, thread


def recv_all(sock: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def stop(loop: Any, thread: Any, client: Any) -> None:
    loop.request_stop()
    thread.join(20.0)
    assert not thread.is_alive()
    loop.close()
    client.close()


def test_send_and_raw_writes_keep_their_order_within_a_read(generated: Any) -> None:
    # send() appends to the running callback's queue itself (not through
    # conn.write): raw writes around it must stay where they were made.
    module = generated["echo"]
    Message = module["codec"].Message

    class Bracketing(module["handler"].EchoHandler):  # type: ignore[misc, valid-type]
        def on_message(self, conn: Any, frame: Any) -> None:
            conn.write(b"<")
            self.send(conn, Message(bytes(frame.payload)))
            self.send(conn, Message(b"+"))
            conn.write(b">")

    payloads = [b"%d" % i * 3 for i in range(6)]
    expected = b"".join(
        b"<" + echo_frame(p) + echo_frame(b"+") + b">" for p in payloads
    )
    client, loop, thread = serve_pair(
        Bracketing(), b"".join(echo_frame(p) for p in payloads)
    )
    assert recv_all(client, len(expected)) == expected
    stop(loop, thread, client)


def test_replies_over_the_high_water_mark_stop_the_read_at_once(
    generated: Any,
) -> None:
    # The second reply takes the queue over write_high_water: decoding stops
    # after that frame (the rest is handled once the output drained).
    module = generated["echo"]
    Message = module["codec"].Message
    per_call: list[int] = []

    class Counting(module["handler"].EchoHandler):  # type: ignore[misc, valid-type]
        def on_traffic(self, conn: Any) -> Any:
            per_call.append(0)
            return super().on_traffic(conn)

        def on_message(self, conn: Any, frame: Any) -> None:
            per_call[-1] += 1
            self.send(conn, Message(bytes(frame.payload)))

    payloads = [bytes([65 + i]) * 64 for i in range(10)]
    request = b"".join(echo_frame(p) for p in payloads)
    client, loop, thread = serve_pair(
        Counting(), request, write_high_water=100, write_low_water=50
    )
    assert recv_all(client, len(request)) == request
    stop(loop, thread, client)
    assert per_call[0] == 2  # 68 + 68 bytes queued > 100
    assert sum(per_call) == len(payloads)


@pytest.mark.parametrize("size", [300, 20_000])
def test_a_frame_straddling_reads_is_answered_whole(generated: Any, size: int) -> None:
    # Kept in the shared buffer (small) or in a pooled buffer of its own (large),
    # read in place by the decode loop once the rest arrived.
    module = generated["echo"]
    whole = echo_frame(b"first") + echo_frame(b"second")
    straddling = echo_frame(bytes(range(256)) * (size // 256) + b"z")
    client, loop, thread = serve_pair(
        module["handler"].EchoEchoHandler(), whole + straddling[:100]
    )
    assert recv_all(client, len(whole)) == whole
    client.sendall(straddling[100:])
    assert recv_all(client, len(straddling)) == straddling
    stop(loop, thread, client)
