"""The phased handler's loop over `framing array` frames in a row: one
`decode_run` call decodes a pipeline's short frames, and each is handled as if
decoded alone (an action, a switch, the frame budget or the output's high-water
mark stop the loop right after its frame)."""

from __future__ import annotations

from types import ModuleType

import pytest

from handler_helpers import FakeConn, build
from protogen.errors import FrameTooLarge

SPEC = """
protocol runs
server decodes Command
phase Commands {
    "*" => Command
    default => Line
}
phase Raw {
    default => Line
}
frame Command {
    framing array "*" decimal "\\r\\n" max 100 of "$" decimal "\\r\\n" bytes "\\r\\n"
    max_frame 64 KiB
    body { args: bytes[rest][rest] }
}
frame Line { framing delimited "\\n" max_frame 4 KiB body { text: bytes[rest] } }
"""


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build(SPEC, tmp_path_factory.mktemp("runs"))


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args
    )


# Short frames, then ones the run stops before: a value of 100 bytes, one with a
# CR, a count of two digits, a line; then short ones again.
PIPELINE = [
    command(b"SET", b"k", b"v"),
    command(b"GET", b"k"),
    command(),
    command(b"x" * 99),
    command(b"x" * 100),
    command(b"a\rb"),
    command(*[b"%d" % i for i in range(12)]),
    command(b"SET", b"k", b""),
    command(b"PING"),
]


def recorder(modules: dict[str, ModuleType], stop_at: int = -1, how: str = ""):
    handler_module = modules["handler"]

    class Recorder(handler_module.RunsHandler):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, object]] = []

        def on_command(self, conn, frame):
            self.seen.append((self.phase(conn).name, frame.args))
            if len(self.seen) - 1 == stop_at:
                if how == "close":
                    return handler_module.Action.CLOSE
                if how == "switch":
                    self.switch(conn, handler_module.Phase.Raw)
                if how == "pause":
                    conn.write_paused = True
            return None

        def on_line(self, conn, frame):
            self.seen.append((self.phase(conn).name, frame.text))

    return Recorder()


def args_of(wire: bytes) -> list[bytes]:
    """The arguments of one encoded command, parsed here, not by the decoder."""
    args, rest = [], wire[wire.index(b"\r\n") + 2 :]
    while rest:
        head, rest = rest.split(b"\r\n", 1)
        length = int(head[1:])
        args.append(rest[:length])
        rest = rest[length + 2 :]
    return args


def test_a_pipeline_decodes_frame_by_frame_the_same(modules) -> None:
    handler = recorder(modules)
    conn = FakeConn(b"".join(PIPELINE) + b"line\n" + PIPELINE[0] + PIPELINE[0][:7])
    assert handler.on_traffic(conn) is None
    assert handler.seen == [("Commands", args_of(wire)) for wire in PIPELINE] + [
        ("Commands", b"line"),
        ("Commands", [b"SET", b"k", b"v"]),
    ]
    assert conn.inbound == PIPELINE[0][:7]  # the cut frame waits
    conn.feed(PIPELINE[0][7:])
    assert handler.on_traffic(conn) is None
    assert handler.seen[-1] == ("Commands", [b"SET", b"k", b"v"]) and not conn.inbound


@pytest.mark.parametrize("stop_at", [0, 1, 2, 4, 8])
def test_an_action_inside_a_run_stops_right_after_its_frame(modules, stop_at) -> None:
    handler = recorder(modules, stop_at, "close")
    conn = FakeConn(b"".join(PIPELINE))
    assert handler.on_traffic(conn) is modules["handler"].Action.CLOSE
    assert len(handler.seen) == stop_at + 1
    assert conn.discards == [sum(map(len, PIPELINE[: stop_at + 1]))]


