"""`make demo`: build examples/echo.proto.dsl, serve it, drive it, stop cleanly.

1. `protogen build` writes echo_codec/handler/server/client/aio.py into
   build/demo/ (kept afterwards, for reading; `--out DIR` picks another place).
2. `python -m echo_server` serves them on a free loopback port (a subprocess).
3. Several threads, each with its own connection from the generated client,
   pipeline batches of frames for a few seconds and check every echo.
4. SIGINT stops the server gracefully; the demo checks it exited with 0.

Usage: python examples/demo.py [--seconds S] [--connections N] [--pipeline N] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

SPEC = Path(__file__).resolve().parent / "echo.proto.dsl"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "build" / "demo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build(out_dir: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "protogen", "build", str(SPEC), "-o", out_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        sys.exit(f"demo: protogen build failed:\n{result.stderr}")
    for line in result.stdout.split():
        print(f"  wrote {line}")


def start_server(out_dir: str, url: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([out_dir, os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "echo_server", "--listen", url],
        cwd=out_dir,
        env=env,
    )


def wait_until_serving(
    client: ModuleType, url: str, server: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"demo: the server exited early with status {server.returncode}")
        try:
            client.connect(url, timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("demo: the server did not start listening within 20 s")


class Driver(threading.Thread):
    """One connection: pipelines `pipeline` frames, reads and checks every echo."""

    def __init__(
        self,
        index: int,
        client: ModuleType,
        codec: ModuleType,
        url: str,
        until: float,
        pipeline: int,
    ) -> None:
        super().__init__(name=f"driver-{index}", daemon=True)
        self.index = index
        self.client = client
        self.codec = codec
        self.url = url
        self.until = until
        self.pipeline = pipeline
        self.frames = 0
        self.payload_bytes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._drive()
        except BaseException as error:  # reported by the main thread
            self.error = error

    def _drive(self) -> None:
        message = self.codec.Message
        sequence = 0
        with self.client.connect(self.url, timeout=10.0) as connection:
            while time.monotonic() < self.until:
                batch = []
                for _ in range(self.pipeline):
                    # Unique, varied payloads: an echo of the wrong frame cannot pass.
                    stamp = f"{self.index}:{sequence}:".encode()
                    batch.append(message(payload=stamp * (1 + sequence % 37)))
                    sequence += 1
                connection.send_many(batch)
                for sent in batch:
                    echoed = connection.recv()
                    if bytes(echoed.payload) != sent.payload:
                        raise AssertionError(
                            f"connection {self.index}: sent {sent.payload[:40]!r}..., "
                            f"got {bytes(echoed.payload)[:40]!r}..."
                        )
                    self.payload_bytes += len(sent.payload)
                self.frames += len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="default: 3")
    parser.add_argument("--connections", type=int, default=4, help="default: 4")
    parser.add_argument(
        "--pipeline", type=int, default=64, help="frames per batch (default: 64)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where the generated modules are written, and stay "
        "(default: build/demo in the repository)",
    )
    args = parser.parse_args()

    out_dir = str(args.out.resolve())
    print(f"building {SPEC.name} into {out_dir}")
    build(out_dir)
    sys.path.insert(0, out_dir)
    codec = importlib.import_module("echo_codec")
    client = importlib.import_module("echo_client")

    url = f"tcp://127.0.0.1:{free_port()}"
    print(f"serving on {url}")
    server = start_server(out_dir, url)
    drivers: list[Driver] = []
    started = time.monotonic()
    try:
        wait_until_serving(client, url, server)
        print(
            f"driving: {args.connections} connections, {args.pipeline} frames "
            f"pipelined per batch, {args.seconds:g} s"
        )
        started = time.monotonic()
        drivers = [
            Driver(i, client, codec, url, started + args.seconds, args.pipeline)
            for i in range(args.connections)
        ]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join(args.seconds + 30)
    finally:
        elapsed = time.monotonic() - started
        server.send_signal(signal.SIGINT)
        try:
            status = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            status = server.wait()

    failed = [d for d in drivers if d.error is not None or d.is_alive()]
    frames = sum(d.frames for d in drivers)
    payload = sum(d.payload_bytes for d in drivers)
    print(
        f"echoed {frames} frames in {elapsed:.2f} s: {frames / elapsed:,.0f} frames/s, "
        f"{payload / elapsed / 1e6:.1f} MB/s of payload, every echo verified"
        if not failed
        else f"echoed {frames} frames before a failure"
    )
    for driver in failed:
        print(
            f"  connection {driver.index} failed: {driver.error or 'still running'}",
            file=sys.stderr,
        )
    print(f"server stopped with exit status {status}")
    print(
        f"the generated code is in {out_dir} (read it, or import it with "
        f"PYTHONPATH={out_dir}); the protogen command is .venv/bin/protogen "
        "(or `source .venv/bin/activate`)"
    )
    if failed or status != 0 or frames == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
