"""End to end: every example spec built by `protogen build`, served by its
generated server (`python -m NAME_server`) over real loopback sockets, driven by
its generated client, and stopped with SIGINT (exit status 0)."""

from __future__ import annotations

import importlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from protogen import models as ir
from protogen.parser import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = sorted(EXAMPLES.glob("*.proto.dsl"))
STARTUP_TIMEOUT = 30.0


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("generated")
    result = subprocess.run(
        [sys.executable, "-m", "protogen", "build", *map(str, SPECS), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))


class Server:
    """`python -m NAME_server --listen URL...` in a subprocess."""

    def __init__(
        self, directory: Path, protocol: str, urls: list[str], client: ModuleType
    ) -> None:
        self.urls = urls
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"{protocol}_server",
                *[a for url in urls for a in ("--listen", url)],
            ],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait_ready(client, next(u for u in urls if not u.startswith("udp")))

    def _wait_ready(self, client: ModuleType, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited early: {self.process.communicate()[1]}"
                )
            try:
                client.connect(url, timeout=2.0).close()
                return
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        raise AssertionError(f"server never listened on {url}")

    def stop(self) -> None:
        """SIGINT: a graceful shutdown that must exit with status 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
            raise AssertionError(f"server ignored SIGINT: {stderr}")
        assert self.process.returncode == 0, stderr


def sample_value(hf: ir.HeaderField, index: int, codec: ModuleType) -> Any:
    """A deterministic valid value for a user-supplied header field."""
    if hf.enum:
        members = list(getattr(codec, hf.enum))
        return members[index % len(members)]
    if hf.allowed:
        return hf.allowed[index % len(hf.allowed)]
    if isinstance(hf.type, ir.BytesType):
        return bytes([index % 256]) * hf.type.size
    if hf.type.kind == "float":
        return index + 0.5
    if hf.type.kind == "int":
        return -index
    return index % (hf.type.max_value + 1)


def sample_frames(spec: ir.ProtocolSpec, codec: ModuleType, count: int) -> list[Any]:
    """`count` different frames of the spec's server-decodes frame."""
    frame_def = spec.frame(spec.server_decodes)
    frame_class = getattr(codec, frame_def.name)
    sizes = {b.size_field for b in frame_def.body if b.size_field}
    body = list(frame_def.body) or [
        ir.BodyField("payload", frame_def.location, rest=True)
    ]
    frames = []
    for index in range(count):
        fields: dict[str, Any] = {}
        for hf in frame_def.header + frame_def.trailer:
            if hf.is_user_supplied and hf.name not in sizes:
                fields[hf.name] = sample_value(hf, index, codec)
        if frame_def.framing.kind not in ("fixed",):
            for bf in body:
                if bf.size is not None:
                    fields[bf.name] = bytes([index % 256]) * bf.size
                else:
                    fields[bf.name] = f"frame {index}; ".encode() * (index % 7)
        frames.append(frame_class(**fields))
    return frames


@pytest.fixture(params=SPECS, ids=[p.name.removesuffix(".proto.dsl") for p in SPECS])
def example(
    request: pytest.FixtureRequest, generated: Path
) -> Iterator[dict[str, Any]]:
    spec = load_spec(request.param)
    client = importlib.import_module(f"{spec.name}_client")
    codec = importlib.import_module(f"{spec.name}_codec")
    urls = [f"tcp://127.0.0.1:{free_port()}"]
    if "udp" in spec.transports:
        urls.append(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}")
    server = Server(generated, spec.name, urls, client)
    try:
        yield {
            "spec": spec,
            "client": client,
            "codec": codec,
            "server": server,
            "urls": urls,
        }
    finally:
        server.stop()


def test_pipelined_frames_come_back_over_tcp(example: dict[str, Any]) -> None:
    frames = sample_frames(example["spec"], example["codec"], 200)
    with example["client"].connect(example["urls"][0], timeout=10) as client:
        client.send_many(frames)
        assert client.recv_many(len(frames)) == frames
        for frame in frames[:5]:
            assert client.request(frame) == frame


UDP_SPECS = [p for p in SPECS if "udp" in load_spec(p).transports]


@pytest.mark.parametrize(
    "spec_path", UDP_SPECS, ids=[p.name.removesuffix(".proto.dsl") for p in UDP_SPECS]
)
def test_frames_come_back_over_udp(spec_path: Path, generated: Path) -> None:
    spec = load_spec(spec_path)
    client = importlib.import_module(f"{spec.name}_client")
    codec = importlib.import_module(f"{spec.name}_codec")
    tcp = f"tcp://127.0.0.1:{free_port()}"
    udp = f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    server = Server(generated, spec.name, [tcp, udp], client)
    try:
        frames = sample_frames(spec, codec, 20)
        with client.connect(udp, timeout=10) as connection:
            for frame in frames:
                assert connection.request(frame) == frame
            connection.send_many(frames[:3])  # one datagram each, one reply each
            assert connection.recv_many(3) == frames[:3]
            # A bad datagram is dropped; the next one is decoded on its own.
            connection.send_bytes(GARBAGE[spec.name][:100])
            assert connection.request(frames[3]) == frames[3]
    finally:
        server.stop()


