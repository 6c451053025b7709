"""The servers compared by the benchmark, and how each one is built and started.

A peer that cannot be prepared (its example not written yet, a build failure, a
missing module) is skipped with a reason rather than failing the whole run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .paths import EXAMPLES, PEERS

ECHO, HTTP, LINES, MEMCACHED = "echo", "http", "lines", "memcached"
REDIS = "redis"
# Pure peers run the pure runtime even where `protogen compile-runtime` built it.
PURE = {"PROTOGEN_COMPILED": "0"}


def listen_url(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


@dataclass
class Peer:
    """A server implementation of one protocol family (`kind`)."""

    name: str
    kind: str
    protogen: bool = False
    skip_reason: str | None = field(default=None, init=False)
    # Environment of the server process (on top of the runner's).
    env: dict[str, str] = field(default_factory=lambda: dict(PURE))

    def prepare(self, workdir: Path) -> bool:
        """Build whatever is needed; False (with `skip_reason`) if unavailable."""
        return True

    def command(self, port: int) -> tuple[list[str], Path | None]:
        raise NotImplementedError


@dataclass
class ScriptPeer(Peer):
    """A script of `bench/peers/` (or an example script) taking `--port`/`--listen`."""

    script: Path = PEERS
    args: tuple[str, ...] = ()
    listen_flag: bool = False  # protogen scripts take --listen URL, peers --port

    def prepare(self, workdir: Path) -> bool:
        if not self.script.is_file():
            self.skip_reason = (
                f"{self.script.relative_to(EXAMPLES.parent)} does not exist yet"
            )
            return False
        return True

    def command(self, port: int) -> tuple[list[str], Path | None]:
        where = (
            ["--listen", listen_url(port)]
            if self.listen_flag
            else ["--port", str(port)]
        )
        return [sys.executable, str(self.script), *self.args, *where], None


@dataclass
class GeneratedPeer(Peer):
    """The server `protogen build SPEC` generates, run as `python -m MODULE`."""

    spec: Path = EXAMPLES
    module: str = ""
    outdir: Path | None = None
    # A handler module (copied next to the generated code) and its MODULE:CLASS.
    handler_file: Path | None = None
    handler: str | None = None
    # Compiled mode: `protogen build --compile` and the compiled runtime.
    compiled: bool = False
    # Compiled mode compiles the handler module too (`protogen compile`, what
    # `protogen serve --compile --handler` does); False keeps it pure Python.
    compile_handler: bool = True

    def prepare(self, workdir: Path) -> bool:
        if not self.spec.is_file():
            self.skip_reason = (
                f"{self.spec.relative_to(EXAMPLES.parent)} does not exist yet"
            )
            return False
        self.outdir = workdir / f"gen-{self.name}"
        build = subprocess.run(
            [
                sys.executable,
                "-m",
                "protogen",
                "build",
                str(self.spec),
                "-o",
                str(self.outdir),
                *(["--compile"] if self.compiled else []),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if build.returncode != 0:
            tail = (build.stderr or build.stdout).strip().splitlines()[-3:]
            self.skip_reason = (
                f"`protogen build {self.spec.name}` failed: {' | '.join(tail)}"
            )
            return False
        if not (
            (self.outdir / f"{self.module}.py").is_file()
            or (self.outdir / self.module / "__init__.py").is_file()
        ):
            made = (
                sorted(p.name for p in self.outdir.iterdir())
                if self.outdir.is_dir()
                else []
            )
            self.skip_reason = f"build produced no module {self.module!r} (got {made})"
            return False
        if self.handler_file is not None:
            shutil.copy(self.handler_file, self.outdir / self.handler_file.name)
            if self.compiled and self.compile_handler:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "protogen",
                        "compile",
                        str(self.outdir / self.handler_file.name),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                if done.returncode != 0:
                    tail = (done.stderr or done.stdout).strip().splitlines()[-2:]
                    self.skip_reason = f"`protogen compile` failed: {' | '.join(tail)}"
                    return False
        if self.compiled:
            return self._compile_runtime()
        return True

    def _compile_runtime(self) -> bool:
        self.env = {}
        return compile_runtime(self)

    def command(self, port: int) -> tuple[list[str], Path | None]:
        return [
            sys.executable,
            "-m",
            self.module,
            "--listen",
            listen_url(port),
            *(("--handler", self.handler) if self.handler else ()),
        ], self.outdir


@dataclass
class HttpExamplePeer(Peer):
    """protogen's HTTP example (`examples/http/`): a `server.py`/`serve.py` script
    taking `--listen`, or else its spec, built and run as `python -m <stem>_server`."""

    directory: Path = EXAMPLES / "http"
    _delegate: Peer | None = None

    def prepare(self, workdir: Path) -> bool:
        if not self.directory.is_dir():
            self.skip_reason = "examples/http/ does not exist yet"
            return False
        for name in ("server.py", "serve.py"):
            if (self.directory / name).is_file():
                self._delegate = ScriptPeer(
                    self.name,
                    self.kind,
                    True,
                    script=self.directory / name,
                    listen_flag=True,
                )
                return True
        specs = sorted(self.directory.glob("*.proto.dsl"))
        if not specs:
            self.skip_reason = "examples/http/ has no server.py and no *.proto.dsl"
            return False
        module = specs[0].name.removesuffix(".proto.dsl") + "_server"
        self._delegate = GeneratedPeer(
            self.name, self.kind, True, spec=specs[0], module=module
        )
        if not self._delegate.prepare(workdir):
            self.skip_reason = self._delegate.skip_reason
            return False
        return True

    def command(self, port: int) -> tuple[list[str], Path | None]:
        assert self._delegate is not None
        return self._delegate.command(port)


@dataclass
class ServePeer(Peer):
    """`protogen serve SPEC --compile --handler MODULE:CLASS`, run beside the
    example's handler: the example in compiled mode (and the compiled runtime)."""

    spec: Path = EXAMPLES
    handler: str = ""

    def prepare(self, workdir: Path) -> bool:
        if not self.spec.is_file():
            self.skip_reason = f"{self.spec.name} does not exist yet"
            return False
        self.env = {"PROTOGEN_CACHE_DIR": str(workdir / "serve-cache")}
        return compile_runtime(self)

    def command(self, port: int) -> tuple[list[str], Path | None]:
        return [
            sys.executable,
            "-m",
            "protogen",
            "serve",
            str(self.spec),
            "--compile",
            "--handler",
            self.handler,
            "--listen",
            listen_url(port),
        ], self.spec.parent