@pytest.mark.parametrize("stop_at", [0, 1, 7])
def test_a_switch_inside_a_run_decodes_the_rest_in_the_new_phase(
    modules, stop_at
) -> None:
    handler = recorder(modules, stop_at, "switch")
    rest = b"".join(PIPELINE[stop_at + 1 :])
    conn = FakeConn(b"".join(PIPELINE[: stop_at + 1]) + rest)
    handler.on_traffic(conn)
    assert len(handler.seen) == stop_at + 1 + rest.count(b"\n")
    assert all(phase == "Raw" for phase, _ in handler.seen[stop_at + 1 :])
    assert b"".join(text + b"\n" for _, text in handler.seen[stop_at + 1 :]) == rest


@pytest.mark.parametrize("budget", [1, 2, 3, 5])
def test_the_frame_budget_stops_a_run_and_the_next_call_goes_on(
    modules, budget
) -> None:
    handler = recorder(modules)
    conn = FakeConn(b"".join(PIPELINE), frame_budget=budget)
    assert handler.on_traffic(conn) is modules["handler"].Action.YIELD
    assert len(handler.seen) == budget
    assert conn.discards == [sum(map(len, PIPELINE[:budget]))]
    while handler.on_traffic(conn) is modules["handler"].Action.YIELD:
        pass
    assert [args for _, args in handler.seen] == [args_of(w) for w in PIPELINE]


def test_a_run_of_equal_frames_stops_at_its_own_and_keeps_the_budget(modules) -> None:
    # The loop charges the budget once per run: stopped at the second of equal
    # frames (equal by value), it charges two, not one, and resumes after it.
    same = command(b"GET", b"k")
    handler = recorder(modules, 1, "switch")
    conn = FakeConn(same * 3, frame_budget=4)
    assert handler.on_traffic(conn) is modules["handler"].Action.YIELD
    assert handler.seen == [("Commands", [b"GET", b"k"])] * 2 + [
        ("Raw", b"*2\r"),
        ("Raw", b"$3\r"),
    ]
    assert conn.discards == [2 * len(same) + 8]


def test_the_high_water_mark_stops_a_run_after_its_frame(modules) -> None:
    handler = recorder(modules, 1, "pause")
    conn = FakeConn(b"".join(PIPELINE))
    assert handler.on_traffic(conn) is modules["handler"].Action.YIELD
    assert len(handler.seen) == 2
    assert conn.discards == [len(PIPELINE[0]) + len(PIPELINE[1])]


def test_decode_run_stops_before_what_decode_must_take(modules) -> None:
    decoder = modules["codec"].CommandDecoder()
    wire = b"".join(PIPELINE)
    frames, end = decoder.decode_run(wire, 0, 64)
    assert [frame.args for frame in frames] == [args_of(w) for w in PIPELINE[:4]]
    assert end == sum(map(len, PIPELINE[:4]))
    for index, frame in enumerate(frames):
        assert decoder.run_end(frames, frame, 0) == sum(map(len, PIPELINE[: index + 1]))
    assert decoder.decode_run(wire, 0, 2)[1] == sum(map(len, PIPELINE[:2]))
    assert decoder.decode_run(wire[:-1], len(wire) - len(PIPELINE[-1]), 64) == (
        [],
        len(wire) - len(PIPELINE[-1]),
    )
    # A frame cut across reads resumes in decode(), not in a run.
    assert decoder.decode(PIPELINE[4][:50]) == (None, 0)
    assert decoder.decode_run(PIPELINE[0], 0, 64) == ([], 0)


def test_a_run_of_one_count_stops_at_its_limit_and_at_another_count(modules) -> None:
    decoder = modules["codec"].CommandDecoder()
    gets = [command(b"GET", b"k%d" % i) for i in range(5)]
    wire = b"".join(gets) + command(b"SET", b"k", b"v") + gets[0]
    for limit in (1, 3, 5):
        frames, end = decoder.decode_run(wire, 0, limit)
        assert [frame.args for frame in frames] == [args_of(w) for w in gets[:limit]]
        assert end == sum(map(len, gets[:limit]))
    frames, end = decoder.decode_run(wire, 0, 64)
    assert [frame.args for frame in frames] == [
        args_of(w) for w in gets + [command(b"SET", b"k", b"v"), gets[0]]
    ]
    assert end == len(wire)
    assert decoder.decode_run(wire, 0, 0) == ([], 0)


