"""Each kind of protocol error, sent to a generated server over loopback: the
offending connection is closed, the typed error reaches `on_close(conn, err)`, and
a second, well-behaved connection is answered before and after."""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

import robust_specs as specs
from robust_harness import Served, closed_by_server, connect, port_of, recv_exact

MIB = 1 << 20


@pytest.fixture(scope="module")
def server_for(
    built: Callable[[str], tuple[Path, str, ModuleType]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], tuple[Served, ModuleType]]]:
    """server_for(spec_text) -> (running server, codec); one server per spec."""
    running: dict[str, tuple[Served, ModuleType]] = {}

    def _server_for(spec_text: str) -> tuple[Served, ModuleType]:
        if spec_text not in running:
            directory, protocol, codec = built(spec_text)
            work = tmp_path_factory.mktemp(f"serve-{protocol}")
            running[spec_text] = (Served(directory, protocol, work), codec)
        return running[spec_text]

    yield _server_for
    for served, _ in running.values():
        assert served.stop() == 0, served.stderr()


def good_frame(codec: ModuleType, n: int) -> Any:
    """A valid frame of the spec's (only) frame type, distinct for each n."""
    frame_class = codec.FRAMES[0]
    if codec.PROTOCOL == "robreq":
        return frame_class(op=codec.Op.echo, payload=b"good %d" % n)
    if codec.PROTOCOL == "robhttp":
        body = b"body %d" % n
        return frame_class(
            head=b"POST / HTTP/1.1\r\nContent-Length: %d" % len(body), body=body
        )
    if codec.PROTOCOL == "robmc":
        body = b"value %d" % n
        return frame_class(head=b"set key 0 0 %d" % len(body), body=body)
    return frame_class(payload=b"good %d" % n)


def assert_answered(sock: socket.socket, codec: ModuleType, n: int) -> None:
    """One request on the good connection gets its echo back."""
    wire = good_frame(codec, n).encode()
    sock.sendall(wire)
    assert recv_exact(sock, len(wire)) == wire


GARBAGE = random.Random(6).randbytes(4096)


# name -> (spec, bad bytes, expected error type)
CASES: dict[str, tuple[str, bytes, str]] = {
    "bad-magic": (specs.REQUEST, b"\xbe\xef\x01\x00\x00\x00\x02hi", "InvalidValue"),
    "enum-value": (specs.REQUEST, b"\xca\xfe\x07\x00\x00\x00\x02hi", "InvalidValue"),
    "overlong-varint": (specs.VARINT, b"\xff" * 11 + b"x", "MalformedFrame"),
    "composite-header-not-a-number": (
        specs.HTTPISH,
        b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "MalformedFrame",
    ),
    "composite-token-missing": (
        specs.MEMCACHEISH,
        b"set key 0 0\r\n",
        "MalformedFrame",
    ),
    "composite-body-trailer": (
        specs.MEMCACHEISH,
        b"set key 0 0 2\r\nokXX",
        "MalformedFrame",
    ),
    # Random bytes whose first two are not the magic: only a ProtocolError, never
    # another exception (which would be logged as a handler crash).
    "garbage": (specs.REQUEST, GARBAGE, "InvalidValue"),
    "garbage-lines-overlong": (
        specs.LINES,
        GARBAGE.replace(b"\n", b"") * 4,
        "FrameTooLarge",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_protocol_error_closes_only_the_offender(
    case: str, server_for: Callable[[str], tuple[Served, ModuleType]]
) -> None:
    spec_text, bad_bytes, expected = CASES[case]
    served, codec = server_for(spec_text)
    with connect(served.url) as good, connect(served.url) as bad:
        assert_answered(good, codec, 1)
        bad.sendall(bad_bytes)
        assert closed_by_server(bad, 10), "the offending connection stayed open"
        closed = served.close_of(port_of(bad))
        assert closed["err"] == expected, closed
        # The good connection is untouched and still served.
        assert_answered(good, codec, 2)
        assert_answered(good, codec, 3)
        assert not served.find("close", peer=port_of(good))
    assert "Traceback" not in served.log(), served.log()  # a protocol error is no crash


def stream_until_closed(sock: socket.socket, budget: int) -> tuple[int, bool]:
    """Send zeros until `budget` bytes are sent or the server cuts us off."""
    chunk = bytes(256 * 1024)
    sent = 0
    try:
        while sent < budget:
            sent += sock.send(chunk[: budget - sent])
    except (BrokenPipeError, ConnectionResetError):
        return sent, True
    except socket.timeout:
        return sent, False
    return sent, False


@pytest.mark.parametrize(
    ("spec_name", "header"),
    [
        # magic, op, and a length announcing 1 GiB: the decoder's path.
        ("REQUEST", b"\xca\xfe\x02" + (1 << 30).to_bytes(4, "big")),
        # A bare 4-byte length announcing 1 GiB: the handler's inline fast path.
        ("ECHO", (1 << 30).to_bytes(4, "big")),
        # A line that never ends (no delimiter at all).
        ("LINES", b"x" * 1024),
    ],
)
def test_oversize_frame_is_rejected_before_it_is_buffered(
    spec_name: str,
    header: bytes,
    server_for: Callable[[str], tuple[Served, ModuleType]],
) -> None:
    served, codec = server_for(getattr(specs, spec_name))
    with connect(served.url) as good, connect(served.url, timeout=10) as bad:
        assert_answered(good, codec, 1)
        rss_before = served.rss()
        budget = 256 * MIB  # far more than the loopback buffers can hold
        sent_box: list[tuple[int, bool]] = []
        bad.sendall(header)
        sender = threading.Thread(
            target=lambda: sent_box.append(stream_until_closed(bad, budget)),
            daemon=True,
        )
        sender.start()
        sender.join(20)
        assert not sender.is_alive(), "the server kept reading the oversize frame"
        sent, cut_off = sent_box[0]
        assert cut_off, f"all {sent} bytes were accepted: the frame was buffered"
        assert sent < budget
        closed = served.close_of(port_of(bad))
        assert closed["err"] == "FrameTooLarge", closed
        # Rejected on the header (or after max_frame bytes of a line): the server
        # never held the megabytes the client pushed into the kernel's buffers.
        assert served.rss() - rss_before < 16 * MIB
        assert_answered(good, codec, 2)


def test_frames_before_the_bad_bytes_are_answered_before_the_close(
    server_for: Callable[[str], tuple[Served, ModuleType]],
) -> None:
    """Frames pipelined before the bad bytes were handled: their answers must reach
    the client even though the client is still sending when the server closes (a
    close with unread input makes the kernel reset the connection and drop what it
    had not sent yet, unless the server waits for it to be delivered)."""
    served, codec = server_for(specs.ECHO)
    frames = [codec.Message(payload=b"%06d" % n + bytes(994)) for n in range(3000)]
    wire = b"".join(frame.encode() for frame in frames)
    with connect(served.url, timeout=10) as sock:
        sock.sendall(wire + (1 << 31).to_bytes(4, "big") + bytes(100_000))
        time.sleep(0.3)  # the server has answered everything and closed by now
        reader = codec.MessageReader()
        answers: list[bytes] = []
        try:
            while chunk := sock.recv(1 << 16):
                answers.extend(bytes(f.payload[:6]) for f in reader.feed(chunk))
        except ConnectionResetError:
            pass
        assert served.close_of(port_of(sock))["err"] == "FrameTooLarge"
        assert answers == [b"%06d" % n for n in range(len(frames))], len(answers)
