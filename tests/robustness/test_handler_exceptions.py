"""An exception in any callback of a generated server's handler is logged with its
traceback and closes only that connection; the loop goes on. With
`fatal_handler_errors=True` the server stops instead."""

from __future__ import annotations

import socket
from pathlib import Path
from types import ModuleType
from typing import Callable

import robust_specs as specs
from robust_harness import (
    closed_by_server,
    connect,
    port_of,
    recv_exact,
    serving,
    wait_for,
)

POISON = {"boom-traffic": "traffic", "boom-close": "close"}


def echo(sock: socket.socket, codec: ModuleType, payload: bytes) -> None:
    wire = codec.Message(payload=payload).encode()
    sock.sendall(wire)
    assert recv_exact(sock, len(wire)) == wire


def test_each_callback_exception_closes_only_its_connection(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    unix_path = tmp_path / "robecho.sock"
    with serving(
        directory,
        protocol,
        tmp_path / "work",
        urls=["tcp://127.0.0.1:0", f"unix://{unix_path}"],
        options={"ticker": True},
        behaviour={
            "poison": POISON,
            "raise_in_open_on_unix": True,
            "raise_in_tick": True,
        },
    ) as served:
        with connect(served.url) as good:
            echo(good, codec, b"before")

            # on_traffic (the frame callback runs inside it)
            with connect(served.url) as bad:
                bad.sendall(codec.Message(payload=b"boom-traffic").encode())
                assert closed_by_server(bad, 10)
                assert served.close_of(port_of(bad))["err"] == "RuntimeError"
            echo(good, codec, b"after on_traffic")

            # on_open: connections through the unix listener raise there
            with connect(f"unix://{unix_path}") as bad:
                assert closed_by_server(bad, 10)
            opened_unix = wait_for(
                lambda: [
                    e
                    for e in served.find("close")
                    if not isinstance(e["peer"], int) and e["err"] == "RuntimeError"
                ]
            )
            assert opened_unix, served.events()
            echo(good, codec, b"after on_open")

            # on_close: the connection is gone anyway; the loop must survive it
            with connect(served.url) as bad:
                echo(bad, codec, b"boom-close")
                bad_port = port_of(bad)
            assert served.close_of(bad_port)["err"] is None
            echo(good, codec, b"after on_close")

            # on_tick raises every time; ticks go on and so does serving
            assert wait_for(lambda: len(served.find("tick")) >= 2, 10)
            echo(good, codec, b"after on_tick")

            log = wait_for(lambda: "on_close exploded" in served.log() and served.log())
            for where in ("on_traffic", "on_open", "on_close", "on_tick"):
                assert f"{where} exploded on purpose" in log, log
            assert log.count("Traceback (most recent call last)") >= 4, log
            # Only the offenders were closed: the good connection never was.
            assert not served.find("close", peer=port_of(good))
            assert served.alive()


def test_fatal_handler_errors_stops_the_server(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    with serving(
        directory,
        protocol,
        tmp_path / "work",
        options={"fatal_handler_errors": True},
        behaviour={"poison": POISON},
    ) as served:
        with connect(served.url) as sock:
            echo(sock, codec, b"fine")
            sock.sendall(codec.Message(payload=b"boom-traffic").encode())
            assert closed_by_server(sock, 10)
        served.process.wait(15)
        assert served.process.returncode != 0
        assert "on_traffic exploded on purpose" in served.stderr()