def test_many_connections_at_once(example: dict[str, Any]) -> None:
    frames = sample_frames(example["spec"], example["codec"], 10)
    clients = [
        example["client"].connect(example["urls"][0], timeout=10) for _ in range(20)
    ]
    try:
        for client in clients:
            client.send_many(frames)
        for client in clients:
            assert client.recv_many(len(frames)) == frames
    finally:
        for client in clients:
            client.close()


# Bytes that break each example's protocol, and the error the server answers with.
GARBAGE = {
    "echo": b"\xff\xff\xff\xff",  # a 4 GiB frame: over max_frame
    "lines": b"x" * 9000,  # a line over 8 KiB
    "sensors": b"\x00" * 16,  # wrong magic
    "netstring": b"12x",  # not a decimal length
    "varint": b"\xff" * 11,  # a varint longer than 10 bytes
}


def test_a_protocol_error_closes_only_its_connection(example: dict[str, Any]) -> None:
    spec = example["spec"]
    frames = sample_frames(spec, example["codec"], 3)
    url = example["urls"][0]
    with (
        example["client"].connect(url, timeout=10) as good,
        example["client"].connect(url, timeout=10) as bad,
    ):
        bad.send_bytes(GARBAGE[spec.name])
        with pytest.raises(ConnectionError):
            bad.recv()
        good.send_many(frames)
        assert good.recv_many(3) == frames


def test_echo_over_unix_socket_with_large_frames(
    generated: Path, tmp_path: Path
) -> None:
    client = importlib.import_module("echo_client")
    codec = importlib.import_module("echo_codec")
    url = f"unix://{tmp_path}/echo.sock"
    server = Server(generated, "echo", [url], client)
    try:
        big = codec.Message(
            payload=bytes(range(256)) * 32768
        )  # 8 MiB: overflows socket buffers
        with client.connect(url, timeout=30) as connection:
            connection.send_many([big, codec.Message(payload=b"after")])
            assert connection.recv() == big
            assert connection.recv().payload == b"after"
    finally:
        server.stop()
    assert not (tmp_path / "echo.sock").exists()  # removed on shutdown


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_echo_over_ipv6(generated: Path) -> None:
    client = importlib.import_module("echo_client")
    codec = importlib.import_module("echo_codec")
    url = f"tcp6://[::1]:{free_port(host='::1')}"
    server = Server(generated, "echo", [url], client)
    try:
        with client.connect(url, timeout=10) as connection:
            assert connection.request(codec.Message(payload=b"v6")).payload == b"v6"
    finally:
        server.stop()


def test_runtime_client_handler_drives_many_connections(generated: Path) -> None:
    """The generated client handler on the runtime's non-blocking Client."""
    import threading

    client_module = importlib.import_module("echo_client")
    codec = importlib.import_module("echo_codec")
    url = f"tcp://127.0.0.1:{free_port()}"
    server = Server(generated, "echo", [url], client_module)
    connections, per_connection = 10, 50
    done = threading.Event()
    received: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    class Counter(client_module.EchoClientHandler):
        def on_open(self, conn: Any) -> tuple[bytes | None, Any]:
            received[id(conn)] = []
            frames = [
                codec.Message(payload=b"%d:%d" % (conn.context, n))
                for n in range(per_connection)
            ]
            return (
                b"".join(frame.encode() for frame in frames),
                client_module.Action.NONE,
            )

        def on_message(self, conn: Any, frame: Any) -> None:
            received[id(conn)].append(bytes(frame.payload))
            if sum(map(len, received.values())) == connections * per_connection:
                done.set()

        def on_close(self, conn: Any, err: BaseException | None) -> Any:
            if err is not None:
                errors.append(err)
                done.set()
            return super().on_close(conn, err)

    runtime_client = client_module.start_client(Counter())
    try:
        for index in range(connections):
            runtime_client.dial(url, context=index)
        assert done.wait(30), f"only {sum(map(len, received.values()))} echoes arrived"
        assert not errors
        expected = {
            tuple(b"%d:%d" % (index, n) for n in range(per_connection))
            for index in range(connections)
        }
        assert {tuple(payloads) for payloads in received.values()} == expected
    finally:
        runtime_client.stop()
        server.stop()
