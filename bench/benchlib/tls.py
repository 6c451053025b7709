"""The TLS benchmark's pieces (`bench/tls.py`): a certificate made at run time,
peers served over TLS on it, a native TLS originator in front of the plain-TCP
load client, and handshakes per second measured by `openssl s_time`."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .peers import Peer
from .pinning import CLIENT_CPU, pinned
from .servers import Server, free_port

#: The echo protocol's frame: 4-byte big-endian length, payload.
_PROBE = b"tls probe"
_FRAME = len(_PROBE).to_bytes(4, "big") + _PROBE


@dataclass(frozen=True)
class Certificate:
    """A server certificate for 127.0.0.1/localhost and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against the CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_certificate(workdir: Path) -> Certificate:
    """A fresh CA and server certificate (trustme's defaults: ECDSA P-256), the
    same files for every peer so that all of them do the same handshake."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_pem = (
        workdir / "tls-server.pem",
        workdir / "tls-server.key",
        workdir / "tls-ca.pem",
    )
    issued.cert_chain_pems[0].write_to_path(str(cert))
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    return Certificate(cert, key, ca_pem)


@dataclass
class TlsPeer(Peer):
    """`inner` served over TLS: its `--listen tcp://` becomes `tls://` (protogen),
    and `--tls-cert/--tls-key` are added (protogen and the `bench/peers/` scripts
    alike: the same certificate for both)."""

    inner: Peer | None = None
    certificate: Certificate | None = None

    def prepare(self, workdir: Path) -> bool:
        assert self.inner is not None
        ready = self.inner.prepare(workdir)
        self.skip_reason = self.inner.skip_reason
        self.env = self.inner.env
        return ready

    def command(self, port: int) -> tuple[list[str], Path | None]:
        assert self.inner is not None and self.certificate is not None
        cmd, cwd = self.inner.command(port)
        cmd = [
            "tls://" + arg.removeprefix("tcp://") if arg.startswith("tcp://") else arg
            for arg in cmd
        ]
        tls = ["--tls-cert", str(self.certificate.cert)]
        return [*cmd, *tls, "--tls-key", str(self.certificate.key)], cwd


def over_tls(inner: Peer, certificate: Certificate) -> TlsPeer:
    return TlsPeer(
        inner.name,
        inner.kind,
        inner.protogen,
        env=dict(inner.env),
        inner=inner,
        certificate=certificate,
    )


def check_echo(port: int, context: ssl.SSLContext, timeout: float = 5.0) -> str | None:
    """One verified TLS round trip of an echo frame; None if it came back intact
    (the load goes through the originator, which would hide a wrong certificate)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                conn.sendall(_FRAME)
                got = b""
                while len(got) < len(_FRAME):
                    chunk = conn.recv(len(_FRAME) - len(got))
                    if not chunk:
                        break
                    got += chunk
    except (OSError, ssl.SSLError) as exc:
        return f"TLS echo round trip failed: {exc}"
    if got != _FRAME:
        return f"TLS echo answered {got!r}, expected {_FRAME!r}"
    return None


def haproxy_available() -> bool:
    return shutil.which("haproxy") is not None


_HAPROXY = """\
global
    maxconn {maxconn}
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend plain
    bind 127.0.0.1:{listen}
    maxconn {maxconn}
    default_backend peer
backend peer
    server peer 127.0.0.1:{backend} ssl verify none maxconn {maxconn}
"""


def tls_originator(backend: int, workdir: Path, maxconn: int = 4_000) -> Server:
    """haproxy on the client CPU: each plain connection of the load client becomes
    one TLS connection to `backend` (the C client speaks plain TCP only). The
    same originator, in the same configuration, fronts every peer. Not started:
    use as a context manager or call `start()`."""
    listen = free_port()
    config = workdir / f"haproxy-{backend}.cfg"
    config.write_text(_HAPROXY.format(listen=listen, backend=backend, maxconn=maxconn))
    return Server(
        f"haproxy-to-{backend}",
        ["haproxy", "-db", "-f", str(config)],
        listen,
        cpu=CLIENT_CPU,
    )


def run_s_time(
    port: int, duration: float, cpu: int | None = CLIENT_CPU
) -> dict[str, Any]:
    """`openssl s_time -new`: full handshakes (no resumption) one after another for
    `duration` seconds; `rps` is handshakes per wall-clock second (s_time's own
    wall figure is whole seconds, its rate is per second of *its* user time)."""
    seconds = max(1, round(duration))
    cmd = pinned(
        [
            "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
            "-new", "-time", str(seconds),
        ],
        cpu,
    )  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    elapsed = time.monotonic() - started
    match = re.search(r"(\d+) connections in [\d.]+s", proc.stdout)
    if proc.returncode != 0 or match is None:
        return {
            "rps": 0.0,
            "errors": 1,
            "first_error": (proc.stderr or proc.stdout).strip()[-300:],
        }
    handshakes = int(match.group(1))
    return {
        "rps": handshakes / elapsed,
        "handshakes": handshakes,
        "elapsed_s": elapsed,
        "errors": 0,
    }