def test_a_max_frame_under_the_longest_short_frame_leaves_runs_to_decode(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # 851 bytes: a frame of 8 elements of 99 bytes would be over it, so the
    # run leaves every frame to `decode` (which checks each against max_frame).
    codec = build(
        SPEC.replace("max_frame 64 KiB", "max_frame 851"), tmp_path_factory.mktemp("mf")
    )["codec"]
    decoder = codec.CommandDecoder()
    wire = command(b"GET", b"k") * 3
    assert decoder.decode_run(wire, 0, 64) == ([], 0)
    assert decoder.decode_all(wire)[1] == len(wire)
    assert codec._COMMAND_SHORT_LONGEST == 852


def test_a_run_keeps_to_max_frame(modules) -> None:
    decoder = modules["codec"].CommandDecoder(max_frame=20)
    wire = command(b"SET", b"key", b"value")  # 33 bytes
    assert decoder.decode_run(wire, 0, 64) == ([], 0)
    with pytest.raises(FrameTooLarge):
        decoder.decode(wire)


ONE_PHASE = """
protocol single
transport tcp
max_frame 64 KiB
frame Command {
    framing array "*" decimal "\\r\\n" max 100 of "$" decimal "\\r\\n" bytes "\\r\\n"
    body { args: bytes[rest][rest] }
}
"""


@pytest.fixture(scope="module")
def one_phase(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    return build(ONE_PHASE, tmp_path_factory.mktemp("single"))


def one_phase_recorder(modules, stop_at: int = -1):
    handler_module = modules["handler"]

    class Recorder(handler_module.SingleHandler):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[list[bytes]] = []

        def on_command(self, conn, frame):
            self.seen.append(frame.args)
            if len(self.seen) - 1 == stop_at:
                return handler_module.Action.CLOSE
            return None

    return Recorder()


def test_the_one_phase_handler_takes_runs_too(one_phase) -> None:
    handler = one_phase_recorder(one_phase)
    conn = FakeConn(b"".join(PIPELINE) + PIPELINE[0][:5])
    assert handler.on_traffic(conn) is None
    assert handler.seen == [args_of(wire) for wire in PIPELINE]
    assert conn.inbound == PIPELINE[0][:5]


@pytest.mark.parametrize("stop_at", [0, 2, 8])
def test_the_one_phase_handler_stops_a_run_at_an_action(one_phase, stop_at) -> None:
    handler = one_phase_recorder(one_phase, stop_at)
    conn = FakeConn(b"".join(PIPELINE))
    assert handler.on_traffic(conn) is one_phase["handler"].Action.CLOSE
    assert conn.discards == [sum(map(len, PIPELINE[: stop_at + 1]))]


@pytest.mark.parametrize("budget", [1, 3])
def test_the_one_phase_handler_keeps_the_budget_inside_a_run(one_phase, budget) -> None:
    handler = one_phase_recorder(one_phase)
    conn = FakeConn(b"".join(PIPELINE), frame_budget=budget)
    assert handler.on_traffic(conn) is one_phase["handler"].Action.YIELD
    assert conn.discards == [sum(map(len, PIPELINE[:budget]))]
    while handler.on_traffic(conn) is one_phase["handler"].Action.YIELD:
        pass
    assert handler.seen == [args_of(wire) for wire in PIPELINE]


def test_decode_run_lets_go_of_the_buffer(modules) -> None:
    # Its scanner holds the buffer while it decodes: the connection's bytearray
    # must be resizable again once decode_run returns (a BufferError otherwise).
    decoder = modules["codec"].CommandDecoder()
    same = command(b"GET", b"k")
    buffer = bytearray(same * 3 + same[:5])
    view = memoryview(buffer)
    frames, end = decoder.decode_run(view, 0, 64)
    assert len(frames) == 3 and end == 3 * len(same)
    view.release()
    del buffer[:end]
    assert buffer == same[:5]
