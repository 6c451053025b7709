"""Compiled mode for the user's own handler module.

`protogen serve --compile --handler MOD:CLASS` imports MOD from a C extension
compiled from MOD.py into the build cache (nothing is written beside the
source); a module Cython refuses is served as pure Python after a warning.
`protogen compile MOD.py` writes the extension beside the source. The handler
reports the file it was loaded from, and answers the same as the pure one; compiled into the cache, its `__file__`
is still its source, so files beside the handler are found as uncompiled.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest
from compiled_helpers import (
    ECHO,
    compiled_work,
    connect_when_ready,
    env_for,
    frame,
    free_port,
    protogen,
    recv_exactly,
    start,
    stop,
)

EXTENSION = ".so"
BUILD_TIMEOUT = 300.0

# Answers every frame reversed, counting frames per connection; a frame
# "close" closes the connection (the action path). Prints where it came from.
HANDLER = """
from __future__ import annotations

from typing import Any

from echo_codec import Message
from echo_handler import EchoHandler
from protogen.runtime import Action

print("HANDLER", __loader__.path, __file__, flush=True)


class Reverse(EchoHandler):
    def on_message(self, conn: Any, frame: Message) -> Action | None:
        payload = bytes(frame.payload)
        if payload == b"close":
            return Action.CLOSE
        seen = conn.context = (conn.context or 0) + 1
        self.send(conn, Message(payload[::-1] + b"#%d" % seen))
        return None
"""

# Valid Python that Cython refuses: a name bound only through globals().
REFUSED = HANDLER + """
globals()["suffix"] = b"!"


class Shout(EchoHandler):
    def on_message(self, conn: Any, frame: Message) -> None:
        self.send(conn, Message(bytes(frame.payload) + suffix))  # noqa: F821
"""


@pytest.fixture(scope="module")
def work(
    tmp_path_factory: pytest.TempPathFactory,
    with_shared_compiled: Callable[[Path], Path],
) -> Path:
    return compiled_work(tmp_path_factory, with_shared_compiled, "compiled-user")


def serve(
    work: Path, module: str, source: str, target: str, *flags: str
) -> tuple[tuple[str, ...], list[bytes], str]:
    """((where the handler module came from, its __file__), the answers, stderr) of one
    protogen serve run with `source` as `module`.py in its directory."""
    home = work / f"{module}-{'-'.join(flags) or 'pure'}"
    home.mkdir()
    (home / f"{module}.py").write_text(source)
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "protogen",
            "serve",
            ECHO,
            *flags,
            "--handler",
            f"{module}:{target}",
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ],
        cwd=home,
        env=env_for(work / "cache"),
    )
    answers = []
    try:
        # (The first serve compiles three modules: minutes on a loaded machine.)
        with connect_when_ready(port, process, BUILD_TIMEOUT) as sock:
            sock.sendall(frame(b"abc") + frame(b"hello"))
            answers.append(recv_exactly(sock, len(frame(b"cba#1") + frame(b"olleh#2"))))
            sock.sendall(frame(b"xy") + frame(b"close") + frame(b"after"))
            answers.append(sock.recv(1000))
            answers.append(sock.recv(1000))  # b"" once closed
        with connect_when_ready(port, process) as sock:
            sock.sendall(frame(b"zz"))  # a new connection counts afresh
            answers.append(recv_exactly(sock, len(frame(b"zz#1"))))
    finally:
        _, stdout, stderr = stop(process)
    loaded = [
        tuple(line.split()[1:])
        for line in stdout.splitlines()
        if line.startswith("HANDLER")
    ]
    assert len(loaded) == 1, (stdout, stderr)
    assert sorted(p.name for p in home.iterdir()) == [f"{module}.py"]  # nothing beside
    return loaded[0], answers, stderr


def test_serve_compile_imports_the_handler_module_compiled(work: Path) -> None:
    (loaded, file), answers, _ = serve(work, "reverse", HANDLER, "Reverse", "--compile")
    assert loaded.endswith(EXTENSION)
    assert str(work / "cache" / "compiled") in loaded
    # Its code sees its source's path, as uncompiled (not the build cache's).
    assert file == str(work / "reverse---compile" / "reverse.py")
    (pure_loaded, pure_file), pure_answers, _ = serve(
        work, "reverse", HANDLER, "Reverse"
    )
    assert pure_loaded == pure_file == str(work / "reverse-pure" / "reverse.py")
    expected = [
        frame(b"cba#1") + frame(b"olleh#2"),
        frame(b"yx#3"),
        b"",
        frame(b"zz#1"),
    ]
    assert pure_answers == expected
    assert answers == expected


def test_a_module_cython_refuses_is_served_pure_with_a_warning(work: Path) -> None:
    (loaded, _), answers, stderr = serve(work, "shout", REFUSED, "Reverse", "--compile")
    assert loaded.endswith("shout.py")
    assert "warning: --compile: serving handler module shout as pure Python" in stderr
    # Cython's reason, at its line in the user's file (not Cython's scratch copy).
    line = (
        REFUSED.splitlines().index(
            next(l for l in REFUSED.splitlines() if "+ suffix" in l)
        )
        + 1
    )
    assert f"shout.py: Cython failed: line {line}:" in stderr
    assert "undeclared name not builtin: suffix" in stderr
    assert answers[0] == frame(b"cba#1") + frame(b"olleh#2")


def test_protogen_compile_writes_the_extension_beside_the_module(work: Path) -> None:
    home = work / "beside"
    home.mkdir()
    (home / "reverse.py").write_text(HANDLER)
    env = env_for(work / "cache")
    built = protogen("compile", home / "reverse.py", env=env)
    assert built.returncode == 0, built.stderr
    (extension,) = home.glob("reverse.*" + EXTENSION)
    assert built.stdout.split() == [str(extension)]
    build = protogen("build", ECHO, "-o", home, env=env)
    assert build.returncode == 0, build.stderr
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "echo_server",
            "--handler",
            "reverse:Reverse",
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ],
        cwd=home,
        env={**env, "PYTHONPATH": str(home)},
    )
    try:
        with connect_when_ready(port, process) as sock:
            sock.sendall(frame(b"abc"))
            assert recv_exactly(sock, len(frame(b"cba#1"))) == frame(b"cba#1")
    finally:
        _, stdout, _ = stop(process)
    assert f"HANDLER {extension} {extension}" in stdout


def test_protogen_compile_rejects_what_is_not_a_module(work: Path) -> None:
    env = env_for(work / "cache")
    result = protogen("compile", work / "missing.txt", env=env)
    assert result.returncode == 2
    assert "not a Python module (NAME.py)" in result.stderr
    result = protogen("compile", work / "missing.py", env=env)
    assert result.returncode == 1
    assert "missing.py: no such file" in result.stderr
