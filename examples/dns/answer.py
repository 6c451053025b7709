"""Answers to DNS queries from a zone, sans-I/O: a decoded query in, a response out.

`respond(query, zone)` gives the response and the largest UDP payload the client
takes: 512 bytes without EDNS (RFC 1035 4.2.1), the OPT record's size with it
(at least 512, at most UDP_EDNS_LIMIT). What it answers:

- names of the zone: authoritative (AA) answers, CNAMEs followed inside the
  zone; NXDOMAIN for a name the zone lacks, NOERROR without answers (NODATA)
  for a type the name lacks, both with the zone's SOA in the authority section
  (RFC 2308);
- REFUSED, not authoritative, for a name outside the zone or a class other
  than IN; NOTIMP for an opcode other than QUERY;
- FORMERR for no or several questions, two OPT records, an OPT record outside
  the additional section or not owned by the root (RFC 6891 6.1.1);
- BADVERS (extended RCODE 16) for an EDNS version other than 0 (6.1.3);
- an OPT record in every response to a query with one (a FORMERR about the OPT
  record included).
"""

from __future__ import annotations

import struct

from dns_codec import Message, Opt, Question, Record, ResourceRecord, RRType
from zone import Zone, key_of

__all__ = [
    "BADVERS",
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "REFUSED",
    "UDP_EDNS_LIMIT",
    "UDP_PLAIN_LIMIT",
    "formerr",
    "respond",
    "truncated",
]

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended: the upper 8 of its 12 bits travel in the OPT record
CLASS_IN = 1
EDNS_VERSION = 0
UDP_PLAIN_LIMIT = 512
UDP_EDNS_LIMIT = 4096  # the most we send over UDP, whatever the client offers
MAX_CNAME_CHAIN = 8  # CNAMEs followed per answer; a loop in the zone stops there

_ID_FLAGS = struct.Struct(">HH")
_QR = 0x8000


class FormatError(ValueError):
    """The query decodes but breaks a rule of the protocol: FORMERR."""


def _reply(query_id: int, opcode: int, rd: int, cd: int) -> Message:
    """An empty response echoing the query's id, opcode, RD and CD bits."""
    return Message(
        id=query_id, qr=1, opcode=opcode, aa=0, tc=0, rd=rd, ra=0, z=0, ad=0,
        cd=cd, rcode=NOERROR, questions=[], answers=[], authority=[], additional=[],
    )  # fmt: skip


def _opt_record(rcode: int) -> ResourceRecord:
    return ResourceRecord(
        "", RRType.opt, Opt(UDP_EDNS_LIMIT, rcode >> 4, EDNS_VERSION, 0, 0, [])
    )


def _finish(response: Message, rcode: int, edns: bool) -> Message:
    response.rcode = rcode & 0xF
    if edns:
        response.additional.append(_opt_record(rcode))
    return response


def query_opt(query: Message) -> Opt | None:
    """The query's OPT record, None without one; FormatError for a misplaced or
    repeated one."""
    found = None
    for record in query.additional:
        if isinstance(record.record, Opt):
            if found is not None:
                raise FormatError("two OPT records")
            if record.name:
                raise FormatError("an OPT record not owned by the root")
            found = record.record
    for record in (*query.answers, *query.authority):
        if isinstance(record.record, Opt):
            raise FormatError("an OPT record outside the additional section")
    return found


def respond(query: Message, zone: Zone) -> tuple[Message, int]:
    """(the response to `query`, the client's UDP payload limit)."""
    response = _reply(query.id, query.opcode, query.rd, query.cd)
    if query.opcode != 0:
        return _finish(response, NOTIMP, False), UDP_PLAIN_LIMIT
    try:
        opt = query_opt(query)
    except FormatError:
        return _finish(response, FORMERR, True), UDP_PLAIN_LIMIT
    edns = opt is not None
    limit = UDP_PLAIN_LIMIT
    if opt is not None:
        limit = min(max(opt.udp_payload_size, UDP_PLAIN_LIMIT), UDP_EDNS_LIMIT)
        if opt.version != EDNS_VERSION:
            response.questions = query.questions
            return _finish(response, BADVERS, edns), limit
    if len(query.questions) != 1:
        return _finish(response, FORMERR, edns), limit
    question = query.questions[0]
    response.questions = query.questions
    key = key_of(question.name)  # a decoded name always parses back
    if question.qclass != CLASS_IN or not zone.contains(key):
        return _finish(response, REFUSED, edns), limit
    response.aa = 1
    rcode = _answer(zone, question, response.answers)
    if not response.answers or rcode == NXDOMAIN:
        response.authority.append(_negative_soa(zone))
    return _finish(response, rcode, edns), limit


def _answer(zone: Zone, question: Question, answers: list[ResourceRecord]) -> int:
    """Append the answers to `question` (following CNAMEs); the RCODE."""
    name, qtype = question.name, question.qtype
    key = key_of(name)
    for _ in range(MAX_CNAME_CHAIN):
        records = zone.lookup(key, qtype)
        if records is None:
            return NXDOMAIN
        aliases = (
            [] if records or qtype == RRType.cname else zone.lookup(key, RRType.cname)
        )
        if not aliases:
            answers += [
                ResourceRecord(name, qtype, Record(CLASS_IN, ttl, rdata))
                for ttl, rdata in records
            ]
            return NOERROR
        ttl, target = aliases[0]
        assert isinstance(target, str)  # the zone stores CNAME targets as names
        answers.append(
            ResourceRecord(name, RRType.cname, Record(CLASS_IN, ttl, target))
        )
        name, key = target, key_of(target)
        if not zone.contains(key):
            return NOERROR  # the rest is another server's
    return NOERROR


def _negative_soa(zone: Zone) -> ResourceRecord:
    """The SOA for a negative answer, its TTL capped by the SOA's minimum."""
    assert zone.soa is not None  # parse_zone refuses a zone without one
    ttl, soa = zone.soa
    return ResourceRecord(
        zone.origin_name, RRType.soa, Record(CLASS_IN, min(ttl, soa.minimum), soa)
    )


def truncated(response: Message) -> Message:
    """`response` with TC set and no records but its OPT: the client retries
    over TCP (RFC 7766 section 5)."""
    return Message(
        id=response.id, qr=1, opcode=response.opcode, aa=response.aa, tc=1,
        rd=response.rd, ra=0, z=0, ad=0, cd=response.cd, rcode=response.rcode,
        questions=response.questions, answers=[], authority=[],
        additional=[r for r in response.additional if isinstance(r.record, Opt)],
    )  # fmt: skip


def formerr(head: bytes | memoryview) -> Message | None:
    """FORMERR for a message whose header (its first 12 bytes) arrived but whose
    body does not decode; None for a response (never answered) or no header."""
    if len(head) < 12:
        return None
    query_id, flags = _ID_FLAGS.unpack_from(head)
    if flags & _QR:
        return None
    response = _reply(query_id, flags >> 11 & 0xF, flags >> 8 & 1, flags >> 4 & 1)
    return _finish(response, FORMERR, False)
