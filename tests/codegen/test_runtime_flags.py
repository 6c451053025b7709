"""Every runtime option on every command line: `protogen serve`, the generated
`python -m NAME_server` and the examples' serve.py, all built from
`dataclasses.fields(Options)`; help, defaults and choices for every option of
every command; bad values exit 2 naming the option."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serve_helpers import (
    ECHO,
    EXAMPLES,
    connect_when_ready,
    env_for,
    free_port,
    protogen,
    start,
    stop,
)

from protogen.cli import _build_parser
from protogen.runtime.cli import (
    add_runtime_flags,
    format_size,
    parse_duration,
    parse_size,
    runtime_flags,
    runtime_options,
)
from protogen.runtime.options import Options

CLI_FIELDS = [f for f in dataclasses.fields(Options) if f.metadata.get("cli")]


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


# --- the flag layer -------------------------------------------------------------------


def test_every_options_field_says_whether_it_is_on_the_command_line() -> None:
    for field in dataclasses.fields(Options):
        assert "cli" in field.metadata, f"Options.{field.name} has no cli metadata"
        assert field.metadata.get("help"), f"Options.{field.name} has no help"
    assert {f.field for f in runtime_flags()} == {f.name for f in CLI_FIELDS}
    assert "logger" not in {f.field for f in runtime_flags()}


@pytest.mark.parametrize(
    "text, size",
    [
        ("65536", 65536),
        ("64KiB", 65536),
        ("64k", 65536),
        ("16MiB", 16 << 20),
        ("1 GiB", 1 << 30),
        ("2mb", 2 << 20),
    ],
)
def test_sizes_take_units(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "-1", "64 kibibytes", "MiB"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    "text, seconds", [("30", 30.0), ("2.5", 2.5), ("500ms", 0.5), ("5m", 300.0)]
)
def test_durations_are_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_sizes_are_shown_in_the_largest_exact_unit() -> None:
    assert [format_size(n) for n in (64 << 20, 256 << 10, 1000, 0)] == [
        "64MiB",
        "256KiB",
        "1000",
        "0",
    ]


def parse(*argv: str, environ: dict[str, str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(prog="test")
    add_runtime_flags(parser)
    return runtime_options(parser.parse_args(argv), environ=environ or {})


def test_flags_map_onto_options_and_only_given_ones_are_set() -> None:
    assert parse() == {}
    assert parse(
        "--idle-timeout",
        "30",
        "--max-buffered-per-conn",
        "16MiB",
        "--no-tcp-no-delay",
        "--lb",
        "source-hash",
        "--poller",
        "selectors",
        "--unix-mode",
        "600",
        "--edge-triggered",
        "--max-connections",
        "100",
    ) == {
        "idle_timeout": 30.0,
        "max_buffered_per_conn": 16 << 20,
        "tcp_no_delay": False,
        "load_balancing": "source_addr_hash",
        "poller": "selectors",
        "unix_mode": 0o600,
        "edge_triggered": True,
        "max_connections": 100,
    }


def test_none_and_zero_turn_an_optional_duration_off() -> None:
    assert parse("--idle-timeout", "none") == {"idle_timeout": None}
    assert parse("--read-timeout", "0") == {"read_timeout": None}


def test_environment_variables_set_options_and_the_command_line_wins() -> None:
    environ = {
        "PROTOGEN_IDLE_TIMEOUT": "45",
        "PROTOGEN_TICKER": "yes",
        "PROTOGEN_WRITE_BUFFER_CAP": "8MiB",
    }
    assert parse(environ=environ) == {
        "idle_timeout": 45.0,
        "ticker": True,
        "write_buffer_cap": 8 << 20,
    }
    assert parse("--idle-timeout", "5", environ=environ)["idle_timeout"] == 5.0


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="PROTOGEN_BACKLOG: 'lots' is not an integer"):
        parse(environ={"PROTOGEN_BACKLOG": "lots"})


def test_options_checked_together_name_the_flags() -> None:
    with pytest.raises(ValueError, match="--write-low-water .* --write-high-water"):
        parse("--write-low-water", "1MiB", "--write-high-water", "64KiB")


def test_a_new_options_field_gets_a_flag_with_no_cli_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The contract with the runtime: a field with help/cli metadata is a flag."""

    @dataclasses.dataclass
    class Extended(Options):
        max_buffered_per_conn: int = dataclasses.field(
            default=4 << 20,
            metadata={"help": "memory held by unfinished frames", "cli": True},
        )
        handshake_timeout: float | None = dataclasses.field(
            default=None, metadata={"help": "TLS handshake limit", "cli": True}
        )

    import protogen.runtime.cli as cli_module

    monkeypatch.setattr(cli_module, "Options", Extended)
    parser = argparse.ArgumentParser(prog="test")
    add_runtime_flags(parser)
    text = parser.format_help()
    assert "--max-buffered-per-conn SIZE" in text and "(default: 4MiB)" in text
    assert "--handshake-timeout SECONDS" in text
    args = parser.parse_args(["--max-buffered-per-conn", "1MiB"])
    assert runtime_options(args, environ={}) == {"max_buffered_per_conn": 1 << 20}


