"""TLS on the transport seam: `ssl.SSLObject` over two memory BIOs per connection.

The loop reads and writes every connection through `conn.transport`
(`recv_into`, `send`, `sendmsg`); `TLSTransport` is such a transport. It feeds
the ciphertext it reads from the socket into the SSL object's incoming BIO and
hands the loop plaintext; what the loop sends it encrypts and passes on to the
socket. Nothing here blocks: the handshake runs inside `recv_into` as bytes
arrive, and the loop runs `on_open` once it completed (`EventLoop.start_conn`).

Guarantees the loop relies on:

* `recv_into` returns less than the space it was given only once the socket
  was drained (a short recv or EAGAIN), so an edge-triggered loop is not left
  with bytes nobody reads; a full return is read again on the next pass
  (decrypted records the SSL object still holds are read first).
* `send`/`sendmsg` report plaintext as taken only once its ciphertext is with
  the kernel. When the kernel refuses part of it, the ciphertext stays here
  (at most one step: `SEND_BATCH` + `RECORD` plaintext bytes' worth) and the
  last encrypted byte is reported as not taken, so the loop keeps waiting for
  WRITABLE and calls again;
  that call finishes the ciphertext first and counts the byte then. So the
  loop's queue, its water marks and its async_write callbacks count plaintext,
  and nothing is lost when the peer reads slowly.
* A graceful close sends close_notify before the FIN (`closing`).
"""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from protogen.errors import TLSHandshakeError

from .conn import CLOSING, OPEN
from .ratelog import log_protocol_error

if TYPE_CHECKING:  # pragma: no cover
    from .address import Address
    from .conn import Conn
    from .options import Options

__all__ = [
    "SEND_BATCH",
    "TLSClient",
    "TLSHandshakeError",
    "TLSInfo",
    "TLSServer",
    "TLSTransport",
    "check_tls_options",
    "client_context",
    "server_context",
]

# Plaintext encrypted per step of a send (four full records); with the rest of
# at most one record that may ride along, the most kept back as ciphertext when
# the kernel refuses some.
SEND_BATCH = 64 * 1024
RECORD = 16 * 1024  # a TLS record's most plaintext
# Ciphertext read from the socket per recv.
RECV_SIZE = 64 * 1024
# How often ciphertext nobody else will flush (a handshake flight, a session
# ticket) is offered to a kernel that refused it: the loop has no write
# interest for a connection whose queue is empty.
FLUSH_RETRY = 0.02


@dataclass(frozen=True)
class TLSInfo:
    """What a finished handshake negotiated (`conn.tls`)."""

    version: str | None  # "TLSv1.3"
    cipher: str | None  # "TLS_AES_256_GCM_SHA384"
    alpn_protocol: str | None  # "h2", "http/1.1", or None
    server_name: str | None  # SNI: the name the client asked for (server side)
    peer_cert: dict[str, Any] | None  # the verified peer certificate (getpeercert())
    peer_cert_der: bytes | None  # the peer certificate, DER (verified or not)
    session_reused: bool  # resumed from a session ticket