@dataclass
class CommandPeer(Peer):
    """A native server (`memcached`), its port as the last argument."""

    argv: tuple[str, ...] = ()

    def prepare(self, workdir: Path) -> bool:
        if shutil.which(self.argv[0]) is None:
            self.skip_reason = f"{self.argv[0]} is not installed"
            return False
        return True

    def command(self, port: int) -> tuple[list[str], Path | None]:
        return [*self.argv, str(port)], None


def compile_runtime(peer: Peer) -> bool:
    """The runtime's hot modules compiled for a compiled peer (cached: quick when
    unchanged); False, with the peer's skip reason, when that fails."""
    done = subprocess.run(
        [sys.executable, "-m", "protogen", "compile-runtime"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-2:]
        peer.skip_reason = f"`protogen compile-runtime` failed: {' | '.join(tail)}"
        return False
    return True


def all_peers() -> list[Peer]:
    """Every peer, uvloop first (it is the baseline of every ratio)."""
    echo = PEERS / "echo_protocol.py"
    lines = PEERS / "lines_protocol.py"
    return [
        ScriptPeer("uvloop", ECHO, script=echo, args=("--loop", "uvloop")),
        ScriptPeer("asyncio", ECHO, script=echo, args=("--loop", "asyncio")),
        ScriptPeer("twisted", ECHO, script=PEERS / "twisted_echo.py"),
        GeneratedPeer(
            "protogen",
            ECHO,
            True,
            spec=EXAMPLES / "echo.proto.dsl",
            module="echo_server",
        ),
        # The typed path first: a user handler that takes every frame as a typed
        # object and answers with a new one; uvloop-typed does the same by hand.
        ScriptPeer("uvloop-typed", ECHO, script=PEERS / "typed_uvloop.py"),
        GeneratedPeer(
            "protogen-typed",
            ECHO,
            True,
            spec=EXAMPLES / "echo.proto.dsl",
            module="echo_server",
            handler_file=PEERS / "typed_echo.py",
            handler="typed_echo:TypedEcho",
        ),
        GeneratedPeer(
            "protogen-typed-compiled",
            ECHO,
            True,
            spec=EXAMPLES / "echo.proto.dsl",
            module="echo_server",
            handler_file=PEERS / "typed_echo.py",
            handler="typed_echo:TypedEcho",
            compiled=True,
        ),
        # The same with the user's handler module left pure Python.
        GeneratedPeer(
            "protogen-typed-compiled-pyhandler",
            ECHO,
            True,
            spec=EXAMPLES / "echo.proto.dsl",
            module="echo_server",
            handler_file=PEERS / "typed_echo.py",
            handler="typed_echo:TypedEcho",
            compiled=True,
            compile_handler=False,
        ),
        ScriptPeer(
            "protogen-runtime",
            ECHO,
            True,
            script=EXAMPLES / "runtime_echo.py",
            listen_flag=True,
        ),
        ScriptPeer("uvloop", HTTP, script=PEERS / "http_uvloop.py"),
        HttpExamplePeer("protogen", HTTP, True),
        ServePeer(
            "protogen-compiled",
            HTTP,
            True,
            spec=EXAMPLES / "http" / "http.proto.dsl",
            handler="handler:HttpExampleHandler",
        ),
        CommandPeer(
            "memcached",
            MEMCACHED,
            # (memcached refuses to run as root without -u.)
            argv=(
                "memcached",
                *(("-u", "root") if os.geteuid() == 0 else ()),
                *("-t", "1", "-U", "0", "-l", "127.0.0.1", "-p"),
            ),
        ),
        ScriptPeer(
            "protogen",
            MEMCACHED,
            True,
            script=EXAMPLES / "memcached" / "serve.py",
            listen_flag=True,
        ),
        ServePeer(
            "protogen-compiled",
            MEMCACHED,
            True,
            spec=EXAMPLES / "memcached" / "memcached.proto.dsl",
            handler="handler:MemcachedExampleHandler",
        ),
        CommandPeer(
            "redis-server",
            REDIS,
            # No persistence: the run measures the keyspace, not the disk.
            argv=(
                "redis-server",
                *("--save", "", "--appendonly", "no", "--bind", "127.0.0.1"),
                "--port",
            ),
        ),
        ScriptPeer(
            "protogen",
            REDIS,
            True,
            script=EXAMPLES / "redis" / "serve.py",
            listen_flag=True,
        ),
        ServePeer(
            "protogen-compiled",
            REDIS,
            True,
            spec=EXAMPLES / "redis" / "redis.proto.dsl",
            handler="handler:RedisExample",
        ),
        ScriptPeer("uvloop", LINES, script=lines, args=("--loop", "uvloop")),
        GeneratedPeer(
            "protogen",
            LINES,
            True,
            spec=EXAMPLES / "lines.proto.dsl",
            module="lines_server",
        ),
    ]


BASELINE = "uvloop"
# Ratios of the typed peers are to the typed hand-written peer, of the
# memcached example to memcached itself, of the Redis example to redis-server.
TYPED_BASELINE = "uvloop-typed"
MEMCACHED_BASELINE = "memcached"
REDIS_BASELINE = "redis-server"


def baseline_of(scenario: str, peer: str) -> str:
    if scenario.startswith("memcached"):
        return MEMCACHED_BASELINE
    if scenario.startswith("redis"):
        return REDIS_BASELINE
    if peer.startswith("protogen-typed"):
        return TYPED_BASELINE
    return BASELINE
