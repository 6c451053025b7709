"""The HTTP/1.1 example (examples/http/) driven by curl and Python's http.client.

One generated server per module; every test uses its own connections, and the
error tests check that another, already open connection keeps working.
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import time
import weakref
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

from served_example import ExampleServer, recv_until_closed

MAX_FRAME = 64 * 1024
PLAINTEXT = b"Hello, World!"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleServer]:
    served = ExampleServer("http", tmp_path_factory.mktemp("cache"))
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)


class Reply:
    """One parsed response: status, headers (names lower-cased), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())


_READERS: "weakref.WeakKeyDictionary[socket.socket, Any]" = weakref.WeakKeyDictionary()


def read_responses(sock: socket.socket, count: int) -> list[Reply]:
    """Parse `count` pipelined responses (Content-Length framed) from one socket, in order.

    The socket's reader is kept in _READERS so that bytes buffered past
    one call's last response are seen by the next call.
    """
    stream = _READERS.get(sock)
    if stream is None:
        stream = _READERS[sock] = sock.makefile("rb")
    replies = []
    for _ in range(count):
        status_line = stream.readline(65537)
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers = {}
        while (line := stream.readline(65537)) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = stream.read(int(headers.get("content-length", "0")))
        replies.append(Reply(int(status_line.split()[1]), headers, body))
    return replies


def request(
    method: str, path: str, body: bytes = b"", extra: str = "", version: str = "1.1"
) -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: test\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# -- curl ------------------------------------------------------------------------------


def test_curl_get_plaintext(server: ExampleServer) -> None:
    result = curl("-i", f"http://127.0.0.1:{server.port}/plaintext")
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert body == PLAINTEXT
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Server"] == "protogen"
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Length"] == "13"
    assert (
        parsedate_to_datetime(headers["Date"]).tzinfo is not None
    )  # RFC 7231 IMF-fixdate
    assert headers["Date"].endswith(" GMT")


