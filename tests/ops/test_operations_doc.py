"""docs/operations.md is a script: every `$` command on the page runs, in
order, in one shell (ports replaced by free ones), and prints what the page
shows. The HAProxy configuration of the page is the one HAProxy runs; the
systemd units and the Dockerfile are checked against what the page says."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ops_harness import ROOT, free_port

DOC = ROOT / "docs" / "operations.md"
PORTS = ("7000", "7001", "7002", "8000", "9100", "9101")
MARK = "@@@ command"

pytestmark = pytest.mark.skipif(
    not Path("/usr/sbin/haproxy").exists()
    or shutil.which("systemd-socket-activate") is None
    or shutil.which("nc") is None,
    reason="needs haproxy, systemd-socket-activate and nc (Debian packages)",
)


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every `$` line of console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in blocks(text, "console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found:
                found[-1][1].append(line)
    return found


def test_every_command_of_the_page_runs_as_shown(tmp_path: Path) -> None:
    text = DOC.read_text()
    ports = {port: str(free_port()) for port in PORTS}

    def local(s: str) -> str:
        return re.sub(r"\b(%s)\b" % "|".join(PORTS), lambda m: ports[m.group(1)], s)

    (config,) = blocks(text, "haproxy")
    (tmp_path / "haproxy.cfg").write_text(local(config))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    steps = commands(text)
    assert len(steps) >= 15
    script = ["set -e", "trap 'kill $(jobs -p) 2>/dev/null' EXIT"]
    for i, (command, _) in enumerate(steps):
        script.append(f"echo '{MARK} {i}'")
        command = local(command)
        if command.endswith(" &"):  # a server: its log goes to a file
            command = f"{command[:-2]} > bg{i}.log 2>&1 &"
        script.append(command)
    env = dict(
        os.environ,
        PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        PROTOGEN_CACHE_DIR=str(tmp_path / "cache"),
    )
    shell = subprocess.Popen(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=240)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
        else:
            try:
                os.killpg(shell.pid, signal.SIGKILL)  # stragglers of the session
            except ProcessLookupError:
                pass
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()}" for p in sorted(tmp_path.glob("bg*.log"))
    )
    assert shell.returncode == 0, f"{out}\n{err}\n{logs}"
    outputs = re.split(rf"^{MARK} \d+\n", out, flags=re.M)[1:]
    assert len(outputs) == len(steps), out
    for (command, expected), got in zip(steps, outputs):
        assert got.splitlines() == [local(line) for line in expected], command


def test_units_and_dockerfile_say_what_the_page_says() -> None:
    socket_unit = (ROOT / "docs" / "systemd" / "protogen-echo.socket").read_text()
    service = (ROOT / "docs" / "systemd" / "protogen-echo.service").read_text()
    name = re.search(r"^FileDescriptorName=(\S+)$", socket_unit, re.M)
    assert name is not None
    assert f"--listen fd://{name.group(1)}" in service
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", service, re.M)
    dockerfile = (ROOT / "docs" / "docker" / "Dockerfile").read_text()
    (health,) = re.findall(r'CMD (python -c ".*?")\n', dockerfile)
    page = DOC.read_text()
    assert health.removeprefix('python -c "') in page  # the page runs this check
    assert '"--metrics", "tcp://127.0.0.1:9100"' in dockerfile
