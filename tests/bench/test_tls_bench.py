"""The wiring of `make bench-tls` (bench/tls.py), without timing anything: each
peer starts over TLS on the run-time certificate and answers a verified request,
refuses plain TCP, the haproxy originator turns the load client's plain TCP into
TLS, and `openssl s_time` is read. The measurement itself is `make bench-tls`."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterator

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from benchlib import pinning  # noqa: E402
from benchlib.peers import ECHO, HTTP, Peer, all_peers  # noqa: E402
from benchlib.scenarios import start_server  # noqa: E402
from benchlib.servers import Server  # noqa: E402
from benchlib.tls import (  # noqa: E402
    Certificate,
    check_echo,
    make_certificate,
    over_tls,
    run_s_time,
    tls_originator,
)
from benchlib.wrk import check_plaintext  # noqa: E402

FRAME = (5).to_bytes(4, "big") + b"hello"


@pytest.fixture(autouse=True)
def unpinned() -> Iterator[None]:
    # Tests share the machine's CPUs with everything else: no taskset here.
    was = pinning.pinning_enabled()
    pinning.set_pinning(False)
    yield
    pinning.set_pinning(was)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls-bench"))


def _peer(name: str, kind: str, certificate: Certificate, workdir: Path) -> Peer:
    (inner,) = [p for p in all_peers() if (p.name, p.kind) == (name, kind)]
    peer = over_tls(inner, certificate)
    assert peer.prepare(workdir), peer.skip_reason
    return peer


def _plain_echo(port: int) -> bytes:
    """Send FRAME without TLS; whatever comes back before the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(FRAME)
        got = b""
        while len(got) < len(FRAME):
            try:
                chunk = sock.recv(len(FRAME) - len(got))
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.parametrize("name", ["uvloop-typed", "protogen-typed"])
def test_echo_peer_serves_tls_and_the_originator_speaks_it(
    name: str, certificate: Certificate, tmp_path: Path
) -> None:
    peer = _peer(name, ECHO, certificate, tmp_path)
    with start_server(peer) as server:
        assert check_echo(server.port, certificate.client_context()) is None
        # Only TLS: plain bytes are not echoed (a ClientHello was expected).
        assert _plain_echo(server.port) != FRAME
        if shutil.which("haproxy") is None:
            pytest.skip("haproxy is not installed")
        with tls_originator(server.port, tmp_path) as front:
            assert _plain_echo(front.port) == FRAME
        assert server.alive()


def test_tls_peer_listens_on_tls_with_the_certificate(
    certificate: Certificate, tmp_path: Path
) -> None:
    peer = _peer("protogen-typed", ECHO, certificate, tmp_path)
    cmd, _ = peer.command(8443)
    assert cmd[cmd.index("--listen") + 1] == "tls://127.0.0.1:8443"
    assert cmd[cmd.index("--tls-cert") + 1] == str(certificate.cert)
    assert cmd[cmd.index("--tls-key") + 1] == str(certificate.key)


def test_check_echo_reports_a_certificate_it_cannot_verify(
    certificate: Certificate, tmp_path: Path
) -> None:
    other = make_certificate(tmp_path)  # another CA
    peer = _peer("protogen-typed", ECHO, certificate, tmp_path)
    with start_server(peer) as server:
        wrong = check_echo(server.port, other.client_context())
    assert wrong is not None and "certificate verify failed" in wrong


@pytest.mark.parametrize("name", ["uvloop", "protogen"])
def test_http_peer_answers_https(
    name: str, certificate: Certificate, tmp_path: Path
) -> None:
    if name == "uvloop" and importlib.util.find_spec("httptools") is None:
        pytest.skip("httptools (bench extra) is not installed")
    peer = _peer(name, HTTP, certificate, tmp_path)
    with start_server(peer) as server:
        assert check_plaintext(server.port, tls=certificate.client_context()) is None
        # Not plain HTTP on the same port.
        assert check_plaintext(server.port) is not None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_s_time_counts_full_handshakes(
    certificate: Certificate, tmp_path: Path
) -> None:
    peer = _peer("protogen-typed", ECHO, certificate, tmp_path)
    with start_server(peer) as server:
        report = run_s_time(server.port, 1)
        assert isinstance(server, Server) and server.alive()
    assert report["errors"] == 0, report
    assert report["handshakes"] > 0 and report["rps"] > 0


def test_s_time_reports_a_server_that_is_not_there() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        report = run_s_time(port, 1)
    assert report["errors"] == 1 and report["rps"] == 0.0
