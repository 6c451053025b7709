"""The PostgreSQL example (examples/postgres/): the real `psql` client (Debian
postgresql-client) against the generated server, plus raw sockets for what psql
never sends (garbage before the startup message, a second StartupMessage, an
unknown tag, a GSSENCRequest, a Terminate)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from served_example import ExampleServer, recv_until_closed

PSQL = shutil.which("psql")
pytestmark = pytest.mark.skipif(
    PSQL is None, reason="psql (postgresql-client) is not installed"
)

SSL_REQUEST = struct.pack(">II", 8, 80877103)
GSSENC_REQUEST = struct.pack(">II", 8, 80877104)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    served = ExampleServer("postgres", tmp_path_factory.mktemp("cache"))
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


def psql(server: ExampleServer, *args: str) -> subprocess.CompletedProcess[str]:
    """psql without ~/.psqlrc, unaligned and tuples only: one value a line."""
    assert PSQL is not None
    env = dict(os.environ, PGCONNECT_TIMEOUT="5", PGUSER="tester", PGDATABASE="kv")
    env.pop("PGSSLMODE", None)  # the default, prefer: psql sends an SSLRequest first
    return subprocess.run(
        [PSQL, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(server.port), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def ok(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    assert not done.stderr
    return done.stdout.splitlines()


def startup(user: bytes = b"raw") -> bytes:
    body = struct.pack(">I", 3 << 16) + b"user\0" + user + b"\0\0"
    return struct.pack(">I", len(body) + 4) + body


def messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Backend messages as (tag, payload)."""
    out = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos + 1)
        out.append((data[pos : pos + 1], data[pos + 5 : pos + 1 + length]))
        pos += 1 + length
    assert pos == len(data)
    return out


def error_fields(payload: bytes) -> dict[str, str]:
    fields = {}
    for item in payload.rstrip(b"\0").split(b"\0"):
        fields[chr(item[0])] = item[1:].decode()
    return fields


def query(text: str) -> bytes:
    body = text.encode() + b"\0"
    return b"Q" + struct.pack(">I", len(body) + 4) + body


