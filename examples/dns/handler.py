"""The DNS example: a small authoritative server over UDP and TCP.

The generated `DnsHandler` (from `dns.proto.dsl`) decodes `Message` frames — over
TCP after their 2-byte length prefix, over UDP one per datagram — with the 12-byte
header as typed fields; this subclass parses the question from `sections` and
answers from a `zone.Zone`:

- A / AAAA / TXT records of the zone, authoritative (AA), the answer names
  compressed to a pointer at the question name (offset 12);
- NXDOMAIN for a name the zone lacks, NOERROR with no answer for a type it lacks;
- NOTIMP for an opcode other than QUERY, FORMERR for a message that frames but
  does not parse, REFUSED for a class other than IN;
- over UDP an answer larger than 512 bytes (or the client's EDNS payload size,
  up to 4096) is replaced by the question alone with the TC flag: the client
  retries over TCP. EDNS (an OPT record) is answered with an OPT record.

A UDP datagram too short for a header is dropped; a TCP stream whose length
prefix breaks the protocol is closed (that connection only).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Sequence

from dns_codec import Message
from dns_handler import DnsHandler

from protogen.errors import ProtocolError
from protogen.runtime import Action
from zone import (
    RR_FIXED,
    Zone,
    load_zone,
)  # beside this file (serve.py puts it on sys.path)

__all__ = ["DnsExampleHandler", "DEFAULT_ZONE"]

DEFAULT_ZONE = Path(__file__).resolve().parent / "example.zone"

# Header flag bits (RFC 1035 4.1.1).
QR = 0x8000
OPCODE_SHIFT = 11
AA = 0x0400
TC = 0x0200
RD = 0x0100
# Response codes.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

CLASS_IN = 1
TYPE_OPT = 41
HEADER_SIZE = 12
UDP_PLAIN_LIMIT = 512  # RFC 1035 without EDNS
UDP_EDNS_LIMIT = 4096  # the most we answer over UDP, whatever the client offers
COMPRESSED_QNAME = (
    b"\xc0\x0c"  # a pointer to the question's name, right after the header
)

_QUESTION_TAIL = struct.Struct(">HH")  # type, class
_OPT_FIXED = struct.Struct(
    ">HHIH"
)  # type, payload size (class), ext-rcode/flags, rdlen
OPT_RECORD = b"\x00" + _OPT_FIXED.pack(TYPE_OPT, UDP_EDNS_LIMIT, 0, 0)


class FormatError(ValueError):
    """The message framed but does not parse: answered with FORMERR."""


class Question:
    __slots__ = ("wire", "name", "qtype", "qclass", "end")

    def __init__(
        self, wire: bytes, name: str, qtype: int, qclass: int, end: int
    ) -> None:
        self.wire = wire  # the question's bytes as received (echoed in the reply)
        self.name = name  # lower case, dot-separated, no trailing dot
        self.qtype = qtype
        self.qclass = qclass
        self.end = end  # offset of what follows it in `sections`


def parse_question(sections: bytes) -> Question:
    """The first question of `sections`: an uncompressed name, type and class."""
    labels = []
    pos = 0
    size = len(sections)
    while True:
        if pos >= size:
            raise FormatError("the question name runs past the message")
        length = sections[pos]
        if length & 0xC0:
            raise FormatError("a compressed or extended label in the question")
        pos += 1
        if length == 0:
            break
        if pos + length > size:
            raise FormatError("a label runs past the message")
        labels.append(sections[pos : pos + length])
        pos += length
    if pos > 255:
        raise FormatError("the question name is longer than 255 bytes")
    if pos + 4 > size:
        raise FormatError("the question lacks its type and class")
    qtype, qclass = _QUESTION_TAIL.unpack_from(sections, pos)
    end = pos + 4
    name = b".".join(labels).decode("ascii", "replace").lower()
    return Question(sections[:end], name, qtype, qclass, end)


def skip_name(sections: bytes, pos: int) -> int:
    """The offset after the (possibly compressed) name at `pos`."""
    while True:
        if pos >= len(sections):
            raise FormatError("a record name runs past the message")
        length = sections[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length & 0xC0:
            raise FormatError("an extended label type")
        pos += 1 + length
        if length == 0:
            return pos


def edns_payload_size(sections: bytes, pos: int, frame: Message) -> int | None:
    """The UDP payload size of the query's OPT record, None without one.

    Walks the answer, authority and additional records after the question.
    """
    found = None
    for _ in range(frame.ancount + frame.nscount + frame.arcount):
        pos = skip_name(sections, pos)
        if pos + RR_FIXED.size > len(sections):
            raise FormatError("a record runs past the message")
        rtype, rclass, _ttl, rdlength = RR_FIXED.unpack_from(sections, pos)
        pos += RR_FIXED.size + rdlength
        if pos > len(sections):
            raise FormatError("a record's data runs past the message")
        if rtype == TYPE_OPT:
            found = rclass
    return found


class DnsExampleHandler(DnsHandler):
    """Authoritative answers from a zone; see the module docstring."""

    def __init__(self, *args: Any, zone: Zone | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone if zone is not None else load_zone(DEFAULT_ZONE)

    def on_message(self, conn: Any, frame: Message) -> None:
        flags = frame.flags
        if flags & QR:
            return  # a response: never answer one (no reflection loops)
        opcode = (flags >> OPCODE_SHIFT) & 0xF
        # QR, the query's opcode and RD echoed; AA and the rcode added below.
        base = QR | (flags & (0xF << OPCODE_SHIFT)) | (flags & RD)
        if opcode != 0:
            self.reply(conn, frame.id, base | NOTIMP)
            return
        try:
            if frame.qdcount != 1:
                raise FormatError(f"{frame.qdcount} questions")
            question = parse_question(frame.sections)
            edns = edns_payload_size(frame.sections, question.end, frame)
        except FormatError:
            self.reply(conn, frame.id, base | FORMERR)
            return
        opt = OPT_RECORD if edns is not None else b""
        if question.qclass != CLASS_IN:
            self.reply(conn, frame.id, base | REFUSED, question.wire, opt=opt)
            return
        records = self.zone.lookup(question.name, question.qtype)
        if records is None:
            self.reply(conn, frame.id, base | AA | NXDOMAIN, question.wire, opt=opt)
            return
        pack = RR_FIXED.pack
        qtype = question.qtype
        answers = [
            COMPRESSED_QNAME + pack(qtype, CLASS_IN, ttl, len(rdata)) + rdata
            for ttl, rdata in records
        ]
        if conn.datagram:
            limit = UDP_PLAIN_LIMIT
            if edns is not None:
                limit = max(UDP_PLAIN_LIMIT, min(edns, UDP_EDNS_LIMIT))
            size = HEADER_SIZE + len(question.wire) + sum(map(len, answers)) + len(opt)
            if size > limit:
                # Too big for this datagram: the question alone with TC set;
                # the client asks again over TCP.
                self.reply(conn, frame.id, base | AA | TC, question.wire, opt=opt)
                return
        self.reply(conn, frame.id, base | AA, question.wire, answers, opt)

    def reply(
        self,
        conn: Any,
        query_id: int,
        flags: int,
        question: bytes = b"",
        answers: Sequence[bytes] = (),
        opt: bytes = b"",
    ) -> None:
        """Send a response: the question (if any), answers, and an OPT record."""
        sections = b"".join([question, *answers, opt])
        counts = (1 if question else 0, len(answers), 0, 1 if opt else 0)
        self.send(conn, Message(query_id, flags, *counts, sections))

    def on_protocol_error(self, conn: Any, err: ProtocolError) -> Action:
        if conn.datagram:
            return Action.NONE  # an unframeable datagram: drop it, as DNS servers do
        raise err  # a broken stream: close this connection only
