"""Run the commands and snippets of a Markdown document, in order, as a reader would.

Each document is one session: a fresh workspace (a temporary directory that
links the repository's `examples/`, `bench/` and `docs/`), the venv's
`protogen` and `python` first on PATH, and its own free loopback ports. Every
fenced block is, by its language and first line:

* shell (`sh`, `console`, `bash`, or any block with `$ ` prompts): each command
  runs in the workspace. With `$ ` prompts, the lines up to the next prompt are
  the expected output (compared line by line, trailing spaces ignored).
  A command that starts listening on one of the session's ports is a server:
  it keeps running for the following blocks, until a later command wants its
  port or the document ends; then it gets SIGINT and must exit with status 0.
  Anything else must exit with status 0 (or print the expected output).
* `python`: written to a file in the workspace and run like a command, with
  `gen/` and the workspace on `PYTHONPATH`; a `print(...)  # VALUE` line
  expects VALUE in what it prints (`...` in VALUE stands for any text).
* a block whose first line is `protocol NAME`: a whole spec, checked with
  `protogen check`.
* anything else (output samples, grammar sketches, spec fragments): read, not run.

Commands that would recurse into the test suite or run for minutes are checked
rather than run: `make TARGET` with `make -n` (the target exists and its recipe
expands), `pytest ...` with `--collect-only`, `python bench/X.py ARGS` with
`--help` (every flag used is one the script has), `pip install NAME[EXTRA]`
against pyproject.toml (the name and extras exist).

A `<!-- doc-test: ... -->` comment on the line before a fence overrides:
`skip: REASON` (not run; the reason is required), `file NAME` (the block is
the content of NAME in the workspace, e.g. the `shout.py` of the README).

Ports: `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`, `--port PORT` and
`-p PORT`, `-P PORT`, `("127.0.0.1", PORT)` and `127.0.0.1 PORT` in commands and snippets are replaced, consistently within the
document, by free ports; servers started without an address get
`PROTOGEN_LISTEN` set to the session's port for 7000 (the documented default).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEFAULT_PORT = 7000
START_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0

SHELL_LANGS = {"sh", "shell", "bash", "console"}
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(?P<body>.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
PORT_PATTERNS = [
    re.compile(r"(?<=127\.0\.0\.1:)(\d{2,5})\b"),
    re.compile(r"(?<=localhost:)(\d{2,5})\b"),
    re.compile(r"(?<=\[::1\]:)(\d{2,5})\b"),
    re.compile(r"(?<=127\.0\.0\.1[\"'], )(\d{2,5})\b"),  # ("127.0.0.1", PORT)
    re.compile(r"(?<=127\.0\.0\.1 )(\d{2,5})\b"),  # nc 127.0.0.1 PORT
    re.compile(r"(?<=--port )(\d{2,5})\b"),
    re.compile(r"(?<=-p )(\d{2,5})\b"),
    re.compile(
        r"(?<=-P )(\d{4,5})\b"
    ),  # logger -P PORT (redis-benchmark -P 16: a depth)
]
EXPECTED_PRINT = re.compile(r"print\(.*\)\s*#\s*(?P<value>.+?)\s*$")


class DocTestFailure(AssertionError):
    """A documented command or snippet did not do what the document says."""


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directive: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}:{self.line}"

    @property
    def kind(self) -> str:
        """run-shell, run-python, check-spec, file, skip or read."""
        if self.directive is not None:
            if self.directive.startswith("skip"):
                return "skip"
            if self.directive.startswith("file "):
                return "file"
            raise DocTestFailure(
                f"{self.where}: unknown doc-test directive {self.directive!r}"
            )
        lines = [line for line in self.text.splitlines() if line.strip()]
        if self.lang in SHELL_LANGS or any(line.startswith("$ ") for line in lines):
            return "run-shell"
        if self.lang == "python":
            return "run-python"
        if lines and re.match(r"protocol \w+\s*(#.*)?$", lines[0]):
            return "check-spec"
        return "read"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their directives."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(
                lines[end][indent:] if lines[end][:indent].isspace() else lines[end]
            )
            end += 1
        directive = None
        if index > 0 and (found := DIRECTIVE.search(lines[index - 1])):
            directive = found["body"]
        blocks.append(
            Block(path, index + 1, opening["lang"].lower(), "\n".join(body), directive)
        )
        index = end + 1
    return blocks


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def bound_ports(root: int) -> set[int]:
    """Ports the process tree of `root` listens on (TCP) or is bound to (UDP):
    a command is a server when it has one, whatever port it chose."""
    inodes: set[str] = set()
    for pid in _process_tree(root):
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for table, server_state in (
        ("tcp", "0A"),
        ("tcp6", "0A"),
        ("udp", "07"),
        ("udp6", "07"),
    ):
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            columns = row.split()
            local, state, inode = columns[1], columns[3], columns[9]
            if state == server_state and inode in inodes:
                ports.add(int(local.rpartition(":")[2], 16))
    return ports


@dataclass
class Server:
    command: str
    ports: set[int]
    process: subprocess.Popen[str]
    where: str
    job: bool = False  # `cmd &`: a client in the background; SIGINT is its end


@dataclass
class Session:
    """One document's workspace, ports and background servers."""

    workspace: Path
    # protogen serve's build cache; documents may share one (a spec built
    # once serves every document that serves it).
    cache: Path | None = None
    ports: dict[int, int] = field(default_factory=dict)
    servers: list[Server] = field(default_factory=list)
    ran: int = 0

    def __post_init__(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        for name in ("examples", "bench", "docs"):
            target = self.workspace / name
            if not target.exists():
                target.symlink_to(REPO / name)
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("PROTOGEN_")
        }
        self.env["PATH"] = f"{VENV_BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["PROTOGEN_CACHE_DIR"] = str(self.cache or self.workspace / ".cache")
        # `protogen compile-runtime` in a document builds into the workspace, not
        # beside the sources every other test imports.
        self.env["PROTOGEN_COMPILED_DIR"] = str(self.workspace / "compiled-runtime")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.pop("PYTHONPATH", None)

    # -- ports -------------------------------------------------------------

    def remap(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            documented = int(match.group(1))
            if documented not in self.ports:
                self.ports[documented] = free_port()
            return str(self.ports[documented])

        for pattern in PORT_PATTERNS:
            text = pattern.sub(replace, text)
        return text

    def session_port(self, documented: int) -> int:
        if documented not in self.ports:
            self.ports[documented] = free_port()
        return self.ports[documented]

    # -- running -------------------------------------------------------------

    def run_block(self, block: Block) -> None:
        kind = block.kind
        if kind in ("skip", "read"):
            if kind == "skip" and not block.directive.partition(":")[2].strip():  # type: ignore[union-attr]
                raise DocTestFailure(f"{block.where}: `skip` needs a reason")
            return
        self.ran += 1
        if kind == "file":
            name = block.directive.split(None, 1)[1].strip()  # type: ignore[union-attr]
            (self.workspace / name).write_text(self.remap(block.text) + "\n")
        elif kind == "check-spec":
            spec = self.workspace / f"_doc_spec_{block.line}.proto.dsl"
            spec.write_text(block.text + "\n")
            self.command(f"protogen check {spec.name}", block, expected=None)
        elif kind == "run-python":
            script = self.workspace / f"_doc_snippet_{block.line}.py"
            script.write_text(self.remap(block.text) + "\n")
            expected = [
                found["value"]
                for line in block.text.splitlines()
                if (found := EXPECTED_PRINT.search(line))
            ]
            env = {
                "PYTHONPATH": f"{self.workspace / 'gen'}{os.pathsep}{self.workspace}"
            }
            output = self.command(f"python {script.name}", block, extra_env=env)
            for value in expected:
                if not printed(value, output):
                    raise DocTestFailure(
                        f"{block.where}: the snippet should print {value!r}, "
                        f"printed:\n{output}"
                    )
        else:
            for command, expected in shell_commands(block.text):
                self.command(command, block, expected=expected)

    def command(
        self,
        command: str,
        block: Block,
        expected: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> str:
        command = self.remap(command)
        checked = self.checked_instead(command, block)
        if checked is not None:
            return checked
        background = command.rstrip().endswith("&")
        if background:
            command = command.rstrip()[:-1].rstrip()
        env = dict(self.env)
        env["PROTOGEN_LISTEN"] = f"tcp://127.0.0.1:{self.session_port(DEFAULT_PORT)}"
        env.update(extra_env or {})
        if background:
            # `cmd &`: runs beside the next commands (a subscriber waiting for
            # messages); stopped like a server at the end of the document.
            job = self.spawn(command, env)
            time.sleep(0.5)
            if job.poll() not in (None, 0):
                raise DocTestFailure(
                    f"{block.where}: `{command} &` exited {job.returncode}:\n"
                    f"{job.communicate()[0]}"
                )
            self.servers.append(Server(command, set(), job, block.where, True))
            return ""
        process, output = self.start(command, block, env)
        if process is None:
            return ""
        wanted = self.ports_of(command)
        holders = [server for server in self.servers if server.ports & wanted]
        if process.returncode != 0 and holders and "in use" in output:
            # A second server on a documented port: the reader stopped the
            # first one (Ctrl-C) before starting this one.
            for server in holders:
                self.stop(server)
            process, output = self.start(command, block, env)
            if process is None:
                return ""
        if expected is not None:
            got = [line.rstrip() for line in output.splitlines()]
            want = [self.remap(line).rstrip() for line in expected]
            if got != want:
                raise DocTestFailure(
                    f"{block.where}: `{command}` printed\n{output}\nexpected\n"
                    + "\n".join(want)
                )
        elif process.returncode != 0:
            raise DocTestFailure(
                f"{block.where}: `{command}` exited {process.returncode}:\n{output}"
            )
        return output

    def spawn(self, command: str, env: dict[str, str]) -> subprocess.Popen[str]:
        """`command` in the workspace, in its own process group (so that
        SIGINT reaches a server's workers too), output and errors together."""
        return subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def start(
        self, command: str, block: Block, env: dict[str, str]
    ) -> tuple[subprocess.Popen[str] | None, str]:
        """Run `command`: (None, "") when it became a server (kept running),
        else the finished process and its output."""
        process = self.spawn(command, env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            serving = bound_ports(process.pid)
            if serving:
                time.sleep(0.2)  # every listener of the server bound
                serving = bound_ports(process.pid)
                self.servers.append(Server(command, serving, process, block.where))
                return None, ""
            time.sleep(0.05)
        try:
            output, _ = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise DocTestFailure(
                f"{block.where}: `{command}` neither finished nor started serving"
            ) from None
        return process, output

    def ports_of(self, command: str) -> set[int]:
        ports = {
            int(found.group(1))
            for pattern in PORT_PATTERNS
            for found in pattern.finditer(command)
        }
        ports.add(self.session_port(DEFAULT_PORT))
        return ports

    def stop(self, server: Server) -> None:
        self.servers.remove(server)
        stop_server(server)

    def checked_instead(self, command: str, block: Block) -> str | None:
        """The checks standing in for commands that must not run here."""
        words = shlex.split(command, comments=True)
        # `VAR=value command ...`: the command is what gets checked.
        while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
            words = words[1:]
        if not words:
            return ""
        if words[0] == "source":
            activate = VENV_BIN / "activate"
            if not activate.exists():
                raise DocTestFailure(f"{block.where}: no {activate}")
            return ""
        if words[0] == "make":
            done = subprocess.run(
                ["make", "-n", *words[1:]],
                cwd=REPO,
                capture_output=True,
                check=False,
                text=True,
                timeout=RUN_TIMEOUT,
            )
            if done.returncode != 0:
                raise DocTestFailure(f"{block.where}: `{command}`: {done.stderr}")
            return ""
        if words[:2] == ["pip", "install"]:
            check_pip_install(words[2:], block)
            return ""
        python = words[0].endswith("python") or words[0].endswith("python3")
        if "pytest" in words[:3]:
            at = words.index("pytest") + 1
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "--collect-only", "-q", *words[at:]],
                cwd=REPO,
                capture_output=True,
                check=False,
                text=True,
                timeout=RUN_TIMEOUT,
            )
            if done.returncode != 0:  # 5: nothing collected
                raise DocTestFailure(f"{block.where}: `{command}`:\n{done.stdout}")
            return ""
        if python and len(words) > 1 and words[1].startswith("bench/"):
            check_script_flags([sys.executable, words[1]], words[2:], block)
            return ""
        if words[0].startswith("bench/bin/"):
            check_script_flags([str(REPO / words[0])], words[1:], block)
            return ""
        return None


def check_pip_install(requirements: list[str], block: Block) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = set(project.get("optional-dependencies", {}))
    for requirement in requirements:
        if requirement.startswith("-") or requirement in (".", "-e"):
            continue
        found = re.fullmatch(r"([\w.-]+)(?:\[([\w,-]+)\])?", requirement)
        if not found or found[1] != project["name"]:
            raise DocTestFailure(
                f"{block.where}: `pip install {requirement}`: the project is "
                f"{project['name']!r}"
            )
        unknown = set((found[2] or "").split(",")) - extras - {""}
        if unknown:
            raise DocTestFailure(
                f"{block.where}: no extra {sorted(unknown)} in pyproject.toml "
                f"(extras: {sorted(extras)})"
            )


def check_script_flags(program: list[str], arguments: list[str], block: Block) -> None:
    """A benchmark runs for minutes: check that it starts and knows every flag."""
    done = subprocess.run(
        [*program, "--help"],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    usage = done.stdout + done.stderr
    if done.returncode not in (0, 2) or "usage" not in usage.lower():
        raise DocTestFailure(f"{block.where}: `{' '.join(program)} --help`:\n{usage}")
    for argument in arguments:
        flag = argument.split("=", 1)[0]
        if flag.startswith("--") and not re.search(rf"{re.escape(flag)}\b", usage):
            raise DocTestFailure(f"{block.where}: {program[-1]} has no {flag}")


def printed(value: str, output: str) -> bool:
    """`value` is in `output`; `...` in value stands for any text."""
    at = 0
    for piece in value.split("..."):
        found = output.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def shell_commands(text: str) -> list[tuple[str, list[str] | None]]:
    """(command, expected output or None) for each command of a shell block."""
    lines = text.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        commands: list[tuple[str, list[str] | None]] = []
        pending = ""
        for line in lines:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append((command, None))
        return commands
    console: list[tuple[str, list[str] | None]] = []
    for line in lines:
        if line.startswith("$ "):
            console.append((line[2:], []))
        elif console:
            console[-1][1].append(line)  # type: ignore[union-attr]
    return console


def stop_server(server: Server) -> None:
    process = server.process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise DocTestFailure(
            f"{server.where}: `{server.command}` did not stop on SIGINT:\n{output}"
        ) from None
    stopped_by_us = process.returncode in (-signal.SIGINT, 128 + signal.SIGINT)
    if process.returncode != 0 and not (server.job and stopped_by_us):
        raise DocTestFailure(
            f"{server.where}: `{server.command}` exited {process.returncode} "
            f"on SIGINT:\n{output}"
        )


def run_document(path: Path, workspace: Path, cache: Path | None = None) -> Session:
    """Run every block of `path`; raise DocTestFailure at the first that fails."""
    session = Session(workspace, cache)
    try:
        for block in blocks_of(path):
            session.run_block(block)
    finally:
        failures: list[str] = []
        for server in list(session.servers):
            try:
                session.stop(server)
            except DocTestFailure as failure:
                failures.append(str(failure))
        if failures and sys.exc_info()[0] is None:
            raise DocTestFailure("\n".join(failures))
    return session
