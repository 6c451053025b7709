"""Safe defaults: `protogen serve` listens on loopback unless told otherwise, unix
socket files get the configured mode, and bytes from the network are never
evaluated or unpickled."""

from __future__ import annotations

import ast
import os
import pickle
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

import robust_specs as specs
from robust_harness import connect, recv_exact, serving, wait_for

REPO = Path(__file__).resolve().parents[2]


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket in LISTEN state that process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as host-order 32-bit words.
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
            packed = b"".join(words)
            family = socket.AF_INET if width == 4 else socket.AF_INET6
            found.append((socket.inet_ntop(family, packed), int(hex_port, 16)))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc")
def test_protogen_serve_binds_loopback_by_default(tmp_path: Path) -> None:
    spec = tmp_path / "robdefault.proto.dsl"
    spec.write_text(specs.ECHO.replace("protocol robecho", "protocol robdefault"))
    env = dict(os.environ, PROTOGEN_CACHE_DIR=str(tmp_path / "cache"))
    process = subprocess.Popen(
        [sys.executable, "-m", "protogen", "serve", str(spec)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        found = wait_for(
            lambda: process.poll() is not None or listening_addresses(process.pid), 30
        )
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr else ""
            if "in use" in stderr:
                pytest.skip(f"the default port is taken on this machine: {stderr}")
            raise AssertionError(f"protogen serve exited: {stderr}")
        assert found, "protogen serve never listened"
        assert all(ip in ("127.0.0.1", "::1") for ip, _ in found), found
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(15)
        if process.stderr:
            process.stderr.close()


@pytest.mark.parametrize("mode", ["600", "660"])
def test_unix_socket_file_gets_the_configured_mode(
    mode: str, built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    directory, protocol, codec = built(specs.ECHO)
    path = tmp_path / "robecho.sock"
    with serving(
        directory,
        protocol,
        tmp_path / "work",
        urls=[f"unix://{path}"],
        options={"unix_mode": mode},
    ) as served:
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == int(mode, 8)
        with connect(served.url) as sock:
            wire = codec.Message(payload=b"over unix").encode()
            sock.sendall(wire)
            assert recv_exact(sock, len(wire)) == wire
    assert not path.exists()  # removed on shutdown


class _Trap:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.marker, "w"))


def test_network_bytes_are_never_evaluated_or_unpickled(
    built: Callable[[str], tuple[Path, str, ModuleType]], tmp_path: Path
) -> None:
    """Behavioural half: payloads that would leave a marker file if a server ever
    unpickled or evaluated them come back as plain bytes and leave no marker."""
    marker = tmp_path / "pwned"
    traps = [
        pickle.dumps(_Trap(str(marker)), protocol=proto) for proto in range(0, 6)
    ] + [
        f"__import__('pathlib').Path({str(marker)!r}).touch()".encode(),
        f"exec(\"open({str(marker)!r}, 'w')\")".encode(),
    ]
    for spec_text in (specs.ECHO, specs.REQUEST, specs.VARINT):
        directory, protocol, codec = built(spec_text)
        with serving(directory, protocol, tmp_path / f"work-{protocol}") as served:
            with connect(served.url) as sock:
                for trap in traps:
                    frame = (
                        codec.Request(op=codec.Op.echo, payload=trap)
                        if protocol == "robreq"
                        else codec.Message(payload=trap)
                    )
                    wire = frame.encode()
                    sock.sendall(wire)
                    assert recv_exact(sock, len(wire)) == wire
            with connect(served.url) as raw:  # and as raw garbage
                raw.sendall(b"".join(traps))
                time.sleep(0.1)
    assert not marker.exists()


# Builtins that run code, called by their bare name (re.compile is fine).
FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
# Modules that turn bytes into arbitrary objects: importing them is the offence.
FORBIDDEN_MODULES = {"pickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}


def offending_nodes(source: str, filename: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    problems.append(f"{filename}:{node.lineno}: imports {name}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_BUILTINS
        ):
            problems.append(f"{filename}:{node.lineno}: calls {node.func.id}()")
    return problems


def test_runtime_and_generated_code_never_eval_or_unpickle(
    gen_root: Path,
) -> None:
    """Static half (weaker, but covers every example): neither the runtime nor any
    module generated from the example specs imports pickle/marshal or calls the
    eval/exec/compile/__import__ builtins."""
    from protogen.generator import generate
    from protogen.parser import load_spec

    problems = []
    for path in sorted((REPO / "runtime").glob("*.py")):
        problems += offending_nodes(path.read_text(), str(path.relative_to(REPO)))
    example_specs = sorted((REPO / "examples").glob("**/*.proto.dsl"))
    assert example_specs
    for spec_path in example_specs:
        for name, source in generate(load_spec(spec_path)).items():
            problems += offending_nodes(source, f"{spec_path.name}:{name}")
    assert not problems, "\n".join(problems)
