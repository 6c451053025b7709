"""The runtime on the command line: one flag per `Options` field, and the serve
sequence every protogen entry point shares.

`protogen serve`, the generated `python -m NAME_server` and the examples'
`serve.py` all call `add_runtime_flags(parser)` and `runtime_options(args)`,
so every runtime option is on every command line, with no list to keep in
step: field `idle_timeout` of `protogen.runtime.options.Options` becomes
`--idle-timeout`, with the field's `metadata["help"]`, its default and its
choices. A field with `metadata["cli"]` false (`logger`, ...) gets no flag.

Values, by the field's type:

* sizes (int fields named like `*_cap`, `*_buffer`, `*_water`, `*bytes*`,
  `*buffered*`, `*size*`, `*memory*`, or with `metadata["unit"] == "bytes"`):
  `65536`, `64KiB`, `16MiB`, `1GiB` (K, M, G, KB, KiB... all powers of 1024);
* durations (float fields, or `unit == "seconds"`): seconds, `30`, `2.5`,
  `500ms`, `5m`, `1h`; where the option may be off (its type allows None)
  `none`, `off` or `0` turn it off;
* booleans: `--x` / `--no-x` (a None default, "auto", is shown as such);
* choices: the listed values (`-` and `_` are interchangeable);
* file modes (`unit == "mode"`): octal, `600` or `0o600`.

Every flag can also come from the environment: `PROTOGEN_IDLE_TIMEOUT=30`
(the flag's name in upper case, `-` as `_`, prefixed with `PROTOGEN_`).
Precedence: command line, then environment, then the options the program
passes in (`base`), then the `Options` defaults. A bad value, from either
place, is a usage error naming the flag (or variable): exit status 2.

`serve_command(...)` binds every listener, prints the "serving" line only
then (with the real ports), runs until SIGINT/SIGTERM and turns failures
into one line on stderr and an exit status: 0 stopped, 1 could not serve
(address in use, `on_boot` refused or raised, a worker failed), 2 usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import threading
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .address import AddressError, parse_address
from .engine import BootError, Engine
from .handler import EventHandler
from .options import Options

__all__ = [
    "ENV_PREFIX",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_USAGE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "RuntimeFlag",
    "add_listen_flag",
    "add_runtime_flags",
    "configure_logging",
    "format_size",
    "log_format",
    "log_level",
    "parse_duration",
    "parse_size",
    "runtime_flags",
    "runtime_options",
    "serve",
    "serve_command",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

ENV_PREFIX = "PROTOGEN_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_LEVEL = "info"

_SIZE_NAME = re.compile(r"(_cap|_buffer|_water)$|bytes|buffered|size|memory")
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_OFF = frozenset({"none", "off", "never", "no"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# --- values ---------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """`65536`, `64KiB`, `16M`, `1 GiB` -> bytes (units are powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (like 65536, 64KiB or 16MiB)")
    number, unit, _ = match.groups()
    return int(number) * _UNITS[unit.lower()]


def format_size(size: int) -> str:
    """The largest exact unit: 65536 -> `64KiB`, 1000 -> `1000`."""
    for suffix, unit in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def parse_duration(text: str) -> float:
    """`30`, `2.5`, `500ms`, `5m`, `1h` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (seconds, like 30, 2.5 or 500ms)")
    number, unit = match.groups()
    return float(number) * _SECONDS[unit.lower() if unit else None]


def _format_duration(seconds: float) -> str:
    return f"{seconds:g}"


# --- flags ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeFlag:
    """How one `Options` field appears on a command line."""

    field: str  # the Options field, e.g. idle_timeout
    flags: tuple[str, ...]  # --idle-timeout, and any metadata["flags"] aliases
    env: str  # PROTOGEN_IDLE_TIMEOUT
    kind: str  # bool, size, duration, int, choice, mode, str
    optional: bool  # None is a valid value (turns the option off)
    help: str
    default: Any
    choices: tuple[str, ...] = ()
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return self.flags[0]

    def parse(self, text: str) -> Any:
        """The option's value for `text`; ValueError saying what is expected."""
        word = text.strip().lower()
        if self.optional and word in _OFF:
            return None
        if self.kind == "bool":
            if self.optional and word == "auto":
                return None
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, on/off)")
        if self.kind == "size":
            return parse_size(text)
        if self.kind == "duration":
            seconds = parse_duration(text)
            return None if self.optional and seconds == 0 else seconds
        if self.kind == "int":
            try:
                return int(word)
            except ValueError:
                raise ValueError(f"{text!r} is not an integer") from None
        if self.kind == "mode":
            try:
                return int(word.removeprefix("0o"), 8)
            except ValueError:
                raise ValueError(
                    f"{text!r} is not an octal file mode like 600"
                ) from None
        if self.kind == "list":
            return tuple(item.strip() for item in text.split(",") if item.strip())
        if self.kind == "choice":
            key = word.replace("-", "_")
            key = self.aliases.get(key, key)
            for choice in self.choices:
                if choice.replace("-", "_") == key:
                    return choice
            raise ValueError(
                f"{text!r} is not one of {', '.join(map(self.show, self.choices))}"
            )
        return text

    @staticmethod
    def show(choice: str) -> str:
        """Choices are shown as command-line words: round-robin, not round_robin."""
        return choice.replace("_", "-")

    def describe_default(self) -> str:
        value = self.default
        if value is None or value == ():
            return "auto" if self.kind == "bool" else "none"
        if self.kind == "bool":
            return self.flag if value else "--no-" + self.flag[2:]
        if self.kind == "size":
            return format_size(value)
        if self.kind == "duration":
            return _format_duration(value)
        if self.kind == "mode":
            return oct(value)[2:]
        if self.kind == "list":
            return ",".join(value)
        if self.kind == "choice":
            return self.show(value)
        return str(value)


