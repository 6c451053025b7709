"""The generated handler of a spec with phases: each phase decodes its own frames,
chosen by their first bytes; a switch takes effect at the next unread byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from handler_helpers import FakeConn, build
from protogen.errors import MalformedFrame

SPEC = (Path(__file__).parent / "specs" / "phased.proto.dsl").read_text()
HELLO = b"HELO\x01"


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build(SPEC, tmp_path_factory.mktemp("phased"))


def recorder(modules: dict[str, ModuleType], switch_on_binary: bool = True):
    handler_module = modules["handler"]
    Phase = handler_module.Phase

    class Recorder(handler_module.PhasedHandler):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, str, object]] = []
            self.errors: list[Exception] = []

        def _note(self, conn, frame) -> None:
            name = type(frame).__name__
            self.seen.append((self.phase(conn).name, name, frame))

        def on_hello(self, conn, frame):
            self._note(conn, frame)

        def on_command(self, conn, frame):
            self._note(conn, frame)

        def on_counted(self, conn, frame):
            self._note(conn, frame)

        def on_binary(self, conn, frame):  # Control with kind == binary
            self._note(conn, frame)
            if switch_on_binary:
                self.switch(conn, Phase.Binary)

        def on_control(self, conn, frame):
            self._note(conn, frame)

        def on_packet(self, conn, frame):
            self._note(conn, frame)

        def on_protocol_error(self, conn, err):
            self.errors.append(err)
            conn.write(b"-ERR " + str(err).encode())
            return modules["handler"].Action.CLOSE

    return Recorder()


def test_connections_start_in_the_start_phase_and_move_on_by_themselves(
    modules,
) -> None:
    handler = recorder(modules)
    conn = FakeConn(HELLO + b"ping\n*\x00\x02hi")
    assert handler.on_traffic(conn) is None
    # `Hello then Commands`: its callback already runs in the next phase.
    assert [(phase, name) for phase, name, _ in handler.seen] == [
        ("Commands", "Hello"),
        ("Commands", "Command"),
        ("Commands", "Counted"),
    ]
    assert bytes(handler.seen[1][2].line) == b"ping"
    assert bytes(handler.seen[2][2].payload) == b"hi"
    assert not conn.inbound


def test_a_switch_decodes_the_bytes_already_buffered_in_the_new_phase(modules) -> None:
    handler = recorder(modules)
    # In Commands "\x01\x02..." would be a Command line; after the switch it is a Packet.
    stream = HELLO + b"!\x02" + b"\x01\x02\x03abc" + b"\x03\x01" + b"back\n"
    conn = FakeConn(stream)
    assert handler.on_traffic(conn) is None
    names = [(phase, name) for phase, name, _ in handler.seen]
    assert names == [
        ("Commands", "Hello"),
        ("Commands", "Control"),
        ("Binary", "Packet"),
        ("Commands", "Control"),
        ("Commands", "Command"),
    ]
    assert bytes(handler.seen[2][2].payload) == b"abc"
    assert bytes(handler.seen[4][2].line) == b"back"
    assert not conn.inbound


def test_a_switch_point_split_across_reads_loses_and_repeats_nothing(modules) -> None:
    stream = HELLO + b"!\x02" + b"\x01\x02\x03abc" + b"\x03\x01" + b"back\n"
    for cut in range(len(stream) + 1):
        handler = recorder(modules)
        conn = FakeConn(stream[:cut])
        handler.on_traffic(conn)
        conn.feed(stream[cut:])
        handler.on_traffic(conn)
        assert [name for _, name, _ in handler.seen] == [
            "Hello",
            "Control",
            "Packet",
            "Control",
            "Command",
        ], cut
        assert not conn.inbound


def test_without_a_switch_the_same_bytes_are_a_command(modules) -> None:
    handler = recorder(modules, switch_on_binary=False)
    conn = FakeConn(HELLO + b"!\x02" + b"\x01\x02\x03abc\n")
    handler.on_traffic(conn)
    assert [name for _, name, _ in handler.seen] == ["Hello", "Control", "Command"]


def test_a_multi_byte_choice_waits_for_enough_bytes(modules) -> None:
    handler = recorder(modules)
    conn = FakeConn(HELLO + b"!\x02" + b"\x01")
    handler.on_traffic(conn)
    assert conn.inbound == b"\x01" and not handler.errors
    conn.feed(b"\x02\x00")
    handler.on_traffic(conn)
    assert [name for _, name, _ in handler.seen][-1] == "Packet"


def test_a_byte_no_frame_of_the_phase_starts_with_is_a_protocol_error(modules) -> None:
    handler = recorder(modules)
    conn = FakeConn(HELLO + b"!\x02" + b"\x07junk")
    assert handler.on_traffic(conn) is modules["handler"].Action.CLOSE
    (err,) = handler.errors
    assert isinstance(err, MalformedFrame)
    assert "phase Binary: no frame starts with b'\\x07j'" in str(err)
    assert [name for _, name, _ in handler.seen] == ["Hello", "Control"]


def test_the_frame_budget_counts_across_a_switch(modules) -> None:
    handler = recorder(modules)
    conn = FakeConn(HELLO + b"!\x02\x01\x02\x00\x01\x02\x00", frame_budget=2)
    assert handler.on_traffic(conn) is modules["handler"].Action.YIELD
    assert len(handler.seen) == 2
    while handler.on_traffic(conn) is modules["handler"].Action.YIELD:
        pass
    assert [name for _, name, _ in handler.seen] == [
        "Hello",
        "Control",
        "Packet",
        "Packet",
    ]


def test_closing_forgets_the_phase(modules) -> None:
    handler = recorder(modules)
    conn = FakeConn(HELLO)
    handler.on_traffic(conn)
    assert handler.phase(conn).name == "Commands"
    handler.on_close(conn, None)
    assert handler.phase(conn).name == "Greeting"


def test_generated_property_tests_of_the_phases_pass(tmp_path: Path) -> None:
    spec = tmp_path / "phased.proto.dsl"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "protogen",
            "build",
            str(spec),
            "-o",
            str(out),
            "--with-tests",
        ],
        check=True,
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "phase_transitions",
            str(out / "test_phased_properties.py"),
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


class Delegate:
    """Another protocol's handler: records what the connection hands it."""

    def __init__(self, modules) -> None:
        self.Action = modules["handler"].Action
        self.received: list[bytes] = []
        self.events: list[str] = []

    def on_open(self, conn):
        self.events.append("open")
        return b"welcome", self.Action.NONE

    def on_traffic(self, conn):
        self.received.append(bytes(conn.peek()))
        conn.discard(len(conn.inbound))
        return None

    def on_eof(self, conn):
        self.events.append("eof")
        return self.Action.CLOSE

    def on_close(self, conn, err):
        self.events.append("close")
        return self.Action.NONE