def test_curl_post_echoes_the_body(server: ExampleServer, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40 + b"\r\n\r\nnot a head\r\n\r\n"
    (tmp_path / "body.bin").write_bytes(payload)
    result = curl(
        "--data-binary",
        f"@{tmp_path / 'body.bin'}",
        f"http://127.0.0.1:{server.port}/echo",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload


def test_curl_reuses_one_connection_for_several_urls(server: ExampleServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    result = curl("-v", f"{base}/plaintext", f"{base}/missing", f"{base}/plaintext")
    assert result.returncode == 0, result.stderr
    assert result.stdout == PLAINTEXT + PLAINTEXT  # the 404 has no body
    log = result.stderr.decode()
    assert log.count("Connected to") == 1
    assert re.search(r"Re-?using existing connection", log, re.I)
    assert "< HTTP/1.1 404 Not Found" in log


# -- http.client -------------------------------------------------------------------------


def test_http_client_keep_alive_and_routes(server: ExampleServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/plaintext")
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, PLAINTEXT)
        sock = conn.sock
        conn.request("POST", "/echo", body=b"ping " * 100)
        echo = conn.getresponse()
        assert (echo.status, echo.read()) == (200, b"ping " * 100)
        conn.request("GET", "/nowhere")
        missing = conn.getresponse()
        assert (missing.status, missing.read()) == (404, b"")
        conn.request("GET", "/echo")
        wrong = conn.getresponse()
        assert (wrong.status, wrong.getheader("Allow"), wrong.read()) == (
            405,
            "POST, PUT",
            b"",
        )
        conn.request("GET", "/plaintext?cache=no")
        query = conn.getresponse()
        assert (query.status, query.read()) == (200, PLAINTEXT)
        assert conn.sock is sock  # one TCP connection for all five
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(server: ExampleServer) -> None:
    bodies = [b"", b"x", b"\r\n\r\n", b"GET /plaintext HTTP/1.1\r\n\r\n", b"z" * 5000]
    wire = b""
    expected = []
    for index, body in enumerate(bodies):
        wire += request("GET", "/plaintext") + request("POST", "/echo", body)
        expected += [(200, PLAINTEXT), (200, body)]
        if index % 2:
            wire += request("GET", f"/missing/{index}")
            expected.append((404, b""))
    with server.connect() as sock:
        sock.sendall(wire)
        responses = read_responses(sock, len(expected))
        assert [(r.status, r.body) for r in responses] == expected
        # Still open: one more request on the same connection.
        sock.sendall(request("GET", "/plaintext"))
        assert read_responses(sock, 1)[0].body == PLAINTEXT


def test_pipelined_requests_split_at_every_offset(server: ExampleServer) -> None:
    """Heads and bodies cut across reads, mixing heads the server already knows."""
    wire = (
        request("GET", "/plaintext") * 3
        + request("POST", "/echo", b"a\r\n\r\nb")
        + request("GET", "/plaintext")
        + request("GET", "/plaintext", extra="X-Trace: 7\r\n")
    )
    expected = [PLAINTEXT] * 3 + [b"a\r\n\r\nb", PLAINTEXT, PLAINTEXT]
    for cut in (1, 7, 31, 52):
        with server.connect() as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for start in range(0, len(wire), cut):
                sock.sendall(wire[start : start + cut])
            responses = read_responses(sock, len(expected))
            assert [r.body for r in responses] == expected, cut


def test_connection_close_is_honoured(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            request("GET", "/plaintext")
            + request("GET", "/plaintext", extra="Connection: close\r\n")
            + request("GET", "/plaintext")  # after the close: ignored
        )
        data = recv_until_closed(sock)
    assert data.count(PLAINTEXT) == 2
    assert data.count(b"Connection: close") == 1
    assert data.endswith(PLAINTEXT)


def test_http_10_closes_unless_keep_alive(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(request("GET", "/plaintext", version="1.0"))
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(PLAINTEXT)
    with server.connect() as sock:
        sock.sendall(
            request(
                "GET", "/plaintext", extra="Connection: keep-alive\r\n", version="1.0"
            )
            * 2
        )
        responses = read_responses(sock, 2)
        assert [r.getheader("Connection") for r in responses] == ["keep-alive"] * 2
        assert [r.body for r in responses] == [PLAINTEXT] * 2


MALFORMED = {
    # name: (head, words the 400's reason must contain)
    "garbage": (b"GARBAGE\r\n\r\n", "request line"),
    "no-version": (b"GET /plaintext\r\nHost: x\r\n\r\n", "request line"),
    "bad-version": (b"GET /plaintext HTTP/2.0\r\n\r\n", "request line"),
    "no-colon": (b"GET /plaintext HTTP/1.1\r\nno colon here\r\n\r\n", "colon"),
    "space-before-colon": (
        b"GET /plaintext HTTP/1.1\r\nHost : x\r\n\r\n",
        "whitespace before the colon",
    ),
    "folded": (b"GET /plaintext HTTP/1.1\r\n folded: header\r\n\r\n", "folding"),
    "bad-length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        "Content-Length",
    ),
    "conflicting-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        "Content-Length",
    ),
    # Smuggling (RFC 9112 section 6.3): two framings that could disagree.
    "duplicate-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        "more than one Content-Length",
    ),
    "transfer-encoding-and-length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        "both Content-Length and Transfer-Encoding",
    ),
    # Host (RFC 9112 section 3.2).
    "missing-host": (b"GET /plaintext HTTP/1.1\r\nX-A: 1\r\n\r\n", "needs a Host"),
    "duplicate-host": (
        b"GET /plaintext HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "more than one Host",
    ),
    "bad-host": (b"GET /plaintext HTTP/1.1\r\nHost: a b/c\r\n\r\n", "host[:port]"),
    # Field values: no NUL, no other control characters (RFC 9110 section 5.5).
    "nul-in-value": (
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        "forbidden character 0x00",
    ),
    "control-in-value": (
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        "forbidden character 0x01",
    ),
    "del-in-value": (
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\nX-A: \x7f\r\n\r\n",
        "forbidden character 0x7f",
    ),
    "bare-cr": (b"GET /plaintext HTTP/1.1\r\nHost: x\rX-A: y\r\n\r\n", "CR"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_head_gets_400_then_close(server: ExampleServer, name: str) -> None:
    head, reason = MALFORMED[name]
    with server.connect() as bystander:
        bystander.sendall(request("GET", "/plaintext"))
        assert read_responses(bystander, 1)[0].status == 200
        with server.connect() as sock:
            sock.sendall(
                request("GET", "/plaintext") + head + request("GET", "/plaintext")
            )
            data = recv_until_closed(sock)
        first, _, rest = data.partition(PLAINTEXT)
        assert first.startswith(b"HTTP/1.1 200 OK")
        assert rest.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"Connection: close" in rest and PLAINTEXT not in rest
        assert reason.encode() in rest.partition(b"\r\n\r\n")[2]
        bystander.sendall(request("POST", "/echo", b"still here"))
        assert read_responses(bystander, 1)[0].body == b"still here"


def test_header_values_may_hold_tabs_and_obs_text(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            request(
                "GET", "/plaintext", extra="X-A: \ta b\t\r\nX-B: caf\xe9\r\n"
            ).replace(b"caf\\xe9", b"caf\xe9")
        )
        assert read_responses(sock, 1)[0].body == PLAINTEXT


def test_http_10_needs_no_host(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /plaintext HTTP/1.0\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(PLAINTEXT)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /plaintext HTTP/1.1\nHost: x\n\n",
        b"GET /plaintext HTTP/1.1\r\nHost: x\n\n",
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\n",
    ],
    ids=["all-lf", "lf-after-host", "last-line-lf"],
)
def test_bare_lf_head_is_refused_not_left_waiting(
    server: ExampleServer, head: bytes
) -> None:
    """No CRLFCRLF ever comes: the server must say 400 and close, not wait."""
    with server.connect() as sock:
        sock.sendall(head)
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"LF alone" in data


def test_bare_lf_split_across_reads(server: ExampleServer) -> None:
    """A CRLF cut between two reads is not a bare LF; a later bare one is."""
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"GET /plaintext HTTP/1.1\r")
        time.sleep(0.1)
        sock.sendall(b"\nHost: x\r")
        time.sleep(0.1)
        sock.sendall(b"\n\r\n")
        assert read_responses(sock, 1)[0].body == PLAINTEXT
        sock.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r")
        time.sleep(0.1)
        sock.sendall(b"\nX: y\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_request_line_over_8k_gets_414(server: ExampleServer) -> None:
    target = "/" + "a" * 9000
    with server.connect() as sock:
        sock.sendall(request("GET", target))
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 414 URI Too Long\r\n")


def test_unfinished_request_line_over_8k_gets_414_at_once(
    server: ExampleServer,
) -> None:
    """Refused when the line passes 8 KiB, not when the head passes max_frame."""
    with server.connect() as sock:
        sock.sendall(b"GET /" + b"a" * 9000)
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 414 URI Too Long\r\n")


def test_unsupported_expectation_gets_417(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(request("POST", "/echo", b"hi", extra="Expect: teapot\r\n"))
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 417 Expectation Failed\r\n")


# -- Expect: 100-continue --------------------------------------------------------------


def expecting(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()


def test_expect_100_continue_is_answered_before_the_body(
    server: ExampleServer,
) -> None:
    body = b"b" * 3000
    with server.connect() as sock:
        sock.sendall(expecting("/echo", len(body)))
        sock.settimeout(5)  # today's clients wait 1 s, then send anyway
        interim = sock.recv(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body[:1000])
        time.sleep(0.1)
        sock.sendall(body[1000:] + request("GET", "/plaintext"))
        responses = read_responses(sock, 2)
        assert [(r.status, r.body) for r in responses] == [
            (200, body),
            (200, PLAINTEXT),
        ]


def test_expect_100_continue_for_a_refused_request_gets_the_final_answer(
    server: ExampleServer,
) -> None:
    with server.connect() as sock:
        sock.sendall(expecting("/missing", 100))
        data = recv_until_closed(sock)  # the body was never sent
    assert data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Connection: close" in data and b"100 Continue" not in data


def test_expect_100_continue_with_the_body_already_sent(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(expecting("/echo", 5) + b"hello")
        responses = read_responses(sock, 1)  # no 100: the body is here already
        assert (responses[0].status, responses[0].body) == (200, b"hello")


def test_a_bad_head_is_refused_before_its_body_arrives(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n")
        data = recv_until_closed(sock)  # no Host; the body is never sent
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_curl_expect_100_continue(server: ExampleServer, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 8
    (tmp_path / "body.bin").write_bytes(payload)
    result = curl(
        "-v",
        "--http1.1",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{tmp_path / 'body.bin'}",
        f"http://127.0.0.1:{server.port}/echo",
    )
    assert result.returncode == 0, result.stderr
    assert "< HTTP/1.1 100 Continue" in result.stderr.decode()
    assert result.stdout == payload


def test_curl_upload_from_stdin_is_chunked(server: ExampleServer) -> None:
    """`curl -T -` sends stdin as a chunked PUT behind `Expect: 100-continue`."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    payload = bytes(range(256)) * 100 + b"\r\n0\r\n\r\n"  # looks like a last chunk
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-v",
            "--http1.1",
            "-T",
            "-",
            f"http://127.0.0.1:{server.port}/echo",
        ],
        input=payload,
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    log = result.stderr.decode()
    assert "Transfer-Encoding: chunked" in log
    assert "< HTTP/1.1 100 Continue" in log
    assert "< HTTP/1.1 200 OK" in log
    assert result.stdout == payload


def test_curl_chunked_post_from_a_file(server: ExampleServer, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 180  # 46 080 bytes: curl sends several chunks
    (tmp_path / "body.bin").write_bytes(payload)
    base = f"http://127.0.0.1:{server.port}"
    result = curl(
        "-v",
        "--http1.1",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{tmp_path / 'body.bin'}",
        f"{base}/echo",
        # The same connection goes on after the chunked body.
        "--next",
        f"{base}/plaintext",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload + PLAINTEXT
    log = result.stderr.decode()
    assert "> Transfer-Encoding: chunked" in log
    assert log.count("Connected to") == 1


# -- HEAD ------------------------------------------------------------------------------


def test_curl_head_plaintext(server: ExampleServer) -> None:
    result = curl("-I", "--http1.1", f"http://127.0.0.1:{server.port}/plaintext")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert headers["Content-Length"] == str(len(PLAINTEXT))
    assert headers["Content-Type"] == "text/plain"
    assert result.stdout.endswith(b"\r\n\r\n")  # no body


def test_head_then_get_pipelined(server: ExampleServer) -> None:
    """The HEAD answer carries no body: the next answer starts right after it."""
    with server.connect() as sock:
        sock.sendall(request("HEAD", "/plaintext") + request("GET", "/plaintext"))
        stream = sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += stream.readline()
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length: 13\r\n" in head
        assert stream.readline() == b"HTTP/1.1 200 OK\r\n"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("HEAD", "/plaintext")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        assert response.getheader("Content-Length") == "13"
        conn.request("POST", "/plaintext", body=b"x")
        refused = conn.getresponse()
        assert (refused.status, refused.getheader("Allow")) == (405, "GET, HEAD")
        refused.read()
    finally:
        conn.close()


def test_oversize_body_gets_413_before_it_is_sent(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n"
        )
        data = recv_until_closed(sock)  # no body sent: the head alone is refused
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in data


def test_oversize_head_gets_431(server: ExampleServer) -> None:
    with server.connect() as bystander:
        head = b"GET /plaintext HTTP/1.1\r\n" + b"X-Filler: " + b"f" * (MAX_FRAME + 100)
        with server.connect() as sock:
            sock.sendall(head)  # never terminated: refused once it passes max_frame
            data = recv_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"Connection: close" in data
        bystander.sendall(request("GET", "/plaintext"))
        assert read_responses(bystander, 1)[0].body == PLAINTEXT


def test_largest_body_that_fits_is_echoed(server: ExampleServer) -> None:
    head_size = len(request("POST", "/echo", b"x" * 60000)) - 60000
    body = bytes(range(256)) * ((MAX_FRAME - head_size) // 256)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", "/echo", body=body, headers={"Host": "test"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, body)
    finally:
        conn.close()


# -- chunked request bodies --------------------------------------------------------------


def chunked(path: str, body: bytes, chunk: int = 7, extra: str = "") -> bytes:
    """A chunked request: `body` in chunks of `chunk` bytes, with an extension
    on the first and a trailer field."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces[:1])
    wire = wire.replace(b"\r\n", b';name="v"\r\n', 1)
    wire += b"".join(b"%X\r\n%s\r\n" % (len(p), p) for p in pieces[1:])
    return head + wire + b"0\r\nX-Checksum: 1\r\n\r\n"


def test_a_chunked_body_is_echoed_then_pipelined_requests(
    server: ExampleServer,
) -> None:
    body = bytes(range(256)) * 3 + b"0\r\n\r\n"
    wire = (
        chunked("/echo", body)
        + request("GET", "/plaintext")
        + chunked("/echo", b"second", chunk=2)
        + chunked("/plaintext", b"ignored", extra="X-A: 1\r\n").replace(
            b"POST", b"GET", 1
        )
        + request("POST", "/echo", b"last")
    )
    expected = [body, PLAINTEXT, b"second", PLAINTEXT, b"last"]
    for cut in (len(wire), 1, 5, 64):
        with server.connect() as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for start in range(0, len(wire), cut):
                sock.sendall(wire[start : start + cut])
            responses = read_responses(sock, len(expected))
            assert [r.body for r in responses] == expected, cut
            assert [r.status for r in responses] == [200] * 5


def test_a_chunked_body_arriving_slowly(server: ExampleServer) -> None:
    wire = chunked("/echo", b"slow body", chunk=3)
    head_end = wire.index(b"\r\n\r\n") + 4
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(wire[:head_end])
        time.sleep(0.1)
        for start in range(head_end, len(wire), 4):
            sock.sendall(wire[start : start + 4])
            time.sleep(0.01)
        assert read_responses(sock, 1)[0].body == b"slow body"


def test_expect_100_continue_with_a_chunked_body(server: ExampleServer) -> None:
    wire = chunked("/echo", b"after continue", extra="Expect: 100-continue\r\n")
    head_end = wire.index(b"\r\n\r\n") + 4
    with server.connect() as sock:
        sock.sendall(wire[:head_end])
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(wire[head_end:])
        assert read_responses(sock, 1)[0].body == b"after continue"
    with server.connect() as sock:  # a request that will be refused: no 100
        refused = chunked("/missing", b"x", extra="Expect: 100-continue\r\n")
        sock.sendall(refused[: refused.index(b"\r\n\r\n") + 4])
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"100 Continue" not in data


CHUNKED_REFUSALS = {
    # name: (the body after the head, status, words the reason must contain)
    "size-not-hex": (b"zz\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk-size"),
    "size-blank-after": (b"5 \r\nhello\r\n0\r\n\r\n", 400, "chunk extension"),
    "negative-size": (b"-5\r\nhello\r\n0\r\n\r\n", 400, "invalid chunk-size"),
    "size-too-many-digits": (b"0" * 17 + b"5\r\nhello\r\n0\r\n\r\n", 400, "16 hex"),
    "bad-extension": (b"5;=x\r\nhello\r\n0\r\n\r\n", 400, "chunk extension"),
    "data-too-long": (b"3\r\nhello\r\n0\r\n\r\n", 400, "longer than its chunk-size"),
    "no-crlf-after-data": (b"5\r\nhello0\r\n\r\n", 400, "chunk-size"),
    "bare-lf-size-line": (b"5\nhello\r\n0\r\n\r\n", 400, "LF alone"),
    "bad-trailer": (b"0\r\nno colon\r\n\r\n", 400, "invalid trailer field"),
    "nul-in-trailer": (b"0\r\nX: \x00\r\n\r\n", 400, "invalid trailer field"),
    "endless-extension": (b"5;" + b"e" * 5000, 400, "chunk line is longer"),
    "endless-trailers": (b"0\r\n" + b"X-A: b\r\n" * 1500, 431, "trailer section"),
    "chunk-over-max-frame": (b"10000\r\n", 413, "over"),
}


@pytest.mark.parametrize("name", list(CHUNKED_REFUSALS))
def test_malformed_chunked_body_is_refused(server: ExampleServer, name: str) -> None:
    wire, status, words = CHUNKED_REFUSALS[name]
    with server.connect() as bystander:
        with server.connect() as sock:
            sock.sendall(
                request("GET", "/plaintext")
                + b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + wire
            )
            data = recv_until_closed(sock)  # refused at once, then closed
        first, _, rest = data.partition(PLAINTEXT)
        assert first.startswith(b"HTTP/1.1 200 OK")
        assert rest.startswith(b"HTTP/1.1 %d " % status), rest
        assert b"Connection: close" in rest and PLAINTEXT not in rest
        assert words.encode() in rest.partition(b"\r\n\r\n")[2]
        bystander.sendall(chunked("/echo", b"still here"))
        assert read_responses(bystander, 1)[0].body == b"still here"


@pytest.mark.parametrize(
    ("coding", "status", "words"),
    [
        (b"gzip, chunked", 501, "gzip is not supported"),
        (b"chunked, gzip", 400, "must end with chunked"),
        (b"gzip", 400, "must end with chunked"),
        (b"chunked\r\nTransfer-Encoding: chunked", 400, "more than once"),
        (b"xchunked", 400, "must end with chunked"),
        (b"chunked\r\nContent-Length: 5", 400, "both"),
    ],
)
def test_transfer_codings_other_than_chunked_are_refused(
    server: ExampleServer, coding: bytes, status: int, words: str
) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
            + coding
            + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 %d " % status), data
    assert words.encode() in data.partition(b"\r\n\r\n")[2]


def test_chunked_in_an_http_10_request_is_refused(server: ExampleServer) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"HTTP/1.0" in data


def test_the_largest_chunked_body_that_fits(server: ExampleServer) -> None:
    """max_frame bounds head + encoded body, as it bounds a Content-Length request."""
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    room = MAX_FRAME - len(head) - len(b"ffff\r\n\r\n0\r\n\r\n")
    body = bytes(range(256)) * (room // 256) + b"x" * (room % 256)
    encoded = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    assert len(head + encoded) == MAX_FRAME
    with server.connect() as sock:
        sock.sendall(head + encoded)
        assert read_responses(sock, 1)[0].body == body
    with server.connect() as sock:  # one byte more
        sock.sendall(head + b"%x\r\n" % (len(body) + 1))
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413 Content Too Large\r\n")


def test_a_long_head_completed_later_then_a_short_one(server: ExampleServer) -> None:
    """A head cut across reads is scanned from where the decoder stopped; the next
    (short) head is then scanned from its own start."""
    long_head = request("GET", "/plaintext", extra="X-Padding: " + "p" * 300 + "\r\n")
    short = b"GET /short HTTP/1.1\r\nHost: t\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(long_head)
        assert read_responses(sock, 1)[0].body == PLAINTEXT
        sock.sendall(long_head[:-20])
        time.sleep(0.2)  # let the server scan the partial head
        sock.sendall(long_head[-20:] + short + long_head)
        responses = read_responses(sock, 3)
    assert [r.status for r in responses] == [200, 404, 200]


def test_a_burst_of_identical_pipelined_requests(server: ExampleServer) -> None:
    """wrk's load: one request repeated, every copy parsed."""
    one = request("GET", "/plaintext", extra="Connection: keep-alive\r\n")
    with server.connect() as sock:
        for burst in (1, 16, 200):
            sock.sendall(one * burst)
            responses = read_responses(sock, burst)
            assert [r.body for r in responses] == [PLAINTEXT] * burst
            assert all(
                r.getheader("Date") and r.getheader("Server") == "protogen"
                for r in responses
            )
            assert all(r.getheader("Connection") is None for r in responses)