def _field_kind(field: dataclasses.Field[Any], hint: Any) -> tuple[str, bool]:
    """(kind, optional) of an Options field from its annotation and metadata."""
    if typing.get_origin(hint) is tuple:
        return "list", False  # repeatable flag, or commas: a,b
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    unit = field.metadata.get("unit")
    if base is bool:
        return "bool", optional
    if field.metadata.get("choices"):
        return "choice", optional
    if unit == "mode":
        return "mode", optional
    if unit == "bytes" or (
        base is int and unit is None and _SIZE_NAME.search(field.name)
    ):
        return "size", optional
    if unit == "seconds" or base is float:
        return "duration", optional
    if base is int:
        return "int", optional
    if base is str:
        return "str", optional
    raise TypeError(
        f"Options.{field.name}: no command-line form for {hint!r};"
        " give it metadata cli=False"
    )


def runtime_flags() -> list[RuntimeFlag]:
    """One `RuntimeFlag` per `Options` field with `metadata["cli"]` true."""
    hints = typing.get_type_hints(Options)
    flags = []
    for field in dataclasses.fields(Options):
        if not field.metadata.get("cli", False):
            continue
        kind, optional = _field_kind(field, hints[field.name])
        name = field.name.replace("_", "-")
        flags.append(
            RuntimeFlag(
                field=field.name,
                flags=(f"--{name}", *field.metadata.get("flags", ())),
                env=ENV_PREFIX + field.name.upper(),
                kind=kind,
                optional=optional,
                help=field.metadata.get("help", ""),
                default=field.default,
                choices=tuple(field.metadata.get("choices", ())),
                aliases=dict(field.metadata.get("aliases", {})),
                metavar=field.metadata.get("metavar"),
            )
        )
    return flags


def _metavar(flag: RuntimeFlag) -> str | None:
    if flag.metavar and flag.kind == "str":
        return flag.metavar
    return {
        "size": "SIZE",
        "duration": "SECONDS",
        "int": "N",
        "mode": "MODE",
        "str": flag.metavar or "TEXT",
        "list": flag.metavar or "ITEM",
        "choice": flag.metavar or flag.field.rsplit("_", 1)[-1].upper(),
    }.get(flag.kind)


def _argparse_type(flag: RuntimeFlag) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return flag.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = flag.kind  # argparse names it in "invalid <kind> value"
    return convert


