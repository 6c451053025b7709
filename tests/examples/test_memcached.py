"""The memcached binary-protocol example (examples/memcached/): libmemcached's
`memccapable -b` conformance suite, plus a raw-socket client for what it does not
cover (CAS mismatch, quiet batches, unknown opcodes, bad magic, expiry, stats)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import sys
import time
from typing import Iterator, NamedTuple

import pytest

from served_example import EXAMPLES, ExampleServer, recv_until_closed

HEADER = struct.Struct(">BBHBBHIIQ")
REQUEST_MAGIC, RESPONSE_MAGIC = 0x80, 0x81
GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(12)
GETK, GETKQ, APPEND, PREPEND, STAT, SETQ = 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11
DELETEQ, INCRQ, QUITQ, TOUCH, GAT = 0x14, 0x15, 0x17, 0x1C, 0x1D
SUCCESS, KEY_ENOENT, KEY_EEXISTS, EINVAL, NOT_STORED, DELTA_BADVAL = 0, 1, 2, 4, 5, 6
UNKNOWN_COMMAND = 0x81


class Reply(NamedTuple):
    opcode: int
    status: int
    opaque: int
    cas: int
    extras: bytes
    key: bytes
    value: bytes


def packet(
    opcode: int,
    key: bytes = b"",
    value: bytes = b"",
    extras: bytes = b"",
    cas: int = 0,
    opaque: int = 0,
    magic: int = REQUEST_MAGIC,
) -> bytes:
    body = len(extras) + len(key) + len(value)
    return (
        HEADER.pack(magic, opcode, len(key), len(extras), 0, 0, body, opaque, cas)
        + extras
        + key
        + value
    )


def storage(
    opcode: int, key: bytes, value: bytes, flags: int = 0, exptime: int = 0, **kw: int
) -> bytes:
    return packet(opcode, key, value, struct.pack(">II", flags, exptime), **kw)


def arithmetic(
    opcode: int, key: bytes, delta: int, initial: int = 0, exptime: int = 0, **kw: int
) -> bytes:
    return packet(
        opcode, key, extras=struct.pack(">QQI", delta, initial, exptime), **kw
    )


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_reply(sock: socket.socket) -> Reply:
    magic, opcode, key_len, extras_len, data_type, status, body, opaque, cas = (
        HEADER.unpack(recv_exact(sock, HEADER.size))
    )
    assert (magic, data_type) == (RESPONSE_MAGIC, 0)
    payload = recv_exact(sock, body)
    extras, key, value = (
        payload[:extras_len],
        payload[extras_len : extras_len + key_len],
        payload[extras_len + key_len :],
    )
    return Reply(opcode, status, opaque, cas, extras, key, value)


def call(sock: socket.socket, wire: bytes) -> Reply:
    sock.sendall(wire)
    return read_reply(sock)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    served = ExampleServer("memcached", tmp_path_factory.mktemp("cache"))
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


@pytest.fixture
def sock(server: ExampleServer) -> Iterator[socket.socket]:
    with server.connect() as connection:
        yield connection


# -- the real client ------------------------------------------------------------------------


def test_memccapable_binary_suite_passes(server: ExampleServer) -> None:
    if shutil.which("memccapable") is None:
        pytest.skip("memccapable (libmemcached-tools) is not installed")
    result = subprocess.run(
        ["memccapable", "-h", "127.0.0.1", "-p", str(server.port), "-b", "-t", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "fail" not in output.lower(), output
    assert output.count("[pass]") >= 27, output  # noop ... stat: every binary test ran
    assert "All tests passed" in output


# -- our raw-socket client ------------------------------------------------------------------


def test_cas_mismatch_is_refused_and_match_accepted(sock: socket.socket) -> None:
    first = call(sock, storage(SET, b"cas-key", b"v1", flags=7, opaque=11))
    assert (first.status, first.opaque) == (SUCCESS, 11) and first.cas
    stale = call(sock, storage(SET, b"cas-key", b"v2", cas=first.cas + 1000))
    assert stale.status == KEY_EEXISTS and stale.cas == 0
    assert call(sock, packet(GET, b"cas-key")).value == b"v1"
    good = call(sock, storage(SET, b"cas-key", b"v3", cas=first.cas))
    assert good.status == SUCCESS and good.cas != first.cas
    got = call(sock, packet(GET, b"cas-key"))
    assert (got.value, got.extras, got.cas) == (b"v3", struct.pack(">I", 0), good.cas)
    assert call(sock, packet(DELETE, b"cas-key", cas=first.cas)).status == KEY_EEXISTS
    assert call(sock, packet(DELETE, b"cas-key", cas=good.cas)).status == SUCCESS
    assert call(sock, storage(SET, b"cas-key", b"x", cas=good.cas)).status == KEY_ENOENT


def test_unknown_opcode_gets_unknown_command_and_the_connection_goes_on(
    sock: socket.socket,
) -> None:
    sock.sendall(
        packet(0x55, b"k", b"some value", opaque=1)
        + packet(0xFE, opaque=2)
        + storage(SET, b"after-unknown", b"ok", opaque=3)
        + packet(0x60, b"key", extras=b"1234", opaque=4)
        + packet(GET, b"after-unknown", opaque=5)
    )
    replies = [read_reply(sock) for _ in range(5)]
    assert [(r.opcode, r.status, r.opaque) for r in replies] == [
        (0x55, UNKNOWN_COMMAND, 1),
        (0xFE, UNKNOWN_COMMAND, 2),
        (SET, SUCCESS, 3),
        (0x60, UNKNOWN_COMMAND, 4),
        (GET, SUCCESS, 5),
    ]
    assert replies[4].value == b"ok"


def test_unknown_opcode_split_across_reads(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire = packet(0x70, b"key", b"v" * 3000, opaque=9) + packet(NOOP, opaque=10)
    for start in range(0, len(wire), 1000):
        sock.sendall(wire[start : start + 1000])
        time.sleep(0.02)
    assert [(r.status, r.opaque) for r in (read_reply(sock), read_reply(sock))] == [
        (UNKNOWN_COMMAND, 9),
        (SUCCESS, 10),
    ]


def test_bad_magic_closes_only_that_connection(
    server: ExampleServer, sock: socket.socket
) -> None:
    assert call(sock, storage(SET, b"survivor", b"alive")).status == SUCCESS
    with server.connect() as bad:
        bad.sendall(
            packet(NOOP, opaque=1) + packet(NOOP, magic=0x81) + packet(NOOP, opaque=3)
        )
        data = recv_until_closed(bad)
    # The NOOP before the bad packet was answered; nothing after it.
    assert len(data) == HEADER.size and HEADER.unpack(data)[7] == 1
    assert call(sock, packet(GET, b"survivor")).value == b"alive"


def test_quiet_batch_ends_with_noop(sock: socket.socket) -> None:
    sock.sendall(
        storage(SETQ, b"q1", b"one", opaque=1)
        + storage(SETQ, b"q2", b"two", opaque=2)
        + packet(GETQ, b"q1", opaque=3)
        + packet(GETKQ, b"missing", opaque=4)  # a quiet miss: nothing
        + packet(GETKQ, b"q2", opaque=5)
        + packet(DELETEQ, b"q1", opaque=6)
        + packet(DELETEQ, b"q1", opaque=7)  # already gone: the error is sent
        + arithmetic(INCRQ, b"counter", 5, initial=40, opaque=8)
        + packet(NOOP, opaque=9)
    )
    replies = [read_reply(sock) for _ in range(4)]
    assert [(r.opcode, r.status, r.opaque) for r in replies] == [
        (GETQ, SUCCESS, 3),
        (GETKQ, SUCCESS, 5),
        (DELETEQ, KEY_ENOENT, 7),
        (NOOP, SUCCESS, 9),
    ]
    assert (replies[0].value, replies[0].key) == (b"one", b"")
    assert (replies[1].value, replies[1].key) == (b"two", b"q2")
    assert call(sock, packet(GET, b"counter")).value == b"40"


def test_incr_decr_initial_wrap_and_non_numeric(sock: socket.socket) -> None:
    missing = call(sock, arithmetic(INCR, b"n", 1, initial=5, exptime=0xFFFFFFFF))
    assert missing.status == KEY_ENOENT  # exptime 0xFFFFFFFF: do not create
    created = call(sock, arithmetic(INCR, b"n", 1, initial=5))
    assert (created.status, struct.unpack(">Q", created.value)[0]) == (SUCCESS, 5)
    assert struct.unpack(">Q", call(sock, arithmetic(DECR, b"n", 9)).value)[0] == 0
    call(sock, storage(SET, b"n", b"18446744073709551615"))
    assert struct.unpack(">Q", call(sock, arithmetic(INCR, b"n", 2)).value)[0] == 1
    call(sock, storage(SET, b"text", b"abc"))
    assert call(sock, arithmetic(INCR, b"text", 1)).status == DELTA_BADVAL


def test_append_prepend_keep_flags(sock: socket.socket) -> None:
    assert call(sock, packet(APPEND, b"absent", b"x")).status == NOT_STORED
    call(sock, storage(SET, b"ap", b"mid", flags=0xABCD))
    assert call(sock, packet(APPEND, b"ap", b">")).status == SUCCESS
    assert call(sock, packet(PREPEND, b"ap", b"<")).status == SUCCESS
    got = call(sock, packet(GETK, b"ap"))
    assert (got.key, got.value, struct.unpack(">I", got.extras)[0]) == (
        b"ap",
        b"<mid>",
        0xABCD,
    )


def test_expiry_touch_and_gat(sock: socket.socket) -> None:
    call(sock, storage(SET, b"short", b"lived", exptime=1))
    call(sock, storage(SET, b"touched", b"kept", exptime=1))
    assert (
        call(sock, packet(TOUCH, b"touched", extras=struct.pack(">I", 100))).status
        == SUCCESS
    )
    time.sleep(2.1)
    assert call(sock, packet(GET, b"short")).status == KEY_ENOENT
    gat = call(sock, packet(GAT, b"touched", extras=struct.pack(">I", 0)))
    assert (gat.status, gat.value) == (SUCCESS, b"kept")


def test_add_replace_flush_and_einval(sock: socket.socket) -> None:
    assert call(sock, storage(REPLACE, b"ar", b"1")).status == KEY_ENOENT
    assert call(sock, storage(ADD, b"ar", b"1")).status == SUCCESS
    assert call(sock, storage(ADD, b"ar", b"2")).status == KEY_EEXISTS
    assert call(sock, storage(REPLACE, b"ar", b"3")).status == SUCCESS
    assert call(sock, packet(SET, b"ar", b"no extras")).status == EINVAL
    assert call(sock, packet(GET)).status == EINVAL  # no key
    assert call(sock, packet(FLUSH)).status == SUCCESS
    assert call(sock, packet(GET, b"ar")).status == KEY_ENOENT


def test_stat_version_and_quit(server: ExampleServer, sock: socket.socket) -> None:
    sock.sendall(packet(STAT, opaque=77))
    stats = {}
    while (reply := read_reply(sock)).key:
        assert (reply.opcode, reply.status, reply.opaque, reply.cas) == (
            STAT,
            SUCCESS,
            77,
            0,
        )
        stats[reply.key] = reply.value
    assert reply.value == b""  # the empty-key terminator
    assert {
        b"pid",
        b"uptime",
        b"curr_items",
        b"curr_connections",
        b"version",
    } <= stats.keys()
    assert int(stats[b"curr_connections"]) >= 1
    version = call(sock, packet(VERSION))
    assert version.status == SUCCESS and version.value
    with server.connect() as leaving:
        leaving.sendall(packet(QUIT, opaque=5) + packet(NOOP, opaque=6))
        data = recv_until_closed(leaving)
        assert (
            len(data) == HEADER.size and HEADER.unpack(data)[1] == QUIT
        )  # no NOOP reply
    with server.connect() as leaving:
        leaving.sendall(packet(QUITQ) + packet(NOOP))
        assert recv_until_closed(leaving) == b""


# -- limits: item size, memory, expiry, processes ------------------------------------------

E2BIG = 3
MiB = 1024 * 1024


def stats_of(sock: socket.socket) -> dict[bytes, bytes]:
    sock.sendall(packet(STAT))
    stats = {}
    while (reply := read_reply(sock)).key:
        stats[reply.key] = reply.value
    return stats


@pytest.mark.parametrize("opcode", [SET, SETQ])
def test_a_value_over_the_frame_limit_gets_e2big_and_the_connection_goes_on(
    server: ExampleServer, opcode: int
) -> None:
    """3 MiB: past the item limit (1 MiB) and any frame decoded: answered from
    its header, its bytes skipped as they come, the next packet answered."""
    big = storage(opcode, b"huge", b"x" * (3 * MiB), opaque=41)
    with server.connect(timeout=20) as sock:
        sock.sendall(big[: 2 * MiB])
        sock.sendall(big[2 * MiB :] + packet(GET, b"huge", opaque=42))
        refused = read_reply(sock)
        assert (refused.opcode, refused.status, refused.opaque) == (opcode, E2BIG, 41)
        assert refused.value == b"Too large."
        missing = read_reply(sock)
        assert (missing.status, missing.opaque) == (KEY_ENOENT, 42)
        assert call(sock, storage(SET, b"small", b"ok")).status == SUCCESS


def test_a_value_just_over_the_item_limit_gets_e2big(sock: socket.socket) -> None:
    refused = call(sock, storage(SET, b"edge", b"y" * (MiB + 1)))
    assert refused.status == E2BIG
    assert call(sock, storage(SET, b"edge", b"y" * MiB)).status == SUCCESS
    assert call(sock, packet(GET, b"edge")).value == b"y" * MiB
    assert call(sock, packet(APPEND, b"edge", b"z")).status == E2BIG


def test_an_oversize_get_is_einval_and_skipped(sock: socket.socket) -> None:
    sock.sendall(packet(GET, b"k", b"v" * (2 * MiB), opaque=9) + packet(NOOP))
    assert (read_reply(sock).status, read_reply(sock).opcode) == (EINVAL, NOOP)


# -- extras typed by the spec ------------------------------------------------------------


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory):
    """The generated memcached codec, built in this process."""
    import importlib.util
    import os

    saved = os.environ.get("PROTOGEN_CACHE_DIR")
    os.environ["PROTOGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("codec-cache"))
    try:
        loader = importlib.util.spec_from_file_location(
            "memcached_example_serve", EXAMPLES / "memcached" / "serve.py"
        )
        assert loader is not None and loader.loader is not None
        serve = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(serve)
        modules, _ = serve.load_example()
        return modules["codec"]
    finally:
        if saved is None:
            del os.environ["PROTOGEN_CACHE_DIR"]
        else:
            os.environ["PROTOGEN_CACHE_DIR"] = saved


def decoded(codec, wire: bytes):
    frame, end = codec.RequestDecoder().decode(wire)
    assert end == len(wire)
    return frame


def test_request_extras_are_typed_by_opcode(codec) -> None:
    stored = decoded(codec, storage(SETQ, b"k", b"v", flags=7, exptime=60))
    assert stored.extras == codec.StorageExtras(flags=7, expiration=60)
    counted = decoded(codec, arithmetic(INCR, b"n", 5, initial=9, exptime=3))
    assert counted.extras == codec.ArithmeticExtras(delta=5, initial=9, expiration=3)
    touched = decoded(codec, packet(GAT, b"k", extras=struct.pack(">I", 30)))
    assert touched.extras == codec.Expiration(expiration=30)
    assert decoded(codec, packet(FLUSH)).extras.delay == []
    delayed = decoded(codec, packet(FLUSH, extras=struct.pack(">I", 10)))
    assert delayed.extras.delay == [10]
    assert decoded(codec, packet(GET, b"k")).extras == codec.NoExtras()
    # An opcode the enum does not know: its extras stay bytes.
    assert decoded(codec, packet(0x60, extras=b"1234")).extras == b"1234"
    # The encoder computes extras_length from the typed extras.
    again = codec.Request(
        opcode=codec.Opcode.set,
        data_type=0,
        vbucket=0,
        opaque=0,
        cas=0,
        extras=codec.StorageExtras(flags=7, expiration=60),
        key=b"k",
        value=b"v",
    )
    assert again.encode() == storage(SET, b"k", b"v", flags=7, exptime=60)


@pytest.mark.parametrize(
    ("opcode", "extras"),
    [
        (SET, b"\0" * 4),
        (SETQ, b"\0" * 12),
        (INCR, b"\0" * 8),
        (TOUCH, b""),
        (GAT, b"\0" * 8),
        (FLUSH, b"\0" * 2),
        (FLUSH, b"\0" * 8),
        (GET, b"\0" * 4),
        (NOOP, b"\0"),
    ],
)
def test_extras_of_the_wrong_size_are_refused(
    codec, opcode: int, extras: bytes
) -> None:
    from protogen.errors import ProtocolError

    with pytest.raises(ProtocolError, match="Extras|Expiration|Request.extras"):
        codec.RequestDecoder().decode(packet(opcode, b"k", extras=extras))


def test_a_body_that_does_not_fit_its_command_gets_einval_and_the_connection_goes_on(
    sock: socket.socket,
) -> None:
    """Extras of the wrong size (refused by the spec), and extras + key longer
    than the body: EINVAL from the header, the packet skipped, the next answered."""
    inconsistent = bytearray(packet(GET, b"key", opaque=3))
    inconsistent[2:4] = struct.pack(">H", 200)  # key_length past total_body
    sock.sendall(
        packet(INCR, b"n", extras=b"\0" * 8, opaque=1)
        + packet(FLUSH, extras=b"\0" * 8, opaque=2)
        + bytes(inconsistent)
        + storage(SET, b"after", b"fine", opaque=4)
        + packet(GET, b"after", opaque=5)
    )
    replies = [read_reply(sock) for _ in range(5)]
    assert [(r.opcode, r.status, r.opaque) for r in replies] == [
        (INCR, EINVAL, 1),
        (FLUSH, EINVAL, 2),
        (GET, EINVAL, 3),
        (SET, SUCCESS, 4),
        (GET, SUCCESS, 5),
    ]
    assert replies[4].value == b"fine"


def test_flush_with_a_delay_expires_items_then(sock: socket.socket) -> None:
    assert call(sock, storage(SET, b"flushed-later", b"v")).status == SUCCESS
    delayed = call(sock, packet(FLUSH, extras=struct.pack(">I", 1)))
    assert delayed.status == SUCCESS
    assert call(sock, packet(GET, b"flushed-later")).status == SUCCESS
    time.sleep(2.1)
    assert call(sock, packet(GET, b"flushed-later")).status == KEY_ENOENT


@pytest.fixture
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    """Memory limit 2 MiB, item limit 64 KiB."""
    served = ExampleServer(
        "memcached", tmp_path_factory.mktemp("cache"), "-m", "2", "-I", "64k"
    )
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the test"
        served.stop()


def test_memory_limit_evicts_least_recently_used(small_server: ExampleServer) -> None:
    value = b"v" * 20000
    with small_server.connect() as sock:
        assert call(sock, storage(SET, b"too-big", b"t" * 70000)).status == E2BIG
        for index in range(20):
            assert call(sock, storage(SET, b"k%d" % index, value)).status == SUCCESS
        for index in range(200):  # 4 MB through a 2 MiB cache; k0 stays in use
            assert call(sock, packet(GET, b"k0")).status == SUCCESS
            assert call(sock, storage(SET, b"n%d" % index, value)).status == SUCCESS
        assert call(sock, packet(GET, b"k0")).value == value
        assert call(sock, packet(GET, b"k1")).status == KEY_ENOENT
        assert call(sock, packet(GET, b"n199")).value == value
        stats = stats_of(sock)
    assert int(stats[b"limit_maxbytes"]) == 2 * MiB
    assert 0 < int(stats[b"bytes"]) <= 2 * MiB
    assert int(stats[b"evictions"]) > 100
    assert int(stats[b"curr_items"]) < 110


def test_expired_items_are_reclaimed_unread(server: ExampleServer) -> None:
    with server.connect() as sock:
        before = stats_of(sock)
        for index in range(50):
            call(sock, storage(SET, b"brief%d" % index, b"b" * 100, exptime=1))
        assert int(stats_of(sock)[b"curr_items"]) >= int(before[b"curr_items"]) + 50
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the reclaim timer runs every second
            time.sleep(0.5)
            after = stats_of(sock)
            if int(after[b"reclaimed"]) - int(before[b"reclaimed"]) >= 50:
                break
        assert int(after[b"reclaimed"]) - int(before[b"reclaimed"]) >= 50
        assert int(after[b"curr_items"]) <= int(before[b"curr_items"])


def serve_py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "memcached" / "serve.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_more_than_one_loop_is_refused() -> None:
    result = serve_py("--listen", "tcp://127.0.0.1:0", "--loops", "2")
    assert result.returncode == 2
    assert "--loops 2" in result.stderr and "one event loop" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("-m", "1", "-I", "1m"), "half of the memory limit"),
        (("-I", "512"), "under 1024"),
        (("-I", "12x"), "not a size"),
        (("-m", "0"), "at least 1"),
    ],
)
def test_bad_limits_are_refused(args: tuple[str, ...], words: str) -> None:
    result = serve_py("--listen", "tcp://127.0.0.1:0", *args)
    assert result.returncode == 2
    assert words in result.stderr
