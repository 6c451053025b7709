"""The operations options on the command line and in Options: repeatable and
comma-separated networks, the environment, clear errors for bad values."""

from __future__ import annotations

import argparse

import pytest

from protogen.runtime import Options
from protogen.runtime.cli import add_runtime_flags, log_format, runtime_options


def parse(argv: list[str], environ: dict[str, str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    add_runtime_flags(parser)
    args = parser.parse_args(argv)
    return runtime_options(args, environ=environ or {})


def test_proxy_from_repeats_and_takes_commas() -> None:
    chosen = parse(
        [
            "--proxy-protocol",
            "--proxy-from",
            "10.0.0.0/8,192.0.2.0/24",
            "--proxy-from",
            "::1/128",
        ]
    )
    assert chosen["proxy_protocol"] is True
    assert tuple(chosen["proxy_from"]) == ("10.0.0.0/8", "192.0.2.0/24", "::1/128")
    assert Options.from_kwargs(**chosen).proxy_from == (
        "10.0.0.0/8",
        "192.0.2.0/24",
        "::1/128",
    )


def test_environment_sets_them_too() -> None:
    chosen = parse(
        [],
        {
            "PROTOGEN_PROXY_FROM": "127.0.0.1/32",
            "PROTOGEN_METRICS": "tcp://127.0.0.1:9100",
            "PROTOGEN_STOP_GRACE": "2s",
        },
    )
    assert tuple(chosen["proxy_from"]) == ("127.0.0.1/32",)
    assert chosen["metrics"] == "tcp://127.0.0.1:9100"
    assert chosen["stop_grace"] == 2.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"proxy_from": ("10.0.0.0/33",)}, "not a network"),
        ({"metrics": "udp://127.0.0.1:9100"}, "stream address"),
        ({"metrics": "tcp://nohost"}, "metrics"),
        ({"proxy_header_timeout": 0}, "proxy_header_timeout"),
        ({"reload_grace": -1}, "reload_grace"),
        ({"stop_grace": -1}, "stop_grace"),
    ],
)
def test_bad_values_name_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Options.from_kwargs(**kwargs)


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_runtime_flags(parser)
    args = parser.parse_args(["--proxy-from", "nonsense"])
    with pytest.raises(SystemExit) as info:
        runtime_options(args, parser=parser, environ={})
    assert info.value.code == 2
    assert "--proxy-from" in capsys.readouterr().err


def test_log_format() -> None:
    assert log_format(argparse.Namespace(), {}) == "text"
    assert log_format(argparse.Namespace(log_format="json"), {}) == "json"
    assert log_format(argparse.Namespace(), {"PROTOGEN_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        log_format(argparse.Namespace(), {"PROTOGEN_LOG_FORMAT": "xml"})
