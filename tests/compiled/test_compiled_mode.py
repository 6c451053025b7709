"""Compiled mode: the same behaviour from C extensions as from the pure modules.

The echo example is built twice, plain and with `protogen build --compile`;
each server reports which files its codec and handler came from, then the same
round-trip and protocol-error checks run against both. The runtime's hot
modules are compiled with `protogen compile-runtime` into a directory of their
own (PROTOGEN_COMPILED_DIR), so the source tree other tests run stays pure.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from compiled_helpers import (
    ECHO,
    REPORTING_SERVER,
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
HOT = ("buffer", "poller", "inbound", "outbound", "conn", "eventloop")


@pytest.fixture(scope="module")
def work(
    tmp_path_factory: pytest.TempPathFactory,
    with_shared_compiled: Callable[[Path], Path],
) -> Path:
    return compiled_work(
        tmp_path_factory, with_shared_compiled, "compiled", ("cache", "serve-cache")
    )


@pytest.fixture(scope="module")
def builds(work: Path) -> dict[str, Path]:
    """mode -> directory of the echo example built in that mode."""
    env = env_for(work / "cache")
    dirs = {}
    for mode, flags in (("pure", ()), ("compiled", ("--compile",))):
        out = work / mode
        result = protogen("build", ECHO, "-o", out, *flags, env=env)
        assert result.returncode == 0, result.stderr
        dirs[mode] = out
    return dirs


@pytest.fixture(scope="module")
def runtime_dir(work: Path) -> Path:
    out = work / "runtime"
    result = protogen("compile-runtime", "-o", out, env=env_for(work / "cache"))
    assert result.returncode == 0, result.stderr
    return out


def test_build_compile_writes_extensions_for_codec_and_handler(
    builds: dict[str, Path],
) -> None:
    extensions = [p.name for p in builds["compiled"].glob("*" + EXTENSION)]
    assert sorted(n.split(".")[0] for n in extensions) == ["echo_codec", "echo_handler"]
    assert not any(p.name.endswith(EXTENSION) for p in builds["pure"].iterdir())


@pytest.fixture(params=["pure", "compiled"])
def server(
    request: pytest.FixtureRequest, builds: dict[str, Path], work: Path
) -> Iterator[tuple[str, int, str]]:
    """(mode, port, the LOADED line) of a running echo server of that build."""
    mode = request.param
    port = free_port()
    process = start(
        [
            sys.executable,
            "-c",
            REPORTING_SERVER,
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ],
        cwd=builds[mode],
        env=env_for(work / "cache", PYTHONPATH=str(builds[mode])),
    )
    try:
        connect_when_ready(port, process).close()
        assert process.stdout is not None
        loaded = process.stdout.readline()
        yield mode, port, loaded
    finally:
        stop(process)


def test_the_server_imports_the_modules_of_its_mode(
    server: tuple[str, int, str],
) -> None:
    mode, _, loaded = server
    words = loaded.split()
    assert words[0] == "LOADED"
    codec_file, handler_file = words[1:3]
    if mode == "compiled":
        assert codec_file.endswith(EXTENSION) and handler_file.endswith(EXTENSION)
    else:
        assert codec_file.endswith(".py") and handler_file.endswith(".py")


def test_round_trip_of_split_and_pipelined_frames(
    server: tuple[str, int, str],
) -> None:
    _, port, _ = server
    payloads = [b"", b"x", bytes(range(256)) * 4, b"y" * 100_000]
    wire = b"".join(frame(p) for p in payloads)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # Split inside a header and inside a body.
        for start_at, end in ((0, 2), (2, 700), (700, len(wire))):
            sock.sendall(wire[start_at:end])
        assert recv_exactly(sock, len(wire)) == wire


def test_a_protocol_error_closes_only_its_connection(
    server: tuple[str, int, str],
) -> None:
    _, port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as good:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as bad:
            # A frame before the bad header is still answered.
            bad.sendall(frame(b"first") + struct.pack(">I", 64 << 20) + b"zz")
            assert recv_exactly(bad, 9) == frame(b"first")
            assert bad.recv(100) == b""  # closed by the server
        good.sendall(frame(b"still here"))
        assert recv_exactly(good, 14) == frame(b"still here")


def test_serve_compile_serves_compiled_modules_from_the_cache(work: Path) -> None:
    cache = work / "serve-cache"
    port = free_port()
    process = start(
        [
            sys.executable,
            "-m",
            "protogen",
            "serve",
            ECHO,
            "--compile",
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ],
        cwd=work,
        env=env_for(cache),
    )
    try:
        with connect_when_ready(port, process) as sock:
            sock.sendall(frame(b"hello") * 3)
            assert recv_exactly(sock, 27) == frame(b"hello") * 3
    finally:
        stop(process)
    built = [p.name for p in cache.glob("protogen_echo_*/*" + EXTENSION)]
    assert sorted(n.split(".")[0] for n in built) == ["echo_codec", "echo_handler"]


def _version(env: dict[str, str]) -> str:
    result = protogen("version", "--verbose", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compile_runtime_and_version_report(runtime_dir: Path, work: Path) -> None:
    names = sorted(p.name.split(".")[0] for p in runtime_dir.glob("*" + EXTENSION))
    assert names == sorted(HOT)
    stamp = json.loads((runtime_dir / "compiled.json").read_text())
    assert sorted(stamp["modules"]) == sorted(HOT)
    env = env_for(work / "cache", PROTOGEN_COMPILED_DIR=str(runtime_dir))
    report = _version(env)
    assert "runtime hot modules compiled: 6 of 6" in report
    assert "protogen.runtime.eventloop: compiled" in report
    forced = _version({**env, "PROTOGEN_COMPILED": "0"})
    assert "runtime hot modules compiled: 0 of 6" in forced
    assert "PROTOGEN_COMPILED=0" in forced


def test_a_stale_runtime_extension_is_not_loaded(runtime_dir: Path, work: Path) -> None:
    stale = work / "stale-runtime"
    stale.mkdir()
    for path in runtime_dir.iterdir():
        (stale / path.name).write_bytes(path.read_bytes())
    stamp = json.loads((stale / "compiled.json").read_text())
    stamp["modules"]["conn"] = "0" * 64  # built from another conn.py
    (stale / "compiled.json").write_text(json.dumps(stamp))
    report = _version(env_for(work / "cache", PROTOGEN_COMPILED_DIR=str(stale)))
    assert "protogen.runtime.conn: pure Python" in report
    assert "protogen.runtime.eventloop: compiled" in report


def test_an_extension_typed_with_a_stale_modules_types_is_not_loaded(
    runtime_dir: Path, work: Path
) -> None:
    # conn's extension reads Conn.outbound as the C struct of outbound's
    # extension type: beside the pure Outbound it could not even import.
    stamp = json.loads((runtime_dir / "compiled.json").read_text())
    assert stamp["cimports"]["conn"] == ["inbound", "outbound"]
    stale = work / "stale-outbound"
    stale.mkdir()
    for path in runtime_dir.iterdir():
        (stale / path.name).write_bytes(path.read_bytes())
    stamp["modules"]["outbound"] = "0" * 64  # built from another outbound.py
    (stale / "compiled.json").write_text(json.dumps(stamp))
    report = _version(env_for(work / "cache", PROTOGEN_COMPILED_DIR=str(stale)))
    assert "protogen.runtime.outbound: pure Python" in report
    assert "protogen.runtime.conn: pure Python" in report
    assert "protogen.runtime.inbound: compiled" in report
    assert "protogen.runtime.eventloop: compiled" in report


def test_conn_fields_are_typed_with_the_runtimes_extension_types(
    runtime_dir: Path, work: Path
) -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from protogen.runtime.conn import Conn\n"
            "conn = Conn.__new__(Conn)\n"
            "try:\n"
            "    conn.outbound = 1\n"
            "except TypeError:\n"
            "    print('typed')\n",
        ],
        capture_output=True,
        text=True,
        env=env_for(work / "cache", PROTOGEN_COMPILED_DIR=str(runtime_dir)),
    )
    assert probe.stdout.split() == ["typed"], probe.stderr


def test_compiled_runtime_and_compiled_handler_serve_together(
    runtime_dir: Path, builds: dict[str, Path], work: Path
) -> None:
    port = free_port()
    check = (
        "import protogen.runtime.eventloop as e; "
        "print('LOADED', e.__file__, flush=True); "
    )
    process = start(
        [
            sys.executable,
            "-c",
            check + REPORTING_SERVER,
            "--listen",
            f"tcp://127.0.0.1:{port}",
        ],
        cwd=builds["compiled"],
        env=env_for(
            work / "cache",
            PYTHONPATH=str(builds["compiled"]),
            PROTOGEN_COMPILED_DIR=str(runtime_dir),
        ),
    )
    try:
        with connect_when_ready(port, process) as sock:
            wire = b"".join(frame(bytes([i]) * i) for i in range(64))
            sock.sendall(wire)
            assert recv_exactly(sock, len(wire)) == wire
        assert process.stdout is not None
        assert process.stdout.readline().split()[1].endswith(EXTENSION)
    finally:
        stop(process)


def test_without_cython_build_compile_says_what_to_install(
    work: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "no-cython"
    blocker.mkdir()
    (blocker / "Cython.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'Cython'\", name='Cython')\n"
    )
    env = env_for(work / "cache", PYTHONPATH=str(blocker))
    result = protogen("build", ECHO, "-o", tmp_path / "out", "--compile", env=env)
    assert result.returncode == 1
    assert "pip install 'protogen-toolkit[compiled]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_c_compiler_build_compile_says_so(work: Path, tmp_path: Path) -> None:
    env = env_for(work / "cache", CC="/nonexistent/cc")
    result = protogen("build", ECHO, "-o", tmp_path / "out", "--compile", env=env)
    assert result.returncode == 1
    assert "C compiler" in result.stderr
    assert "Traceback" not in result.stderr