# --- help, defaults, choices of every command ---------------------------------------


def subcommands() -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in _build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                for inner in sub._actions:
                    if isinstance(inner, argparse._SubParsersAction):
                        found.update(
                            {f"{name} {n}": p for n, p in inner.choices.items()}
                        )
    return found


@pytest.mark.parametrize("command", ["build", "check", "serve", "templates export"])
def test_every_option_of_every_command_has_help_and_a_default(command: str) -> None:
    parser = subcommands()[command]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"protogen {command} {action.option_strings}: no help"
        if action.option_strings:
            assert "default" in action.help, (command, action.option_strings)
        if action.choices:
            shown = action.help + str(action.metavar or "")
            assert all(
                str(c) in shown or str(c) in parser.format_usage()
                for c in action.choices
            ), (command, action.option_strings)


def test_serve_help_lists_every_runtime_option() -> None:
    result = protogen("serve", "--help")
    assert result.returncode == 0
    for field in CLI_FIELDS:
        assert flag_of(field.name) in result.stdout
    assert "--log-level" in result.stdout and "PROTOGEN_IDLE_TIMEOUT" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--idle-timeout", "soon"), "--idle-timeout: 'soon' is not a duration"),
        (
            ("--max-buffered-per-conn", "big"),
            "--max-buffered-per-conn: 'big' is not a size",
        ),
        (("--poller", "io_uring"), "--poller: 'io_uring' is not one of auto"),
        (("--write-low-water", "1MiB"), "--write-low-water (1048576) must not exceed"),
        (("--max-connections", "-1"), "--max-connections must be an int >= 0"),
        (("--log-level", "loud"), "--log-level: invalid choice"),
    ],
)
def test_bad_values_exit_2_naming_the_option(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = protogen("serve", ECHO, *args, env=env_for(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_bad_environment_value_exits_2(tmp_path: Path) -> None:
    result = protogen(
        "serve", ECHO, env=env_for(tmp_path, PROTOGEN_IDLE_TIMEOUT="whenever")
    )
    assert result.returncode == 2
    assert "PROTOGEN_IDLE_TIMEOUT: 'whenever' is not a duration" in result.stderr


# --- the options reach the server ------------------------------------------------------


def wait_closed(sock: socket.socket) -> bool:
    sock.settimeout(30)
    return sock.recv(1) == b""


def test_idle_timeout_and_ticker_reach_protogen_serve(tmp_path: Path) -> None:
    (tmp_path / "ticking.py").write_text(
        "import sys\n"
        "from echo_handler import EchoEchoHandler\n\n\n"
        "class Ticking(EchoEchoHandler):\n"
        "    def on_tick(self):\n"
        "        print('tick', file=sys.stderr, flush=True)\n"
        "        return 0.05, None\n"
    )
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "protogen",
            "serve",
            ECHO,
            "--handler",
            "ticking:Ticking",
            "--listen",
            f"tcp://127.0.0.1:{port}",
            "--ticker",
            "--log-level",
            "debug",
        ],
        tmp_path,
        env_for(tmp_path, PROTOGEN_IDLE_TIMEOUT="0.3"),
    )
    try:
        with connect_when_ready(port, process) as idle:
            assert wait_closed(idle)  # closed by the idle timeout
    finally:
        status, stderr = stop(process)
    assert status == 0, stderr
    assert stderr.count("tick\n") >= 2


def test_the_generated_server_takes_every_runtime_option(tmp_path: Path) -> None:
    assert protogen("build", ECHO, "-o", tmp_path).returncode == 0
    helped = subprocess.run(
        [sys.executable, "-m", "echo_server", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0
    for field in CLI_FIELDS:
        assert flag_of(field.name) in helped.stdout
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "echo_server",
            "--listen",
            f"tcp://127.0.0.1:{port}",
            "--idle-timeout",
            "0.3",
        ],
        tmp_path,
        env_for(tmp_path),
    )
    try:
        with connect_when_ready(port, process) as idle:
            assert wait_closed(idle)
    finally:
        status, stderr = stop(process)
    assert status == 0, stderr
    assert f"echo_server: serving echo on tcp://127.0.0.1:{port} with" in stderr


@pytest.mark.parametrize(
    "script",
    ["dns/serve.py", "mqtt/serve.py", "http/serve.py", "memcached/serve.py"],
)
def test_every_example_serve_py_takes_every_runtime_option(
    tmp_path: Path, script: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    for field in CLI_FIELDS:
        assert flag_of(field.name) in result.stdout, (script, field.name)
    bad = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--idle-timeout", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(tmp_path),
    )
    assert bad.returncode == 2 and "--idle-timeout" in bad.stderr


@pytest.mark.parametrize(
    "example, state",
    [
        ("mqtt", "the broker keeps sessions"),
        ("memcached", "the cache lives in one process"),
        ("postgres", "the table lives in one process"),
        ("redis", "the keyspace lives in one process"),
        ("syslog", "one process writes the output"),
    ],
)
def test_a_single_process_example_refuses_several_loops(
    tmp_path: Path, example: str, state: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example / "serve.py"), "--loops", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(tmp_path),
    )
    assert result.returncode == 2
    assert f"--loops 2: {state}" in result.stderr
    assert "so this example serves with one event loop only" in result.stderr