class TLSTransport:
    """One connection's TLS layer (see the module docstring)."""

    __slots__ = (
        "conn",
        "sock",
        "ssl",
        "read",
        "write",
        "incoming",
        "outgoing",
        "scratch",
        "handshaking",
        "slow",
        "cipher",
        "held",
        "eof",
        "early",
        "timer",
        "retry",
        "timeout",
        "tls",
        "notified",
    )

    def __init__(
        self,
        conn: "Conn",
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        scratch: memoryview,
        timeout: float | None,
    ) -> None:
        self.conn = conn
        self.sock = conn.sock
        self.ssl = sslobj
        # ssl.SSLObject.read/write only pass their arguments on to the C object
        # it wraps (`_sslobj`, CPython): called directly, a record costs a Python
        # frame less each way. The public methods take the same arguments.
        raw = getattr(sslobj, "_sslobj", sslobj)
        self.read: Callable[..., int] = raw.read
        self.write: Callable[[Any], int] = raw.write
        self.incoming = incoming
        self.outgoing = outgoing
        self.scratch = scratch  # the loop's ciphertext read buffer (one thread)
        self.handshaking = True  # the loop defers on_open while this is true
        # recv_into's general path: the handshake, the end, decrypted bytes held
        # back by a full return. False: nothing is held but a partial record.
        self.slow = True
        self.cipher: bytes | memoryview = b""  # ciphertext the kernel refused
        # Plaintext bytes at the front of the loop's queue already encrypted (their
        # ciphertext is in `cipher`): 0 or 1, see the module docstring.
        self.held = 0
        self.eof = False  # close_notify or the TCP end was read
        self.early: list[bytes] | None = None  # written before the handshake ended
        self.timer: Any = None  # the handshake deadline
        self.retry: Any = None  # a pending FLUSH_RETRY
        self.timeout = timeout
        self.tls: TLSInfo | None = None
        self.notified = False  # close_notify written

    # ------------------------------------------------------------ handshake
    def begin(self) -> None:
        """Called by the loop instead of on_open: arm the handshake deadline and,
        on a client, send the ClientHello."""
        if self.timeout is not None:
            self.timer = self.conn.loop.call_later(self.timeout, self._timed_out)
        if not self.ssl.server_side:
            self._handshake()

    def _handshake(self) -> bool:
        """One step of the handshake with the bytes received so far; True once
        it completed (on_open has run then)."""
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_or_retry()
            return False
        except (ssl.SSLError, ValueError) as exc:
            try:
                self._flush()  # the alert saying why, if the kernel takes it
            except OSError:
                pass
            raise self._failed(_describe(exc)) from exc
        self.handshaking = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.tls = _info(self.ssl)
        early = self.early
        if early:
            self.early = None
            for chunk in early:
                self.write(chunk)
        self._flush_or_retry()
        conn = self.conn
        conn.loop.start_conn(conn)  # on_open
        return True

    def _failed(self, why: str) -> TLSHandshakeError:
        error = TLSHandshakeError(why)
        conn = self.conn
        log_protocol_error(conn.loop.logger, conn, error)
        return error

    def _timed_out(self) -> None:
        self.timer = None
        conn = self.conn
        if self.handshaking and not conn.closed:
            conn.loop.close_conn(
                conn, self._failed(f"no TLS handshake within {self.timeout:g} s")
            )

    # ------------------------------------------------------------ receiving
    def recv_into(self, buffer: Any) -> int:
        """Plaintext into `buffer`: the count, 0 at the end, BlockingIOError when
        there is none yet (the handshake is not done, or a record is partial)."""
        if self.slow:
            return self._recv(buffer, 0)
        # The steady state, nothing held: one recv, then the records it completed.
        scratch = self.scratch
        n = self.sock.recv_into(scratch)  # BlockingIOError: no news
        if not n:
            self.eof = True  # the TCP end (without close_notify)
            self.slow = True
            return self._recv(buffer, 0)
        incoming = self.incoming
        incoming.write(scratch[:n])
        size = len(buffer)
        read = self.read
        got = 0
        try:
            got = read(size, buffer)
            if not got:
                self.eof = True  # the peer's close_notify (CPython: 0)
            while got < size and incoming.pending:  # several records arrived
                more = read(size - got, memoryview(buffer)[got:])
                if not more:
                    self.eof = True
                    break
                got += more
        except ssl.SSLWantReadError:
            pass  # the rest of a record is on its way
        except ssl.SSLZeroReturnError:
            self.eof = True  # the peer's close_notify
        if self.outgoing.pending:
            self._flush_or_retry()  # session tickets, key updates
        if n == len(scratch) and got < size and not self.eof:
            self.slow = True
            return self._recv(buffer, got)  # the socket is not drained yet
        if got == size or self.eof:
            self.slow = True  # decrypted bytes may be held; the end is next
        if got:
            return got
        if self.eof:
            return 0
        raise BlockingIOError

    def _recv(self, buffer: Any, got: int) -> int:
        """recv_into's general path: handshake steps, records held back by a
        full return, the end; `got` bytes are in `buffer` already."""
        view = memoryview(buffer)
        size = len(view)
        scratch = self.scratch
        drained = False
        while True:
            if self.handshaking:
                # (A step without new bytes could only raise SSLWantReadError.)
                if self.incoming.pending and self._handshake():
                    if self.conn.state != OPEN:
                        raise BlockingIOError  # on_open closed it
                elif self.eof:
                    raise self._failed("the peer closed the connection mid-handshake")
            if not self.handshaking:
                got = self._decrypt(view, got, size)
                if got == size or self.eof:
                    break
            if drained:
                break
            try:
                n = self.sock.recv_into(scratch)
            except (BlockingIOError, InterruptedError):
                break
            if not n:
                self.eof = True  # the TCP end (without close_notify)
                continue
            self.incoming.write(scratch[:n])
            drained = n < len(scratch)  # a short read: the socket is empty now
        # Left with less than a full buffer, nothing but a partial record is here.
        self.slow = self.handshaking or self.eof or got == size
        if got:
            return got
        if self.eof:
            return 0
        raise BlockingIOError

    def _decrypt(self, view: memoryview, got: int, size: int) -> int:
        """Records received so far into view[got:size]; the new `got`."""
        sslobj = self.ssl
        incoming = self.incoming
        if not incoming.pending and not sslobj.pending():
            return got  # (no call that can only raise SSLWantReadError)
        read = self.read
        try:
            while got < size:
                n = read(size - got, view[got:])
                if not n:
                    self.eof = True  # the peer's close_notify (CPython: 0)
                    break
                got += n
                if not incoming.pending and not sslobj.pending():
                    break  # every record received so far is decrypted
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.eof = True  # the peer's close_notify
        if self.outgoing.pending:
            self._flush_or_retry()  # session tickets, key updates
        return got

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session (a client resumes it with `Client.dial(session=)`)."""
        return self.ssl.session

    # ------------------------------------------------------------ sending
    def send(self, data: Any) -> int:
        """Encrypt and send one chunk; the plaintext count whose ciphertext the
        kernel took (see the module docstring)."""
        size = len(data)
        if (
            self.held
            or self.cipher
            or self.handshaking
            or self.conn.state != OPEN
            or not 0 < size <= SEND_BATCH + RECORD
        ):
            return self.sendmsg((data,))
        # The steady state: one write (whole records), one send of their bytes.
        self.write(data)
        cipher = self.outgoing.read()
        try:
            n = self.sock.send(cipher)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(cipher):
            return size
        self.cipher = memoryview(cipher)[n:] if n else cipher
        self.held = 1
        return size - 1

    def sendmsg(self, chunks: Iterable[Any]) -> int:
        """Encrypt and send `chunks` (one stream), SEND_BATCH plaintext bytes per
        step; the plaintext count whose ciphertext the kernel took."""
        if self.handshaking:
            # A broadcast reaching a connection before its on_open: encrypted
            # once the handshake is done.
            early = self.early if self.early is not None else []
            self.early = early
            taken = 0
            for chunk in chunks:
                early.append(bytes(chunk))
                taken += len(early[-1])
            return taken
        if self.cipher and not self._flush():
            raise BlockingIOError
        taken = self.held  # encrypted by the last call, with the kernel now
        self.held = 0
        conn = self.conn
        total = -1  # where a closing connection's output ends, if it is all here
        if conn.state == CLOSING and not self.notified:
            chunks = list(chunks)
            size = sum(len(chunk) for chunk in chunks)
            if size == conn.outbound.size:
                total = size
        write = self.write
        for step in _steps(chunks, taken):
            write(step)
            end = taken + len(step)
            if end == total:
                # The end of a closing connection's output: close_notify goes
                # with it, so the loop's drain waits for it too.
                self._notify()
            if not self._flush():
                self.held = 1
                return end - 1
            taken = end
        return taken

    def _notify(self) -> None:
        """close_notify into the outgoing BIO (once)."""
        self.notified = True
        try:
            self.ssl.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # it wants the peer's close_notify: not waited for

    def _flush(self) -> bool:
        """Ciphertext to the kernel; True when none is left here."""
        pending = self.cipher
        outgoing = self.outgoing
        if outgoing.pending:
            data = outgoing.read()
            pending = bytes(pending) + data if pending else data
        if not pending:
            return True
        try:
            n = self.sock.send(pending)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(pending):
            self.cipher = b""
            return True
        self.cipher = memoryview(pending)[n:] if n else pending
        return False

    def _flush_or_retry(self) -> None:
        """Flush; what the kernel refuses is offered again shortly (nothing in the
        loop's queue would make it wait for WRITABLE)."""
        if not self._flush() and self.retry is None:
            self.retry = self.conn.loop.call_later(FLUSH_RETRY, self._retry)

    def _retry(self) -> None:
        self.retry = None
        conn = self.conn
        if conn.closed:
            return
        try:
            self._flush_or_retry()
        except OSError as exc:
            conn.loop.close_conn(conn, exc)

    # ------------------------------------------------------------ closing
    def closing(self) -> None:
        """A graceful close: send close_notify (before the loop's FIN)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.handshaking or self.cipher or self.conn.outbound.chunks is not None:
            return  # output was cut short (drain_timeout): not a clean end
        if not self.notified:
            self._notify()
        try:
            if not self._flush():
                # Refused by a full send buffer (the queue was empty, so the loop
                # did not wait for it): room for these few bytes, once.
                size = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size * 2)
                self._flush()
        except OSError:
            pass


def _steps(chunks: Iterable[Any], skip: int) -> Iterator[Any]:
    """The plaintext of `chunks` less its first `skip` bytes, in steps of
    SEND_BATCH bytes: small chunks joined, so that one SSL write fills whole
    records and one send carries them; big chunks sliced. A rest of at most a
    record rides with the step before it (not a record and a send of its own)."""
    chunks = list(chunks)
    left = sum(len(chunk) for chunk in chunks) - skip
    step = room = _step_size(left)
    parts: list[Any] = []
    for chunk in chunks:
        size = len(chunk)
        start = 0
        if skip:
            start = min(skip, size)
            skip -= start
        while size - start >= room > 0:
            end = start + room
            whole = start == 0 and end == size
            parts.append(chunk if whole else memoryview(chunk)[start:end])
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts = []
            left -= step
            step = room = _step_size(left)
            start = end
        if start < size:
            parts.append(chunk if start == 0 else memoryview(chunk)[start:])
            room -= size - start
    if parts:  # (lengths that lied)
        yield b"".join(parts)


def _step_size(left: int) -> int:
    return left if left <= SEND_BATCH + RECORD else SEND_BATCH


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS handshake failed: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        # "WRONG_VERSION_NUMBER" -> "wrong version number" (garbage, plain HTTP...)
        return f"TLS handshake failed: {exc.reason.lower().replace('_', ' ')}"
    return f"TLS handshake failed: {exc}"


def _info(sslobj: ssl.SSLObject) -> TLSInfo:
    cipher = sslobj.cipher()
    try:
        peer = sslobj.getpeercert() or None
    except ValueError:
        peer = None
    der = sslobj.getpeercert(binary_form=True)
    if sslobj.server_side:
        server_name = getattr(sslobj, "protogen_server_name", None)
    else:
        server_name = sslobj.server_hostname
    return TLSInfo(
        version=sslobj.version(),
        cipher=cipher[0] if cipher else None,
        alpn_protocol=sslobj.selected_alpn_protocol(),
        server_name=server_name,
        peer_cert=peer,
        peer_cert_der=der,
        session_reused=sslobj.session_reused,
    )


# ---------------------------------------------------------------- contexts


def server_context(options: "Options") -> ssl.SSLContext:
    """The listeners' SSLContext: `ssl_context`, else one made from the tls_*
    options (TLS 1.2 at least; tls_ca: client certificates required)."""
    if options.ssl_context is not None:
        context = options.ssl_context
    else:
        if options.tls_cert is None:
            raise ValueError(
                "a tls:// listener needs tls_cert (and tls_key) or ssl_context"
            )
        context = _new_server_context(options, options.tls_cert, options.tls_key)
    sni = options.tls_sni
    if isinstance(sni, dict):
        by_name = {
            name.lower(): _new_server_context(options, *_pair(name, files))
            for name, files in sni.items()
        }
        choose: Callable[[str], ssl.SSLContext | None] = lambda name: _match(
            by_name, name
        )
    elif callable(sni):
        choose = sni
    else:
        choose = _no_choice

    def on_server_name(
        sslobj: Any, name: str | None, _context: ssl.SSLContext
    ) -> int | None:
        sslobj.protogen_server_name = name
        if name:
            try:
                chosen = choose(name)
            except Exception:
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            if chosen is not None:
                sslobj.context = chosen
        return None

    context.sni_callback = on_server_name
    return context


def _new_server_context(
    options: "Options", cert: str, key: str | None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A client renegotiating TLS 1.2 at will costs the server a handshake each time.
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(cert, key)
    if options.tls_ca is not None:
        context.load_verify_locations(options.tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    if options.tls_ciphers:
        context.set_ciphers(options.tls_ciphers)
    alpn = options.alpn_protocols()
    if alpn:
        context.set_alpn_protocols(alpn)
    if not options.tls_session_tickets:
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    return context


def _pair(name: str, files: Any) -> tuple[str, str | None]:
    if isinstance(files, (str, os.PathLike)):
        return str(files), None
    try:
        cert, key = files
    except (TypeError, ValueError):
        raise ValueError(
            f"tls_sni[{name!r}] must be (cert, key) files, got {files!r}"
        ) from None
    return cert, key


def _match(by_name: dict[str, ssl.SSLContext], name: str) -> ssl.SSLContext | None:
    name = name.lower()
    found = by_name.get(name)
    if found is None and "." in name:
        found = by_name.get("*." + name.split(".", 1)[1])
    return found


def _no_choice(name: str) -> ssl.SSLContext | None:
    return None


def client_context(options: "Options") -> ssl.SSLContext:
    """A dialing client's SSLContext: verifies the server (tls_ca, else the
    system's CAs) and its name; tls_cert/tls_key: a client certificate."""
    if options.ssl_context is not None:
        return options.ssl_context
    context = ssl.create_default_context(cafile=options.tls_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.tls_cert is not None:
        context.load_cert_chain(options.tls_cert, options.tls_key)
    if options.tls_ciphers:
        context.set_ciphers(options.tls_ciphers)
    alpn = options.alpn_protocols()
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def check_tls_options(addresses: Iterable["Address"], options: "Options") -> None:
    """ValueError naming what a tls:// listener lacks (before anything binds)."""
    addresses = list(addresses)
    if any(address.tls for address in addresses):
        if options.ssl_context is None and options.tls_cert is None:
            raise ValueError(
                "tls:// listeners need tls_cert and tls_key (or ssl_context)"
            )
        several = options.loops > 1 or options.multicore
        if several and options.load_balancing != "reuseport":
            raise ValueError(
                "tls:// listeners with several loops need load_balancing reuseport"
            )


# ---------------------------------------------------------------- factories


class TLSServer:
    """The TLS side of an engine's tls:// listeners: the `transport(conn)`
    factory their acceptors call, and the context it wraps connections with
    (`reload()` makes a new one from the files: SIGHUP)."""

    def __init__(self, options: "Options") -> None:
        self.options = options
        self.context = server_context(options)
        self.scratch = memoryview(bytearray(RECV_SIZE))

    def __call__(self, conn: "Conn") -> TLSTransport:
        incoming = ssl.MemoryBIO()
        outgoing = ssl.MemoryBIO()
        sslobj = self.context.wrap_bio(incoming, outgoing, server_side=True)
        return TLSTransport(
            conn,
            sslobj,
            incoming,
            outgoing,
            self.scratch,
            self.options.tls_handshake_timeout,
        )

    def reload(self) -> bool:
        """Load the certificate files again for new connections; open ones keep
        theirs. False (and the old context kept) when they do not load."""
        options = self.options
        if options.ssl_context is not None and options.tls_cert is None:
            return False  # nothing to reload from
        try:
            context = server_context(
                options
                if options.ssl_context is None
                else options.replace(ssl_context=None)
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            options.get_logger().error(
                "protogen: TLS reload failed, keeping the current certificate: %s",
                exc,
            )
            return False
        self.context = context
        options.get_logger().info("protogen: TLS certificates reloaded")
        return True


class TLSClient:
    """The `transport(conn)` factory of one dial: the client side of TLS."""

    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str | None,
        scratch: memoryview,
        timeout: float | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self.context = context
        self.server_hostname = server_hostname
        self.scratch = scratch
        self.timeout = timeout
        self.session = session

    def __call__(self, conn: "Conn") -> TLSTransport:
        incoming = ssl.MemoryBIO()
        outgoing = ssl.MemoryBIO()
        sslobj = self.context.wrap_bio(
            incoming,
            outgoing,
            server_side=False,
            server_hostname=self.server_hostname,
            session=self.session,
        )
        return TLSTransport(
            conn, sslobj, incoming, outgoing, self.scratch, self.timeout
        )