def add_runtime_flags(
    parser: argparse.ArgumentParser,
    *,
    skip: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add `--log-level` and one flag per runtime option to `parser`.

    `skip`: Options field names the program sets itself (no flag for them).
    `defaults`: the program's own option values, shown as the defaults (pass
    the same mapping as `base` to `runtime_options`).
    """
    group = parser.add_argument_group(
        "runtime options",
        f"Each can also be set in the environment: {ENV_PREFIX}NAME (e.g. "
        f"{ENV_PREFIX}IDLE_TIMEOUT=30); the command line wins. Sizes take "
        "KiB/MiB/GiB, durations are seconds.",
    )
    group.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        default=argparse.SUPPRESS,
        help=f"log level; one of {', '.join(LOG_LEVELS)} (default: "
        f"{DEFAULT_LOG_LEVEL}) [env {ENV_PREFIX}LOG_LEVEL]",
    )
    group.add_argument(
        "--log-format",
        type=str.lower,
        choices=LOG_FORMATS,
        metavar="FORMAT",
        default=argparse.SUPPRESS,
        help=f"log line format; one of {', '.join(LOG_FORMATS)} (default: text)"
        f" [env {ENV_PREFIX}LOG_FORMAT]",
    )
    skipped = set(skip)
    shown = dict(defaults or {})
    for flag in runtime_flags():
        if flag.field in skipped:
            continue
        default = flag
        if flag.field in shown:
            default = dataclasses.replace(flag, default=shown[flag.field])
        choices = (
            f"; one of {', '.join(map(flag.show, flag.choices))}"
            if flag.choices
            else ""
        )
        help_text = (
            f"{flag.help}{choices} (default: {default.describe_default()})"
            f" [env {flag.env}]"
        ).replace("%", "%%")
        if flag.kind == "bool":
            group.add_argument(
                *flag.flags,
                dest=flag.field,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        group.add_argument(
            *flag.flags,
            dest=flag.field,
            action="extend" if flag.kind == "list" else "store",
            type=_argparse_type(flag),
            metavar=_metavar(flag),
            default=argparse.SUPPRESS,
            help=help_text,
        )


LISTEN_ENV = ENV_PREFIX + "LISTEN"


class _ListenAppend(argparse.Action):
    """`append`, except that the first `--listen` replaces the environment's
    addresses instead of adding to them (argparse's own `append` would keep
    the default list and append to it)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:
            current = []
        setattr(namespace, self.dest, [*current, values])


def add_listen_flag(
    parser: argparse.ArgumentParser, default: Sequence[str] | str
) -> None:
    """`--listen URL` (repeatable), with the default (URLs or words) shown.

    `PROTOGEN_LISTEN` (URLs separated by spaces or commas) stands in for the
    flag when it is not given, as for every other flag: containers and test
    harnesses move a server without editing its command line.
    """
    shown = default if isinstance(default, str) else " ".join(default)
    from_env = os.environ.get(LISTEN_ENV, "").replace(",", " ").split()
    parser.add_argument(
        "--listen",
        action=_ListenAppend,
        default=from_env or None,
        metavar="URL",
        help="address to serve, repeatable: tcp://HOST:PORT, tcp6://[::1]:PORT, "
        "udp://..., unix:///PATH, tls://HOST:PORT (with --tls-cert, --tls-key), "
        f"unix+tls:///PATH (default: {shown}; env {LISTEN_ENV})",
    )


def _flag_names_in(message: str) -> str:
    """`option write_low_water (1) must not exceed write_high_water (0)` ->
    `--write-low-water (1) must not exceed --write-high-water (0)`."""
    names = "|".join(
        sorted((f.name for f in dataclasses.fields(Options)), key=len, reverse=True)
    )
    return re.sub(
        rf"\b(?:option )?({names})\b",
        lambda m: "--" + m.group(1).replace("_", "-"),
        message,
    )