def test_an_example_serve_py_applies_an_option(tmp_path: Path) -> None:
    port = free_port()
    process = start(
        [
            sys.executable,
            EXAMPLES / "mqtt/serve.py",
            "--listen",
            f"tcp://127.0.0.1:{port}",
            "--idle-timeout",
            "0.3",
        ],
        tmp_path,
        env_for(tmp_path),
    )
    try:
        with connect_when_ready(port, process) as idle:
            started = time.monotonic()
            assert wait_closed(idle)
            assert time.monotonic() - started < 30
    finally:
        status, stderr = stop(process)
    assert status == 0, stderr
    assert f"serve.py: serving mqtt on tcp://127.0.0.1:{port}" in stderr


def test_listen_comes_from_the_environment_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from protogen.runtime.cli import add_listen_flag

    monkeypatch.setenv("PROTOGEN_LISTEN", "tcp://127.0.0.1:7001, udp://127.0.0.1:7002")
    parser = argparse.ArgumentParser()
    add_listen_flag(parser, "somewhere")
    assert parser.parse_args([]).listen == [
        "tcp://127.0.0.1:7001",
        "udp://127.0.0.1:7002",
    ]
    # The flag replaces the environment's addresses; it does not add to them.
    given = parser.parse_args(["--listen", "tcp://[::1]:1", "--listen", "unix:///s"])
    assert given.listen == ["tcp://[::1]:1", "unix:///s"]
    monkeypatch.delenv("PROTOGEN_LISTEN")
    parser = argparse.ArgumentParser()
    add_listen_flag(parser, "somewhere")
    assert parser.parse_args([]).listen is None


def test_protogen_serve_listens_where_the_environment_says(tmp_path: Path) -> None:
    port = free_port()
    env = env_for(tmp_path) | {"PROTOGEN_LISTEN": f"tcp://127.0.0.1:{port}"}
    process = start([sys.executable, "-m", "protogen", "serve", ECHO], tmp_path, env)
    try:
        with connect_when_ready(port, process) as sock:
            sock.sendall(b"\x00\x00\x00\x02hi")
            assert sock.recv(16) == b"\x00\x00\x00\x02hi"
    finally:
        status, stderr = stop(process)
    assert status == 0, stderr
    assert f"127.0.0.1:{port}" in stderr
