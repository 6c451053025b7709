"""The syslog example (examples/syslog/): util-linux `logger` over TCP with both
RFC 6587 framings, and raw sockets mixing them on one connection."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from served_example import ExampleServer, recv_until_closed

LOGGER = shutil.which("logger")


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("syslog") / "messages.log"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, output: Path
) -> Iterator[ExampleServer]:
    served = ExampleServer(
        "syslog", tmp_path_factory.mktemp("cache"), "--output", str(output)
    )
    try:
        yield served
    finally:
        assert served.alive(), "the server died during the tests"
        served.stop()


def wait_for(output: Path, text: str) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = output.read_text().splitlines() if output.exists() else []
        if any(text in line for line in lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never arrived: {lines}")


@pytest.mark.skipif(LOGGER is None, reason="logger (util-linux) is not installed")
@pytest.mark.parametrize("framing", [["--octet-count"], []])
def test_logger_over_tcp(
    server: ExampleServer, output: Path, framing: list[str]
) -> None:
    text = f"hello from logger {' '.join(framing) or 'newline'}"
    assert LOGGER is not None
    subprocess.run(
        [
            LOGGER,
            "-n",
            "127.0.0.1",
            "-P",
            str(server.port),
            "-T",
            *framing,
            "-p",
            "local3.warning",
            text,
        ],
        check=True,
        timeout=30,
    )
    lines = wait_for(output, text)
    (line,) = [line for line in lines if text in line]
    assert line.startswith("local3.warning <156>1 ")
    assert line.endswith(text)


def test_both_framings_mixed_on_one_connection(
    server: ExampleServer, output: Path
) -> None:
    messages = [
        b"<13>first",
        b"<0>second has\nno newline end",
        b"<191>third",
        b"no pri",
    ]
    stream = (
        b"%d %s" % (len(messages[0]), messages[0])
        + b"%d %s" % (len(messages[1]), messages[1])
        + messages[2]
        + b"\n"
        + messages[3]
        + b"\r\n"
        + b"4 <9>x"
    )
    with server.connect() as sock:
        for index in range(0, len(stream), 7):  # cut every 7 bytes
            sock.sendall(stream[index : index + 7])
            time.sleep(0.001)
    lines = wait_for(output, "<9>x")
    assert lines[-5:] == [
        "user.notice <13>first",
        "kern.emerg <0>second has\\nno newline end",  # octet counting keeps the LF
        "local7.debug <191>third",
        "-.- no pri",
        "user.alert <9>x",
    ]


def test_a_count_over_the_limit_closes_only_that_connection(
    server: ExampleServer, output: Path
) -> None:
    with server.connect() as sock:
        sock.sendall(b"99999999 <13>huge")
        assert recv_until_closed(sock) == b""
    with server.connect() as sock:
        sock.sendall(b"<13>still here\n")
    wait_for(output, "still here")