def runtime_options(
    args: argparse.Namespace,
    *,
    parser: argparse.ArgumentParser | None = None,
    environ: Mapping[str, str] | None = None,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The runtime options chosen: command line, then environment, then `base`.

    Validated as a whole (`Options.from_kwargs`). A bad value is
    `parser.error(...)` (exit status 2) with a `parser`, else a ValueError;
    both name the flag or the environment variable.
    """
    env = os.environ if environ is None else environ
    chosen: dict[str, Any] = dict(base or {})
    try:
        for flag in runtime_flags():
            if flag.field in vars(args):
                chosen[flag.field] = getattr(args, flag.field)
            elif flag.env in env:
                try:
                    chosen[flag.field] = flag.parse(env[flag.env])
                except ValueError as error:
                    raise ValueError(f"{flag.env}: {error}") from None
        try:
            Options.from_kwargs(**chosen)
        except (TypeError, ValueError) as error:
            raise ValueError(_flag_names_in(str(error))) from None
    except ValueError as error:
        if parser is None:
            raise
        parser.error(str(error))
    return chosen


def log_level(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> str:
    """`--log-level`, else `PROTOGEN_LOG_LEVEL`, else info."""
    env = os.environ if environ is None else environ
    level = getattr(args, "log_level", None) or env.get(ENV_PREFIX + "LOG_LEVEL")
    level = (level or DEFAULT_LOG_LEVEL).lower()
    if level not in LOG_LEVELS:
        raise ValueError(
            f"{ENV_PREFIX}LOG_LEVEL: {level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    return level


def log_format(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> str:
    """`--log-format`, else `PROTOGEN_LOG_FORMAT`, else text."""
    env = os.environ if environ is None else environ
    chosen = getattr(args, "log_format", None) or env.get(ENV_PREFIX + "LOG_FORMAT")
    chosen = (chosen or "text").lower()
    if chosen not in LOG_FORMATS:
        raise ValueError(
            f"{ENV_PREFIX}LOG_FORMAT: {chosen!r} is not one of {', '.join(LOG_FORMATS)}"
        )
    return chosen


def configure_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at `level`, as text lines or one JSON object per line
    (a server's entry point owns the root logger)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from .logjson import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
    elif fmt == "json":
        for existing in root.handlers:
            existing.setFormatter(handler.formatter)
    root.setLevel(getattr(logging, level.upper()))


# --- serving --------------------------------------------------------------------------


def serve(
    handler: EventHandler,
    urls: Sequence[str],
    options: Mapping[str, Any] | Options,
    *,
    announce: Callable[[list[str]], None] | None = None,
) -> None:
    """`protogen.runtime.run`, with `announce(urls)` once every listener is bound.

    `announce` gets the real URLs (port 0 resolved): with one loop in its
    thread once `on_boot` returned, before any connection is served; with
    several from a helper thread once the workers are started. A bind error or
    a failed boot raises and announces nothing.
    """
    opts = options if isinstance(options, Options) else Options.from_kwargs(**options)
    if not urls:
        raise ValueError("no address to serve, e.g. tcp://127.0.0.1:9000")
    if opts.loops > 1 or opts.multicore:
        from .multicore import MulticoreServer  # lazy, as in run()

        server = MulticoreServer(handler, list(urls), opts)
        if announce is not None:
            # The parent binds inside run(); announce once its workers exist
            # (wait_started is false when binding failed).
            def announce_when_started() -> None:
                if server.wait_started():
                    announce(server.bound_addresses)

            threading.Thread(
                target=announce_when_started, name="protogen-announce", daemon=True
            ).start()
        server.run()
        return
    engine = Engine(handler, list(urls), opts)
    engine.listen()  # a bind error raises here, before any announcement
    if announce is not None:
        # Once on_boot returned, from the loop's thread before it serves: a
        # helper thread could lose the race to a quick stop and print nothing.
        engine.on_started = lambda: announce(engine.urls)
    engine.run()


def check_listen(parser: argparse.ArgumentParser, urls: Sequence[str]) -> None:
    """Every --listen URL parses; else a usage error naming it."""
    for url in urls:
        try:
            parse_address(url)
        except AddressError as error:
            parser.error(f"--listen: {error}")


def serve_command(
    prog: str,
    handler: EventHandler,
    urls: Sequence[str],
    options: Mapping[str, Any],
    *,
    protocol: str = "",
) -> int:
    """Serve until stopped; one stderr line per outcome; returns the exit status.

    Prints `PROG: serving PROTOCOL on URL... with HANDLER` once every listener
    is bound (real ports).
    """
    announced = False

    def announce(bound: list[str]) -> None:
        nonlocal announced
        announced = True
        subject = f" {protocol}" if protocol else ""
        print(
            f"{prog}: serving{subject} on {' '.join(bound)}"
            f" with {type(handler).__qualname__}",
            file=sys.stderr,
            flush=True,
        )

    if options.get("ticker") and type(handler).on_tick is EventHandler.on_tick:
        print(
            f"{prog}: warning: --ticker: {type(handler).__qualname__} does not"
            " override on_tick, so ticking does nothing",
            file=sys.stderr,
        )
    try:
        opts = Options.from_kwargs(**options)
        addresses = [parse_address(url) for url in urls]
        if any(address.tls for address in addresses):
            from .tls import check_tls_options

            check_tls_options(addresses, opts)
    except (TypeError, ValueError) as error:  # AddressError is a ValueError
        print(f"{prog}: error: {_flag_names_in(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    try:
        serve(handler, urls, opts, announce=announce)
    except KeyboardInterrupt:
        return EXIT_OK
    except BootError as error:  # logged by the engine, with the traceback
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:
        if announced:  # fatal_handler_errors, or a worker failed (see the log)
            print(
                f"{prog}: error: stopped: {type(error).__name__}: {error}",
                file=sys.stderr,
            )
            return EXIT_ERROR
        if not isinstance(error, OSError):
            raise
        detail = error.strerror or str(error)  # address in use, permission denied
        print(
            f"{prog}: error: cannot serve on {' '.join(urls)}: {detail}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK
