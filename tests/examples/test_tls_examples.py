"""The examples over TLS, with the real clients: curl and wrk (HTTP), mosquitto_pub
and mosquitto_sub (MQTT), dig +tls (DNS over TLS), redis-cli --tls (Redis). Each
example's serve.py takes --listen tls://... --tls-cert FILE like any runtime flag.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

trustme = pytest.importorskip("trustme")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
START_TIMEOUT = 60.0  # the first start builds the spec into the cache
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CA file, server cert+key file for 127.0.0.1 and localhost)."""
    root = tmp_path_factory.mktemp("tls_pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    return root / "ca.pem", root / "server.pem"


class TLSExample:
    """`serve.py --listen tls://127.0.0.1:PORT --tls-cert FILE`, always stopped."""

    def __init__(self, name: str, cache: Path, cert: Path, *args: str) -> None:
        self.port = free_port()
        env = dict(os.environ, PROTOGEN_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLES / name / "serve.py"),
                "--listen",
                f"tls://127.0.0.1:{self.port}",
                "--tls-cert",
                str(cert),
                *args,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            self._wait_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self) -> None:
        assert self.process.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise AssertionError(f"server exited ({self.process.wait()})")
            if "serving" in line:
                return
        raise AssertionError("server never announced it was serving")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def serve(
    name: str, tmp_path_factory: pytest.TempPathFactory, cert: Path, *args: str
) -> Iterator[TLSExample]:
    server = TLSExample(name, tmp_path_factory.mktemp(f"{name}_cache"), cert, *args)
    try:
        yield server
    finally:
        server.stop()


def run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


# -- HTTP ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https(
    tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]
) -> Iterator[TLSExample]:
    yield from serve("http", tmp_path_factory, certs[1])


def test_curl_https_keeps_the_connection_alive(
    https: TLSExample, certs: tuple[Path, Path]
) -> None:
    url = f"https://127.0.0.1:{https.port}/plaintext"
    result = run("curl", "-sS", "-v", "--http1.1", "--cacert", str(certs[0]), url, url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, World!" * 2
    assert "SSL certificate verify ok" in result.stderr
    assert re.search(r"Re-using existing connection", result.stderr), result.stderr
    assert result.stderr.count("Connected to") == 1
    # Without the CA, curl refuses the certificate.
    refused = run("curl", "-sS", url)
    assert refused.returncode == 60, refused.stderr  # CURLE_PEER_FAILED_VERIFICATION


def test_wrk_over_https(https: TLSExample) -> None:
    result = run(
        "wrk",
        "-t1",
        "-c8",
        "-d1s",
        f"https://127.0.0.1:{https.port}/plaintext",
    )
    assert result.returncode == 0, result.stderr
    requests = re.search(r"(\d+) requests in", result.stdout)
    assert requests is not None and int(requests.group(1)) > 100, result.stdout
    assert "Socket errors" not in result.stdout, result.stdout
    assert "Non-2xx" not in result.stdout, result.stdout


# -- MQTT ------------------------------------------------------------------------------


def test_mosquitto_over_tls(
    tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]
) -> None:
    ca = str(certs[0])
    for broker in serve("mqtt", tmp_path_factory, certs[1]):
        if shutil.which("mosquitto_sub") is None:
            pytest.skip("mosquitto-clients are not installed")
        port = str(broker.port)
        common = ["-h", "localhost", "-p", port, "--cafile", ca]
        sub = subprocess.Popen(
            ["mosquitto_sub", *common, "-t", "tls/+", "-C", "2", "-W", "20", "-v"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Publish until the subscriber (subscribing meanwhile) got two.
            deadline = time.monotonic() + 20
            while sub.poll() is None and time.monotonic() < deadline:
                pub = run("mosquitto_pub", *common, "-t", "tls/a", "-m", "secret")
                assert pub.returncode == 0, pub.stderr
                time.sleep(0.2)
            out, err = sub.communicate(timeout=20)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.communicate()
        assert sub.returncode == 0, err
        assert out.splitlines() == ["tls/a secret", "tls/a secret"]
        # Without the CA the client refuses the broker.
        refused = run(
            "mosquitto_pub",
            "-h",
            "localhost",
            "-p",
            port,
            "--capath",
            "/nonexistent",
            "-t",
            "tls/a",
            "-m",
            "x",
        )
        assert refused.returncode != 0


# -- DNS over TLS (RFC 7858) -----------------------------------------------------------


def dig_supports_tls() -> bool:
    if shutil.which("dig") is None:
        return False
    version = subprocess.run(["dig", "-v"], capture_output=True, text=True).stderr
    found = re.search(r"DiG (\d+)\.(\d+)", version)
    return found is not None and (int(found.group(1)), int(found.group(2))) >= (9, 18)


@pytest.mark.skipif(not dig_supports_tls(), reason="needs dig 9.18+ (+tls)")
def test_dig_over_tls(
    tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]
) -> None:
    for server in serve("dns", tmp_path_factory, certs[1]):
        base = ["dig", "@127.0.0.1", "-p", str(server.port), "+time=5", "+tries=1"]
        out = run(*base, "+tls", "example.com", "A", "+short").stdout
        assert sorted(out.split()) == ["192.0.2.10", "192.0.2.11"]
        # Verified against the CA, for the name on the certificate.
        verified = run(
            *base,
            f"+tls-ca={certs[0]}",
            "+tls-hostname=localhost",
            "www.example.com",
            "A",
            "+short",
        )
        assert verified.stdout.split() == ["192.0.2.20"], verified


# -- Redis over TLS ----------------------------------------------------------------------


def redis_cli_has_tls() -> bool:
    if shutil.which("redis-cli") is None:
        return False
    done = subprocess.run(["redis-cli", "--help"], capture_output=True, text=True)
    return "--tls" in done.stdout + done.stderr


@pytest.mark.skipif(not redis_cli_has_tls(), reason="needs redis-cli built with TLS")
def test_redis_cli_over_tls(
    tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]
) -> None:
    for server in serve("redis", tmp_path_factory, certs[1]):
        base = ["redis-cli", "-h", "localhost", "-p", str(server.port)]
        secure = [*base, "--tls", "--cacert", str(certs[0])]
        assert run(*secure, "SET", "greeting", "over tls").stdout.strip() == "OK"
        assert run(*secure, "GET", "greeting").stdout.strip() == "over tls"
        # Without the CA, redis-cli refuses the server's certificate.
        refused = run(*base, "--tls", "--cacert", str(certs[1]), "PING")
        assert "PONG" not in refused.stdout
        # And a plain-text client gets no answer from a TLS listener.
        plain = run(*base, "PING", timeout=30)
        assert "PONG" not in plain.stdout
