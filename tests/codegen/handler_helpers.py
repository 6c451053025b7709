"""Helpers for the generated-handler tests: a fake Conn and an in-process build."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace

from protogen.generator import generate, write_outputs
from protogen.parser import parse_spec


class FakeInbound(bytearray):
    """The buffered bytes, also as the runtime's `Inbound` (`view`, `r`, `w`,
    `want`) that an inline-length decode loop reads in place. Moving `r` consumes
    (recorded as a discard); a nonzero `want` is a sizing hint (recorded)."""

    def __init__(self, data: bytes, discards: list[int], hints: list[int]) -> None:
        super().__init__(data)
        self.discards = discards
        self.hints = hints

    @property
    def view(self) -> memoryview:
        # A snapshot, like the runtime's view: valid until on_traffic returns.
        return memoryview(bytes(self))

    @property
    def r(self) -> int:
        return 0

    @r.setter
    def r(self, value: int) -> None:
        assert 0 <= value <= len(self)
        if value:
            del self[:value]
            self.discards.append(value)

    @property
    def w(self) -> int:
        return len(self)

    @property
    def want(self) -> int:
        return 0

    @want.setter
    def want(self, value: int) -> None:
        if value:
            assert value > len(self)  # a hint only for a frame not all there
            self.hints.append(value)


class FakeConn:
    """A stand-in for protogen.runtime.Conn that records the handler's calls."""

    def __init__(
        self, data: bytes = b"", *, datagram: bool = False, frame_budget: int = 64
    ) -> None:
        self.discards: list[int] = []
        self.hints: list[int] = []  # sizes a short peek(n) asked for
        self.inbound = FakeInbound(data, self.discards, self.hints)
        self.datagram = datagram
        self.written: list[bytes] = []
        # What the decode loop reads off a runtime Conn: its loop's frame budget
        # and whether its output is over the high-water mark.
        self.loop = SimpleNamespace(frame_budget=frame_budget)
        self.write_paused = False

    def feed(self, data: bytes) -> None:
        self.inbound += data

    def peek(self, n: int = -1) -> memoryview:
        # A snapshot, like the runtime's view: valid until on_traffic returns.
        if n > len(self.inbound):
            self.hints.append(n)
        return memoryview(bytes(self.inbound if n < 0 else self.inbound[:n]))

    def discard(self, n: int = -1) -> int:
        n = len(self.inbound) if n < 0 else min(n, len(self.inbound))
        del self.inbound[:n]
        self.discards.append(n)
        return n

    def next(self, n: int = -1) -> memoryview:
        view = self.peek(n)
        self.discard(n)
        return view

    def write(self, data: bytes | memoryview) -> int:
        self.written.append(bytes(data))
        return len(data)

    def writev(self, chunks: list[bytes]) -> int:
        return sum(self.write(chunk) for chunk in chunks)


def build(spec_text: str, root: Path) -> dict[str, ModuleType]:
    """Generate `spec_text` as a uniquely named package under `root`; import it."""
    spec = parse_spec(spec_text, "test.proto.dsl")
    package = f"gen_{spec.name}_{uuid.uuid4().hex[:10]}"
    write_outputs(generate(spec, package=package), root / package)
    (root / package / "__init__.py").write_text("")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return {
        kind: importlib.import_module(f"{package}.{spec.name}_{kind}")
        for kind in ("codec", "handler", "server", "client")
    }