def read_until_ready(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    data = b""
    sock.settimeout(5)
    while not data.endswith(b"Z\0\0\0\x05I"):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return messages(data)


# -- psql --------------------------------------------------------------------------


def test_select_1_and_version(server: ExampleServer) -> None:
    assert ok(psql(server, "-c", "SELECT 1")) == ["1"]
    (version,) = ok(psql(server, "-c", "SELECT version()"))
    assert version.startswith("PostgreSQL 15.0")


def test_insert_select_delete(server: ExampleServer) -> None:
    assert ok(psql(server, "-c", "INSERT INTO kv VALUES ('k', 'v')")) == ["INSERT 0 1"]
    assert ok(psql(server, "-c", "SELECT v FROM kv WHERE k = 'k'")) == ["v"]
    assert ok(psql(server, "-c", "DELETE FROM kv WHERE k = 'k'")) == ["DELETE 1"]
    assert ok(psql(server, "-c", "SELECT v FROM kv WHERE k = 'k'")) == []
    assert ok(psql(server, "-c", "DELETE FROM kv WHERE k = 'k'")) == ["DELETE 0"]


def test_several_statements_in_one_query_string(server: ExampleServer) -> None:
    lines = ok(
        psql(
            server,
            "-c",
            "INSERT INTO kv VALUES ('m1', 'a'), ('m2', 'b'); SELECT 7;"
            " SELECT k, v FROM kv WHERE k = 'm2'; DELETE FROM kv WHERE k = 'm1'",
        )
    )
    assert lines == ["INSERT 0 2", "7", "m2|b", "DELETE 1"]
    ok(psql(server, "-c", "DELETE FROM kv WHERE k = 'm2'"))


def test_errors_carry_their_sqlstate(server: ExampleServer) -> None:
    env_verbose = ["-v", "VERBOSITY=verbose"]
    done = psql(server, *env_verbose, "-c", "SELEC 1")
    assert done.returncode == 1
    assert 'ERROR:  42601: syntax error at or near "SELEC"' in done.stderr
    done = psql(server, *env_verbose, "-c", "SELECT v FROM nope")
    assert 'ERROR:  42P01: relation "nope" does not exist' in done.stderr
    done = psql(server, *env_verbose, "-c", "UPDATE kv SET w = 'x'")
    assert "ERROR:  42601" in done.stderr


def test_an_error_skips_the_rest_of_the_query_string(server: ExampleServer) -> None:
    done = psql(
        server,
        "-c",
        "INSERT INTO kv VALUES ('e1', 'x'); BOGUS; INSERT INTO kv VALUES ('e2', 'y')",
    )
    assert done.returncode == 1
    assert ok(psql(server, "-c", "SELECT k FROM kv WHERE k = 'e2'")) == []
    # e1 went in before the error (no transaction is kept across statements here)
    assert ok(psql(server, "-c", "DELETE FROM kv WHERE k = 'e1'")) == ["DELETE 1"]


def test_a_session_of_several_commands_through_psql_f(
    server: ExampleServer, tmp_path: Path
) -> None:
    script = tmp_path / "session.sql"
    script.write_text(
        "INSERT INTO kv VALUES ('s1', 'one');\n"
        "INSERT INTO kv VALUES ('s2', 'it''s two');\n"
        "SELECT v FROM kv WHERE k = 's2';\n"
        "UPDATE kv SET v = 'uno' WHERE k = 's1';\n"
        "SELECT k, v FROM kv WHERE k = 's1';\n"
        "INSERT INTO kv VALUES ('s1', 'again');\n"
        "DELETE FROM kv WHERE k = 's1';\n"
        "DELETE FROM kv WHERE k = 's2';\n"
        "SELECT 'done';\n"
    )
    done = psql(server, "-f", str(script))
    assert done.returncode == 0  # psql -f goes on after an error without ON_ERROR_STOP
    assert done.stdout.splitlines() == [
        "INSERT 0 1",
        "INSERT 0 1",
        "it's two",
        "UPDATE 1",
        "s1|uno",
        "DELETE 1",
        "DELETE 1",
        "done",
    ]
    assert (
        'session.sql:6: ERROR:  duplicate key value violates unique constraint "kv_pkey"'
        in done.stderr
    )


def test_psql_without_ssl_attempt_too(server: ExampleServer) -> None:
    assert ok(psql(server, "-d", "sslmode=disable", "-c", "SELECT 'plain'")) == [
        "plain"
    ]


# -- raw sockets -------------------------------------------------------------------


def test_startup_answers_and_terminate(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"N"
        sock.sendall(GSSENC_REQUEST)
        assert sock.recv(1) == b"N"
        sock.sendall(startup())
        replies = read_until_ready(sock)
        tags = [tag for tag, _ in replies]
        assert tags[0] == b"R" and replies[0][1] == bytes(4)  # AuthenticationOk
        assert tags[-2:] == [b"K", b"Z"]
        status = {}
        for tag, payload in replies:
            if tag == b"S":
                name, value = payload[:-1].decode().split("\0")
                status[name] = value
        assert status["server_version"] == "15.0"
        assert status["client_encoding"] == "UTF8"
        sock.sendall(b"X\0\0\0\x04")
        assert recv_until_closed(sock) == b""


def test_startup_and_queries_in_one_segment_split_anywhere(
    server: ExampleServer,
) -> None:
    """The phase switch after the StartupMessage happens at its last byte: a query
    in the same segment, or cut anywhere, is read as a typed message."""
    stream = SSL_REQUEST + startup() + query("SELECT 5")
    for cut in (
        0,
        3,
        7,
        8,
        9,
        len(SSL_REQUEST + startup()) - 1,
        len(SSL_REQUEST + startup()) + 1,
    ):
        with server.connect() as sock:
            sock.sendall(stream[:cut])
            if cut >= 8:
                assert sock.recv(1) == b"N"
            sock.sendall(stream[cut:])
            if cut < 8:
                assert sock.recv(1) == b"N"
            replies = read_until_ready(sock)
            if not any(tag == b"D" for tag, _ in replies):
                replies += read_until_ready(sock)
            rows = [payload for tag, payload in replies if tag == b"D"]
            assert rows == [b"\0\x01\0\0\0\x015"], cut


def test_garbage_before_the_startup_message_is_a_fatal_error(
    server: ExampleServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # read as a 1.1 GB startup packet
        ((tag, payload),) = messages(recv_until_closed(sock))
    assert tag == b"E"
    fields = error_fields(payload)
    assert fields["S"] == "FATAL" and fields["C"] == "08P01"
    assert "startup packet" in fields["M"]


def test_a_bad_encryption_request_code_is_a_fatal_error(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(struct.pack(">II", 8, 80877109))
        ((tag, payload),) = messages(recv_until_closed(sock))
    assert tag == b"E" and error_fields(payload)["C"] == "08P01"


def test_a_second_startup_message_is_a_protocol_violation(
    server: ExampleServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(startup())
        read_until_ready(sock)
        sock.sendall(startup())
        ((tag, payload),) = messages(recv_until_closed(sock))
    fields = error_fields(payload)
    assert tag == b"E" and fields["S"] == "FATAL" and fields["C"] == "08P01"
    assert "no frame starts with byte 0x00" in fields["M"]


def test_an_unsupported_protocol_version_is_refused(server: ExampleServer) -> None:
    body = struct.pack(">I", 2 << 16) + b"user\0x\0\0"
    with server.connect() as sock:
        sock.sendall(struct.pack(">I", len(body) + 4) + body)
        ((tag, payload),) = messages(recv_until_closed(sock))
    assert tag == b"E" and error_fields(payload)["C"] == "0A000"


def test_the_extended_protocol_errors_once_then_sync_makes_ready(
    server: ExampleServer,
) -> None:
    parse = b"P" + struct.pack(">I", 4 + 12) + b"\0SELECT 1\0\0\0"
    sync = b"S\0\0\0\x04"
    with server.connect() as sock:
        sock.sendall(startup())
        read_until_ready(sock)
        sock.sendall(parse + b"B\0\0\0\x0c\0\0\0\0\0\0\0\0" + sync + query("SELECT 1"))
        replies = read_until_ready(sock)
        if [tag for tag, _ in replies].count(b"Z") < 2:
            replies += read_until_ready(sock)
    tags = [tag for tag, _ in replies]
    assert tags == [b"E", b"Z", b"T", b"D", b"C", b"Z"]
    assert error_fields(replies[0][1])["C"] == "0A000"


def test_an_empty_query_answers_empty_query_response(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(startup())
        read_until_ready(sock)
        sock.sendall(query("  ;  "))
        assert [tag for tag, _ in read_until_ready(sock)] == [b"I", b"Z"]


def test_bad_connections_leave_others_working(server: ExampleServer) -> None:
    with server.connect() as bad:
        bad.sendall(b"\xff" * 64)
        recv_until_closed(bad)
    assert ok(psql(server, "-c", "SELECT 1")) == ["1"]
