"""The DNS example: a small authoritative server over UDP and TCP.

The generated `DnsHandler` (from `dns.proto.dsl`) decodes whole `Message`
frames — over TCP after their 2-byte length, over UDP one per datagram — with
questions, records, RDATA and EDNS typed by the spec; `answer.respond` answers
them from a `zone.Zone`. This class adds what depends on the transport:

- over UDP an answer larger than the client takes (512 bytes, or its EDNS
  size), or than `amplification` times the query's size, goes out as the
  question alone with TC set: the client asks again over TCP, so the server
  never sends a spoofed victim much more than it received;
- an optional response rate limit per client network over UDP (`rrl.py`);
- a message that frames but does not decode is answered FORMERR with its id;
  a datagram shorter than a header is dropped; a TCP length shorter than a
  header closes that connection only. Responses (QR set) are never answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from answer import formerr, respond, truncated
from dns_codec import Message
from dns_handler import DnsHandler
from protogen.errors import ProtocolError
from protogen.runtime import Action
from rrl import RateLimiter, Verdict
from zone import Zone, load_zone

__all__ = ["DEFAULT_AMPLIFICATION", "DEFAULT_ZONE", "DnsExampleHandler"]

DEFAULT_ZONE = Path(__file__).resolve().parent / "example.zone"
DEFAULT_AMPLIFICATION = 8
HEADER_SIZE = 12
_LENGTH_SIZE = 2  # the length before each message over TCP


class DnsExampleHandler(DnsHandler):
    """Authoritative answers from a zone; see the module docstring."""

    def __init__(
        self,
        *args: Any,
        zone: Zone | None = None,
        amplification: float = DEFAULT_AMPLIFICATION,
        rate_limiter: RateLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone if zone is not None else load_zone(DEFAULT_ZONE)
        self.amplification = amplification  # 0: no limit but the client's
        self.rate_limiter = rate_limiter
        # The header of the datagram being handled, for a FORMERR when the
        # rest does not decode (the generated handler has consumed it by then).
        self._datagram_head = b""

    def on_traffic(self, conn: Any) -> Action | None:
        if conn.datagram:
            self._datagram_head = bytes(conn.peek(HEADER_SIZE))
        return super().on_traffic(conn)

    def on_message(self, conn: Any, frame: Message) -> None:
        if frame.qr:
            return  # a response: never answer one (no reflection loops)
        response, limit = respond(frame, self.zone)
        if conn.datagram:
            # A datagram's frame length is the datagram's size.
            self.send_datagram(conn, response, limit, frame.length or HEADER_SIZE)
        else:
            conn.write(_encoded(response, datagram=False))

    def send_datagram(
        self, conn: Any, response: Message, limit: int, query_size: int
    ) -> None:
        """Send `response` over UDP: truncated when too big, rate limited."""
        if self.rate_limiter is not None:
            verdict = self.rate_limiter.check(conn.remote_addr)
            if verdict is Verdict.DROP:
                return
            if verdict is Verdict.SLIP:
                conn.write(truncated(response).encode_datagram())
                return
        if self.amplification:
            limit = min(limit, int(query_size * self.amplification))
        data = _encoded(response, datagram=True)
        if len(data) > limit:
            data = truncated(response).encode_datagram()
        conn.write(data)

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        """FORMERR for a message that frames but does not decode (see above)."""
        if conn.datagram:
            response = formerr(self._datagram_head)
            if response is not None:
                size = len(self._datagram_head)
                self.send_datagram(conn, response, HEADER_SIZE, size)
            return Action.NONE  # an unanswerable datagram is dropped, as DNS servers do
        view = conn.peek()
        if len(view) >= _LENGTH_SIZE + HEADER_SIZE:
            end = _LENGTH_SIZE + int.from_bytes(view[:_LENGTH_SIZE], "big")
            if end >= _LENGTH_SIZE + HEADER_SIZE and len(view) >= end:
                # The message framed; its body did not decode.
                response = formerr(view[_LENGTH_SIZE:end])
                conn.discard(end)
                if response is not None:
                    self.send(conn, response)
                return Action.YIELD if conn.inbound_buffered() else Action.NONE
        raise err  # a broken stream: close this connection only


def _encoded(response: Message, datagram: bool) -> bytes:
    """The response's bytes; truncated (TC) when larger than any DNS message
    (65535 bytes, RFC 7766 section 8: also over TCP)."""
    try:
        return response.encode_datagram() if datagram else response.encode()
    except ValueError:  # the u16 length cannot hold it
        short = truncated(response)
        return short.encode_datagram() if datagram else short.encode()
