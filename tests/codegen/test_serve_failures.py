"""No silent failures: what goes wrong while serving is said, with the right
exit status (protocol-error disconnects, unanswered frames, a failed on_boot,
a busy port, a handler refusing several loops, a spec with no echo default)."""

from __future__ import annotations

import socket
import struct
import sys
import time
from pathlib import Path

from serve_helpers import (
    ECHO,
    EXAMPLES,
    REPO,
    connect_when_ready,
    env_for,
    frame,
    free_port,
    protogen,
    recv_exactly,
    start,
    stop,
)

from protogen.runtime.ratelog import RateLimitedLog

MEMCACHED = EXAMPLES / "memcached" / "memcached.proto.dsl"


def serve(tmp_path: Path, *args: str) -> tuple[object, int]:
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "protogen",
            "serve",
            ECHO,
            "--listen",
            f"tcp://127.0.0.1:{port}",
            *args,
        ],
        tmp_path,
        env_for(tmp_path),
    )
    return process, port


def test_a_protocol_error_disconnect_is_logged_at_info(tmp_path: Path) -> None:
    process, port = serve(tmp_path)
    try:
        with connect_when_ready(port, process) as bad:  # type: ignore[arg-type]
            bad.sendall(struct.pack(">I", 0xFFFFFFFF))  # over max_frame
            assert recv_exactly(bad, 1) == b""
            peer = "%s:%d" % bad.getsockname()[:2]
    finally:
        status, stderr = stop(process)  # type: ignore[arg-type]
    assert status == 0, stderr
    assert f"INFO protogen.runtime: protogen: closed {peer}: FrameTooLarge" in stderr


def test_protocol_error_lines_are_rate_limited() -> None:
    import logging

    now = [0.0]
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.ratelog")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(Collect())
    log = RateLimitedLog(
        logger, burst=3, period=10.0, what="drops", clock=lambda: now[0]
    )
    for n in range(1000):  # a flood within one period: 3 lines, not 1000
        log.log("drop %d", n)
    assert records == ["drop 0", "drop 1", "drop 2"]
    now[0] = 10.5
    log.log("drop late")
    assert records[3:] == [
        "protogen: 997 more drops not logged in the last 10 s",
        "drop late",
    ]


def test_a_frame_without_an_overridden_callback_is_warned_once(tmp_path: Path) -> None:
    """`echo_handler:EchoHandler` is the base class: on_message does nothing."""
    process, port = serve(tmp_path, "--handler", "echo_handler:EchoHandler")
    try:
        with connect_when_ready(port, process) as sock:  # type: ignore[arg-type]
            sock.sendall(frame(b"one") + frame(b"two"))
            sock.settimeout(0.5)
            try:
                unexpected = sock.recv(1)
            except TimeoutError:
                unexpected = None
            assert unexpected is None  # no reply, connection kept
    finally:
        status, stderr = stop(process)  # type: ignore[arg-type]
    assert status == 0, stderr
    line = "EchoHandler: a Message arrived but on_message is not overridden"
    assert stderr.count(line) == 1, stderr


def test_on_boot_raising_names_the_handler_and_exits_non_zero(tmp_path: Path) -> None:
    (tmp_path / "boom.py").write_text(
        "from echo_handler import EchoHandler\n\n\n"
        "class Boom(EchoHandler):\n"
        "    def on_boot(self, engine):\n"
        "        raise RuntimeError('no database configured')\n"
    )
    process, port = serve(tmp_path, "--handler", "boom:Boom")
    status, stderr = stop_when_exited(process)
    assert status == 1, stderr
    assert "Boom.on_boot raised" in stderr and "no database configured" in stderr
    assert "for None" not in stderr
    assert "protogen: serving" not in stderr


def stop_when_exited(process: object) -> tuple[int, str]:
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    return stop(process)  # type: ignore[arg-type]


def test_a_busy_port_is_one_error_and_no_serving_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = protogen(
            "serve", ECHO, "--listen", f"tcp://127.0.0.1:{port}", env=env_for(tmp_path)
        )
    assert result.returncode == 1, result.stderr
    assert "protogen: serving" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot serve on" in lines[0], result.stderr
    assert "Address already in use" in lines[0]


def test_the_chat_room_refusing_two_loops_exits_non_zero(tmp_path: Path) -> None:
    result = protogen(
        "serve",
        EXAMPLES / "lines.proto.dsl",
        "--handler",
        "examples.lines_chat:ChatRoom",
        "--listen",
        f"tcp://127.0.0.1:{free_port()}",
        "--loops",
        "2",
        cwd=REPO,
        env=env_for(tmp_path),
    )
    assert result.returncode != 0, result.stderr
    assert "needs a single event loop; run without --loops" in result.stderr
    assert "Traceback" not in result.stderr.split("protogen: error:")[-1]


def test_serve_without_handler_refuses_a_spec_whose_replies_differ(
    tmp_path: Path,
) -> None:
    """memcached: the server decodes Request and encodes Response; echoing a
    Request back as if it were a Response is no answer."""
    result = protogen("serve", MEMCACHED, env=env_for(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "--handler MODULE:CLASS is required" in result.stderr
    assert "decodes Request and encodes Response" in result.stderr
    assert "protogen: serving" not in result.stderr


def test_the_generated_server_refuses_it_too(tmp_path: Path) -> None:
    assert protogen("build", MEMCACHED, "-o", tmp_path).returncode == 0
    result = subprocess_run([sys.executable, "-m", "memcached_server"], tmp_path)
    assert result.returncode == 2
    assert "--handler MODULE:CLASS is required" in result.stderr
    source = (tmp_path / "memcached_server.py").read_text()
    assert "DEFAULT_HANDLER: type[EventHandler] | None = None" in source


def subprocess_run(command: list[str], cwd: Path) -> object:
    import subprocess

    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=60, env=env_for(cwd)
    )
