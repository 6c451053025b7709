"""The Redis example (examples/redis/): the real `redis-cli` and `redis-benchmark`
(Debian redis-tools) against the generated server, plus raw sockets for the
protocol errors and the split points no client chooses."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from typing import Iterator

import pytest

from served_example import ExampleServer, recv_until_closed

CLI = shutil.which("redis-cli")
BENCHMARK = shutil.which("redis-benchmark")
pytestmark = pytest.mark.skipif(
    CLI is None, reason="redis-cli (redis-tools) is not installed"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    served = ExampleServer("redis", tmp_path_factory.mktemp("cache"))
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


def cli(server: ExampleServer, *args: str, stdin: str | None = None) -> str:
    assert CLI is not None
    done = subprocess.run(
        [CLI, "-h", "127.0.0.1", "-p", str(server.port), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in args
    )


def exchange(server: ExampleServer, data: bytes, replies: int) -> bytes:
    """Send `data`, read until `replies` replies (each ends a line) have come."""
    with server.connect() as sock:
        sock.sendall(data)
        return read_replies(sock, replies)


def read_replies(sock: socket.socket, lines: int) -> bytes:
    out = b""
    sock.settimeout(5)
    while out.count(b"\r\n") < lines:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {out!r}"
        out += chunk
    return out


# -- redis-cli -------------------------------------------------------------------


def test_strings(server: ExampleServer) -> None:
    assert cli(server, "PING") == "PONG\n"
    assert cli(server, "ECHO", "hello world") == "hello world\n"
    assert cli(server, "SET", "s:k", "v") == "OK\n"
    assert cli(server, "GET", "s:k") == "v\n"
    assert cli(server, "SET", "s:k", "w", "NX") == "\n"  # nil, shown empty off a tty
    assert cli(server, "SET", "s:k", "w", "XX") == "OK\n"
    assert cli(server, "SET", "s:new", "x", "XX") == "\n"
    assert cli(server, "GET", "s:new") == "\n"
    assert cli(server, "EXISTS", "s:k", "s:new", "s:k") == "2\n"
    assert cli(server, "MSET", "s:a", "1", "s:b", "2") == "OK\n"
    assert cli(server, "MGET", "s:a", "s:missing", "s:b") == "1\n\n2\n"
    assert cli(server, "DEL", "s:a", "s:b", "s:missing") == "2\n"


def test_counters(server: ExampleServer) -> None:
    assert cli(server, "INCR", "c:n") == "1\n"
    assert cli(server, "INCRBY", "c:n", "41") == "42\n"
    assert cli(server, "DECR", "c:n") == "41\n"
    assert cli(server, "DECRBY", "c:n", "50") == "-9\n"
    cli(server, "SET", "c:text", "abc")
    # redis-cli prints an error reply and an empty line
    assert (
        cli(server, "INCR", "c:text")
        == "ERR value is not an integer or out of range\n\n"
    )
    cli(server, "SET", "c:max", str(2**63 - 1))
    assert (
        cli(server, "INCR", "c:max") == "ERR increment or decrement would overflow\n\n"
    )


def test_expiry(server: ExampleServer) -> None:
    assert cli(server, "SET", "e:k", "v", "EX", "100") == "OK\n"
    assert 99 <= int(cli(server, "TTL", "e:k")) <= 100
    assert cli(server, "SET", "e:p", "v", "PX", "150") == "OK\n"
    assert cli(server, "TTL", "e:none") == "-2\n"
    cli(server, "SET", "e:forever", "v")
    assert cli(server, "TTL", "e:forever") == "-1\n"
    assert cli(server, "EXPIRE", "e:forever", "100") == "1\n"
    assert cli(server, "EXPIRE", "e:none", "100") == "0\n"
    time.sleep(0.3)
    assert cli(server, "GET", "e:p") == "\n"  # expired
    assert cli(server, "EXISTS", "e:p") == "0\n"
    assert cli(server, "SET", "e:bad", "v", "EX", "0") == (
        "ERR invalid expire time in 'set' command\n\n"
    )


def test_lists_sets_hashes_sorted_sets(server: ExampleServer) -> None:
    assert cli(server, "RPUSH", "l:x", "a", "b", "c") == "3\n"
    assert cli(server, "LPUSH", "l:x", "z") == "4\n"
    assert cli(server, "LRANGE", "l:x", "0", "-1") == "z\na\nb\nc\n"
    assert cli(server, "LRANGE", "l:x", "1", "2") == "a\nb\n"
    assert cli(server, "LPOP", "l:x") == "z\n"
    assert cli(server, "RPOP", "l:x") == "c\n"
    assert cli(server, "SADD", "t:s", "a", "b", "a") == "2\n"
    assert cli(server, "SPOP", "t:s") in ("a\n", "b\n")
    assert cli(server, "HSET", "h:x", "f", "1", "g", "2") == "2\n"
    assert cli(server, "HGET", "h:x", "g") == "2\n"
    assert cli(server, "ZADD", "z:x", "3", "c", "1", "a", "2", "b") == "3\n"
    assert cli(server, "ZPOPMIN", "z:x") == "a\n1\n"
    assert cli(server, "ZPOPMIN", "z:x", "5") == "b\n2\nc\n3\n"
    assert cli(server, "GET", "l:x").startswith("WRONGTYPE")


def test_errors_and_config(server: ExampleServer) -> None:
    assert cli(server, "NOPE", "a") == (
        "ERR unknown command 'NOPE', with args beginning with: 'a'\n\n"
    )
    assert cli(server, "GET") == "ERR wrong number of arguments for 'get' command\n\n"
    assert cli(server, "CONFIG", "GET", "save") == "save\n\n"
    assert cli(server, "CONFIG", "GET", "append*") == "appendonly\nno\n"


def test_a_script_of_commands_through_stdin(server: ExampleServer) -> None:
    script = "SET pipe:k 1\nINCR pipe:k\nGET pipe:k\nDEL pipe:k\n"
    assert cli(server, stdin=script) == "OK\n2\n2\n1\n"


def test_flushall(server: ExampleServer) -> None:
    cli(server, "SET", "f:k", "v")
    assert cli(server, "FLUSHALL") == "OK\n"
    assert cli(server, "DBSIZE") == "0\n"


# -- raw sockets -------------------------------------------------------------------


def test_inline_commands_and_arrays_mix_on_one_connection(
    server: ExampleServer,
) -> None:
    stream = b"SET mix:k 5\r\n" + command(b"INCR", b"mix:k") + b"GET mix:k\n"
    assert exchange(server, stream, 4) == b"+OK\r\n:6\r\n$1\r\n6\r\n"


def test_a_string_read_by_get_stays_a_string_to_every_command(
    server: ExampleServer,
) -> None:
    # GET formats short strings from a table of headers, longer ones by %.
    steps = [
        (command(b"SET", b"g:short", b"y" * 1023), b"+OK\r\n"),
        (command(b"GET", b"g:short"), b"$1023\r\n" + b"y" * 1023 + b"\r\n"),
        (command(b"SET", b"g:long", b"z" * 1024), b"+OK\r\n"),
        (command(b"GET", b"g:long"), b"$1024\r\n" + b"z" * 1024 + b"\r\n"),
        (command(b"SET", b"g:empty", b""), b"+OK\r\n"),
        (command(b"GET", b"g:empty"), b"$0\r\n\r\n"),
        (command(b"SET", b"g:k", b"41"), b"+OK\r\n"),
        (command(b"GET", b"g:k"), b"$2\r\n41\r\n"),
        (command(b"GET", b"g:k"), b"$2\r\n41\r\n"),
        (command(b"INCR", b"g:k"), b":42\r\n"),
        (command(b"GET", b"g:k"), b"$2\r\n42\r\n"),
        (command(b"MGET", b"g:k", b"g:none"), b"*2\r\n$2\r\n42\r\n$-1\r\n"),
        (command(b"SET", b"g:k", b"\r\n$", b"NX"), b"$-1\r\n"),
        (command(b"EXISTS", b"g:k"), b":1\r\n"),
        (command(b"LPUSH", b"g:k", b"x"), b"-WRONGTYPE"),
        (command(b"SET", b"g:k", b"\r\n$"), b"+OK\r\n"),
        (command(b"GET", b"g:k"), b"$3\r\n\r\n$\r\n"),
        (command(b"INCR", b"g:k"), b"-ERR value is not an integer"),
        (command(b"GET", b"g:k"), b"$3\r\n\r\n$\r\n"),
        (command(b"DEL", b"g:k"), b":1\r\n"),
        (command(b"GET", b"g:k"), b"$-1\r\n"),
    ]
    with server.connect() as sock:
        for request, reply in steps:
            sock.sendall(request)
            got = read_replies(sock, reply.count(b"\r\n") or 1)
            assert got.startswith(reply), (request, got)


def test_pipelined_commands_split_at_every_byte(server: ExampleServer) -> None:
    """Every cut falls somewhere inside an array frame or an inline command."""
    stream = (
        command(b"SET", b"cut:k", b"a\r\nb") + b"PING\r\n" + command(b"GET", b"cut:k")
    )
    expected = b"+OK\r\n+PONG\r\n$4\r\na\r\nb\r\n"
    for cut in range(1, len(stream)):
        with server.connect() as sock:
            sock.sendall(stream[:cut])
            time.sleep(0.002)
            sock.sendall(stream[cut:])
            assert read_replies(sock, 4) == expected, cut


def test_an_array_whose_count_lies_is_a_protocol_error(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n" + command(b"PING"))
        assert (
            recv_until_closed(sock) == b"-ERR Protocol error: expected '$', got '*'\r\n"
        )


def test_bad_counts_and_lengths_get_redis_errors(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"*x\r\n")
        assert (
            recv_until_closed(sock)
            == b"-ERR Protocol error: invalid multibulk length\r\n"
        )
    with server.connect() as sock:
        sock.sendall(b"*1\r\n$-5\r\n")
        assert (
            recv_until_closed(sock) == b"-ERR Protocol error: invalid bulk length\r\n"
        )
    with server.connect() as sock:
        sock.sendall(b"*" + b"9" * 40)
        assert (
            recv_until_closed(sock)
            == b"-ERR Protocol error: invalid multibulk length\r\n"
        )
    with server.connect() as sock:
        sock.sendall(b"x" * (70 * 1024))
        assert (
            recv_until_closed(sock)
            == b"-ERR Protocol error: too big inline request\r\n"
        )
    assert cli(server, "PING") == "PONG\n"  # the others go on


def test_more_lies_and_the_replies_before_them(server: ExampleServer) -> None:
    """The replies to the commands before the bad bytes go out first, then the
    error; other connections go on."""
    cases = [
        (b"*-1\r\n", b"invalid multibulk length"),  # a negative count
        (b"*2\r\n$3\r\nGET\r\n*1\r\n", b"expected '$', got '*'"),  # one short
        (b"*1\r\n$3\r\nabcXY\r\n", b"invalid bulk length"),  # longer than said
        (b"*1\r\n$x\r\n", b"invalid bulk length"),  # not a length
        # one more: `*1` is a PING, then a bulk string where a command is due
        (
            b"*1\r\n$4\r\nPING\r\n$1\r\nk\r\n",
            b"+PONG\r\n-ERR Protocol error: expected '*', got '$'",
        ),
    ]
    for wire, error in cases:
        with server.connect() as sock:
            sock.sendall(command(b"PING") + wire)
            if not error.startswith(b"+"):
                error = b"-ERR Protocol error: " + error
            assert recv_until_closed(sock) == b"+PONG\r\n" + error + b"\r\n", wire
    assert cli(server, "PING") == "PONG\n"


def test_a_large_command_a_byte_at_a_time(server: ExampleServer) -> None:
    values = [b"v%04d" % i for i in range(300)]
    stream = command(b"RPUSH", b"bytes:list", *values) + command(b"LLEN", b"bytes:list")
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(stream)):
            sock.send(stream[i : i + 1])
        assert read_replies(sock, 2) == b":300\r\n:300\r\n"


def test_quit_answers_ok_and_closes(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(command(b"QUIT"))
        assert recv_until_closed(sock) == b"+OK\r\n"


# -- redis-benchmark ---------------------------------------------------------------


@pytest.mark.skipif(BENCHMARK is None, reason="redis-benchmark is not installed")
def test_redis_benchmark_runs_every_default_test_without_errors(
    server: ExampleServer,
) -> None:
    done = subprocess.run(
        [
            BENCHMARK,
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-q",
            "-n",
            "20000",
            "-P",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "rror" not in output, output
    finished = re.findall(
        r"([A-Z_]+[A-Z0-9_]*)[^:\r\n]*: [0-9.]+ requests per second", output
    )
    for test in (
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "LPUSH",
        "RPUSH",
        "LPOP",
        "RPOP",
        "SADD",
        "HSET",
        "SPOP",
        "ZADD",
        "ZPOPMIN",
        "LRANGE_100",
        "LRANGE_300",
        "LRANGE_500",
        "LRANGE_600",
        "MSET",
    ):
        assert test in finished, (test, output[-2000:])
