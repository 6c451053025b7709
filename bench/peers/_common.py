"""Shared start-up for the bench peers: argument parsing, fd limits and TLS."""

from __future__ import annotations

import argparse
import resource
import ssl
import struct

#: The length prefix of the echo protocol: 4-byte big-endian unsigned.
LENGTH = struct.Struct(">I")


def raise_nofile_limit() -> None:
    """Lift the soft open-file limit to the hard one: 15 000 connections need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(
    description: str, loops: tuple[str, ...] = (), tls: bool = False
) -> argparse.Namespace:
    """--port/--host/--backlog (--loop when `loops`; --tls-cert/--tls-key when
    the peer can serve TLS, see `server_ssl_context`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--backlog", type=int, default=4096)
    if loops:
        parser.add_argument("--loop", choices=loops, default=loops[0])
    if tls:
        parser.add_argument("--tls-cert", help="serve TLS with this chain (PEM)")
        parser.add_argument(
            "--tls-key", help="its private key (PEM); default: in the cert"
        )
    return parser.parse_args()


def server_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The `ssl=` of `create_server` for --tls-cert (None: plain TCP), set up as
    protogen's tls:// listeners are, so that both sides do the same handshake:
    TLS 1.2 at least, no renegotiation, Python's default ciphers and tickets."""
    if not args.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(args.tls_cert, args.tls_key)
    return context