def test_a_hand_over_gives_the_bytes_after_the_frame_to_the_other_handler(
    modules,
) -> None:
    delegate = Delegate(modules)
    handler_module = modules["handler"]

    class Upgrading(handler_module.PhasedHandler):
        def on_command(self, conn, frame):
            if bytes(frame.line) == b"upgrade":
                conn.write(b"ok\n")
                return self.hand_over(conn, delegate)
            return None

    handler = Upgrading()
    conn = FakeConn(HELLO + b"upgrade\n" + b"\x00raw bytes\n")
    assert handler.on_traffic(conn) is None
    assert conn.written == [b"ok\n", b"welcome"]
    assert delegate.received == [b"\x00raw bytes\n"]
    assert handler.phase(conn) is None
    conn.feed(b"*more")  # would be a Counted frame in phase Commands
    handler.on_traffic(conn)
    assert delegate.received[-1] == b"*more"
    assert handler.on_eof(conn) is delegate.Action.CLOSE
    handler.on_close(conn, None)
    assert delegate.events == ["open", "eof", "close"]
    assert handler.phase(conn) is handler_module.Phase.Greeting  # forgotten


def test_a_switch_between_reads_forgets_the_old_phases_unfinished_scan(modules) -> None:
    """A line partly scanned in Commands, then decoded as a Packet in Binary: back
    in Commands, the next line is scanned from its own start."""
    Phase = modules["handler"].Phase
    handler = recorder(modules)
    conn = FakeConn(HELLO + b"\x01\x02\x05abcde")  # in Commands: an unfinished line
    handler.on_traffic(conn)
    handler.switch(conn, Phase.Binary)  # from outside a callback (a timer, say)
    handler.on_traffic(conn)
    handler.switch(conn, Phase.Commands)
    conn.feed(b"x\ny\n")
    handler.on_traffic(conn)
    assert [name for _, name, _ in handler.seen] == [
        "Hello",
        "Packet",
        "Command",
        "Command",
    ]
    assert [
        bytes(frame.line) for _, name, frame in handler.seen if name == "Command"
    ] == [
        b"x",
        b"y",
    ]


def test_a_switch_back_to_the_start_phase_takes_effect_at_the_next_byte(
    modules,
) -> None:
    """The start phase keeps no entry per connection: switching back to it, in
    the same read or between reads, decodes the next bytes as its frames."""
    Phase = modules["handler"].Phase
    handler = recorder(modules)
    on_command = handler.on_command

    def command_then_greeting(conn, frame):
        on_command(conn, frame)
        handler.switch(conn, Phase.Greeting)

    handler.on_command = command_then_greeting
    conn = FakeConn(HELLO + b"again\n" + HELLO + b"more\n")
    assert handler.on_traffic(conn) is None
    assert [(phase, name) for phase, name, _ in handler.seen] == [
        ("Commands", "Hello"),
        ("Commands", "Command"),
        ("Commands", "Hello"),  # decoded in Greeting, which moved on by itself
        ("Commands", "Command"),
    ]
    assert handler.phase(conn) is Phase.Greeting
    conn.feed(HELLO)
    handler.on_traffic(conn)
    assert [name for _, name, _ in handler.seen][-1] == "Hello"
    assert handler.phase(conn) is Phase.Commands


ONE_FRAME_SPEC = """
protocol onephase
start phase Lines {
    Line
}
frame Line { framing delimited "\\n" body { text: bytes[rest] } }
"""


def test_a_one_frame_phased_handler_has_its_frames_counted_by_metrics(
    tmp_path: Path,
) -> None:
    """The metrics option wraps the callback named by `frame_callback`: the
    decode loop must call that (instance) attribute, once per frame."""
    from protogen.runtime.metrics import _counting

    module = build(ONE_FRAME_SPEC, tmp_path)["handler"]

    class Lines(module.OnephaseHandler):
        def on_line(self, conn, frame):
            return None

    handler = Lines()
    assert (handler.decoded_frame, handler.frame_callback) == ("Line", "on_line")
    cell = [0]
    handler.__dict__["on_line"] = _counting(handler.on_line, cell)
    handler.on_traffic(FakeConn(b"a\nb\nc\n"))
    assert cell == [3]
